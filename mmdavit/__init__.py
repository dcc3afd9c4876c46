"""mmdavit: the OpenMMLab side of DaViT.

``mmdavit.DaViT`` is the one adapter (an mmengine ``BaseModule`` that *is* a ``davit_backbone.DaViT``) that
``mmdet_davit`` and ``mmseg_davit`` register into their task's registry; ``mmcls_davit`` registers
``DaViTMMPretrain``, the same adapter under mmpretrain's conventions. This package also owns the ``mmdavit`` registry
scope (``type='mmdavit.DaViT'`` works from any task) and the weights-only allow-list for mmengine's checkpoints.

Importing it registers ``DaViT`` into the ``mmdavit`` scope and nothing else; torch's allow-list is extended by
``allow_mmengine_checkpoints()``, which building the backbone (and each tool) calls.
"""
from .adapter import DaViT, DaViTMMPretrain
from .checkpoint import allow_mmengine_checkpoints, load_checkpoint_file
from .hooks import AtomicCheckpointHook  # type='mmdavit.AtomicCheckpointHook' in configs
from .registry import MODELS

__all__ = ['DaViT', 'DaViTMMPretrain', 'MODELS', 'AtomicCheckpointHook', 'register_into',
           'allow_mmengine_checkpoints', 'load_checkpoint_file']
__version__ = '0.1.0'


def register_into(registry, module=DaViT, keep_existing_as: str = None) -> None:
    """Registers ``module`` as ``DaViT`` in a task registry (mmdet/mmseg/mmpretrain MODELS); idempotent.

    mmpretrain ships its own ``DaViT``; ``keep_existing_as`` keeps that one reachable under another name.
    """
    existing = registry.module_dict.get('DaViT')
    if existing is module:
        return
    if existing is not None and keep_existing_as and keep_existing_as not in registry.module_dict:
        registry.register_module(module=existing, name=keep_existing_as)
    registry.register_module(module=module, name='DaViT', force=True)


register_into(MODELS)  # the mmdavit scope itself: type='mmdavit.DaViT'
