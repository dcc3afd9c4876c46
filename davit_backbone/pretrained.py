"""Loading any DaViT checkpoint into a ``DaViT`` module, with a report of what went where."""
from __future__ import annotations

from typing import Union

import torch.nn as nn

from .checkpoint import load_file
from .convert import prepare_state_dict


def load_pretrained(model: nn.Module, checkpoint: Union[str, dict], strict: bool = False) -> dict:
    """Loads ``checkpoint`` (a path or a loaded object, any supported layout) into ``model``.

    The same conversion runs inside ``model.load_state_dict`` (the model's load hook), so this is a convenience that
    also reads the file and reports: a dict with ``format`` and the ``missing``, ``unexpected`` and ``dropped`` keys
    (``dropped``: what the model has no place for, e.g. a classifier head for a detection backbone). Unknown keys and
    shape mismatches raise ``CheckpointFormatError`` before the model is touched.
    """
    source = checkpoint if isinstance(checkpoint, str) else 'state dict'
    obj = load_file(checkpoint) if isinstance(checkpoint, str) else checkpoint
    kept, handed_up, dropped, fmt = prepare_state_dict(obj, model, source=source)
    result = model.load_state_dict(kept, strict=strict)
    return dict(format=fmt, missing=list(result.missing_keys), unexpected=list(result.unexpected_keys),
                dropped=dropped + list(handed_up))
