"""Loading any DaViT checkpoint into a ``DaViT`` module, with a report of what did not match."""
from __future__ import annotations

import logging
from typing import Optional, Union

import torch
import torch.nn as nn

from .checkpoint import load_file
from .convert import CheckpointFormatError, convert_state_dict, split_for_model

logger = logging.getLogger(__name__)


def load_pretrained(model: nn.Module, checkpoint: Union[str, dict], strict: bool = False,
                    log: Optional[callable] = None) -> dict:
    """Converts ``checkpoint`` (path or loaded object, any supported format) and loads it into ``model``.

    A dense backbone drops the classifier head; a classifier drops the dense output norms. Shape mismatches and
    a checkpoint sharing no key with the model raise instead of leaving a silently random model.

    Returns a dict with ``format``, ``missing``, ``unexpected`` and ``dropped`` key lists.
    """
    log = log or logger.info
    source = checkpoint if isinstance(checkpoint, str) else '<state dict>'
    obj = load_file(checkpoint) if isinstance(checkpoint, str) else checkpoint
    try:
        sd, fmt = convert_state_dict(obj, return_format=True)
    except CheckpointFormatError as e:
        raise CheckpointFormatError(f'{source}: {e}') from None
    sd, dropped = split_for_model(sd, model)
    own = model.state_dict()
    if not set(sd) & set(own):
        raise CheckpointFormatError(f'{source}: no parameter of this {fmt}-format checkpoint exists in the model')
    bad_shapes = [f'{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}'
                  for k, v in sd.items() if k in own and v.shape != own[k].shape]
    if bad_shapes:
        raise CheckpointFormatError(
            f'{source}: {len(bad_shapes)} parameter(s) have other shapes than the model (a different arch?): '
            + '; '.join(bad_shapes[:5]))
    result = model.load_state_dict(sd, strict=strict)
    report = dict(format=fmt, missing=list(result.missing_keys), unexpected=list(result.unexpected_keys),
                  dropped=dropped)
    log(f'loaded {fmt}-format DaViT checkpoint {source}: {len(sd) - len(report["unexpected"])} tensors; '
        f'missing {len(report["missing"])}{": " + str(report["missing"][:8]) if report["missing"] else ""}; '
        f'unexpected {len(report["unexpected"])}{": " + str(report["unexpected"][:8]) if report["unexpected"] else ""}'
        f'{"; dropped " + str(len(dropped)) + " keys this model has no use for" if dropped else ""}')
    return report
