"""How weights enter a DaViT: explicitly, at a door, never inside ``load_state_dict``.

``convert.py`` knows the key layouts (official, timm, mmpretrain, Florence-2, ours); this module decides what of a
converted checkpoint a given model takes and refuses what does not fit before any tensor is copied. The doors that
call it: :func:`load_pretrained` (reads, converts, loads and reports), :func:`checkpoint_filter_fn` (timm's
pretrained filter) and, on the OpenMMLab side, ``mmdavit``'s ``init_weights``, the tools' gate and the checkpoint
scheme it registers with mmengine. ``model.load_state_dict`` itself takes our keys only, as any torch module.
:func:`load_file` is the one file reader (weights only) under all of them.
"""
from __future__ import annotations

import os
import re
from collections import OrderedDict
from typing import Dict, List, Mapping, Optional, Tuple, Union

import torch
import torch.nn as nn

from .convert import TOWER_KEY_PATTERN, CheckpointFormatError, convert_state_dict, detect_format, unwrap_state_dict

__all__ = ['load_file', 'load_pretrained', 'fit_to_model', 'check_shapes', 'check_tower_filled', 'prepare_state_dict',
           'describe_load', 'checkpoint_filter_fn', 'HF_WEIGHT_FILES']


# ------------------------------------------------------------------------------------------------ reading a file
# What a ``save_pretrained`` folder holds, in the order transformers itself prefers them.
HF_WEIGHT_FILES = ('model.safetensors', 'model.safetensors.index.json', 'pytorch_model.bin',
                   'pytorch_model.bin.index.json')


def load_file(path: str, map_location='cpu', mmap: bool = False):
    """The object stored in ``path`` with errors that name the file: .pth/.pt/.bin via
    ``torch.load(weights_only=True)``, .safetensors via safetensors, a sharded ``*.index.json`` (its shards merged),
    or a Hugging Face ``save_pretrained`` folder (the first of :data:`HF_WEIGHT_FILES` in it).

    ``weights_only=True`` refuses every pickled class not on torch's allow-list, so a file cannot run code while it
    is read. Plain state dicts (official, timm, mmpretrain, Florence-2 weights) need nothing more; training
    checkpoints that pickle other objects need their classes allowed first (``mmdavit.checkpoints.allow_list`` allows
    exactly those of mmengine's checkpoints, inside its readers only).

    ``mmap``: a torch zip file's tensors stay on disk until touched, for checks that need keys and shapes only
    (other files are read whole)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        path = _weights_in_folder(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'checkpoint file not found: {path!r}')
    if path.endswith('.index.json'):
        return _load_sharded(path, map_location)
    if path.endswith('.safetensors'):
        from safetensors.torch import load_file as load_safetensors
        try:
            return load_safetensors(path, device=map_location if isinstance(map_location, str) else 'cpu')
        except Exception as e:
            raise RuntimeError(f'could not read safetensors file {path!r}: {type(e).__name__}: {e}') from e
    if mmap:
        try:
            return torch.load(path, map_location=map_location, weights_only=True, mmap=True)
        except Exception:  # noqa: BLE001  torch's legacy format cannot be mapped: the plain read below says more
            pass
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated zips, foreign pickles and refused classes come as many exception types
        raise RuntimeError(f'could not load checkpoint {path!r}: {type(e).__name__}: {e}') from e


def _weights_in_folder(folder: str) -> str:
    for name in HF_WEIGHT_FILES:
        if os.path.isfile(os.path.join(folder, name)):
            return os.path.join(folder, name)
    raise FileNotFoundError(f'{folder!r} is a folder without model weights: expected one of {list(HF_WEIGHT_FILES)} '
                            'in it (a save_pretrained folder), or give the checkpoint file itself')


def _load_sharded(index_path: str, map_location) -> Dict[str, torch.Tensor]:
    """The tensors of a sharded checkpoint: its index's ``weight_map`` (key -> shard file beside the index), every
    shard read, every key of the map found."""
    import json
    try:
        with open(index_path) as f:
            weight_map = json.load(f)['weight_map']
        shards = sorted(set(weight_map.values()))
    except Exception as e:  # noqa: BLE001  not JSON, or not an index
        raise RuntimeError(f'could not read the shard index {index_path!r}: {type(e).__name__}: {e}') from e
    folder = os.path.dirname(index_path)
    sd = OrderedDict()
    for shard in shards:
        shard_path = os.path.join(folder, shard)
        if not os.path.isfile(shard_path):
            raise FileNotFoundError(f'shard {shard!r} named by {index_path!r} is missing: download every shard '
                                    'into the same folder')
        sd.update(load_file(shard_path, map_location))
    missing = [k for k in weight_map if k not in sd]
    if missing:
        raise RuntimeError(f'{index_path!r} names {len(missing)} tensor(s) that its shards do not hold, e.g. '
                           f'{missing[:3]}: a shard is incomplete or from another download')
    return sd


def fit_to_model(sd: Mapping[str, torch.Tensor], model) -> Tuple[Dict[str, torch.Tensor], Dict[str, torch.Tensor],
                                                                List[str]]:
    """Our-layout state dict -> what ``model`` holds. Returns (tensors for the model, ``head.fc.*`` tensors for a
    task head outside the model, keys dropped because the model has no place for them).

    - A backbone without a head (detection, segmentation, mmpretrain's GAP + LinearClsHead) drops the classifier's
      ``head.norm`` unless its only output is the last stage: then ``head.norm`` becomes ``norm{last}`` as in
      mmpretrain's conversion of the official weights; the ``head.fc`` Linear is handed to the task's head.
    - A classifier that finds no ``head.norm`` but ``norm{last}`` (an mmpretrain checkpoint) takes it as its head norm.
    - Dense output norms the model does not have (other ``out_indices``) are dropped.
    """
    own = set(model.state_dict())
    last = len(model.stages) - 1
    sd = OrderedDict(sd)
    has_head = 'head.norm.weight' in own
    last_norm = f'norm{last}.'
    if not has_head and tuple(getattr(model, 'out_indices', ())) == (last,) and f'{last_norm}weight' not in sd:
        sd = OrderedDict((last_norm + k[len('head.norm.'):] if k.startswith('head.norm.') else k, v)
                         for k, v in sd.items())
    elif has_head and 'head.norm.weight' not in sd and f'{last_norm}weight' in sd:
        sd = OrderedDict(('head.norm.' + k[len(last_norm):] if k.startswith(last_norm) else k, v)
                         for k, v in sd.items())
    handed_up = OrderedDict((k, v) for k, v in sd.items() if k.startswith('head.fc.') and k not in own)
    kept = OrderedDict((k, v) for k, v in sd.items() if k in own)
    dropped = [k for k in sd if k not in own and k not in handed_up]
    return kept, handed_up, dropped


def check_shapes(sd: Mapping[str, torch.Tensor], model, source: str = 'checkpoint') -> None:
    """Raises (before anything is copied) when a tensor does not fit the model: a different arch, most likely."""
    own = model.state_dict()
    bad = [f'{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}'
           for k, v in sd.items() if k in own and v.shape != own[k].shape]
    if bad:
        raise CheckpointFormatError(
            f'{source}: {len(bad)} tensor(s) have other shapes than the model (a different arch or number of '
            f'classes?): ' + '; '.join(bad[:5]))


def check_tower_filled(kept: Mapping[str, torch.Tensor], model, fmt: str, source: str = 'checkpoint') -> None:
    """Raises when a pretrained checkpoint leaves part of the model's tower (stem and stages) unfilled: another
    depth, a truncated export, or a layout read only in part. A non-strict loader (timm's for the _fl towers,
    mmengine's) would otherwise start from random weights without a word."""
    tower = [k for k in model.state_dict() if TOWER_KEY_PATTERN.match(k)]
    missing = [k for k in tower if k not in kept]
    if missing:
        raise CheckpointFormatError(
            f'{source}: this {fmt}-format checkpoint fills {len(tower) - len(missing)} of the model\'s {len(tower)} '
            f'tower tensors; missing e.g. {missing[:4]} (a DaViT of another depth, or an incomplete file?)')


def prepare_state_dict(checkpoint, model, source: str = 'checkpoint', whole_tower: Optional[bool] = True):
    """Any DaViT checkpoint -> (tensors for ``model``, ``head.fc`` for a task head, dropped keys, format), with every
    check done: unknown keys, shape mismatches and (``whole_tower``) a tower left part-filled raise
    ``CheckpointFormatError`` here, before the model is touched. ``whole_tower=None``: checked for checkpoints in
    another layout than ours only (a part of our own state dict may be loaded on purpose, non-strictly)."""
    try:
        sd, fmt = convert_state_dict(checkpoint, return_format=True)
    except CheckpointFormatError as e:
        raise CheckpointFormatError(f'{source}: {e}') from None
    kept, handed_up, dropped = fit_to_model(sd, model)
    if not kept:
        raise CheckpointFormatError(f'{source}: no tensor of this {fmt}-format checkpoint exists in the model')
    check_shapes(kept, model, source)
    if whole_tower or (whole_tower is None and fmt != 'ours'):
        check_tower_filled(kept, model, fmt, source)
    return kept, handed_up, dropped, fmt


def describe_load(fmt: str, kept, where: str, dropped=(), handed=(), fresh=()) -> str:
    """The one log line every door writes after a conversion (the tools' tests look for ``<fmt>-format DaViT``)."""
    return (f'{fmt}-format DaViT checkpoint: {len(kept)} tensors loaded into {where}'
            + (f'; classifier {list(handed)} handed to the task head' if handed else '')
            + (f'; {len(dropped)} without a place in this model dropped: {list(dropped)[:6]}' if dropped else '')
            + (f'; {list(fresh)} not in the checkpoint: newly initialised' if fresh else ''))


def fresh_norms(model, kept) -> list:
    """Output norms the checkpoint lacks (Florence-2's tower has none; classifiers have no norm{i}): they keep their
    initialisation, which the log line says."""
    return sorted({k.rsplit('.', 1)[0] for k in model.state_dict()
                   if re.match(r'^(?:norm\d+|head\.norm)\.', k) and k not in kept})


def checkpoint_filter_fn(state_dict, model):
    """timm's pretrained filter: any DaViT layout -> this model's keys, the whole tower filled (timm loads the _fl
    towers non-strictly, so a checkpoint read in part would otherwise load nothing without an error). No shape check
    here: timm drops a classifier of another size after the filter, and torch refuses any other size mismatch."""
    sd, fmt = convert_state_dict(state_dict, return_format=True)
    kept = fit_to_model(sd, model)[0]
    check_tower_filled(kept, model, fmt, 'pretrained checkpoint')
    return kept


def load_pretrained(model: nn.Module, checkpoint: Union[str, dict], strict: bool = False) -> dict:
    """Loads ``checkpoint`` (a path or a loaded object, any supported layout) into ``model``: the door for a DaViT
    outside OpenMMLab and timm (``model.load_state_dict`` takes our keys only).

    Returns a dict with ``format``, the ``missing``, ``unexpected`` and ``dropped`` keys (``dropped``: what the
    model has no place for, e.g. a classifier head for a detection backbone) and ``message``, the line written to
    the model's log (``model._log_load`` where it has one). Unknown keys and shape mismatches raise
    ``CheckpointFormatError`` before the model is touched.
    """
    source = checkpoint if isinstance(checkpoint, str) else 'state dict'
    obj = load_file(checkpoint) if isinstance(checkpoint, str) else checkpoint
    kept, handed_up, dropped, fmt = prepare_state_dict(obj, model, source=source)
    result = model.load_state_dict(kept, strict=strict)
    dropped = dropped + list(handed_up)
    message = describe_load(fmt, kept, 'the model', dropped=dropped, fresh=fresh_norms(model, kept))
    log = getattr(model, '_log_load', None)
    if log is not None:
        log(message)
    return dict(format=fmt, missing=list(result.missing_keys), unexpected=list(result.unexpected_keys),
                dropped=dropped, message=message)
