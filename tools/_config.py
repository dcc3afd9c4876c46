"""Config handling for the tools: loading with the original release's spellings mapped (``--options``,
``model.pretrained``), the crash-safe checkpoint hook swapped in, the collective timeout, ``--resume``, and the early
checks (datasets, pretrained weights, ``--amp``) that fail before the Runner writes anything."""
from __future__ import annotations

import os.path as osp
import sys
from typing import Iterable, List, Optional

from mmengine.config import Config

from _cli import UserError, prechecked
from mmdavit.data.check import DataCheckError, check_coco_file, check_num_classes, check_seg_maps
from mmdavit.training.checkpoint_hook import use_atomic_checkpoints
from mmdavit.checkpoints.reader import CheckpointError, check_pretrained as _check_pretrained, map_pretrained
from mmdavit.training.resume import ResumeError, check_resumable, find_resume_checkpoint

TOY_HINTS = {
    'mmdet': 'python tools/make_toy_data.py coco data/toy_coco',
    'mmseg': 'python tools/make_toy_data.py ade data/toy_ade',
    'mmpretrain': 'python tools/make_toy_data.py imagenet data/toy_imagenet',
}

# Seconds a rank waits in a collective for the others (env_cfg.dist_cfg.timeout, mmengine's key) when the config sets
# none: what bounds the wait for a node that hangs or is cut off, where a node that dies is noticed at once (its
# sockets close). torch's defaults are 30 min for gloo and 10 min for NCCL; 10 min for both keeps NCCL's, which real
# runs are known to fit: every other rank waits in a collective while rank 0 alone computes the COCO metrics or
# writes a checkpoint, and that must not time out.
DIST_TIMEOUT = 600



def load_config(path: str, cfg_options: Optional[dict], work_dir: Optional[str]) -> Config:
    if not osp.isfile(path):
        raise UserError(f'config file not found: {path!r} (configs live under configs/mmdet, configs/mmseg, '
                        'configs/mmcls and configs/toy)')
    try:
        cfg = Config.fromfile(path)
    except FileNotFoundError:
        raise UserError(_missing_base(path)) from None
    except SyntaxError as e:
        raise UserError(f'{path}: Python syntax error at line {e.lineno}: {e.msg}') from None
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    scope = cfg.get('default_scope')
    if scope not in TOY_HINTS:
        raise UserError(f'{path}: default_scope must be one of {sorted(TOY_HINTS)}, got {scope!r}')
    try:
        map_pretrained(cfg.model)
    except ValueError as e:
        raise UserError(f'{path}: model.backbone: {e}') from None
    use_atomic_checkpoints(cfg)  # importing mmdavit.training.checkpoint_hook made the mmdavit hook scope
    dist_timeout(cfg)
    if work_dir:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(path))[0])
    return cfg


def _missing_base(path: str) -> str:
    """What to say when mmengine's Config cannot find a file a config inherits (its FileNotFoundError names none):
    which ``_base_`` is missing, and that relative ones are read from the config's own folder."""
    import ast
    bases = []
    try:
        with open(path) as f:
            for node in ast.parse(f.read()).body:
                if isinstance(node, ast.Assign) and any(getattr(t, 'id', None) == '_base_' for t in node.targets):
                    value = ast.literal_eval(node.value)
                    bases = [value] if isinstance(value, str) else list(value)
    except (OSError, ValueError, SyntaxError):
        pass
    folder = osp.dirname(osp.abspath(path))
    missing = [b for b in bases if '::' not in b and not osp.isfile(osp.join(folder, b))]
    if not missing:
        return f'{path}: a file it inherits (through its _base_ chain) was not found'
    return (f'{path} inherits {missing[0]!r}, which is not at {osp.normpath(osp.join(folder, missing[0]))}: a relative '
            "_base_ is read from the config's own folder, so keep your configs under this checkout's configs/ "
            "(e.g. configs/mine/), or give the base's absolute path")


def dist_timeout(cfg: Config) -> float:
    """The collective timeout in seconds: env_cfg.dist_cfg.timeout, or DIST_TIMEOUT. A bad value fails in
    load_config, so before the launchers start any worker."""
    dist_cfg = (cfg.get('env_cfg') or {}).get('dist_cfg') or {}
    value = dist_cfg.get('timeout', DIST_TIMEOUT)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise UserError(f'env_cfg.dist_cfg.timeout must be a number of seconds > 0, got {value!r} (e.g. '
                        f'--cfg-options env_cfg.dist_cfg.timeout=120; default {DIST_TIMEOUT})')
    return float(value)



def _checkpoint_dirs(cfg: Config) -> List[str]:
    """Where the checkpoint hook writes besides the work dir (its out_dir + the work dir's name, as mmengine)."""
    out_dir = ((cfg.get('default_hooks') or {}).get('checkpoint') or {}).get('out_dir')
    if not out_dir or '://' in str(out_dir):
        return []
    return [osp.join(str(out_dir), osp.basename(str(cfg.work_dir).rstrip(osp.sep)))]



def resolve_resume(cfg: Config, resume: Optional[str], launcher: str = 'none') -> Optional[str]:
    """Sets cfg.resume/load_from for ``--resume`` (``'auto'``: no path given) and returns the line to log.

    Without a path: the newest checkpoint of the run that loads (mmdavit.training.resume); none at all starts the run as
    a first run would (with the config's own load_from). A given path must be a complete training checkpoint. Either
    way a bad file is one line and exit code 2, before anything is written.
    """
    if not resume:
        return None
    try:
        if resume == 'auto':
            path, why = find_resume_checkpoint(cfg.work_dir, _checkpoint_dirs(cfg))
            if path is None:
                cfg.resume = False
                return why
        else:
            path = resume
            if prechecked(launcher):
                why = f'resuming from {path} (checked by the launcher)'
            else:
                epoch, it = check_resumable(path)
                why = f'resuming from {path} (epoch {epoch}, iter {it}), as given'
    except ResumeError as e:
        raise UserError(f'--resume: {e}') from None
    cfg.resume, cfg.load_from = True, path
    return why


def check_amp() -> None:
    from mmengine.device import is_cuda_available, is_mlu_available, is_musa_available, is_npu_available
    if not (is_cuda_available() or is_npu_available() or is_mlu_available() or is_musa_available()):
        raise UserError('--amp needs a GPU (mmengine\'s AmpOptimWrapper runs on CUDA, NPU, MLU or MUSA only); '
                        'leave --amp out on this machine')


def check_pretrained(cfg: Config, launcher: str = 'none') -> None:
    """The DaViT backbone's pretrained checkpoint (``model.pretrained``, ``backbone.pretrained`` or a Pretrained
    ``init_cfg``) must be a DaViT checkpoint that loads: checked here, before the Runner makes its work dir, rather
    than when the weights are initialised. Its tensors are not read (the Runner reads them, once)."""
    if prechecked(launcher):
        return
    try:
        _check_pretrained(cfg.model)
    except CheckpointError as e:
        raise UserError(f'pretrained backbone: {e}') from None


def _dataset_cfgs(cfg: Config, phases: Iterable[str]) -> List[dict]:
    out = []
    for phase in phases:
        loader = cfg.get(f'{phase}_dataloader')
        if not loader:
            continue
        ds = loader.get('dataset', {})
        stack = [ds]
        while stack:  # RepeatDataset / ConcatDataset / ClassBalancedDataset wrap their datasets
            d = stack.pop()
            if 'dataset' in d:
                stack.append(d['dataset'])
            elif 'datasets' in d:
                stack.extend(d['datasets'])
            else:
                out.append(d)
    return out


def check_datasets(cfg: Config, phases: Iterable[str], launcher: str = 'none') -> None:
    """Fails before the Runner makes its work dir when a dataset folder or annotation file is missing, or when the
    data does not fit the config (mmdavit.data.check: class names, listed images, label values, num_classes,
    reduce_zero_label); what mmdet or mmseg drop or change on their own is printed as ``note:`` lines. A worker
    started by the launchers skips the reading of the annotations: the launcher's --validate-only did it once."""
    scope = cfg.get('default_scope')
    checked = set()
    for ds in _dataset_cfgs(cfg, phases):
        root = ds.get('data_root') or ''
        paths = []
        if ds.get('ann_file'):
            paths.append(osp.join(root, ds['ann_file']))
        prefix = ds.get('data_prefix') or {}
        if isinstance(prefix, dict):
            paths += [osp.join(root, p) for p in prefix.values() if isinstance(p, str) and p]
        elif isinstance(prefix, str):
            paths.append(osp.join(root, prefix))
        if root and not paths:
            paths.append(root)
        for p in paths:
            if p and '://' not in p and not osp.exists(p):
                raise UserError(
                    f'dataset path not found: {p!r} (data_root={root!r}). Put the dataset there (see the README\'s '
                    f'data layout), point data_root elsewhere with --cfg-options, or make the small toy set: '
                    f'{TOY_HINTS.get(scope, "")}')
        if prechecked(launcher) or '://' in root:
            continue
        try:
            if scope == 'mmdet':
                _check_coco(cfg, ds, checked)
            elif scope == 'mmseg':
                _check_seg(cfg, ds, checked)
        except DataCheckError as e:
            raise UserError(str(e)) from None


def _dataset_class(ds: dict, registry):
    kind = ds.get('type')
    if isinstance(kind, type):
        return kind
    return registry.get(str(kind).split('.')[-1]) if kind else None


def _init_default(cls, name: str, fallback=None):
    """A dataset class's default for one of its constructor's arguments (mmseg's ADE20KDataset sets
    reduce_zero_label=True, its BaseSegDataset False)."""
    import inspect
    for klass in cls.__mro__:
        param = inspect.signature(klass.__init__).parameters.get(name) if '__init__' in vars(klass) else None
        if param is not None and param.default is not inspect.Parameter.empty:
            return param.default
    return fallback


def _heads(model: dict, names: Iterable[str]) -> dict:
    """``num_classes`` of the model's classifying heads, by config key (a list of heads: cascade stages, mmseg's
    auxiliary heads)."""
    out = {}
    for name in names:
        node = model
        for part in name.split('.'):
            node = node.get(part) if isinstance(node, dict) else None
        for i, head in enumerate(node if isinstance(node, list) else [node]):
            if isinstance(head, dict) and 'num_classes' in head:
                out[f'model.{name}{f"[{i}]" if isinstance(node, list) else ""}.num_classes'] = head['num_classes']
    return out


def _check_coco(cfg: Config, ds: dict, checked: set) -> None:
    """A COCO-style dataset against its annotation file (mmdavit.data.check.check_coco_file), once per file and
    names; the heads' num_classes against its class names."""
    import mmdet.datasets  # noqa: F401  fills the registry
    from mmdet.datasets import CocoDataset
    from mmdet.registry import DATASETS
    cls = _dataset_class(ds, DATASETS)
    ann_file = osp.join(ds.get('data_root') or '', ds.get('ann_file') or '')
    if cls is None or not issubclass(cls, CocoDataset) or not ann_file.endswith('.json'):
        return
    classes = tuple((ds.get('metainfo') or {}).get('classes') or cls.METAINFO['classes'])
    if (ann_file, classes) in checked:
        return
    checked.add((ann_file, classes))
    check_num_classes(classes, _heads(cfg.model, ['roi_head.bbox_head', 'roi_head.mask_head', 'bbox_head']),
                      f'the dataset of {ann_file}')
    prefix = ds.get('data_prefix') or {}
    img_dir = prefix.get('img') if isinstance(prefix, dict) else None
    report = check_coco_file(ann_file, osp.join(ds.get('data_root') or '', img_dir) if img_dir else None, classes)
    for line in report.notes():
        print(f'note: {line}', file=sys.stderr)


def _transforms(pipeline) -> Iterable[dict]:
    """Every transform of a pipeline, also those inside TestTimeAug's lists."""
    stack = [pipeline]
    while stack:
        t = stack.pop()
        if isinstance(t, (list, tuple)):
            stack.extend(t)
        elif isinstance(t, dict):
            yield t
            stack.extend(v for v in t.values() if isinstance(v, (list, tuple)))


def _check_seg(cfg: Config, ds: dict, checked: set) -> None:
    """A folder-paired segmentation dataset (mmseg's BaseSegDataset without a split file): maps for every image,
    label values for the head's num_classes, and reduce_zero_label alike in the dataset and its LoadAnnotations."""
    import mmseg.datasets  # noqa: F401  fills the registry
    from mmseg.datasets import BaseSegDataset
    from mmseg.registry import DATASETS
    cls = _dataset_class(ds, DATASETS)
    if cls is None or not issubclass(cls, BaseSegDataset) or ds.get('ann_file'):
        return
    reduce = bool(ds.get('reduce_zero_label', _init_default(cls, 'reduce_zero_label', False)))
    for t in _transforms(ds.get('pipeline') or []):
        value = t.get('reduce_zero_label') if t.get('type') == 'LoadAnnotations' else None
        if value is not None and bool(value) != reduce:
            raise UserError(
                f'the dataset of {ds.get("data_root")!r} has reduce_zero_label={reduce} but its pipeline\'s '
                f'LoadAnnotations has reduce_zero_label={value}: set both to True if 0 means "no label" in your '
                'label maps (value k + 1 is classes[k]), to False if 0 is your first class (mmseg refuses the two '
                'differing when it loads the first map)')
    prefix = ds.get('data_prefix') or {}
    root = ds.get('data_root') or ''
    img, seg = (osp.join(root, prefix.get(k) or '') for k in ('img_path', 'seg_map_path'))
    decode = cfg.model.get('decode_head') or {}
    heads = _heads(cfg.model, ['decode_head', 'auxiliary_head'])
    num_classes = decode.get('num_classes') if isinstance(decode, dict) else None
    classes = (ds.get('metainfo') or {}).get('classes') or cls.METAINFO.get('classes')
    key = (img, seg, reduce, num_classes)
    if key in checked or not isinstance(num_classes, int) or not prefix.get('seg_map_path'):
        return
    checked.add(key)
    if classes:
        check_num_classes(tuple(classes), heads, f'the dataset of {root!r}')
    report = check_seg_maps(
        img, seg, ds.get('img_suffix', _init_default(cls, 'img_suffix', '.jpg')),
        ds.get('seg_map_suffix', _init_default(cls, 'seg_map_suffix', '.png')), num_classes, reduce,
        decode.get('ignore_index', 255))
    for line in report.notes(num_classes):
        print(f'note: {line}', file=sys.stderr)
