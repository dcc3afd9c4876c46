"""Registers DaViT into mmseg's MODELS (``custom_imports=dict(imports=['mmseg_davit'])`` in a config)."""
from mmseg.registry import MODELS

from mmdavit import DaViT, register_into

register_into(MODELS)
__all__ = ['DaViT']
