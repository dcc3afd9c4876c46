"""mmpretrain 1.2.0 beside the transformers that has Florence-2 natively (>= 4.56).

mmpretrain imports its multimodal models (BLIP, BLIP-2, LLaVA, ...) whenever any transformers >= 4.28 is installed
(its own ``WITH_MULTIMODAL`` flag), and their code imports names that transformers has since removed from
``transformers.modeling_utils`` (``apply_chunking_to_forward``, ``find_pruneable_heads_and_indices``, ...). With
such a transformers installed, ``import mmpretrain.models`` fails (``TypeError: NoneType takes no arguments``), and
with it every mmpretrain config, DaViT's included. Those models cannot run there anyway, so mmpretrain is told, by its
own flag, to register its placeholders for them instead (which say what they need when one is built). Nothing
changes where mmpretrain's multimodal code can import what it needs.
"""
from __future__ import annotations

import sys

__all__ = ['keep_mmpretrain_importable']

# what mmpretrain 1.2.0's multimodal code imports from transformers.modeling_utils
_NEEDED = ('apply_chunking_to_forward', 'find_pruneable_heads_and_indices', 'prune_linear_layer')


def _transformers_lacks_needed_names() -> bool:
    """Read from the installed file rather than imported: importing transformers' modeling code takes seconds."""
    from importlib import metadata
    try:
        path = metadata.distribution('transformers').locate_file('transformers/modeling_utils.py')
        text = open(path, encoding='utf-8').read()
    except (metadata.PackageNotFoundError, OSError):
        return False
    return not all(name in text for name in _NEEDED)


def keep_mmpretrain_importable() -> bool:
    """Turns mmpretrain's multimodal models off when the installed transformers would break ``import
    mmpretrain.models``. Must run before that import; returns whether it turned them off."""
    # transformers first: importing mmpretrain.utils costs 1-2 s (mmcv), which every `import mmdavit` without
    # transformers (this project's own environment) would pay for nothing
    if 'mmpretrain.models' in sys.modules or not _transformers_lacks_needed_names():
        return False
    try:
        from mmpretrain.utils import dependency
    except ImportError:  # no mmpretrain: nothing to keep
        return False
    if dependency.WITH_MULTIMODAL:
        dependency.WITH_MULTIMODAL = False
        return True
    return False
