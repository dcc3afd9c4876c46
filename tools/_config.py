"""Config handling for the tools: loading with the original release's spellings mapped (``--options``,
``model.pretrained``), the crash-safe checkpoint hook swapped in, the collective timeout, ``--resume``, and the early
checks (datasets, pretrained weights, ``--amp``) that fail before the Runner writes anything."""
from __future__ import annotations

import os.path as osp
import sys
from typing import Iterable, List, Optional

from mmengine.config import Config

from _cli import UserError, prechecked
from mmdavit.data_check import DataCheckError, check_coco_classes
from mmdavit.hooks import use_atomic_checkpoints
from mmdavit.loading import CheckpointError, check_pretrained as _check_pretrained, map_pretrained
from mmdavit.resume import ResumeError, check_resumable, find_resume_checkpoint

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
    cfg = Config.fromfile(path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    scope = cfg.get('default_scope')
    if scope not in TOY_HINTS:
        raise UserError(f'{path}: default_scope must be one of {sorted(TOY_HINTS)}, got {scope!r}')
    try:
        map_pretrained(cfg.model)
    except ValueError as e:
        raise UserError(f'{path}: model.backbone: {e}') from None
    use_atomic_checkpoints(cfg)  # importing mmdavit.hooks made the mmdavit hook scope
    dist_timeout(cfg)
    if work_dir:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(path))[0])
    return cfg


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

    Without a path: the newest checkpoint of the run that loads (mmdavit.resume); none at all starts the run as a
    first run would (with the config's own load_from). A given path must be a complete training checkpoint. Either
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


def check_datasets(cfg: Config, phases: Iterable[str]) -> None:
    """Fails before the Runner makes its work dir when a dataset folder or annotation file is missing, or when a
    detection config names a class its annotation file does not have."""
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
        if scope == 'mmdet' and ds.get('ann_file'):
            _check_coco_classes(ds, osp.join(root, ds['ann_file']), checked)


def _check_coco_classes(ds: dict, ann_file: str, checked: set) -> None:
    """A COCO-style dataset's class names against its annotation file's categories (mmdavit.data_check), once per
    file and names."""
    import mmdet.datasets  # noqa: F401  fills the registry
    from mmdet.datasets import CocoDataset
    from mmdet.registry import DATASETS
    kind = ds.get('type')
    cls = kind if isinstance(kind, type) else DATASETS.get(str(kind).split('.')[-1]) if kind else None
    if cls is None or not issubclass(cls, CocoDataset) or '://' in ann_file or not ann_file.endswith('.json'):
        return
    classes = tuple((ds.get('metainfo') or {}).get('classes') or cls.METAINFO['classes'])
    if (ann_file, classes) in checked:
        return
    checked.add((ann_file, classes))
    try:
        left_out = check_coco_classes(ann_file, classes)
    except DataCheckError as e:
        raise UserError(str(e)) from None
    if left_out:
        print(f'note: {len(left_out)} categor{"y" if len(left_out) == 1 else "ies"} of {ann_file} not in '
              f'metainfo.classes, whose annotations are not trained on or evaluated: {left_out[:8]}', file=sys.stderr)
