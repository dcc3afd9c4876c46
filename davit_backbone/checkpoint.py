"""Reading checkpoint files safely: ``torch.load(weights_only=True)`` or safetensors, with errors that name the file.

``weights_only=True`` refuses every pickled class not on torch's allow-list, so a file cannot run code while it is
read. Plain state dicts (official, timm, mmpretrain weights) need nothing more; training checkpoints that pickle other
objects need their classes allowed first (``mmdavit.checkpoint`` allows exactly those of mmengine's checkpoints).
"""
from __future__ import annotations

import os

import torch

__all__ = ['load_file']


def load_file(path: str, map_location='cpu'):
    """The object stored in ``path`` (.pth/.pt/.bin via torch, .safetensors via safetensors)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f'checkpoint file not found: {path!r}')
    if path.endswith('.safetensors'):
        from safetensors.torch import load_file as load_safetensors
        try:
            return load_safetensors(path, device=str(map_location))
        except Exception as e:
            raise RuntimeError(f'could not read safetensors file {path!r}: {type(e).__name__}: {e}') from e
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated zips, foreign pickles and refused classes come as many exception types
        raise RuntimeError(f'could not load checkpoint {path!r}: {type(e).__name__}: {e}') from e
