"""mmdavit.export.detector_graph: the glue that replaces mmdet's per-image Python loops (NMS, top-k, RoI levels),
checked against mmdet's and mmcv's own code; the ONNX export of whole detectors is in tests/tools/test_deploy.py."""
import numpy as np
import pytest
import torch

from helpers import build_from_config, toy_data

from mmdavit.export.detector_graph import DetectorGraph, nms_topk


def _random_boxes(rng, batch, n, size=100.0):
    xy = torch.from_numpy(rng.rand(batch, n, 2).astype(np.float32)) * size
    wh = torch.from_numpy(rng.rand(batch, n, 2).astype(np.float32)) * size / 3 + 1
    return torch.cat([xy, xy + wh], -1)


@pytest.mark.parametrize('k', [5, 40])
def test_nms_topk_is_mmcv_batched_nms_per_image(k, seed):
    from mmcv.ops import batched_nms
    rng = np.random.RandomState(seed)
    boxes = _random_boxes(rng, 3, 60)
    scores = torch.from_numpy(rng.rand(3, 60).astype(np.float32))
    groups = torch.from_numpy(rng.randint(0, 4, (3, 60)))
    index, score, kept = nms_topk(boxes, scores, groups, 0.5, 0.2, k)
    assert index.shape == score.shape == kept.shape == (3, k)
    for b in range(3):
        valid = scores[b] > 0.2
        cand = torch.nonzero(valid).squeeze(1)
        dets, keep = batched_nms(boxes[b, cand], scores[b, cand], groups[b, cand], dict(type='nms', iou_threshold=0.5))
        want = cand[keep[:k]]
        n = len(want)
        assert kept[b, :n].all() and not kept[b, n:].any()
        assert torch.equal(index[b, :n], want)
        assert torch.allclose(score[b, :n], dets[:k, -1]) and (score[b, n:] == 0).all()


def _detector(config, scores_spread=False):
    """A seeded random-weight detector; with scores_spread its classifier's prior bias is zeroed so that scores
    spread over (0, 1) instead of sitting at the 0.01 prior that no score threshold lets through."""
    torch.manual_seed(0)
    cfg, model = build_from_config(config)
    if scores_spread:
        with torch.no_grad():
            model.bbox_head.retina_cls.bias.zero_()
            model.bbox_head.retina_cls.weight.mul_(0.3)
    return cfg, model.eval()


def _compare(model, graph, x, h, w):
    from mmdet.structures import DetDataSample
    sample = DetDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w), scale_factor=(1.0, 1.0),
                                         pad_shape=tuple(x.shape[2:]), batch_input_shape=tuple(x.shape[2:])))
    with torch.no_grad():
        ref = model.predict(x, [sample], rescale=False)[0].pred_instances
        out = graph(x, torch.tensor([[h, w]]))
    dets, labels = out[0][0], out[1][0]
    n = int((labels >= 0).sum())
    assert n == len(ref) and n > 0
    assert torch.equal(labels[:n], ref.labels)
    assert torch.allclose(dets[:n, 4], ref.scores, atol=1e-5)
    assert torch.allclose(dets[:n, :4], ref.bboxes, atol=1e-3)
    return out, ref


def test_retinanet_graph_is_mmdet_predict(seed):
    toy_data('coco')
    _, model = _detector('configs/toy/retinanet_davit-t_toy-coco.py', scores_spread=True)
    graph = DetectorGraph(model)
    assert graph.output_names == ('dets', 'labels')
    # a batch padded past the image (mmdet clips to the image, not the padding)
    x = torch.randn(1, 3, 96, 128)
    _compare(model, graph, x, 90, 117)


def test_mask_rcnn_graph_is_mmdet_predict(seed):
    from mmdet.models.roi_heads.mask_heads.fcn_mask_head import _do_paste_mask
    toy_data('coco')
    _, model = _detector('configs/toy/mask-rcnn_davit-t_toy-coco-quick.py')
    model.test_cfg.rcnn.score_thr = 0.0  # random weights: keep every box so that there is something to compare
    graph = DetectorGraph(model)
    assert graph.output_names == ('dets', 'labels', 'masks')
    x = torch.randn(1, 3, 112, 96)
    (dets, labels, masks), ref = _compare(model, graph, x, 105, 90)
    n = len(ref)
    assert masks.shape == (1, graph.max_per_img, 28, 28)
    # the probabilities pasted by mmdet itself give mmdet's masks
    pasted = [(_do_paste_mask(masks[0, i][None, None], dets[0, i:i + 1, :4], 105, 90, skip_empty=False)[0][0]
               >= 0.5) for i in range(n)]
    agree = [float((p == m).float().mean()) for p, m in zip(pasted, ref.masks)]
    assert min(agree) >= 0.999, agree


def test_unsupported_detectors_are_refused():
    from mmdavit.export.graphs import DeployError, graph_for
    _, model = _detector('configs/toy/mask-rcnn_davit-t_toy-coco-quick.py')
    model.roi_head.bbox_head.bbox_coder = type('TBLRBBoxCoder', (), {})()
    with pytest.raises(DeployError, match='TBLRBBoxCoder') as e:
        graph_for('mmdet', model)
    assert e.value.runs_in_pytorch


def test_query_based_detectors_are_refused():
    """DINO's predict is a top-k over (query, class) pairs of its last decoder layer, without anchors or NMS: the
    graph has no such path yet, and says so in one line naming detector and head."""
    from mmdavit.export.graphs import DeployError, graph_for
    _, model = build_from_config('configs/toy/dino_davit-t_toy-coco.py')
    with pytest.raises(DeployError, match=r'^DINO with DINOHead: ') as e:
        graph_for('mmdet', model)
    assert '\n' not in str(e.value) and e.value.runs_in_pytorch


def test_a_batch_gives_each_image_what_it_gives_alone(seed):
    """Images of one padded size in one batch: each image's rows equal its own run's, padding rows empty."""
    toy_data('coco')
    _, model = _detector('configs/toy/mask-rcnn_davit-t_toy-coco-quick.py')
    model.test_cfg.rcnn.score_thr = 0.0
    graph = DetectorGraph(model)
    x, sizes = torch.randn(3, 3, 96, 112), torch.tensor([[96, 112], [90, 100], [96, 97]])
    with torch.no_grad():
        batch = graph(x, sizes)
        for i in range(3):
            alone = graph(x[i:i + 1], sizes[i:i + 1])
            n = int((alone[1][0] >= 0).sum())
            assert n > 0 and torch.equal(batch[1][i], alone[1][0])
            for b, a in zip(batch, alone):
                assert torch.allclose(b[i], a[0], atol=1e-4)
            assert (batch[2][i, n:] == 0).all() and (batch[0][i, n:] == 0).all()
