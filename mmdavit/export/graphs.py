"""What a deployed model is made of, on the OpenMMLab side: the task model as one graph from a preprocessed image
batch to its predictions, and the preprocessing it needs, as data (written to ``deploy.json`` by
``davit_deploy.folder``).

The graphs (``tools/deploy.py`` exports them with ``davit_backbone.export.export_onnx``; ``davit_deploy`` runs them
with onnxruntime, no torch, no OpenMMLab):

- classification (mmpretrain ``ImageClassifier``): ``input`` (B, 3, H, W) -> ``logits`` (B, K), ``scores``
  (softmax, as mmpretrain's predict).
- segmentation (mmseg ``EncoderDecoder``, whole-image inference): ``input`` -> ``seg_logits`` (B, K, H, W), the
  decode head's logits resized to the input as mmseg's ``predict_by_feat`` does, and ``seg_map`` (B, H, W), their
  argmax: the class map at input size. Resizing to the original image and ``--aug-test`` stay outside the graph.
- detection (mmdet RetinaNet, Faster / Mask R-CNN): ``input`` and ``image_size`` -> ``dets``, ``labels`` (and
  ``masks``), NMS and RoIAlign inside (``detector_graph.py``); boxes rescaled and masks pasted by the runtime.

Preprocessing travels as data rather than in the graph: the test pipeline's resize/crop rule (the same few
transforms this module understands, refused otherwise), then mean/std, channel order and padding, as the task's
data preprocessor applies them. Keeping it out of the graph keeps the graph's input a plain float batch that any
runtime can feed, as mmdeploy's graphs do.
"""
import copy
import inspect
from typing import List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from davit_deploy.folder import TASKS

from .detector_graph import DetectorGraph, UnsupportedDetector

__all__ = ['DeployError', 'IntegralAdaptiveAvgPool2d', 'ClassifierGraph', 'SegmentorGraph', 'check_scope',
           'graph_for', 'preprocess_recipe', 'postprocess_recipe']


class DeployError(ValueError):
    """A model or config this module cannot turn into a deployable graph. ``runs_in_pytorch``: nothing in the config
    makes it exportable, the model itself still runs (a tool points to its PyTorch path); ``cfg_option``: the config
    override (``key=value``) that makes it exportable; neither: the message names what to change."""

    def __init__(self, message: str, runs_in_pytorch: bool = False, cfg_option: Optional[str] = None):
        super().__init__(message)
        self.runs_in_pytorch, self.cfg_option = runs_in_pytorch, cfg_option


class IntegralAdaptiveAvgPool2d(nn.Module):
    """``nn.AdaptiveAvgPool2d`` for any input size in standard ONNX ops.

    The exporters write adaptive pooling to an output other than 1 x 1 only for the traced input size (ONNX has no
    such op); UPerNet's pyramid pooling (1, 2, 3, 6) would then run at that size alone. Each bin's mean is read from
    the summed-area table instead, with torch's bin edges (``floor(i * H / n)`` to ``ceil((i + 1) * H / n)``).
    """

    def __init__(self, output_size):
        super().__init__()
        self.output_size = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)

    @staticmethod
    def _edges(size, bins: int, device):
        i = torch.arange(bins, device=device)
        return (i * size) // bins, ((i + 1) * size + bins - 1) // bins

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        oh, ow = self.output_size
        # the table in float64 would not export to every runtime; float32 sums of one feature map are exact enough
        table = F.pad(x.cumsum(-2).cumsum(-1), (1, 0, 1, 0))
        h0, h1 = self._edges(x.shape[-2], oh, x.device)
        w0, w1 = self._edges(x.shape[-1], ow, x.device)
        rows1, rows0 = table.index_select(2, h1), table.index_select(2, h0)
        sums = (rows1.index_select(3, w1) - rows1.index_select(3, w0)
                - rows0.index_select(3, w1) + rows0.index_select(3, w0))
        area = ((h1 - h0)[:, None] * (w1 - w0)[None, :]).to(x.dtype)
        return sums / area

    def extra_repr(self) -> str:
        return f'output_size={self.output_size}'


def _pools_to_replace(module: nn.Module):
    """(parent, name, output size) of every adaptive average pooling to more than 1 x 1 in ``module``."""
    found = []
    for parent_name, parent in module.named_modules():
        for name, child in parent.named_children():
            if isinstance(child, nn.AdaptiveAvgPool2d):
                size = child.output_size
                size = (size, size) if isinstance(size, int) else tuple(size)
                if None in size:
                    raise DeployError(f'{parent_name}.{name}: adaptive pooling with a free output size does not '
                                      'export')
                if size != (1, 1):
                    found.append((parent_name, name, size))
    return found


def _exportable(module: nn.Module) -> nn.Module:
    """``module`` with every adaptive average pooling to more than 1 x 1 in summed-area form: a copy, so that the
    model itself stays the PyTorch reference (the module itself when it has none, e.g. a classifier)."""
    pools = _pools_to_replace(module)
    if not pools:
        return module
    module = copy.deepcopy(module)
    for parent_name, name, size in pools:
        setattr(module.get_submodule(parent_name), name, IntegralAdaptiveAvgPool2d(size))
    return module


class ClassifierGraph(nn.Module):
    """mmpretrain ``ImageClassifier``: preprocessed images -> (logits, softmax scores)."""

    output_names = ('logits', 'scores')

    def __init__(self, classifier: nn.Module, exportable: bool = True):
        super().__init__()
        self.classifier = (_exportable(classifier) if exportable else classifier).eval()

    def forward(self, x: torch.Tensor):
        logits = self.classifier.head(self.classifier.extract_feat(x))
        return logits, logits.softmax(-1)


class SegmentorGraph(nn.Module):
    """mmseg ``EncoderDecoder``: preprocessed images -> (logits at input size, class map at input size)."""

    output_names = ('seg_logits', 'seg_map')

    def __init__(self, segmentor: nn.Module, exportable: bool = True):
        super().__init__()
        mode = (segmentor.test_cfg or {}).get('mode', 'whole')
        if mode != 'whole':
            raise DeployError(f"the config's model.test_cfg.mode is {mode!r}; the graph runs whole-image inference",
                              cfg_option='model.test_cfg.mode=whole')
        head = segmentor.decode_head
        if 'batch_data_samples' in inspect.signature(head.forward).parameters:
            # query-based heads read each image's shapes in forward and predict masks per query, not logits per pixel
            raise DeployError(f'{type(head).__name__} (a query-based decode head, e.g. Mask2Former) is not exported '
                              'yet: the segmenter graph takes decode heads that map features to per-pixel logits '
                              '(UPerNet, FCN)', runs_in_pytorch=True)
        if segmentor.decode_head.out_channels == 1:
            raise DeployError('a binary (out_channels=1) decode head does not export yet', runs_in_pytorch=True)
        if segmentor.decode_head.align_corners:
            raise DeployError('a decode head with align_corners=True does not deploy yet (the runtime resizes '
                              'logits with the half-pixel rule)', runs_in_pytorch=True)
        self.segmentor = (_exportable(segmentor) if exportable else segmentor).eval()

    def forward(self, x: torch.Tensor):
        head = self.segmentor.decode_head
        logits = head.forward(self.segmentor.extract_feat(x))
        logits = F.interpolate(logits, size=x.shape[2:], mode='bilinear', align_corners=head.align_corners)
        return logits, logits.argmax(1)


def graph_for(scope: str, model: nn.Module, exportable: bool = True) -> nn.Module:
    """The deployable graph of a task model; ``exportable=False`` leaves its modules as they are (the PyTorch
    reference the export is verified against; a detector's reference is mmdet's own ``predict``)."""
    check_scope(scope)
    if scope == 'mmdet':
        try:
            return DetectorGraph(model)
        except UnsupportedDetector as e:
            raise DeployError(str(e), runs_in_pytorch=e.runs_in_pytorch) from None
    return (ClassifierGraph if scope == 'mmpretrain' else SegmentorGraph)(model, exportable)


def check_scope(scope: str) -> None:
    """Refuses, before any work, a task whose models do not deploy whole."""
    if scope in TASKS:
        return
    raise DeployError(f'default_scope {scope!r}: only {", ".join(TASKS[:-1])} and {TASKS[-1]} models deploy')


# ------------------------------------------------------------------------------------------------ preprocessing
def _resize_step(t: dict) -> dict:
    kind = t['type']
    if kind == 'Resize':  # mmcv's / mmseg's: scale (w, h), keep_ratio rescales within it
        if t.get('scale') is None or t.get('scale_factor') is not None:
            raise DeployError('a Resize by scale_factor is not supported: give scale=(w, h)')
        return dict(type='resize', scale=list(t['scale']), keep_ratio=bool(t.get('keep_ratio', False)),
                    interpolation=t.get('interpolation', 'bilinear'), backend=t.get('backend', 'cv2'))
    if kind == 'ResizeEdge':  # mmpretrain's
        return dict(type='resize_edge', scale=int(t['scale']), edge=t.get('edge', 'short'),
                    interpolation=t.get('interpolation', 'bilinear'), backend=t.get('backend', 'cv2'))
    if kind == 'CenterCrop':
        size = t['crop_size']
        size = [size, size] if isinstance(size, int) else list(size)  # (w, h) as mmpretrain's
        if t.get('auto_pad') or t.get('crop_ratio_range'):
            raise DeployError('CenterCrop with auto_pad or a crop ratio is not supported')
        return dict(type='center_crop', size=size)
    raise DeployError(f"the test pipeline's {kind} has no deployed equivalent; deployable test pipelines hold "
                      'LoadImageFromFile, Resize / ResizeEdge, CenterCrop, LoadAnnotations and the Pack step')


_PASS = ('LoadImageFromFile', 'LoadAnnotations', 'PackSegInputs', 'PackInputs', 'PackDetInputs')


def preprocess_recipe(cfg, model: nn.Module) -> dict:
    """The test pipeline's geometry and the data preprocessor's normalisation of ``cfg``/``model``, as data."""
    pipeline = cfg.get('test_pipeline') or cfg.test_dataloader.dataset.pipeline
    steps: List[dict] = []
    for t in pipeline:
        if t['type'] == 'LoadImageFromFile' and t.get('color_type', 'color') != 'color':
            raise DeployError('LoadImageFromFile with color_type other than "color" is not supported')
        if t['type'] not in _PASS:
            steps.append(_resize_step(t))
    pre = model.data_preprocessor
    mean = getattr(pre, 'mean', None)
    std = getattr(pre, 'std', None)
    # each repo names the BGR -> RGB switch its own way: mmseg, mmpretrain, mmengine
    to_rgb = any(bool(getattr(pre, a, False)) for a in ('channel_conversion', 'to_rgb', '_channel_conversion'))
    pad: Optional[dict] = None
    test_cfg = getattr(pre, 'test_cfg', None) or {}
    if test_cfg.get('size') or test_cfg.get('size_divisor'):  # mmseg pads at test time only when asked to
        pad = dict(size=test_cfg.get('size'), size_divisor=test_cfg.get('size_divisor'),
                   value=float(getattr(pre, 'pad_val', 0)))
    elif getattr(pre, 'pad_size_divisor', 1) > 1:  # mmpretrain's and mmdet's
        pad = dict(size=None, size_divisor=int(pre.pad_size_divisor), value=float(getattr(pre, 'pad_value', 0)))
    return dict(pipeline=steps, to_rgb=to_rgb,
                mean=[float(v) for v in mean.flatten()] if mean is not None else None,
                std=[float(v) for v in std.flatten()] if std is not None else None,
                pad=pad)


def postprocess_recipe(cfg) -> dict:
    """What the runtime needs of the test config after the graph: Mask R-CNN's mask threshold."""
    rcnn = (cfg.model.get('test_cfg') or {}).get('rcnn') or {}
    return dict(mask_thr_binary=float(rcnn.get('mask_thr_binary', 0.5)))
