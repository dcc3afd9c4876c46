"""The package is installed so that mim finds its configs and tools (mmdavit/.mim)."""
import os
import shutil

import pytest

from helpers import ROOT, run_tool, scalars, toy_data

MIM = shutil.which('mim', path=os.path.dirname(__import__('sys').executable))


@pytest.mark.skipif(MIM is None, reason='openmim is part of requirements/optional.txt; setup_env installs it')
def test_mim_search_lists_the_models():
    r = run_tool(MIM, 'search', 'mmdavit')
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    for name in ('davit-tiny_8xb128_in1k', 'mask-rcnn_davit-t_fpn_1x_coco', 'upernet_davit-t_8xb2-160k_ade20k-512x512'):
        assert name in r.stdout


def test_installed_package_ships_configs_and_tools():
    from mim.utils import get_installed_path
    path = get_installed_path('mmdavit')
    assert os.path.realpath(path) == os.path.realpath(os.path.join(ROOT, 'mmdavit'))
    for rel in ('configs/mmdet/mask-rcnn_davit-t_fpn_1x_coco.py', 'tools/train.py', 'model-index.yml'):
        assert os.path.exists(os.path.join(path, '.mim', rel)), rel


@pytest.mark.skipif(MIM is None, reason='openmim is part of requirements/optional.txt; setup_env installs it')
def test_mim_train_runs_the_package_tool(tmp_path):
    toy_data('imagenet')
    r = run_tool(MIM, 'train', 'mmdavit', 'configs/toy/davit-t_toy-imagefolder.py', '--gpus', '0',
                 '--work-dir', str(tmp_path), '--cfg-options', 'train_cfg.max_epochs=1', 'train_cfg.val_interval=1',
                 'train_dataloader.dataset.indices=16', 'val_dataloader.dataset.indices=8')
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert any('accuracy/top1' in s for s in scalars(str(tmp_path)))
