"""pytest plugin (``-p davit_timm_plugin``) for running timm's ``test_models.py`` on chosen model names only.

Importing ``davit_backbone`` registers ``DaViT_*`` with timm before timm's test module lists the models it tests.
``DAVIT_TIMM_MODELS`` (comma-separated, case-sensitive: pytest's ``-k`` is not) names the models to keep (with or without a pretrained tag).
"""
import os

import davit_backbone  # noqa: F401  registers DaViT_tiny ... with timm's registry

NAMES = set(filter(None, os.environ.get('DAVIT_TIMM_MODELS', '').split(',')))


def pytest_collection_modifyitems(config, items):
    keep, drop = [], []
    for item in items:
        params = getattr(getattr(item, 'callspec', None), 'params', {})
        name = str(params.get('model_name', ''))
        (keep if name in NAMES or name.split('.')[0] in NAMES else drop).append(item)  # 'arch.tag' too
    config.hook.pytest_deselected(items=drop)
    items[:] = keep
