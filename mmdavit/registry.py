"""The ``mmdavit`` scope: children of mmengine's root registries, so ``type='mmdavit.DaViT'``,
``type='mmdavit.AtomicCheckpointHook'`` or ``type='mmdavit.SkipUnreadableImages'`` resolve from the mmdet, mmseg and
mmpretrain scopes alike (they are children of the same roots)."""
from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import LOOPS as MMENGINE_LOOPS
from mmengine.registry import METRICS as MMENGINE_METRICS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import Registry

MODELS = Registry('model', parent=MMENGINE_MODELS, scope='mmdavit', locations=['mmdavit'])
HOOKS = Registry('hook', parent=MMENGINE_HOOKS, scope='mmdavit', locations=['mmdavit.training.checkpoint_hook',
                                                                             'mmdavit.data.unreadable_images'])
DATASETS = Registry('dataset', parent=MMENGINE_DATASETS, scope='mmdavit', locations=['mmdavit.data.unreadable_images'])
LOOPS = Registry('loop', parent=MMENGINE_LOOPS, scope='mmdavit', locations=['mmdavit.data.unreadable_images'])
# mmdet's CocoMetric with its per-class keys named by metric (mmdet_davit.evaluation: it needs mmdet)
METRICS = Registry('metric', parent=MMENGINE_METRICS, scope='mmdavit', locations=['mmdet_davit.evaluation'])
