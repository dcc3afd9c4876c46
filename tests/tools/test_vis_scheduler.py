"""tools/vis_scheduler.py as a user runs it: the curve it draws and writes is the one training would follow."""
import json

import numpy as np
import pytest

from helpers import python_tool

DET_T = 'configs/mmdet/mask-rcnn_davit-t_fpn_1x_coco.py'
DET_FL = 'configs/mmdet/mask-rcnn_davit-b-fl_fpn_1x_coco.py'


def _run(tmp_path, config, *args):
    out = tmp_path / 'lr.png'
    r = python_tool('tools/vis_scheduler.py', config, '--out', str(out), *args)
    assert r.returncode == 0, r.stderr[-3000:]
    with open(tmp_path / 'lr.json') as f:
        return r, out, json.load(f)


def test_one_gpu_epoch_schedule_is_auto_scaled_and_drawn(tmp_path):
    """1 GPU x 2 images of a 1200-image set: 600 iterations an epoch, 12 epochs; the lr scaled to 2/16 of the
    config's 1e-4 (auto_scale_lr), warmup over 500 iterations, x0.1 from epoch 8 and again from epoch 11."""
    r, out, rec = _run(tmp_path, DET_T, '--gpus', '1', '--dataset-size', '1200')
    assert (rec['total_batch'], rec['iters_per_epoch'], rec['iterations']) == (2, 600, 7200)
    (curve,) = rec['curves']
    lr = dict(zip(rec['sampled_iterations'], curve['lr']))
    assert rec['sampled_iterations'][-1] == 7199 and len(lr) <= 4001
    peak = 1e-4 * 2 / 16
    assert curve['peak_lr'] == pytest.approx(peak) and 498 <= curve['peak_at'] <= 500
    assert curve['initial_lr'] == pytest.approx(peak * 1e-3)
    assert lr[8 * 600 - 2] == pytest.approx(peak) and lr[8 * 600] == pytest.approx(peak * 0.1)
    assert lr[11 * 600] == pytest.approx(peak * 0.01) and curve['final_lr'] == pytest.approx(peak * 0.01)
    assert 'batch 2' in r.stdout and 'x0.125' in r.stdout and str(out) in r.stdout

    import cv2
    img = cv2.imread(str(out))
    assert img.shape == (500, 1000, 3)
    # drawn, not blank: the curve's colour (matplotlib's first, #1f77b4 -> BGR) covers a visible stretch
    blue = np.all(np.abs(img.astype(int) - (180, 119, 31)) < 40, axis=2)
    assert blue.sum() > 500 and np.ptp(np.nonzero(blue)[1]) > 600


def test_stage_rates_are_separate_curves(tmp_path):
    """Florence-2's stage-wise decay: one curve per distinct rate, peaks 0.8^k apart, each named by its parameters."""
    _, _, rec = _run(tmp_path, DET_FL, '--gpus', '8', '--dataset-size', '16000')
    peaks = sorted((c['peak_lr'] for c in rec['curves']), reverse=True)
    np.testing.assert_allclose(peaks, [1e-4 * 0.8 ** k for k in range(6)], rtol=1e-9)
    labels = {round(c['peak_lr'] / peaks[0], 6): c['label'] for c in rec['curves']}
    assert 'backbone.stem.*' in labels[round(0.8 ** 5, 6)]
    assert '(backbone.stages.0.' in labels[round(0.8 ** 4, 6)]  # stage 0 has no downsample: all in blocks.0
    assert all(name in labels[1.0] for name in ('backbone', 'neck', 'rpn_head', 'roi_head'))
    for c in rec['curves']:  # the same schedule, scaled
        np.testing.assert_allclose(np.array(c['lr']) / c['peak_lr'],
                                   np.array(rec['curves'][0]['lr']) / rec['curves'][0]['peak_lr'], rtol=1e-9)


@pytest.mark.parametrize('args,says', [
    (['configs/mmdet/nope.py'], 'config file not found'),
    ([DET_T, '--out', 'OUT/lr.txt'], 'name a picture'),
    ([DET_T, '--gpus', '0'], 'must be positive'),
    # epoch-based, no COCO here and no --dataset-size: the length of an epoch is unknown
    ([DET_T, '--out', 'OUT/lr.png', '--cfg-options', 'train_dataloader.dataset.data_root=OUT/none/'],
     '--dataset-size'),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, args, says):
    args = [a.replace('OUT', str(tmp_path)) for a in args]
    r = python_tool('tools/vis_scheduler.py', *args)
    assert r.returncode == 2 and says in r.stderr, r.stderr[-2000:]
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert list(tmp_path.iterdir()) == []
