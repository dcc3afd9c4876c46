"""The way into an OpenMMLab model for a checkpoint: read once through one gate, converted at a named door.

- :func:`read_checkpoint` is the one gate: every tool, ``--resume`` and the mmengine scheme read through it (weights
  only, mmengine's classes allowed inside it; memory-mapped where only keys are needed); its one error is
  :class:`CheckpointError`, carrying the path and the cause, which the tools word.
- :func:`map_pretrained` is the one place where ``pretrained`` becomes a Pretrained ``init_cfg``;
  :func:`check_pretrained` checks that file early, whichever key the config used, without reading its tensors.
- :class:`Checkpoint` holds one read and converts for a given task model (:meth:`Checkpoint.for_model`):
  :meth:`~Checkpoint.load_into` loads it with mmengine's own loader, :meth:`~Checkpoint.inferencer` hands it to
  mmdet's and mmseg's inferencers, :meth:`~Checkpoint.check_fits` refuses what left a model unfilled.
- :func:`register_checkpoint_scheme` is the hand-off for the task repos' own loaders (see :func:`task_checkpoint`).
"""
from __future__ import annotations

import functools
import os.path as osp
from typing import Optional

import torch

from davit_backbone.convert import CheckpointFormatError, convert_state_dict, strip_module_prefix
from davit_backbone.loading import describe_load, fresh_norms, load_file, prepare_state_dict

from .allow_list import mmengine_checkpoint_globals

__all__ = ['CheckpointError', 'Checkpoint', 'read_checkpoint', 'short_cause', 'pretrained_init_cfg',
           'map_pretrained', 'check_pretrained', 'build_model', 'register_checkpoint_scheme', 'HF_CHECKPOINT_SCHEME',
           'task_checkpoint', 'load_init_cfg_pretrained']


class CheckpointError(ValueError):
    """A checkpoint that cannot be used as asked: missing, truncated, foreign, or of another model. ``path`` and
    ``cause`` carry what the one-line message says."""

    def __init__(self, message: str, path: str = '', cause: str = ''):
        super().__init__(message)
        self.path, self.cause = path, cause


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


def read_checkpoint(path: str, mmap: bool = False, map_location='cpu'):
    """The checkpoint object of a local file, folder or shard index (weights only, mmengine's classes allowed while
    it reads) or a URL: the one gate every tool and ``--resume`` read through.

    ``mmap``: tensors stay on disk until touched, for checks that look at keys and shapes only (a torch zip file;
    other files are read whole)."""
    path = str(path)
    if '://' in path:
        from mmengine.runner.checkpoint import CheckpointLoader
        try:
            with mmengine_checkpoint_globals():
                return CheckpointLoader.load_checkpoint(path, map_location=map_location)
        except Exception as e:  # noqa: BLE001  network or format: one line, not a traceback
            cause = short_cause(e)
            raise CheckpointError(f'{path} could not be read ({cause})', path, cause) from None
    if not (osp.isfile(path) or osp.isdir(path)):
        raise CheckpointError(f'checkpoint file not found: {path!r}', path, 'not found')
    try:
        with mmengine_checkpoint_globals():
            return load_file(path, map_location, mmap=mmap)
    except FileNotFoundError as e:  # a folder without weights, a shard missing beside its index
        raise CheckpointError(str(e), path, 'not found') from None
    except RuntimeError as e:  # truncated, foreign or not a torch file: one line, not a zip error
        cause = short_cause(e.__cause__ or e)
        raise CheckpointError(f'{path} is incomplete or not a checkpoint ({cause})', path, cause) from None


# Every local path (no '://': URLs and s3 paths keep their loaders). mmengine tries the longest-sorting pattern first
# and '' (its local loader) last, so this one is asked before it.
HF_CHECKPOINT_SCHEME = r'^(?!.*://)'


def task_checkpoint(obj, source: str = 'checkpoint'):
    """The hand-off to the task repos' loaders: a bare DaViT checkpoint in any layout (official, timm, mmpretrain,
    Florence-2, our own backbone's) as a task model holds it, the backbone under ``backbone.`` in our keys, the
    classifier's Linear as ``head.fc`` and its final norm as ``backbone.norm{last}`` (mmpretrain's ImageClassifier
    layout); anything else (a whole task model, another model's file) is returned as it is.

    Why the task model's layout and not the model's own: mmengine's ``load_from``, mmpretrain's
    ``get_model(pretrained=...)`` and mmdet's/mmseg's inferencers read a path through ``CheckpointLoader`` and load
    it into the whole task model, and torch hands each child only the keys under its own prefix, so a bare file must
    reach them already prefixed. The reader does not see the model: shapes are checked by mmengine's loader, and a
    DaViT outside a task model loads a bare file through ``davit_backbone.load_pretrained`` or ``init_weights``."""
    try:
        sd, fmt = convert_state_dict(obj, return_format=True)
    except CheckpointFormatError:
        return obj
    raw = obj.get('state_dict', obj) if isinstance(obj, dict) else {}
    if fmt == 'ours' and any(str(k).startswith(('backbone.', 'module.backbone.')) for k in raw):
        return obj  # a whole task model of ours: mmengine loads it as it is
    from mmengine.logging import print_log
    last = max((int(k.split('.')[1]) for k in sd if k.startswith('stages.')), default=0)
    out = {}
    for k, v in sd.items():
        if k.startswith('head.fc.'):
            out[k] = v
        elif k.startswith('head.norm.'):
            if f'norm{last}.{k[len("head.norm."):]}' not in sd:
                out[f'backbone.norm{last}.{k[len("head.norm."):]}'] = v
        else:
            out['backbone.' + k] = v
    handed = sorted(k for k in out if k.startswith('head.fc.'))
    print_log(f'DaViT: {describe_load(fmt, out, "the task model as backbone.*", handed=handed)} ({source})',
              logger='current')
    meta = obj.get('meta') if isinstance(obj, dict) else None
    return dict(state_dict=out, **({'meta': meta} if isinstance(meta, dict) else {}))


def load_for_task_models(filename: str, map_location=None):
    """mmengine's checkpoint loader for :data:`HF_CHECKPOINT_SCHEME` (its log names a loader by what follows
    ``load_from_``): every local file, folder or shard index through :func:`read_checkpoint`, then
    :func:`task_checkpoint`. A path that does not exist goes to mmengine's local loader, for its own error."""
    from mmengine.runner.checkpoint import CheckpointLoader
    filename = osp.expanduser(filename)
    if not (osp.isfile(filename) or osp.isdir(filename)):
        return CheckpointLoader._schemes[''](filename, map_location)
    return task_checkpoint(read_checkpoint(filename, map_location=map_location or 'cpu'), filename)


def register_checkpoint_scheme() -> None:
    """Hands :func:`task_checkpoint` to mmengine's ``CheckpointLoader`` for local paths (idempotent), through its own
    extension point (``register_scheme``), as its ``s3://`` and ``http://`` loaders are added: the one documented
    hand-off for the task repos' loaders (mmengine's ``load_from`` and ``load_checkpoint``, mmpretrain's
    ``get_model``/inferencers, mmdet's and mmseg's inferencers' ``weights``). It also lets them read what
    ``torch.load`` cannot (Florence-2's ``model.safetensors``, shards, ``save_pretrained`` folders) and mmengine's
    own checkpoints under torch's weights-only default (resume)."""
    from mmengine.runner.checkpoint import CheckpointLoader
    if CheckpointLoader._schemes.get(HF_CHECKPOINT_SCHEME) is not load_for_task_models:
        CheckpointLoader.register_scheme(HF_CHECKPOINT_SCHEME, load_for_task_models, force=True)


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
            raise CheckpointError(f'{self.path}: {e}', self.path, str(e)) from None

    def for_model(self, model, logger=None):
        """The checkpoint object with a state dict that fits ``model`` (a task model, or a DaViT itself): a checkpoint
        of this model as it is; a bare DaViT checkpoint in any layout converted here, the door with the model in
        view: checked against the backbone (unknown keys, shapes, the tower filled) before anything is copied, its
        classifier Linear handed to the task model's ``head.fc``. A file that is neither is refused."""
        from davit_backbone import DaViT as PlainDaViT
        from mmengine.logging import print_log
        if not isinstance(self.obj, dict):
            raise CheckpointError(f'{self.path}: holds no state dict', self.path, 'no state dict')
        own = model.state_dict()
        if set(self.state_dict) & set(own):
            return self.obj
        try:
            self.davit()
        except CheckpointFormatError as e:
            raise CheckpointError(f'{self.path}: neither a checkpoint of this model nor a DaViT checkpoint: {e}',
                                  self.path, str(e)) from None
        prefix, backbone = next(((n + '.' if n else '', m) for n, m in model.named_modules()
                                 if isinstance(m, PlainDaViT)), (None, None))
        if backbone is None:
            raise CheckpointError(f'{self.path}: a DaViT checkpoint, but the model holds no DaViT', self.path,
                                  'no DaViT in the model')
        where = prefix.rstrip('.') or 'the model'
        try:
            kept, handed_up, dropped, fmt = prepare_state_dict(self.obj, backbone, source=f'{self.path} for {where}',
                                                               whole_tower=None)
        except CheckpointFormatError as e:
            raise CheckpointError(str(e), self.path, str(e)) from None
        sd = {prefix + k: v for k, v in kept.items()}
        parent = prefix[:-len('backbone.')] if prefix.endswith('backbone.') else None
        handed = [parent + k for k in handed_up if parent is not None and parent + k in own]
        sd.update((parent + k, v) for k, v in handed_up.items() if parent is not None and parent + k in own)
        dropped += [k for k in handed_up if parent is None or parent + k not in own]
        print_log(f'DaViT: {describe_load(fmt, kept, where, dropped, handed, fresh_norms(backbone, kept))}',
                  logger=logger or 'current')
        return dict(self.obj, state_dict=sd)

    def load_into(self, model, logger=None) -> None:
        """Loads into a whole task model with mmengine's own loader, after :meth:`for_model`: a checkpoint written by
        tools/train.py loads as is, a bare DaViT checkpoint in any layout (official, timm, mmpretrain) converted."""
        from mmengine.model import is_model_wrapper
        from mmengine.runner.checkpoint import load_state_dict
        model = model.module if is_model_wrapper(model) else model
        fitted = self.for_model(model, logger)
        sd = self.state_dict if fitted is self.obj else fitted['state_dict']
        load_state_dict(model, strip_module_prefix(sd), strict=False, logger=logger or 'current')

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
        this object, fitted to its model by :meth:`for_model`, where it would read the file: their own
        ``_load_weights_to_model`` (state dict through mmengine's loader, class names from the meta) runs on it."""
        ckpt = self

        class _ReadOnce(inferencer_cls):
            def _load_weights_to_model(self, model, _, cfg):
                super()._load_weights_to_model(model, ckpt.for_model(model), cfg)

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


def load_init_cfg_pretrained(model, init_cfg: dict) -> dict:
    """The backbone's ``init_weights`` door for a Pretrained ``init_cfg`` (``checkpoint``, optional ``prefix`` as
    mmengine's, e.g. ``'backbone.'`` of a whole detector's file): read through :func:`read_checkpoint`, converted and
    checked by ``davit_backbone.load_pretrained``, which logs what went where. Returns its report."""
    from davit_backbone import load_pretrained
    path = init_cfg['checkpoint']
    obj = read_checkpoint(path, map_location=init_cfg.get('map_location') or 'cpu')
    prefix = init_cfg.get('prefix')
    if prefix:
        prefix = prefix if prefix.endswith('.') else prefix + '.'
        sd = strip_module_prefix(unwrap_state_dict_keep_prefixes(obj))
        obj = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
        if not obj:
            raise CheckpointError(f'{path}: no key starts with the prefix {prefix!r}', str(path), 'prefix')
    try:
        return load_pretrained(model, obj, strict=False)
    except CheckpointFormatError as e:
        raise CheckpointError(f'{path}: {e}', str(path), str(e)) from None


def unwrap_state_dict_keep_prefixes(obj) -> dict:
    """The tensor dict of a checkpoint object (``state_dict`` or ``model`` inside it), its keys as stored."""
    if isinstance(obj, dict):
        for key in ('state_dict', 'model'):
            if isinstance(obj.get(key), dict):
                return obj[key]
    return obj


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
