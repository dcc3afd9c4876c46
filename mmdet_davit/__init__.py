"""Registers DaViT into mmdet's MODELS (``custom_imports=dict(imports=['mmdet_davit'])`` in a config)."""
from mmdet.registry import MODELS

from mmdavit import DaViT, register_into

register_into(MODELS)
__all__ = ['DaViT']
