"""mmdavit: the OpenMMLab side of DaViT.

``mmdavit.DaViT`` is the one adapter (an mmengine ``BaseModule`` around ``davit_backbone.DaViT``) that
``mmcls_davit``, ``mmdet_davit`` and ``mmseg_davit`` register into their task's registry; this package also owns
the ``mmdavit`` registry scope (so ``type='mmdavit.DaViT'`` works from any task) and the checkpoint plumbing shared
by the tools.
"""
from davit_backbone import allow_checkpoint_globals

allow_checkpoint_globals()  # before any mmengine torch.load: see davit_backbone/checkpoint.py

from .adapter import DaViT  # noqa: E402
from .hooks import AtomicCheckpointHook  # noqa: E402  type='mmdavit.AtomicCheckpointHook' in configs
from .registry import MODELS  # noqa: E402

__all__ = ['DaViT', 'MODELS', 'AtomicCheckpointHook', 'register_into']
__version__ = '0.1.0'


def register_into(registry, keep_existing_as: str = None):
    """Registers the adapter as ``DaViT`` in a task registry (mmdet/mmseg/mmpretrain MODELS).

    mmpretrain ships its own ``DaViT``; ``keep_existing_as`` keeps that one reachable under another name.
    """
    existing = registry.module_dict.get('DaViT')
    if existing is DaViT:
        return
    if existing is not None and keep_existing_as and keep_existing_as not in registry.module_dict:
        registry.register_module(module=existing, name=keep_existing_as)
    registry.register_module(module=DaViT, name='DaViT', force=True)


register_into(MODELS)  # the mmdavit scope itself: type='mmdavit.DaViT'
