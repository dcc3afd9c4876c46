"""``davit_backbone.DaViT`` as an mmengine ``BaseModule``: the OpenMMLab backbone API on the one implementation.

Inheritance (not a wrapper attribute) keeps the state-dict keys identical to the plain model, so a detector's
``backbone.*`` weights and a bare DaViT checkpoint share one layout.
"""
from __future__ import annotations

import copy
from typing import Optional, Sequence, Union

import torch
from mmengine.logging import print_log
from mmengine.model import BaseModule

from davit_backbone import DaViT as _DaViT
from davit_backbone import load_pretrained


class DaViT(_DaViT, BaseModule):
    """DaViT backbone for mmdet / mmseg / mmpretrain.

    Args:
        arch, out_indices, drop_path_rate, window_size, frozen_stages, norm_eval, with_cp: see
            ``davit_backbone.DaViT``.
        out_type: ``'featmap'`` (default): tuple of NCHW maps for ``out_indices`` (dense tasks);
            ``'pre_logits'``: tuple with the pooled, LayerNorm-ed (B, C) vector, the official classifier's
            order (pool, then norm), for mmpretrain's ``LinearClsHead`` (use ``neck=None``).
        init_cfg: ``dict(type='Pretrained', checkpoint=PATH_OR_URL)`` loads any DaViT checkpoint (official, timm,
            mmpretrain, ours; whole detectors too) through ``davit_backbone.convert_state_dict``; the classifier head
            is dropped for dense outputs and missing/unexpected keys are logged.
        pretrained: deprecated (mmdet 2.x) spelling of the Pretrained ``init_cfg``.
    """

    def __init__(self,
                 arch: Union[str, dict] = 'tiny',
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 out_type: str = 'featmap',
                 drop_path_rate: float = 0.1,
                 window_size: int = 7,
                 mlp_ratio: float = 4.,
                 qkv_bias: bool = True,
                 in_channels: int = 3,
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 pretrained: Optional[str] = None,
                 init_cfg: Optional[dict] = None):
        if out_type not in ('featmap', 'pre_logits'):
            raise ValueError(f"out_type must be 'featmap' or 'pre_logits', got {out_type!r}")
        _DaViT.__init__(self, arch=arch, in_chans=in_channels, num_classes=1 if out_type == 'pre_logits' else 0,
                        out_indices=out_indices, window_size=window_size, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias,
                        drop_path_rate=drop_path_rate, frozen_stages=frozen_stages, norm_eval=norm_eval,
                        with_cp=with_cp)
        if out_type == 'pre_logits':
            self.reset_classifier(0)  # the Linear lives in mmpretrain's head
        self.out_type = out_type
        if pretrained is not None:
            if init_cfg is not None:
                raise ValueError('give either pretrained or init_cfg, not both')
            init_cfg = dict(type='Pretrained', checkpoint=pretrained)
        # BaseModule.__init__ ran inside _DaViT.__init__ (cooperative super) with init_cfg=None
        self.init_cfg = copy.deepcopy(init_cfg)

    def forward(self, x: torch.Tensor):
        if self.out_type == 'pre_logits':
            return (self.forward_head(self.forward_features(x), pre_logits=True),)
        return self.forward_dense(x)

    def init_weights(self) -> None:
        cfg = self.init_cfg
        if isinstance(cfg, dict) and cfg.get('type') == 'Pretrained':
            from mmengine.runner.checkpoint import CheckpointLoader
            ckpt = CheckpointLoader.load_checkpoint(cfg['checkpoint'], map_location='cpu')
            prefix = cfg.get('prefix')
            if prefix:  # mmengine's convention: take a sub-module's weights out of a bigger model
                prefix = prefix if prefix.endswith('.') else prefix + '.'
                sd = ckpt.get('state_dict', ckpt)
                ckpt = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
            load_pretrained(self, ckpt, log=lambda msg: print_log(f'DaViT: {msg} ({cfg["checkpoint"]})',
                                                                  logger='current'))
            self._is_init = True
            return
        if cfg is not None:
            super().init_weights()  # any other mmengine init_cfg (e.g. TruncNormal) applies as usual
        # else: the official init already ran in the constructor

    def train(self, mode: bool = True):
        return _DaViT.train(self, mode)
