"""mmdavit: the OpenMMLab side of DaViT.

``mmdavit.DaViT`` is the one adapter (an mmengine ``BaseModule`` that *is* a ``davit_backbone.DaViT``) that
``mmdet_davit`` and ``mmseg_davit`` register into their task's registry; ``mmcls_davit`` registers
``DaViTMMPretrain``, the same adapter under mmpretrain's conventions. This package also owns the ``mmdavit`` registry
scope (``type='mmdavit.DaViT'`` works from any task) and the weights-only allow-list for mmengine's checkpoints, which
its readers use while they read (``checkpoint.mmengine_checkpoint_globals``), never for the whole process.

Importing it registers ``DaViT`` into the ``mmdavit`` scope and hands local checkpoints to the task repos' loaders
through mmengine's ``CheckpointLoader`` (``loading.register_checkpoint_scheme``, which says why: the one documented
hand-off). Building a model changes nothing outside it. It first keeps ``import mmpretrain.models`` working beside a
transformers that mmpretrain's multimodal code no longer fits (``mmpretrain_compat``).
"""
from .mmpretrain_compat import keep_mmpretrain_importable

keep_mmpretrain_importable()  # before anything imports mmpretrain.models (see the module for why)

from .adapter import DaViT, DaViTMMPretrain  # noqa: E402
from .checkpoint import allow_mmengine_checkpoints, load_checkpoint_file  # noqa: E402  0.1's names, kept
from .hooks import AtomicCheckpointHook  # noqa: E402  type='mmdavit.AtomicCheckpointHook' in configs
from .loading import register_checkpoint_scheme  # noqa: E402
from .registry import MODELS  # noqa: E402

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
register_checkpoint_scheme()
