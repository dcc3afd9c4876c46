"""``davit_backbone.DaViT`` as an mmengine ``BaseModule``: the OpenMMLab backbone API on the one implementation.

Inheritance (not a wrapper attribute) keeps the state-dict keys identical to the plain model, so a detector's
``backbone.*`` weights and a bare DaViT checkpoint share one layout. A Pretrained ``init_cfg`` is loaded by
``init_weights`` (the backbone's door, as mmdet's Swin converts there); whole-model loaders go through
``mmdavit.checkpoints.reader``'s gate and checkpoint scheme.
"""
from __future__ import annotations

import copy
from typing import Optional, Sequence, Union

import torch
import torch.nn as nn
from mmengine.logging import print_log
from mmengine.model import BaseModule

from davit_backbone import DaViT as _DaViT

from ..checkpoints.reader import load_init_cfg_pretrained, pretrained_init_cfg

OUT_TYPES = ('featmap', 'raw', 'avg_featmap', 'pre_logits')
_STAGE_CFG_KEYS = {'window_size': 'window_size', 'ffn_ratio': 'mlp_ratio', 'qkv_bias': 'qkv_bias',
                   'pad_small_map': 'pad_small_map'}


def _stage_options(stage_cfgs, num_stages: int, defaults: dict) -> dict:
    """mmpretrain's ``stage_cfgs`` (one dict for all stages, or one per stage) -> per-stage lists of our options."""
    if not stage_cfgs:
        return defaults
    cfgs = list(stage_cfgs) if isinstance(stage_cfgs, (list, tuple)) else [stage_cfgs] * num_stages
    if len(cfgs) != num_stages:
        raise ValueError(f'stage_cfgs has {len(cfgs)} entries for {num_stages} stages')
    out = {name: [defaults[name]] * num_stages for name in _STAGE_CFG_KEYS.values()}
    for i, cfg in enumerate(cfgs):
        unknown = set(cfg) - set(_STAGE_CFG_KEYS)
        if unknown:
            raise ValueError(f'stage_cfgs[{i}] sets {sorted(unknown)}; DaViT takes {sorted(_STAGE_CFG_KEYS)} per stage')
        for key, value in cfg.items():
            out[_STAGE_CFG_KEYS[key]][i] = value
    return out


class DaViT(_DaViT, BaseModule):
    """DaViT backbone for mmdet / mmseg / mmpretrain.

    Args:
        arch: 'tiny' ... 'giant' (or 't' ... 'g'), 'large_window12', 'base_fl' / 'huge_fl' (Florence-2's towers) or
            a dict with ``embed_dims``, ``depths``, ``num_heads`` (and optionally ``window_size``,
            ``down_kernel_size``, ``channel_attn_v2``).
        in_channels: input channels.
        out_indices: stages whose maps are returned (mmdet/mmseg: all four).
        out_type: ``'featmap'`` (default): a tuple of NCHW maps, each behind its LayerNorm ``norm{i}`` (the official
            dense backbone; mmpretrain's DaViT output); ``'raw'``: the same maps without the norms;
            ``'avg_featmap'``: each normalised map averaged to (B, C) (mmpretrain's order: norm, then pool);
            ``'pre_logits'``: one (B, C) vector, pooled then LayerNorm-ed by ``head.norm`` as the official classifier,
            for mmpretrain's ``LinearClsHead`` with ``neck=None``.
        out_after_downsample: mmpretrain's option: stage i's output taken after the next stage's downsample.
        patch_size: the stem's stride (4).
        window_size, mlp_ratio (alias ``ffn_ratio``, mmpretrain's name), qkv_bias, pad_small_map: see
            ``davit_backbone.DaViT``; ``stage_cfgs`` (mmpretrain) sets ``window_size``, ``ffn_ratio``, ``qkv_bias``
            or ``pad_small_map`` per stage. ``window_size`` None: the arch's (12 for the _fl and window12 archs, else 7).
        down_kernel_size, channel_attn_v2: the Florence-2 options (see ``davit_backbone.DaViT``); None: the arch's.
        drop_path_rate: stochastic depth over all sub-blocks, as officially.
        norm_cfg: the output norms: ``dict(type='LN')`` (optionally with ``eps``) or None for none.
        frozen_stages: -1 none; 0 the stem; k >= 1 the stem, stages 0..k-1 and their output norms (mmdet's Swin
            convention; in mmpretrain's scope ``DaViTMMPretrain`` applies mmpretrain's, one stage more).
        norm_eval: accepted for the task repos' configs; DaViT has no BatchNorm, so it changes nothing.
        with_cp: gradient checkpointing per dual block.
        pretrained: deprecated (mmdet 2.x) spelling of ``init_cfg=dict(type='Pretrained', checkpoint=...)``.
        init_cfg: mmengine's; ``dict(type='Pretrained', checkpoint=PATH, prefix=...)`` loads any DaViT checkpoint
            (official, timm, mmpretrain, Florence-2, ours, whole detectors) in ``init_weights``, which logs what went
            where.
    """

    def __init__(self,
                 arch: Union[str, dict] = 'tiny',
                 in_channels: int = 3,
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 out_type: str = 'featmap',
                 out_after_downsample: bool = False,
                 patch_size: int = 4,
                 window_size: Optional[int] = None,
                 down_kernel_size: Optional[int] = None,
                 channel_attn_v2: Optional[bool] = None,
                 mlp_ratio: float = 4.,
                 ffn_ratio: Optional[float] = None,
                 qkv_bias: bool = True,
                 pad_small_map: bool = True,
                 drop_path_rate: float = 0.1,
                 norm_cfg: Optional[dict] = dict(type='LN'),
                 stage_cfgs: Union[dict, Sequence[dict], None] = None,
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 pretrained: Optional[str] = None,
                 init_cfg: Optional[Union[dict, list]] = None):
        if out_type not in OUT_TYPES:
            raise ValueError(f'out_type must be one of {OUT_TYPES}, got {out_type!r}')
        if norm_cfg is not None and norm_cfg.get('type') not in ('LN', 'LayerNorm'):
            raise ValueError(f"DaViT's output norms are LayerNorms: norm_cfg must be dict(type='LN') or None, "
                             f'got {norm_cfg}')
        init_cfg = pretrained_init_cfg(pretrained, init_cfg)
        num_stages = len(self._arch_depths(arch))
        options = _stage_options(stage_cfgs, num_stages, dict(
            window_size=window_size, mlp_ratio=ffn_ratio if ffn_ratio is not None else mlp_ratio,
            qkv_bias=qkv_bias, pad_small_map=pad_small_map))
        pre_logits = out_type == 'pre_logits'
        _DaViT.__init__(self, arch=arch, in_chans=in_channels, num_classes=0, with_head=pre_logits,
                        out_indices=() if pre_logits else out_indices, out_after_downsample=out_after_downsample,
                        patch_size=patch_size, drop_path_rate=drop_path_rate, frozen_stages=frozen_stages,
                        with_cp=with_cp, down_kernel_size=down_kernel_size, channel_attn_v2=channel_attn_v2,
                        **options)
        if out_type == 'raw' or norm_cfg is None:
            for i in self.out_indices:
                setattr(self, f'norm{i}', nn.Identity())
        elif 'eps' in norm_cfg:
            for i in self.out_indices:
                getattr(self, f'norm{i}').eps = norm_cfg['eps']
        self.out_type = out_type
        self.norm_eval = norm_eval
        # BaseModule.__init__ ran inside _DaViT.__init__ (cooperative super) with init_cfg=None
        self.init_cfg = copy.deepcopy(init_cfg)

    @staticmethod
    def _arch_depths(arch):
        from davit_backbone import resolve_arch
        return resolve_arch(arch)['depths']

    def forward(self, x: torch.Tensor):
        if self.out_type == 'pre_logits':
            return (self.forward_head(self.forward_features(x), pre_logits=True),)
        outs = self.forward_dense(x)
        if self.out_type == 'avg_featmap':
            return tuple(o.mean(dim=(2, 3)) for o in outs)
        return outs

    def init_weights(self) -> None:
        """mmengine's init, with a Pretrained ``init_cfg`` loaded here rather than by mmengine's ``PretrainedInit``,
        whose loader would hand our model a checkpoint in a foreign layout unconverted."""
        given = self.init_cfg
        cfgs = given if isinstance(given, list) else [given] if given else []
        pretrained = [c for c in cfgs if getattr(c.get('type'), '__name__', c.get('type')) in
                      ('Pretrained', 'PretrainedInit')]
        if not pretrained or self._is_init:
            return super().init_weights()
        self.init_cfg = [c for c in cfgs if c not in pretrained] or None
        try:
            super().init_weights()  # the other init_cfgs, as mmengine orders them: before the pretrained weights
        finally:
            self.init_cfg = given
        for cfg in pretrained:
            load_init_cfg_pretrained(self, cfg)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """The one rename left inside loading, and why: the checkpoint scheme
        (``mmdavit.checkpoints.reader.task_checkpoint``) cannot see the model, so it hands a classifier's final norm as
        ``norm{last}`` (mmpretrain's layout); a ``pre_logits`` backbone holds that norm as ``head.norm``. Only keys
        under this module's prefix are touched."""
        last = f'{prefix}norm{self.num_stages - 1}.'
        if hasattr(self, 'head') and not hasattr(self, f'norm{self.num_stages - 1}'):
            for k in [k for k in state_dict if k.startswith(last)]:
                state_dict.setdefault(f'{prefix}head.norm.{k[len(last):]}', state_dict.pop(k))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _log_load(self, message: str) -> None:
        print_log(f'DaViT: {message}', logger='current')


class DaViTMMPretrain(DaViT):
    """``DaViT`` under mmpretrain's own DaViT conventions, registered as ``DaViT`` in mmpretrain's scope so that
    mmpretrain's configs and model-zoo names build it with the meaning they were written for: its defaults
    (``out_indices=(3,)``, ``pad_small_map=False``) and its ``frozen_stages``, which counts one stage more than
    mmdet's: k >= 0 freezes the stem and stages 0..k, the downsample that leaves stage k (mmpretrain keeps it at the
    end of stage k, we at the start of stage k+1) and the output norms of stages 0..k.
    """

    def __init__(self, arch: Union[str, dict] = 'tiny', out_indices: Sequence[int] = (3,),
                 pad_small_map: bool = False, **kwargs):
        super().__init__(arch=arch, out_indices=out_indices, pad_small_map=pad_small_map, **kwargs)

    def _freeze_stages(self) -> None:
        k = self.frozen_stages
        if k < 0:
            return
        frozen = [self.stem] + [self.stages[i] for i in range(min(k + 1, self.num_stages))]
        if k + 1 < self.num_stages:
            frozen.append(self.stages[k + 1].downsample)
        frozen += [getattr(self, f'norm{i}') for i in self.out_indices if i <= k]
        for m in frozen:
            m.eval()
            for p in m.parameters():
                p.requires_grad = False
