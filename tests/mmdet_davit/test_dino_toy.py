"""DINO on DaViT-T end to end on the toy COCO set through tools/: train, evaluate (COCO box metrics), test with a
dump of the predictions; and tools/deploy.py's one-line refusal of a trained DINO (the detector graph has no
query-based head)."""
import glob
import math
import os
import pickle

import pytest

from helpers import python_tool, scalars, toy_data

pytestmark = pytest.mark.slow

CFG = 'configs/toy/dino_davit-t_toy-coco.py'
# 8 training images, batch 4: 2 iterations an epoch; evaluation on 4 val images; seeded so a run is repeatable
SMALL = ['train_dataloader.dataset.indices=8', 'val_dataloader.dataset.indices=4',
         'test_dataloader.dataset.indices=4', 'default_hooks.logger.interval=1', 'randomness.seed=0']


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    toy_data('coco')
    wd = str(tmp_path_factory.mktemp('dino'))
    r = python_tool('tools/train.py', CFG, '--work-dir', wd, '--cfg-options', *SMALL, 'train_cfg.max_epochs=4',
                    'train_cfg.val_interval=4', 'default_hooks.checkpoint.interval=4', 'param_scheduler=[]')
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return wd


def test_loss_goes_down_and_evaluation_finishes(trained):
    records = scalars(trained)
    losses = [r['loss'] for r in records if 'loss' in r]
    assert len(losses) == 8 and all(math.isfinite(v) for v in losses), losses
    # Hungarian-matched classification, L1 and GIoU losses of every decoder layer, the encoder's proposals and the
    # denoising queries: all of them fall within the first epochs from random heads
    assert sum(losses[-2:]) < 0.85 * sum(losses[:2]), losses
    last = [r for r in records if 'loss' in r][-1]
    assert {'loss_cls', 'loss_bbox', 'loss_iou', 'd0.loss_cls', 'enc_loss_cls', 'dn_loss_cls'} <= set(last), last
    evals = [r for r in records if 'coco/bbox_mAP' in r]
    assert evals and 0.0 <= evals[-1]['coco/bbox_mAP'] <= 1.0
    assert os.path.isfile(os.path.join(trained, 'epoch_4.pth'))


def test_test_tool_reports_coco_metrics_and_dumps_queries_top_k(trained, tmp_path):
    out = tmp_path / 'preds.pkl'
    r = python_tool('tools/test.py', CFG, os.path.join(trained, 'epoch_4.pth'), '--work-dir', str(tmp_path),
                    '--out', str(out), '--cfg-options', *SMALL)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "'coco/bbox_mAP'" in r.stdout
    with open(out, 'rb') as f:
        preds = pickle.load(f)
    assert len(preds) == 4
    for p in preds:
        inst = p['pred_instances']
        # DINO's predict keeps the max_per_img best (query, class) pairs, with no score threshold and no NMS
        n = len(inst['scores'])
        assert n == 30 and inst['bboxes'].shape == (n, 4) and len(inst['labels']) == n
        assert set(inst['labels'].tolist()) <= {0, 1, 2}


def test_deploy_refuses_dino_in_one_line_and_writes_nothing(trained, tmp_path):
    out = tmp_path / 'deployed'
    r = python_tool('tools/deploy.py', CFG, os.path.join(trained, 'epoch_4.pth'), '--out', str(out))
    assert r.returncode == 2, r.stdout[-2000:] + r.stderr[-2000:]
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert 'DINO with DINOHead' in r.stderr and 'tools/infer.py' in r.stderr, r.stderr
    assert not out.exists() and not glob.glob(str(out) + '.tmp-*')
