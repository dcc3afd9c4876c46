"""End to end on the toy ADE set: train a few iterations, single-scale and --aug-test evaluation, 2-process run."""
import glob
import os
import re

import pytest

from helpers import python_tool, run_tool, toy_data

CFG = 'configs/toy/upernet_davit-t_toy-ade.py'
SMALL = ['train_dataloader.dataset.indices=8', 'val_dataloader.dataset.indices=3',
         'test_dataloader.dataset.indices=3', 'default_hooks.logger.interval=1', 'param_scheduler=[]']


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    toy_data('ade')
    wd = str(tmp_path_factory.mktemp('seg'))
    r = python_tool('tools/train.py', CFG, '--work-dir', wd, '--cfg-options', *SMALL, 'train_cfg.max_iters=6',
                    'train_cfg.val_interval=6', 'default_hooks.checkpoint.interval=6')
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert 'mIoU' in r.stdout + r.stderr
    return wd


def _miou(text):
    m = re.search(r"'mIoU': ([0-9.]+)", text)
    assert m, text[-2000:]
    return float(m.group(1))


def test_single_scale_and_aug_test(trained, tmp_path):
    ckpt = os.path.join(trained, 'iter_6.pth')
    r = python_tool('tools/test.py', CFG, ckpt, '--work-dir', str(tmp_path / 'ss'), '--cfg-options', *SMALL)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    ss = _miou(r.stdout)
    # the original release's command line: --aug-test --eval mIoU, and a drawn mask per image
    r = python_tool('tools/test.py', CFG, ckpt, '--work-dir', str(tmp_path / 'ms'), '--aug-test', '--eval', 'mIoU',
                    '--show-dir', 'vis', '--cfg-options', *SMALL)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    ms = _miou(r.stdout)
    assert 0 <= ss <= 100 and 0 <= ms <= 100
    dumped = (tmp_path / 'ms' / 'upernet_davit-t_toy-ade.py').read_text()  # the config the Runner really ran
    assert "type='SegTTAModel'" in dumped and "type='TestTimeAug'" in dumped
    for ratio in (0.5, 0.75, 1.0, 1.25, 1.5, 1.75):
        assert f'scale_factor={ratio}' in dumped
    assert len(glob.glob(str(tmp_path / 'ms' / 'vis' / '**' / '*.png'), recursive=True)) >= 3


@pytest.mark.slow
def test_two_process_cpu_dist_train(tmp_path):
    toy_data('ade')
    r = run_tool('bash', 'tools/dist_train.sh', CFG, '2', '--work-dir', str(tmp_path), '--cfg-options', *SMALL,
                 'train_cfg.max_iters=2', 'train_cfg.val_interval=2', 'default_hooks.checkpoint.interval=2',
                 env={'PORT': '29513'})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert os.path.isfile(tmp_path / 'iter_2.pth') and 'mIoU' in r.stdout + r.stderr


def test_missing_dataset_is_a_clear_error(tmp_path):
    r = python_tool('tools/train.py', 'configs/mmseg/upernet_davit-t_8xb2-160k_ade20k-512x512.py',
                    '--work-dir', str(tmp_path / 'wd'), '--cfg-options',
                    f'train_dataloader.dataset.data_root={tmp_path}/ade')
    assert r.returncode == 2 and 'dataset path not found' in r.stderr and 'make_toy_data.py ade' in r.stderr
    assert not (tmp_path / 'wd').exists()
