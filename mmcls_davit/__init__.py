"""Registers DaViT into mmpretrain's MODELS (mmpretrain is the renamed mmcls; ``custom_imports=['mmcls_davit']``).

mmpretrain's own DaViT stays available as ``MMPretrainDaViT``. Ours differs in two ways that matter for its
checkpoints (converted from the official weights): the stem pads 3 on every side as the official model does
(mmpretrain's pads 'same'-adaptively, which shifts every feature), and ``out_type='pre_logits'`` pools before the
final LayerNorm as the official classifier does (mmpretrain normalises before pooling).
"""
import mmpretrain.models  # noqa: F401  fills the registry, so its own DaViT is seen and kept
from mmpretrain.registry import MODELS

from mmdavit import DaViT, register_into

register_into(MODELS, keep_existing_as='MMPretrainDaViT')
__all__ = ['DaViT']
