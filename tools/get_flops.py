#!/usr/bin/env python
"""Prints parameters and FLOPs (multiply-adds, as the paper's tables) of any config of this project.

    python tools/get_flops.py CONFIG [--shape H [W]]

The whole model's dummy forward on one HxW input: classifiers to logits; segmentors to the decode head's logits
(no auxiliary head, as mmseg's get_flops); one-stage detectors through their heads; two-stage detectors through
backbone, neck, RPN head and the RoI heads on 1000 proposals (masks on the first 100), as mmdet 2.x's forward_dummy;
query-based models (DETR-family detectors such as DINO, Mask2Former's decode head) through their transformers and
every decoder layer's predictions, given the one image's shape they need.
Default shapes: 224x224 (mmpretrain), 512x2048 (mmseg), 800x1280 (mmdet). Counter: see davit_backbone/flops.py.
"""
import argparse
import os

import _env  # tools/ is on sys.path as the script's folder

_env.require('torch', 'mmengine', 'mmdavit')

import torch  # noqa: E402

from davit_backbone.flops import count_macs  # noqa: E402
import _cli as ru  # noqa: E402
import _config  # noqa: E402

DEFAULT_SHAPES = {'mmpretrain': (224, 224), 'mmseg': (512, 2048), 'mmdet': (800, 1280)}


def _two_stage_dummy(model, x):
    from mmengine.structures import InstanceData
    feats = model.extract_feat(x)
    model.rpn_head(feats)
    h, w = x.shape[-2:]
    xy = torch.rand(1000, 2) * torch.tensor([w * 0.8, h * 0.8])
    wh = torch.rand(1000, 2) * torch.tensor([w * 0.2, h * 0.2]) + 8
    proposals = InstanceData(bboxes=torch.cat([xy, xy + wh], 1))
    roi = model.roi_head
    rois = __import__('mmdet.structures.bbox', fromlist=['bbox2roi']).bbox2roi([proposals.bboxes])
    roi._bbox_forward(feats, rois)
    if getattr(roi, 'with_mask', False):
        roi._mask_forward(feats, rois[:100])


def _data_samples(scope, shape):
    """The one sample's shapes that query-based models read in tensor mode (padding masks, positional encodings)."""
    if scope == 'mmdet':
        from mmdet.structures import DetDataSample as Sample
    else:
        from mmseg.structures import SegDataSample as Sample
    meta = dict(img_shape=shape, pad_shape=shape, batch_input_shape=shape, ori_shape=shape, scale_factor=(1., 1.))
    return [Sample(metainfo=meta)]


def _takes_data_samples(forward):
    import inspect
    return 'batch_data_samples' in inspect.signature(forward).parameters


def measure(cfg, shape):
    from mmengine.registry import MODELS, init_default_scope
    init_default_scope(cfg.default_scope)
    model = MODELS.build(cfg.model).eval()
    params = sum(p.numel() for p in model.parameters())
    x = torch.randn(1, 3, *shape)
    if cfg.default_scope == 'mmdet' and hasattr(model, 'roi_head'):
        macs, per_op = count_macs(_two_stage_dummy, model, x)
    elif cfg.default_scope == 'mmdet' and hasattr(model, 'forward_transformer'):  # DETR family
        macs, per_op = count_macs(model, x, _data_samples('mmdet', shape), mode='tensor')
    elif cfg.default_scope == 'mmseg' and _takes_data_samples(model.decode_head.forward):  # Mask2Former, MaskFormer
        samples = _data_samples('mmseg', shape)
        macs, per_op = count_macs(lambda t: model.decode_head.forward(model.extract_feat(t), samples), x)
    else:
        macs, per_op = count_macs(model, x, mode='tensor')
    return params, macs, per_op


def main(argv=None):
    parser = argparse.ArgumentParser(description='Params and FLOPs of a config')
    parser.add_argument('config')
    parser.add_argument('--shape', type=int, nargs='+', help='input H [W] (W defaults to H)')
    parser.add_argument('--cfg-options', nargs='+', action=__import__('mmengine').config.DictAction)
    parser.add_argument('--per-op', action='store_true', help='also print multiply-adds per op type')
    args = parser.parse_args(argv)
    cfg = _config.load_config(args.config, args.cfg_options, None)
    shape = DEFAULT_SHAPES[cfg.default_scope] if not args.shape else (args.shape[0], args.shape[-1])
    params, macs, per_op = measure(cfg, shape)
    print(f'Input shape: {shape[0]}x{shape[1]}')
    print(f'Params: {params / 1e6:.2f}M')
    print(f'FLOPs: {macs / 1e9:.2f}G')
    if args.per_op:
        for op, n in sorted(per_op.items(), key=lambda kv: -kv[1]):
            print(f'  {op}: {n / 1e9:.3f}G')


if __name__ == '__main__':
    ru.run_main(main)
