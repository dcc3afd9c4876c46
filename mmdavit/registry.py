"""The ``mmdavit`` scope: children of mmengine's root registries, so ``type='mmdavit.DaViT'`` and
``type='mmdavit.AtomicCheckpointHook'`` resolve from the mmdet, mmseg and mmpretrain scopes alike (they are
children of the same roots)."""
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import Registry

MODELS = Registry('model', parent=MMENGINE_MODELS, scope='mmdavit', locations=['mmdavit'])
HOOKS = Registry('hook', parent=MMENGINE_HOOKS, scope='mmdavit', locations=['mmdavit.hooks'])
