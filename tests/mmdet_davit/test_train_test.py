"""End to end on the toy COCO set through tools/: train, resume, test (COCO metrics), 2-process CPU run."""
import glob
import os
import re

import pytest
import torch

from helpers import ROOT, python_tool, run_tool, scalars, toy_data

CFG = 'configs/toy/mask-rcnn_davit-t_toy-coco.py'
# 8 training images, batch 4: 2 iterations an epoch; evaluation on 4 val images
# score_thr 0: after a few iterations from random weights no box may pass 0.05, and COCO's evaluator then returns
# no metrics at all; seeded so a run is repeatable
SMALL = ['train_dataloader.dataset.indices=8', 'val_dataloader.dataset.indices=4',
         'test_dataloader.dataset.indices=4', 'default_hooks.logger.interval=1', 'model.test_cfg.rcnn.score_thr=0.0',
         'randomness.seed=0']


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    toy_data('coco')
    wd = str(tmp_path_factory.mktemp('det'))
    r = python_tool('tools/train.py', CFG, '--work-dir', wd, '--cfg-options', *SMALL,
                    'train_cfg.max_epochs=4', 'train_cfg.val_interval=4', 'default_hooks.checkpoint.interval=2',
                    'default_hooks.checkpoint.max_keep_ckpts=3',
                    'optim_wrapper.optimizer.lr=2e-4', 'param_scheduler=[]')
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return wd


def test_loss_goes_down_and_evaluation_finishes(trained):
    records = scalars(trained)
    losses = [r['loss'] for r in records if 'loss' in r]
    assert len(losses) == 8
    assert sum(losses[-2:]) < 0.8 * sum(losses[:2]), losses
    evals = [r for r in records if 'coco/bbox_mAP' in r]
    assert evals and 'coco/segm_mAP' in evals[-1]


def test_resume_continues_from_saved_epoch(trained):
    """Also proves mmengine checkpoints (numpy in meta/message_hub) load under torch's weights_only default."""
    ckpt = os.path.join(trained, 'epoch_2.pth')
    assert os.path.isfile(ckpt)
    r = python_tool('tools/train.py', CFG, '--work-dir', trained, '--resume', ckpt, '--cfg-options', *SMALL,
                    'train_cfg.max_epochs=3', 'train_cfg.val_interval=10', 'param_scheduler=[]')
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    log = r.stdout + r.stderr
    assert 'resumed epoch: 2' in log, log[-2000:]
    assert re.search(r'Epoch\(train\)\s+\[3\]', log) and not re.search(r'Epoch\(train\)\s+\[[12]\]', log)


def test_test_tool_reports_coco_metrics_and_draws(trained, tmp_path):
    out = tmp_path / 'preds.pkl'
    r = python_tool('tools/test.py', CFG, os.path.join(trained, 'epoch_4.pth'), '--work-dir', str(tmp_path),
                    '--out', str(out), '--show-dir', 'vis', '--cfg-options', *SMALL)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "'coco/bbox_mAP'" in r.stdout and "'coco/segm_mAP'" in r.stdout
    import pickle
    with open(out, 'rb') as f:  # our own run's dump (mmengine's DumpResults)
        preds = pickle.load(f)
    assert len(preds) == 4  # one entry per test image, each with boxes, scores, labels and masks that agree in number
    for p in preds:
        inst = p['pred_instances']
        n = len(inst['scores'])
        assert inst['bboxes'].shape == (n, 4) and len(inst['labels']) == n and len(inst['masks']) == n
    assert len(glob.glob(str(tmp_path / '*' / 'vis' / '*.jpg'))) == 4


def test_weights_only_loading_of_mmengine_checkpoint(trained):
    # the allow-list holds inside the reader only: nothing global is needed, nothing global is changed
    from mmdavit.checkpoints.allow_list import mmengine_checkpoint_globals
    with mmengine_checkpoint_globals():
        ckpt = torch.load(os.path.join(trained, 'epoch_4.pth'), map_location='cpu')  # torch's default: weights_only
    assert 'message_hub' in ckpt and 'state_dict' in ckpt


@pytest.mark.slow
def test_two_process_cpu_dist_train(tmp_path):
    toy_data('coco')
    r = run_tool('bash', 'tools/dist_train.sh', CFG, '2', '--work-dir', str(tmp_path), '--cfg-options', *SMALL,
                 'train_cfg.max_epochs=1', 'train_cfg.val_interval=1', env={'PORT': '29512'})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert os.path.isfile(tmp_path / 'epoch_1.pth')
    assert 'coco/bbox_mAP' in r.stdout + r.stderr
    # with 2 processes, each sees half of the 8 images: one iteration per epoch
    assert re.search(r'Epoch\(train\)\s+\[1\]\[1/1\]', r.stdout + r.stderr)


def test_bad_inputs_get_clear_errors_and_write_nothing(tmp_path):
    wd = tmp_path / 'wd'
    r = python_tool('tools/train.py', 'configs/toy/nope.py', '--work-dir', str(wd))
    assert r.returncode == 2 and 'config file not found' in r.stderr
    r = python_tool('tools/train.py', CFG, '--work-dir', str(wd), '--cfg-options',
                    f'train_dataloader.dataset.data_root={tmp_path}/missing/')
    assert r.returncode == 2 and 'dataset path not found' in r.stderr and 'make_toy_data.py coco' in r.stderr
    assert not wd.exists()
    bad = tmp_path / 'resnet.pth'
    torch.save({'state_dict': {'conv1.weight': torch.zeros(2), 'fc.weight': torch.zeros(2)}}, bad)
    toy_data('coco')
    r = python_tool('tools/test.py', CFG, str(bad), '--work-dir', str(tmp_path / 'wd2'), '--cfg-options', *SMALL)
    assert r.returncode == 2 and 'not a DaViT checkpoint' in r.stderr, r.stderr[-2000:]
    r = python_tool('tools/train.py', CFG, '--work-dir', str(wd), '--cfg-options',
                    f'model.pretrained={bad}', *SMALL, 'train_cfg.max_epochs=1')
    assert r.returncode != 0 and 'not a DaViT checkpoint' in r.stderr, r.stderr[-2000:]
