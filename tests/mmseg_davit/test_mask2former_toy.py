"""Mask2Former on DaViT-T end to end on the toy ADE set through tools/: train a few iterations with mmseg's
Mask2Former head (mmdet's modules under mmseg's registry), evaluate (mIoU), test with a dump of the class maps; and
tools/deploy.py's one-line refusal of its query-based head."""
import glob
import math
import os
import pickle
import re

import pytest

from helpers import python_tool, scalars, toy_data

pytestmark = pytest.mark.slow

CFG = 'configs/toy/mask2former_davit-t_toy-ade.py'
SMALL = ['train_dataloader.dataset.indices=8', 'val_dataloader.dataset.indices=3', 'test_dataloader.dataset.indices=3',
         'default_hooks.logger.interval=1', 'param_scheduler=[]', 'randomness.seed=0']


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    toy_data('ade')
    wd = str(tmp_path_factory.mktemp('m2f'))
    r = python_tool('tools/train.py', CFG, '--work-dir', wd, '--cfg-options', *SMALL, 'train_cfg.max_iters=6',
                    'train_cfg.val_interval=6', 'default_hooks.checkpoint.interval=6')
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return wd


def test_loss_goes_down_and_evaluation_finishes(trained):
    records = scalars(trained)
    losses = [r['loss'] for r in records if 'loss' in r]
    assert len(losses) == 6 and all(math.isfinite(v) for v in losses), losses
    assert losses[-1] < losses[0], losses
    last = [r for r in records if 'loss' in r][-1]
    # the classification, mask (BCE) and dice losses of the last decoder layer and of each earlier one
    assert {'decode.loss_cls', 'decode.loss_mask', 'decode.loss_dice', 'decode.d0.loss_cls'} <= set(last), last
    evals = [r for r in records if 'mIoU' in r]
    assert evals and 0.0 <= evals[-1]['mIoU'] <= 100.0
    assert os.path.isfile(os.path.join(trained, 'iter_6.pth'))


def test_test_tool_reports_miou_and_dumps_class_maps(trained, tmp_path):
    dump = tmp_path / 'ss.pkl'
    r = python_tool('tools/test.py', CFG, os.path.join(trained, 'iter_6.pth'), '--work-dir', str(tmp_path / 'ss'),
                    '--out', str(dump), '--cfg-options', *SMALL)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert re.search(r"'mIoU': [0-9.]+", r.stdout), r.stdout[-2000:]
    with open(dump, 'rb') as f:
        results = pickle.load(f)
    assert len(results) == 3
    for res in results:
        pred, gt = res['pred_sem_seg']['data'], res['gt_sem_seg']['data']
        # a class map at the image's own size, in the toy set's 4 classes
        assert pred.shape == gt.shape and set(pred.unique().tolist()) <= {0, 1, 2, 3}


def test_deploy_refuses_mask2former_in_one_line_and_writes_nothing(trained, tmp_path):
    out = tmp_path / 'deployed'
    r = python_tool('tools/deploy.py', CFG, os.path.join(trained, 'iter_6.pth'), '--out', str(out))
    assert r.returncode == 2, r.stdout[-2000:] + r.stderr[-2000:]
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert 'Mask2FormerHead' in r.stderr and 'tools/infer.py' in r.stderr, r.stderr
    assert not out.exists() and not glob.glob(str(out) + '.tmp-*')
