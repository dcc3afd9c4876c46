"""mmdavit: the OpenMMLab side of DaViT, one subpackage per concern.

- ``models``: ``mmdavit.DaViT``, the one adapter (an mmengine ``BaseModule`` that *is* a ``davit_backbone.DaViT``)
  that ``mmdet_davit`` and ``mmseg_davit`` register into their task's registry; ``DaViTMMPretrain``, the same adapter
  under mmpretrain's conventions, registered by ``mmcls_davit``.
- ``checkpoints``: the one reader of checkpoint files and the weights-only allow-list it uses while it reads
  (``checkpoints.allow_list.mmengine_checkpoint_globals``), never for the whole process.
- ``training``: atomic checkpoints, exact resumes, the schedule and memory helpers of the tools.
- ``data``: the pre-flight check of a dataset and the skipping of images that cannot be decoded.
- ``export``: the task models as ONNX graphs, with the preprocessing ``davit_deploy`` needs.
- ``registry``: the ``mmdavit`` scope (``type='mmdavit.DaViT'`` works from any task).

Importing it registers ``DaViT`` into the ``mmdavit`` scope and hands local checkpoints to the task repos' loaders
through mmengine's ``CheckpointLoader`` (``checkpoints.reader.register_checkpoint_scheme``, which says why: the one
documented hand-off). Building a model changes nothing outside it. It first keeps ``import mmpretrain.models``
working beside a transformers that mmpretrain's multimodal code no longer fits (``models.mmpretrain_compat``).
"""
from .models.mmpretrain_compat import keep_mmpretrain_importable

keep_mmpretrain_importable()  # before anything imports mmpretrain.models (see the module for why)

from .models.backbone import DaViT, DaViTMMPretrain  # noqa: E402
from .checkpoints.allow_list import allow_mmengine_checkpoints, load_checkpoint_file  # noqa: E402  0.1's names, kept
from .training.checkpoint_hook import AtomicCheckpointHook  # noqa: E402  type='mmdavit.AtomicCheckpointHook' in configs
from .checkpoints.reader import register_checkpoint_scheme  # noqa: E402
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
