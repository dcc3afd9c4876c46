"""The backbone as OpenMMLab builds it: ``backbone.DaViT`` (an mmengine ``BaseModule`` that *is* a
``davit_backbone.DaViT``: ``init_cfg``, ``out_indices``, ``frozen_stages``, ``with_cp``), ``DaViTMMPretrain`` (the
same under mmpretrain's conventions), and ``mmpretrain_compat`` (keeps ``import mmpretrain.models`` working beside
today's transformers)."""
