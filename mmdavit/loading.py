"""The way into an OpenMMLab model for a checkpoint: read once, checked before anything is written, handed on.

The tools (train, test, infer, deploy) and the tests go through here:

- :func:`map_pretrained` is the one place where ``pretrained`` becomes a Pretrained ``init_cfg`` (mmdet 2.x's
  ``model.pretrained``, the original release's and Florence-2 configs' ``model.backbone.pretrained``, and the
  adapter's own ``pretrained`` argument through :func:`pretrained_init_cfg`); :func:`check_pretrained` checks that
  file early, whichever key the config used, without reading its tensors.
- :class:`Checkpoint` reads a file once (weights only, mmengine's classes allowed; local or URL) and hands the
  object on: :meth:`Checkpoint.load_into` loads it with mmengine's own loader (the backbone's load hook converts a
  bare DaViT checkpoint, see ``davit_backbone.loading``), :meth:`Checkpoint.check_fits` refuses what left a model
  unfilled after a task repo's non-strict loader ran, and :meth:`Checkpoint.inferencer` gives mmdet's and mmseg's
  inferencers the object instead of the path, so that they do not read the file again.

Errors are :class:`CheckpointError`, one line naming the file and what to do; the tools print it and exit 2.
"""
from __future__ import annotations

import functools
import os.path as osp
from typing import Optional

import torch

from davit_backbone.convert import CheckpointFormatError, convert_state_dict, strip_module_prefix, unwrap_state_dict

from .checkpoint import allow_mmengine_checkpoints, load_checkpoint_file

__all__ = ['CheckpointError', 'Checkpoint', 'read_checkpoint', 'short_cause', 'pretrained_init_cfg',
           'map_pretrained', 'check_pretrained', 'build_model', 'register_checkpoint_scheme', 'HF_CHECKPOINT_SCHEME']


class CheckpointError(ValueError):
    """A checkpoint that cannot be used as asked: missing, truncated, foreign, or of another model."""


def short_cause(e: BaseException) -> str:
    """The gist of a loading error for a one-line message: torch wraps the cause in paragraphs of advice."""
    text = str(e).strip()
    lines = text.splitlines()
    gist = lines[-1].strip() if lines else ''
    for line in lines:
        if 'WeightsUnpickler error:' in line:  # which global the file asks for
            gist = line.split('WeightsUnpickler error:', 1)[1].strip()
            break
    gist = gist.split('. ')[0].rstrip('.')
    return f'{type(e).__name__}: {gist}' if len(gist) < 30 else gist


def read_checkpoint(path: str, mmap: bool = False):
    """The checkpoint object of a local file (weights only, mmengine's classes allowed) or a URL.

    ``mmap``: tensors stay on disk until touched, for checks that look at keys and shapes only (a torch zip file;
    other files are read whole)."""
    if '://' in str(path):
        from mmengine.runner.checkpoint import CheckpointLoader
        allow_mmengine_checkpoints()
        try:
            return CheckpointLoader.load_checkpoint(path, map_location='cpu')
        except Exception as e:  # noqa: BLE001  network or format: one line, not a traceback
            raise CheckpointError(f'{path} could not be read ({short_cause(e)})') from None
    if not (osp.isfile(path) or osp.isdir(path)):
        raise CheckpointError(f'checkpoint file not found: {path!r}')
    try:
        if mmap and osp.isfile(path) and not str(path).endswith(('.safetensors', '.index.json')):
            allow_mmengine_checkpoints()
            try:
                return torch.load(path, map_location='cpu', weights_only=True, mmap=True)
            except Exception:  # noqa: BLE001  not a zip file (or broken): the plain read says which
                pass
        return load_checkpoint_file(path)
    except FileNotFoundError as e:  # a folder without weights, a shard missing beside its index
        raise CheckpointError(str(e)) from None
    except RuntimeError as e:  # truncated, foreign or not a torch file: one line, not a zip error
        raise CheckpointError(f'{path} is incomplete or not a checkpoint ({short_cause(e.__cause__ or e)})') from None


# Every local path (no '://': URLs and s3 paths keep their loaders). mmengine tries the longest-sorting pattern first
# and '' (its local loader) last, so this one is asked before it and hands on what it does not read itself.
HF_CHECKPOINT_SCHEME = r'^(?!.*://)'


def load_from_hf_layouts(filename: str, map_location=None):
    """mmengine's checkpoint loader for :data:`HF_CHECKPOINT_SCHEME` (its log names a loader by what follows
    ``load_from_``): folders, safetensors and shard indexes through ``davit_backbone.load_file``; anything else
    exactly as mmengine's local loader reads it."""
    from mmengine.runner.checkpoint import CheckpointLoader
    filename = osp.expanduser(filename)
    if osp.isdir(filename) or filename.endswith(('.safetensors', '.index.json')):
        return load_checkpoint_file(filename, map_location or 'cpu')
    return CheckpointLoader._schemes[''](filename, map_location)


def register_checkpoint_scheme() -> None:
    """Teaches mmengine's ``CheckpointLoader`` the Hugging Face layouts (idempotent), through mmengine's own
    extension point (``register_scheme``), as its ``s3://`` and ``http://`` loaders are added.

    Why here and not at a door of ours: the task repos' loaders (mmengine's ``load_from`` and Pretrained
    ``init_cfg``, mmdet's and mmseg's inferencers' ``weights``, mmpretrain's ``get_model(pretrained=...)``) take a
    path and read it with ``CheckpointLoader``; Florence-2 ships as ``model.safetensors`` (or shards, or a
    ``save_pretrained`` folder), which its local loader (``torch.load``) cannot read. Every other path goes on to
    that loader unchanged, so no other model's loading changes."""
    from mmengine.runner.checkpoint import CheckpointLoader
    if CheckpointLoader._schemes.get(HF_CHECKPOINT_SCHEME) is not load_from_hf_layouts:
        CheckpointLoader.register_scheme(HF_CHECKPOINT_SCHEME, load_from_hf_layouts, force=True)


class Checkpoint:
    """One checkpoint file, read once. ``obj`` is what torch stored; ``state_dict`` its tensors without DDP's
    ``module.`` prefix; :meth:`davit` the same converted to DaViT's keys, when it is a bare DaViT checkpoint."""

    def __init__(self, path: str, obj=None, mmap: bool = False):
        self.path = str(path)
        self.obj = read_checkpoint(self.path, mmap=mmap) if obj is None else obj
        self._davit = None

    @functools.cached_property
    def state_dict(self) -> dict:  # once: load_into and check_fits both read it
        sd = self.obj.get('state_dict', self.obj) if isinstance(self.obj, dict) else None
        return strip_module_prefix(sd) if isinstance(sd, dict) else {}

    @property
    def dataset_meta(self) -> dict:
        """The ``meta.dataset_meta`` tools/train.py saves (class names, palette), keys lower-cased as mmdet does."""
        meta = self.obj.get('meta', {}) if isinstance(self.obj, dict) else {}
        saved = meta.get('dataset_meta', {}) if isinstance(meta, dict) else {}
        return {k.lower(): v for k, v in saved.items()} if isinstance(saved, dict) else {}

    def davit(self):
        """(state dict in DaViT's keys, source format); CheckpointFormatError when it is no DaViT checkpoint."""
        if self._davit is None:
            try:
                self._davit = convert_state_dict(self.obj, return_format=True)
            except CheckpointFormatError as e:
                self._davit = e
        if isinstance(self._davit, CheckpointFormatError):
            raise self._davit
        return self._davit

    def check_davit(self) -> str:
        """The format, or CheckpointError when this is not a DaViT checkpoint in any known layout."""
        try:
            return self.davit()[1]
        except CheckpointFormatError as e:
            raise CheckpointError(f'{self.path}: {e}') from None

    def load_into(self, model, logger=None) -> None:
        """Loads into a whole task model with mmengine's own loader: a checkpoint written by tools/train.py loads as
        is, and a bare DaViT checkpoint in any layout (official, timm, mmpretrain) is converted by the backbone's load
        hook, its classifier Linear going to the task model's head. A file that is neither is refused first."""
        from mmengine.model import is_model_wrapper
        from mmengine.runner.checkpoint import load_state_dict
        model = model.module if is_model_wrapper(model) else model
        if not isinstance(self.obj, dict):
            raise CheckpointError(f'{self.path}: holds no state dict')
        sd = self.state_dict
        if not set(sd) & set(model.state_dict()):
            try:
                self.davit()
            except CheckpointFormatError as e:
                raise CheckpointError(f'{self.path}: neither a checkpoint of this model nor a DaViT checkpoint: '
                                      f'{e}') from None
            sd = unwrap_state_dict(self.obj)  # e.g. timm's {'model': ...}, an EMA copy: the backbone's hook converts
        try:
            load_state_dict(model, sd, strict=False, logger=logger or 'current')
        except CheckpointFormatError as e:
            raise CheckpointError(str(e)) from None

    def check_fits(self, model, scope: str) -> str:
        """The task repos load non-strictly: a checkpoint of another model would leave random weights and draw
        nonsense. So after a load, refuse what did not fill the model. Returns a note for the user, or ''."""
        sd = self.state_dict
        own = model.state_dict()
        missing = [k for k in own if k not in sd and not k.endswith('num_batches_tracked')]
        other_shape = [k for k in own if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)]
        if not missing and not other_shape:
            return ''
        if any(k.startswith('backbone.') for k in sd):  # a whole OpenMMLab model, but not of this config
            if other_shape:
                k = other_shape[0]
                detail = (f'{len(other_shape)} weight(s) of another shape, e.g. {k}: {tuple(sd[k].shape)} in the '
                          f'checkpoint, {tuple(own[k].shape)} in the model')
            else:
                detail = f'{len(missing)} of the model\'s weights missing, e.g. {missing[0]}'
            raise CheckpointError(f'{self.path} is a checkpoint of another model than this config\'s ({detail}); '
                                  'pass the config it was trained with')
        try:
            ours, fmt = self.davit()
        except CheckpointFormatError as e:
            raise CheckpointError(f'{self.path}: neither a checkpoint of this model nor a DaViT checkpoint: '
                                  f'{e}') from None
        # A bare DaViT checkpoint (official, timm, mmpretrain, ours): the loader must have put it into the backbone
        # (and a classifier's Linear into the head), else the model is still random.
        targets = dict(getattr(model, 'backbone', model).state_dict())
        head_fc = getattr(getattr(model, 'head', None), 'fc', None)
        if head_fc is not None:
            targets.update({f'head.fc.{k}': v for k, v in head_fc.state_dict().items()})
        shared = [k for k in ours if k in targets]
        other = [k for k in shared if ours[k].shape != targets[k].shape]
        if other:
            k = other[0]
            raise CheckpointError(f'{self.path}: DaViT weights of another size ({k}: {tuple(ours[k].shape)} in the '
                                  f'checkpoint, {tuple(targets[k].shape)} in the model); pass a config of the same '
                                  'arch and classes')
        if not shared or not all(torch.equal(targets[k].cpu(), ours[k].to(targets[k].dtype)) for k in shared):
            raise CheckpointError(f'{self.path}: a DaViT checkpoint ({fmt} format) that the {scope} loader did not '
                                  'load into the model; pass a checkpoint of the whole model (tools/train.py writes '
                                  'them)')
        if scope == 'mmpretrain' and any(k.startswith('head.fc.') for k in shared):
            return f'note: {self.path} is a DaViT classifier in the {fmt} format'
        return (f'note: {self.path} holds DaViT backbone weights only ({fmt} format): the rest of the model is '
                'untrained, so its predictions mean nothing')

    def inferencer(self, inferencer_cls):
        """``inferencer_cls`` (mmdet's DetInferencer, mmseg's MMSegInferencer; built with ``weights=None``) taking
        this object where it would read the file: their own ``_load_weights_to_model`` (state dict through
        mmengine's loader, class names from the meta) runs on it unchanged."""
        checkpoint = self.obj

        class _ReadOnce(inferencer_cls):
            def _load_weights_to_model(self, model, _, cfg):
                super()._load_weights_to_model(model, checkpoint, cfg)

        _ReadOnce.__name__ = inferencer_cls.__name__
        return _ReadOnce


# ------------------------------------------------------------------------------------------------ pretrained
def pretrained_init_cfg(pretrained: Optional[str], init_cfg=None):
    """``pretrained=PATH`` (mmdet 2.x / the original release's spelling) as mmengine's Pretrained ``init_cfg``."""
    if pretrained is None:
        return init_cfg
    if init_cfg is not None:
        raise ValueError(f'give either pretrained or init_cfg, not both (pretrained={pretrained!r}, '
                         f'init_cfg={init_cfg!r})')
    return dict(type='Pretrained', checkpoint=pretrained)


def _is_davit(backbone: dict) -> bool:
    kind = backbone.get('type', '')
    if isinstance(kind, type):  # a config may name the class itself
        from davit_backbone import DaViT
        return issubclass(kind, DaViT)
    return str(kind).split('.')[-1] == 'DaViT'


def map_pretrained(model_cfg) -> Optional[str]:
    """Moves ``model.pretrained`` and ``model.backbone.pretrained`` into the backbone's Pretrained ``init_cfg`` (in
    place) and returns the checkpoint a DaViT backbone will be initialised from, or None."""
    backbone = model_cfg.get('backbone')
    pretrained = model_cfg.pop('pretrained', None)
    if not isinstance(backbone, dict):
        return None
    if pretrained:  # mmdet 2.x: the model-level key replaces whatever the backbone's init_cfg was
        backbone.pop('init_cfg', None)
        backbone['pretrained'] = pretrained
    if _is_davit(backbone) and backbone.get('pretrained') is not None:  # other backbones read their own key
        backbone['init_cfg'] = pretrained_init_cfg(backbone.pop('pretrained'), backbone.get('init_cfg'))
    elif pretrained:
        backbone['init_cfg'] = pretrained_init_cfg(backbone.pop('pretrained'))
    init = backbone.get('init_cfg')
    if _is_davit(backbone) and isinstance(init, dict) and init.get('type') == 'Pretrained':
        return init.get('checkpoint')
    return None


def check_pretrained(model_cfg) -> Optional[str]:
    """:func:`map_pretrained`, then the file checked as a DaViT checkpoint that loads, its tensors left on disk (the
    Runner reads it when it initialises the weights). Returns the format, or None when there is nothing to check."""
    path = map_pretrained(model_cfg)
    if not path or '://' in str(path):
        return None
    return Checkpoint(path, mmap=True).check_davit()


def build_model(cfg):
    """The task model of a config, as the Runner builds it (in the config's scope, with a top-level
    ``data_preprocessor`` moved into the model as the Runner and mmpretrain's ``get_model`` do), on CPU."""
    from mmengine.registry import MODELS, init_default_scope
    init_default_scope(cfg.default_scope)
    model_cfg = cfg.model
    if isinstance(model_cfg, dict) and cfg.get('data_preprocessor') is not None:
        model_cfg = dict(model_cfg)
        model_cfg.setdefault('data_preprocessor', cfg.data_preprocessor)
    return MODELS.build(model_cfg)
