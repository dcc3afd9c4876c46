"""davit_deploy's numpy/OpenCV re-implementations against the libraries they stand in for: pycocotools' RLE, and
mmcv's / mmpretrain's test-time transforms (same rounding, same interpolation, the same pixels)."""
import numpy as np
import pytest

from davit_deploy import rle
from davit_deploy.preprocess import apply_step, preprocess


@pytest.mark.parametrize('shape,kind', [((7, 5), 'random'), ((64, 96), 'random'), ((3, 4), 'zeros'),
                                        ((3, 4), 'ones'), ((33, 17), 'first-on')])
def test_rle_matches_pycocotools(shape, kind):
    from pycocotools import mask as mask_utils
    rng = np.random.RandomState(sum(shape))
    m = {'random': lambda: rng.rand(*shape) > 0.6, 'zeros': lambda: np.zeros(shape, bool),
         'ones': lambda: np.ones(shape, bool),
         'first-on': lambda: np.pad(np.ones((5, 5), bool), ((0, shape[0] - 5), (0, shape[1] - 5)))}[kind]()
    ref = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
    ours = rle.encode(m)
    assert ours == dict(size=[int(s) for s in ref['size']], counts=ref['counts'].decode())
    assert (mask_utils.decode(dict(size=ours['size'], counts=ours['counts'].encode())) == m).all()


@pytest.fixture
def image():
    return np.random.RandomState(0).randint(0, 256, (97, 131, 3)).astype(np.uint8)


@pytest.mark.parametrize('cfg', [dict(type='Resize', scale=(256, 128), keep_ratio=True),
                                 dict(type='Resize', scale=(64, 80), keep_ratio=False),
                                 dict(type='Resize', scale=(2048, 512), keep_ratio=True)])
def test_resize_as_mmcv(image, cfg):
    from mmcv.transforms import Resize
    from mmdavit.export.graphs import _resize_step
    ref = Resize(**{k: v for k, v in cfg.items() if k != 'type'})(dict(img=image.copy()))['img']
    assert np.array_equal(apply_step(image, _resize_step(cfg)), ref)


@pytest.mark.parametrize('edge', ['short', 'long'])
@pytest.mark.parametrize('backend,interp', [('pillow', 'bicubic'), ('cv2', 'bilinear')])
def test_resize_edge_and_center_crop_as_mmpretrain(image, edge, backend, interp):
    from mmcv.transforms import CenterCrop
    from mmpretrain.datasets.transforms import ResizeEdge
    from mmdavit.export.graphs import _resize_step
    cfg = dict(type='ResizeEdge', scale=73, edge=edge, backend=backend, interpolation=interp)
    ref = ResizeEdge(**{k: v for k, v in cfg.items() if k != 'type'})(dict(img=image.copy()))['img']
    ours = apply_step(image, _resize_step(cfg))
    assert np.array_equal(ours, ref)
    crop = dict(type='CenterCrop', crop_size=(64, 50))
    assert np.array_equal(apply_step(ours, _resize_step(crop)), CenterCrop(crop_size=(64, 50))(dict(img=ref))['img'])


def test_normalise_and_pad_as_the_data_preprocessors(image):
    import torch
    from mmseg.models.data_preprocessor import SegDataPreProcessor
    mean, std = [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]
    pre = SegDataPreProcessor(mean=mean, std=std, bgr_to_rgb=True, test_cfg=dict(size_divisor=32))
    from mmseg.structures import SegDataSample
    ref = pre(dict(inputs=[torch.from_numpy(image).permute(2, 0, 1).contiguous()], data_samples=[SegDataSample()]),
              training=False)['inputs']
    recipe = dict(pipeline=[], to_rgb=True, mean=mean, std=std, pad=dict(size=None, size_divisor=32, value=0.))
    x, (h, w) = preprocess(image, recipe)
    assert (h, w) == image.shape[:2] and x.shape == tuple(ref.shape) == (1, 3, 128, 160)
    assert np.abs(x - ref.numpy()).max() < 1e-5


@pytest.mark.parametrize('box', [(10.3, 4.7, 60.2, 33.9), (0.0, 0.0, 95.0, 71.0), (50.5, 20.0, 50.5, 40.0),
                                 (-3.0, 60.2, 20.0, 90.0), (88.0, 5.0, 140.0, 30.0)])
def test_paste_mask_is_mmdet_fcn_mask_head(box):
    """The CPU path of mmdet's FCNMaskHead: one box at a time, skip_empty; a box of zero width, one leaving the
    image."""
    import torch
    from mmdet.models.roi_heads.mask_heads.fcn_mask_head import _do_paste_mask
    from davit_deploy.detection import paste_mask
    mask = np.random.RandomState(1).rand(28, 28).astype(np.float32)
    h, w = 72, 96
    chunk, (rows, cols) = _do_paste_mask(torch.from_numpy(mask)[None, None], torch.tensor([box]), h, w)
    ref = np.zeros((h, w), bool)
    ref[rows, cols] = (chunk[0] >= 0.5).numpy()
    ours = paste_mask(mask, box, h, w, 0.5)
    assert ours.shape == (h, w) and (ours == ref).mean() >= 0.9999, np.argwhere(ours != ref)
    assert ours.any() == ref.any()


def test_match_pairs_each_detection_with_its_own_twin():
    """Overlapping detections of one class and near scores: the closest pairs first (a greedy pass in reference
    order would give the first one its neighbour's twin); a missing twin and an unexplained extra are counted."""
    from davit_deploy.detection import match
    ref = dict(boxes=np.array([[0, 0, 10, 10], [1, 0, 11, 10]], np.float32), scores=np.array([0.9, 0.89]),
               labels=np.array([1, 1]))
    out = dict(boxes=ref['boxes'][::-1].copy(), scores=np.array([0.89, 0.9]), labels=np.array([1, 1]))
    r = match(ref, out)
    assert r['paired'] == 2 and r['box_iou'] == 1.0 and r['score_diff'] < 1e-6 and r['unexplained'] == 0
    r = match(ref, dict(boxes=out['boxes'][:1], scores=out['scores'][:1], labels=out['labels'][:1]))
    assert r['paired'] == 1 and r['box_iou'] == 0.0
    extra = dict(boxes=np.concatenate([out['boxes'], [[50, 50, 60, 60]]]), scores=np.array([0.89, 0.9, 0.5]),
                 labels=np.array([1, 1, 2]))
    assert match(ref, extra)['unexplained'] == 1
