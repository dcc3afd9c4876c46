"""The ``mmdavit`` scope: a child of mmengine's root MODELS, so ``type='mmdavit.DaViT'`` resolves from the mmdet,
mmseg and mmpretrain scopes alike (they are children of the same root)."""
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import Registry

MODELS = Registry('model', parent=MMENGINE_MODELS, scope='mmdavit', locations=['mmdavit'])
