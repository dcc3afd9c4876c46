"""Registers DaViT into mmpretrain's MODELS (mmpretrain is the renamed mmcls; ``custom_imports=['mmcls_davit']``).

``type='DaViT'`` in mmpretrain's scope builds ``mmdavit.DaViTMMPretrain``: our backbone with every argument of
mmpretrain's own DaViT, its defaults and its ``frozen_stages`` convention, so mmpretrain's configs and model-zoo names
build it and load any DaViT checkpoint (official, timm, mmpretrain, ours). mmpretrain's own class stays reachable as
``MMPretrainDaViT``. The README's "mmpretrain" section says where the two compute differently (the stem padding).
"""
from mmdavit import DaViTMMPretrain, register_into  # first: it keeps mmpretrain.models importable (mmpretrain_compat)

import mmpretrain.models  # noqa: F401,E402,I100  fills the registry, so its own DaViT is seen and kept
from mmpretrain.registry import MODELS  # noqa: E402

register_into(MODELS, DaViTMMPretrain, keep_existing_as='MMPretrainDaViT')
__all__ = ['DaViTMMPretrain']
