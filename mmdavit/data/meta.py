"""A trained model's class names and palette, for its pictures (tools/infer.py) and its deployed folder
(tools/deploy.py): from the checkpoint's ``dataset_meta`` (tools/train.py saves it), else the config's test set.
Left alone, the task repos' inferencers fall back to COCO / Cityscapes / ImageNet names."""
import copy

from davit_deploy.folder import palette_for


def config_dataset_meta(cfg) -> dict:
    """Class names and palette of the config's test set, for checkpoints that do not carry them in their meta."""
    from mmengine.registry import DATASETS, init_default_scope
    init_default_scope(cfg.default_scope)
    ds = copy.deepcopy(cfg.test_dataloader.dataset)
    ds['lazy_init'] = True  # metainfo only: no annotation file is read
    try:
        return dict(DATASETS.build(ds).metainfo)
    except Exception:  # noqa: BLE001  e.g. a dataset that scans its folder for class names, and no folder here
        return {}


def class_names(*metas) -> tuple:
    """(classes, palette) of the first of ``metas`` (dataset_meta dicts, most trusted first) that names classes;
    its palette if it has a colour for each, else the first other meta's that does, else fixed-seed colours."""
    named = next((m for m in metas if m.get('classes')), None)
    if named is None:
        return [], None
    classes = list(named['classes'])
    return classes, palette_for(classes, named.get('palette'), *(m.get('palette') for m in metas if m is not named))
