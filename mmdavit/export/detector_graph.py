"""mmdet's RetinaNet and Mask R-CNN / Faster R-CNN as one ONNX graph, post-processing inside, in standard ops.

Graph: ``input`` (B, 3, H, W), the preprocessed and padded batch, and ``image_size`` (B, 2), each image's (h, w)
before padding (mmdet clips boxes to it, not to the padded batch) -> ``dets`` (B, K, 5: x1, y1, x2, y2, score),
``labels`` (B, K), and for Mask R-CNN ``masks`` (B, K, M, M), each detection's mask probabilities in its box. K is
the config's ``max_per_img``; rows past an image's detections have label -1, score 0 and an empty mask. Boxes are in
the input's pixels: the runtime divides them by the resize factor and pastes the masks at the original image's
size, as mmdet's ``FCNMaskHead`` does (``davit_deploy.detection``): N x H x W pasted masks would make the graph's
output hundreds of megabytes for one photo, the M x M ones are a few kilobytes each.

The model's own modules do the arithmetic (backbone, neck, heads' forward, prior generators, box coders); this
module is only the glue that mmdet writes in Python loops over images and levels:

- NMS is ONNX ``NonMaxSuppression`` for the whole batch at once; mmcv's class-aware ``batched_nms`` keeps its trick
  (each class's boxes moved apart so they never overlap), so one NMS class serves every label. The k best of each
  image come out padded to K by a top-k over the batch (the approach of mmdeploy's ``select_nms_index``).
- Per-level pre-NMS top-k takes a fixed k from scores padded to at least k (mmdeploy's way), so that no Python
  ``min(k, n)`` fixes the traced size into the graph.
- RoIAlign is torchvision's (``RoiAlign``, opset >= 16 for mmcv's ``aligned=True``). mmdet picks one FPN level per
  RoI; the graph pools every RoI on every level and keeps the right one with a select (4x the pooling, no
  data-dependent shapes).

The TorchScript exporter only (``torch.onnx.export(dynamo=False)``): the NMS is an autograd Function whose
``symbolic`` writes the ONNX op.
"""
import warnings
from typing import List, Sequence, Tuple

import torch
import torch.nn as nn

__all__ = ['DetectorGraph', 'UnsupportedDetector', 'check_opset', 'export_detector', 'nms_topk', 'DET_OUTPUTS',
           'MASK_OUTPUTS']

DET_OUTPUTS = ('dets', 'labels')
MASK_OUTPUTS = DET_OUTPUTS + ('masks', )
MIN_OPSET = 16  # RoiAlign's coordinate_transformation_mode (mmcv's aligned=True)


class UnsupportedDetector(ValueError):
    """A detector (or opset) this graph cannot express. ``runs_in_pytorch``: nothing in the config makes it
    exportable, the model itself still runs (a tool points to its PyTorch path); otherwise the message names the
    setting to change. ``mmdavit.export.graphs`` hands it on as its ``DeployError``."""

    def __init__(self, message: str, runs_in_pytorch: bool = False):
        super().__init__(message)
        self.runs_in_pytorch = runs_in_pytorch


class _BatchedNMS(torch.autograd.Function):
    """ONNX ``NonMaxSuppression`` over (B, N, 4) boxes and (B, 1, N) scores; returns its (S, 3) selected indices
    (image, 0, box), each image's in descending score. The forward computes the same with torchvision's NMS for the
    tracer; the exporter writes ``symbolic``."""

    @staticmethod
    def forward(ctx, boxes, scores, max_out: int, iou_thr: float, score_thr: float):
        import torchvision
        rows = []
        for b in range(boxes.shape[0]):
            s = scores[b, 0]
            cand = torch.nonzero(s > score_thr).squeeze(1)
            keep = cand[torchvision.ops.nms(boxes[b, cand], s[cand], iou_thr)[:max_out]]
            rows.append(torch.stack([torch.full_like(keep, b), torch.zeros_like(keep), keep], 1))
        return torch.cat(rows)

    @staticmethod
    def symbolic(g, boxes, scores, max_out: int, iou_thr: float, score_thr: float):
        const = lambda v, dtype: g.op('Constant', value_t=torch.tensor([v], dtype=dtype))  # noqa: E731
        return g.op('NonMaxSuppression', boxes, scores, const(max_out, torch.long), const(iou_thr, torch.float),
                    const(score_thr, torch.float))


def nms_topk(boxes: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor, iou_thr: float, score_thr: float,
             k: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """mmcv's ``batched_nms`` (class-aware by ``groups``) on every image of a batch, then each image's k best.

    boxes (B, N, 4), scores (B, N), groups (B, N) -> (index into N, score, kept) each (B, k); rows past an image's
    survivors have kept False, score 0 and index 0. Scores must be above ``score_thr`` to be kept (mmdet's ``>``).
    """
    # mmcv's batched_nms: each group's boxes moved by group * (largest coordinate + 1), so groups never overlap
    shifted = boxes + (groups.to(boxes.dtype) * (boxes.max() + 1))[..., None]
    sel = _BatchedNMS.apply(shifted, scores[:, None], k, float(iou_thr), float(score_thr))
    image, box = sel[:, 0], sel[:, 2]
    picked = scores[image, box]
    batch = boxes.shape[0]
    own = image[None, :] == torch.arange(batch, device=boxes.device)[:, None]  # (B, S)
    table = torch.where(own, picked[None, :], torch.full_like(picked, -1.0)[None, :])
    table = torch.cat([table, table.new_full((batch, k), -1.0)], 1)  # at least k columns, whatever S is
    top, col = table.topk(k, dim=1)
    index = torch.cat([box, box.new_zeros(k)])[col]
    kept = top >= 0
    return index, top.clamp(min=0), kept


def _take(t: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """t (B, N, ...) at index (B, k) -> (B, k, ...)."""
    return t[torch.arange(t.shape[0], device=t.device)[:, None], index]


def _clip(boxes: torch.Tensor, image_size: torch.Tensor) -> torch.Tensor:
    """(B, N, 4) boxes clipped to each image's (h, w) (B, 2), as mmdet's box coders clip to ``img_shape``."""
    bound = image_size.flip(-1).repeat(1, 2)[:, None, :].to(boxes.dtype)
    return torch.min(boxes, bound).clamp(min=0)


def _decode(coder, priors: torch.Tensor, deltas: torch.Tensor) -> torch.Tensor:
    """``coder`` (mmdet's ``DeltaXYWHBBoxCoder``) on (..., 4) priors and deltas, unclipped (clipping is per image,
    by ``_clip``)."""
    from mmdet.models.task_modules.coders.delta_xywh_bbox_coder import delta2bbox
    shape = deltas.shape
    out = delta2bbox(priors.reshape(-1, 4), deltas.reshape(-1, 4), coder.means, coder.stds, None,
                     16 / 1000, False,  # the coder's default wh_ratio_clip, which mmdet's heads never change
                     coder.add_ctr_clamp, coder.ctr_clamp)
    return out.reshape(shape)


def _check_coder(coder, where: str) -> None:
    if type(coder).__name__ != 'DeltaXYWHBBoxCoder':
        raise UnsupportedDetector(f'{where} uses {type(coder).__name__}; the detector graph decodes '
                                  'DeltaXYWHBBoxCoder boxes only', runs_in_pytorch=True)


def _dense_candidates(head, cls_scores: Sequence[torch.Tensor], bbox_preds: Sequence[torch.Tensor], nms_pre: int,
                      per_class: bool):
    """A dense head's outputs over the levels -> (priors, deltas, scores, groups) each (B, n, ...): per level the
    ``nms_pre`` best, as mmdet's heads take them before NMS.

    per_class (RetinaNet, ``filter_scores_and_topk``): the best (anchor, class) pairs, grouped by class;
    otherwise (RPN): the best anchors by their one score, grouped by level (mmdet's RPN runs NMS per level)."""
    sizes = [s.shape[-2:] for s in cls_scores]
    priors = head.prior_generator.grid_priors(sizes, dtype=cls_scores[0].dtype, device=cls_scores[0].device)
    out: List[List[torch.Tensor]] = [[], [], [], []]
    for level, (score, delta, prior) in enumerate(zip(cls_scores, bbox_preds, priors)):
        batch = score.shape[0]
        score = score.permute(0, 2, 3, 1).reshape(batch, -1, head.cls_out_channels)
        score = score.sigmoid() if head.use_sigmoid_cls else score.softmax(-1)[..., :-1]
        delta = delta.permute(0, 2, 3, 1).reshape(batch, -1, 4)
        classes = score.shape[-1]
        flat = score.reshape(batch, -1) if per_class else score[..., 0]
        # padded to at least nms_pre so that top-k takes a fixed k (padding scores -1: never kept)
        flat = torch.cat([flat, flat.new_full((batch, nms_pre), -1.0)], 1)
        top, idx = flat.topk(nms_pre, dim=1)
        anchor = (idx // classes if per_class else idx) % delta.shape[1]
        out[0].append(prior[anchor])
        out[1].append(_take(delta, anchor))
        out[2].append(top)
        out[3].append(idx % classes if per_class else torch.full_like(idx, level))
    return [torch.cat(t, 1) for t in out]


def _roi_align_levels(extractor, feats: Sequence[torch.Tensor], rois: torch.Tensor) -> torch.Tensor:
    """mmdet's ``SingleRoIExtractor``: each RoI (R, 5) pooled on its level (``map_roi_levels``), with
    torchvision's RoIAlign (mmcv's semantics: the same bins and samples, ``aligned`` included)."""
    import torchvision
    feats = feats[:extractor.num_inputs]
    levels = extractor.map_roi_levels(rois, len(feats))
    pooled = None
    for i, (feat, layer) in enumerate(zip(feats, extractor.roi_layers)):
        if getattr(layer, 'pool_mode', 'avg') != 'avg':
            raise UnsupportedDetector(f'RoIAlign with pool_mode={layer.pool_mode!r} does not export; use '
                                      'pool_mode="avg"')
        out = torchvision.ops.roi_align(feat, rois, layer.output_size, layer.spatial_scale, layer.sampling_ratio,
                                        layer.aligned)
        pick = (levels == i)[:, None, None, None]
        pooled = out if pooled is None else torch.where(pick, out, pooled)
    return pooled


def _rois(boxes: torch.Tensor) -> torch.Tensor:
    """(B, n, 4) boxes -> (B * n, 5) RoIs with their image index first, as mmdet's ``bbox2roi``."""
    batch, n = boxes.shape[0], boxes.shape[1]
    image = torch.arange(batch, device=boxes.device, dtype=boxes.dtype)[:, None, None].expand(batch, n, 1)
    return torch.cat([image, boxes], -1).reshape(-1, 5)


class DetectorGraph(nn.Module):
    """An mmdet detector (RetinaNet-style single stage, or RPN + standard RoI head: Faster / Mask R-CNN) from a
    preprocessed batch and its images' sizes to padded detections; see the module's docstring."""

    def __init__(self, detector: nn.Module):
        super().__init__()
        self.detector = detector.eval()
        self.two_stage = hasattr(detector, 'rpn_head')
        if self.two_stage:
            roi = detector.roi_head
            unsupported = [n for n, ok in (
                ('a shared head', not getattr(roi, 'with_shared_head', False)),
                ('a cascade of stages', type(roi).__name__ == 'StandardRoIHead')) if not ok]
            if unsupported:
                raise UnsupportedDetector(f'the RoI head ({type(roi).__name__}) has {unsupported[0]}; the detector '
                                          'graph exports StandardRoIHead with one box head (and FCNMaskHead)',
                                          runs_in_pytorch=True)
            _check_coder(detector.rpn_head.bbox_coder, 'the RPN head')
            _check_coder(roi.bbox_head.bbox_coder, 'the box head')
            self.with_mask = bool(getattr(roi, 'with_mask', False))
            self.cfg = detector.test_cfg.rcnn
        else:
            head = getattr(detector, 'bbox_head', None)
            if head is None or not hasattr(head, 'prior_generator') or type(head).__name__ not in (
                    'RetinaHead', 'AnchorHead'):
                raise UnsupportedDetector(f'{type(detector).__name__} with {type(head).__name__}: the detector graph '
                                          'exports RetinaNet-style anchor heads and RPN + RoI heads (Faster / Mask '
                                          'R-CNN)', runs_in_pytorch=True)
            _check_coder(head.bbox_coder, 'the box head')
            self.with_mask = False
            self.cfg = detector.test_cfg
        self.max_per_img = int(self.cfg.max_per_img)
        self.output_names = MASK_OUTPUTS if self.with_mask else DET_OUTPUTS

    def forward(self, x: torch.Tensor, image_size: torch.Tensor):
        feats = self.detector.extract_feat(x)
        if not self.two_stage:
            return self._single_stage(feats, image_size)
        proposals, valid = self._proposals(feats, image_size)
        return self._roi_stage(feats, proposals, valid, image_size)

    def _single_stage(self, feats, image_size):
        head, cfg = self.detector.bbox_head, self.cfg
        cls_scores, bbox_preds = head(feats)
        priors, deltas, scores, labels = _dense_candidates(head, cls_scores, bbox_preds, int(cfg.get('nms_pre', -1)),
                                                           per_class=True)
        boxes = _decode(head.bbox_coder, priors, deltas)
        if head.bbox_coder.clip_border:
            boxes = _clip(boxes, image_size)
        scores = self._drop_small(boxes, scores, cfg, float(cfg.score_thr))
        index, score, kept = nms_topk(boxes, scores, labels, cfg.nms.iou_threshold, cfg.score_thr, self.max_per_img)
        return self._outputs(_take(boxes, index), score, _take(labels, index), kept)

    def _proposals(self, feats, image_size):
        head, cfg = self.detector.rpn_head, self.detector.test_cfg.rpn
        cls_scores, bbox_preds = head(feats)
        priors, deltas, scores, levels = _dense_candidates(head, cls_scores, bbox_preds, int(cfg.nms_pre),
                                                           per_class=False)
        boxes = _decode(head.bbox_coder, priors, deltas)
        if head.bbox_coder.clip_border:
            boxes = _clip(boxes, image_size)
        scores = self._drop_small(boxes, scores, cfg, 0.0)
        index, _, kept = nms_topk(boxes, scores, levels, cfg.nms.iou_threshold, 0.0, int(cfg.max_per_img))
        return _take(boxes, index), kept

    @staticmethod
    def _drop_small(boxes, scores, cfg, floor):
        """mmdet's ``min_bbox_size`` filter, as a score at ``floor`` (never kept) for the boxes it drops."""
        least = cfg.get('min_bbox_size', -1)
        if least < 0:
            return scores
        wide = ((boxes[..., 2] - boxes[..., 0]) > least) & ((boxes[..., 3] - boxes[..., 1]) > least)
        return torch.where(wide, scores, torch.full_like(scores, floor))

    def _roi_stage(self, feats, proposals, valid, image_size):
        roi, cfg = self.detector.roi_head, self.cfg
        batch, n = proposals.shape[0], proposals.shape[1]
        pooled = _roi_align_levels(roi.bbox_roi_extractor, feats, _rois(proposals))
        cls_score, bbox_pred = roi.bbox_head(pooled)
        scores = cls_score.softmax(-1)[:, :-1].reshape(batch, n, -1) * valid[..., None].to(cls_score.dtype)
        classes = scores.shape[-1]
        deltas = bbox_pred.reshape(batch, n, -1, 4)
        boxes = _decode(roi.bbox_head.bbox_coder, proposals[:, :, None, :].expand_as(deltas), deltas)
        boxes = boxes.expand(batch, n, classes, 4)  # a class-agnostic head's one box serves every class
        boxes = boxes.reshape(batch, n * classes, 4)
        if roi.bbox_head.bbox_coder.clip_border:
            boxes = _clip(boxes, image_size)
        labels = torch.arange(classes, device=boxes.device)[None, None, :].expand(batch, n, classes)
        labels = labels.reshape(batch, -1)
        index, score, kept = nms_topk(boxes, scores.reshape(batch, -1), labels, cfg.nms.iou_threshold,
                                      cfg.score_thr, self.max_per_img)
        dets, labels = _take(boxes, index), _take(labels, index)
        outputs = self._outputs(dets, score, labels, kept)
        if not self.with_mask:
            return outputs
        mask_feats = _roi_align_levels(roi.mask_roi_extractor, feats, _rois(dets))
        logits = roi.mask_head(mask_feats)  # (B * K, classes, M, M)
        k = self.max_per_img
        chosen = labels.clamp(min=0).reshape(-1)
        if roi.mask_head.class_agnostic:
            chosen = torch.zeros_like(chosen)
        logits = logits[torch.arange(logits.shape[0], device=logits.device), chosen]
        masks = logits.sigmoid().reshape(batch, k, logits.shape[-2], logits.shape[-1])
        return outputs + (masks * kept[..., None, None].to(masks.dtype), )  # padding rows: empty masks

    @staticmethod
    def _outputs(boxes, score, labels, kept):
        dets = torch.cat([boxes, score[..., None]], -1) * kept[..., None].to(boxes.dtype)
        return dets, torch.where(kept, labels, torch.full_like(labels, -1))


def check_opset(opset: int) -> None:
    if opset < MIN_OPSET:
        raise UnsupportedDetector(f'opset {opset}: detectors need opset {MIN_OPSET} or newer (RoiAlign with '
                                  'aligned coordinates)')


def export_detector(graph: DetectorGraph, path: str, shape: Sequence[int] = (448, 480), opset: int = 18) -> str:
    """``graph`` through the TorchScript exporter, its example a batch of two at ``shape``: inputs ``input`` (batch,
    height, width dynamic) and ``image_size`` (batch dynamic). Returns ``path``."""
    check_opset(opset)
    example = (torch.randn(2, 3, *shape), torch.tensor([list(shape)] * 2, dtype=torch.int64))
    axes = {'input': {0: 'batch', 2: 'height', 3: 'width'}, 'image_size': {0: 'batch'}}
    axes.update({name: {0: 'batch'} for name in graph.output_names})
    with torch.no_grad(), warnings.catch_warnings():
        # the tracer's notes on the Python branches of mmdet's code (empty-input guards): none changes the graph
        warnings.simplefilter('ignore', torch.jit.TracerWarning)
        # its advice is about negative indices, and every index the graph takes is >= 0 (clamped or arange)
        warnings.filterwarnings('ignore', message='Exporting aten::index operator')
        torch.onnx.export(graph.eval(), example, path, dynamo=False, opset_version=opset,
                          input_names=['input', 'image_size'], output_names=list(graph.output_names),
                          dynamic_axes=axes)
    return path
