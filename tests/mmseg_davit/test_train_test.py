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
    dump = tmp_path / 'ss.pkl'
    r = python_tool('tools/test.py', CFG, ckpt, '--work-dir', str(tmp_path / 'ss'), '--out', str(dump),
                    '--cfg-options', *SMALL)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    # the reported mIoU is the mIoU of what was predicted: recomputed from the dumped masks, mmseg's definition
    # (intersections and unions summed over the images, per class; mean over classes that occur; 255 ignored)
    import pickle
    import numpy as np
    with open(dump, 'rb') as f:
        results = pickle.load(f)
    assert len(results) == 3
    inter, union = np.zeros(4), np.zeros(4)
    for res in results:
        pred, gt = res['pred_sem_seg']['data'].numpy().ravel(), res['gt_sem_seg']['data'].numpy().ravel()
        pred, gt = pred[gt != 255], gt[gt != 255]
        for c in range(4):
            inter[c] += np.sum((pred == c) & (gt == c))
            union[c] += np.sum((pred == c) | (gt == c))
    with np.errstate(invalid='ignore'):
        expected = float(np.nanmean(inter / np.where(union > 0, union, np.nan))) * 100
    assert abs(_miou(r.stdout) - expected) < 0.01, (_miou(r.stdout), expected)
    # the original release's command line: --aug-test --eval mIoU, and a drawn mask per image
    r = python_tool('tools/test.py', CFG, ckpt, '--work-dir', str(tmp_path / 'ms'), '--aug-test', '--eval', 'mIoU',
                    '--show-dir', 'vis', '--cfg-options', *SMALL)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "'mIoU'" in r.stdout
    from mmengine.config import Config
    ran = Config.fromfile(str(tmp_path / 'ms' / 'upernet_davit-t_toy-ade.py'))  # the config the Runner really ran
    assert ran.model.type == 'SegTTAModel' and ran.test_dataloader.dataset.pipeline[1].type == 'TestTimeAug'
    # the toy set's test size (256, 128) times each ratio, the release's rule
    assert [tuple(t.scale) for t in ran.test_dataloader.dataset.pipeline[1].transforms[0]] == [
        (int(256 * r), int(128 * r)) for r in (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)]
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
