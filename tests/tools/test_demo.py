"""The demo: tools/demo.sh det on a shortened schedule learns (beats the untrained model on the toy validation set)
and ends with the picture and the metrics; its trained Mask R-CNN deploys (tools/deploy.py) and the deployed folder
predicts what PyTorch predicts (tools/infer.py DIR against the demo's own tools/infer.py run); tools/demo_summary.py
reads what the runs leave behind."""
import json
import os
import re
import sys

import pytest
import torch

from helpers import build_from_config, detections_of, python_tool, run_tool, toy_data

QUICK = 'configs/toy/mask-rcnn_davit-t_toy-coco-quick.py'
EPOCHS = 3  # 48 iterations of 4 images: the default demo's first 3/8, with the cosine compressed to fit
SHORT = [f'train_cfg.max_epochs={EPOCHS}', f'train_cfg.val_interval={EPOCHS}', f'param_scheduler.1.T_max={EPOCHS}',
         f'param_scheduler.1.end={EPOCHS}', f'default_hooks.checkpoint.interval={EPOCHS}']


def _metrics(text):
    return {k: float(v) for k, v in re.findall(r'(coco/\w+): ([0-9.]+)', text)}


@pytest.fixture(scope='module')
def demo(tmp_path_factory):
    toy_data('coco')
    wd = tmp_path_factory.mktemp('demo') / 'demo'
    venv = os.path.dirname(os.path.dirname(sys.executable))  # the environment running these tests
    r = run_tool('bash', 'tools/demo.sh', 'det', env={'DAVIT_VENV': venv, 'DEMO_WORK_DIR': str(wd),
                                                      'DEMO_TRAIN_ARGS': '--cfg-options ' + ' '.join(SHORT)})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return wd, r


@pytest.mark.slow
def test_quick_demo_learns_and_ends_with_picture_and_metrics(demo, tmp_path):
    wd, r = demo
    log = r.stdout + r.stderr
    assert re.search(r'Epoch\(train\)\s+\[1\]\[\s*8/16\].*eta:', log), 'no progress line with an ETA'
    tail = r.stdout[r.stdout.index('==== demo finished ===='):]
    trained = _metrics(tail)
    picture = re.search(r'the picture: (\S+)', tail).group(1)
    assert os.path.isfile(picture) and picture == str(wd / 'infer' / 'vis' / '000000.png')
    with open(wd / 'infer' / 'predictions.json') as f:
        assert len(json.load(f)['images']) == 16

    # the same model untrained, scored with every box it proposes (threshold 0 can only raise its mAP)
    torch.manual_seed(0)
    _, model = build_from_config(QUICK)
    untrained = tmp_path / 'untrained.pth'
    torch.save({'state_dict': model.state_dict()}, untrained)
    r = python_tool('tools/test.py', QUICK, str(untrained), '--work-dir', str(tmp_path / 'untrained'),
                    '--cfg-options', 'model.test_cfg.rcnn.score_thr=0.0')
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    before = _metrics(r.stdout)
    for k in ('coco/bbox_mAP_50', 'coco/segm_mAP_50'):
        assert trained[k] >= before.get(k, 0.0) + 0.3, (k, trained, before)


@pytest.mark.slow
def test_quick_demo_model_deploys_and_predicts_as_pytorch(demo, tmp_path):
    """Issue 18's agreement: every PyTorch instance >= 0.3 of the demo's infer run over the 16 validation images has
    an exported twin (same class, box IoU >= 0.95, score within 0.02, mask IoU >= 0.95), here and, in tools/deploy.py's
    own verification, at two other image sizes."""
    import cv2
    import shutil
    from davit_deploy.detection import match
    wd, _ = demo
    val = os.path.join(toy_data('coco'), 'val2017')
    verify = tmp_path / 'verify'
    shutil.copytree(val, verify)
    img = cv2.imread(os.path.join(val, '000000.jpg'))
    cv2.imwrite(str(verify / 'odd_97x61.png'), cv2.resize(img, (61, 97)))
    cv2.imwrite(str(verify / 'wide_150x233.png'), cv2.resize(img, (233, 150)))
    ckpt = (wd / 'last_checkpoint').read_text().strip()
    out = tmp_path / 'deployed'
    r = python_tool('tools/deploy.py', QUICK, ckpt, '--out', str(out), '--verify', str(verify))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    with open(out / 'deploy.json') as f:
        rows = json.load(f)['verification']
    assert len(rows) == 18 and {tuple(r['size']) for r in rows} >= {(112, 112), (112, 80)}
    assert sum(r['reference'] for r in rows) >= 16
    for row in rows:
        assert row['paired'] == row['reference'] and not row['unexplained'], row
        assert row['box_iou'] >= 0.95 and row['score_diff'] <= 0.02 and row['mask_iou'] >= 0.95, row

    r = python_tool('tools/infer.py', str(out), val, '--out', str(tmp_path / 'infer-onnx'))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    with open(tmp_path / 'infer-onnx' / 'predictions.json') as f:
        exported = detections_of(json.load(f))
    with open(wd / 'infer' / 'predictions.json') as f:
        reference = detections_of(json.load(f))
    assert sorted(exported) == sorted(reference) and len(reference) == 16
    for name, want in reference.items():
        report = match(want, exported[name], 0.3)
        assert report['paired'] == report['reference'] and not report['unexplained'], (name, report)
        assert report['box_iou'] >= 0.95 and report['score_diff'] <= 0.02 and report['mask_iou'] >= 0.95, \
            (name, report)


def test_demo_summary_reads_the_training_log(tmp_path):
    """Without tools/test.py output, the metrics are the training log's last evaluation."""
    run = tmp_path / '20250101_000000' / 'vis_data'
    run.mkdir(parents=True)
    records = [{'loss': 1.0, 'step': 8}, {'coco/bbox_mAP': 0.1, 'coco/segm_mAP': 0.2, 'step': 4},
               {'loss': 0.5, 'step': 16}, {'coco/bbox_mAP': 0.812, 'coco/segm_mAP': 0.834,
                                           'coco/bbox_mAP_50': 0.99, 'step': 8}]
    (run / 'scalars.json').write_text('\n'.join(json.dumps(r) for r in records) + '\n')
    vis = tmp_path / 'infer' / 'vis'
    vis.mkdir(parents=True)
    (vis / 'a.png').write_bytes(b'png')
    r = python_tool('tools/demo_summary.py', 'det', str(tmp_path), '125', '--picture', str(vis / 'a.png'))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert 'training took 2 min 5 s' in r.stdout
    assert _metrics(r.stdout) == {'coco/bbox_mAP': 0.812, 'coco/segm_mAP': 0.834, 'coco/bbox_mAP_50': 0.99}
    assert lines[-1] == f'the picture: {vis / "a.png"}'
    r = python_tool('tools/demo_summary.py', 'det', str(tmp_path), '1', '--picture', str(vis / 'missing.png'))
    assert r.returncode == 1 and 'no picture' in r.stderr
