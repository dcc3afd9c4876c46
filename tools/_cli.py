"""Command-line plumbing shared by the scripts in tools/ (imported as ``_cli``: a script's own folder is on
``sys.path``): config loading with the original release's overrides, early checks that fail before anything is
written, the CPU (gloo) distributed path, and one-line errors with exit code 2. Nothing here is library API."""
from __future__ import annotations

import argparse
import os
import os.path as osp
import sys
from typing import Iterable, List, Optional

import torch
import torch.distributed as dist
from mmengine.config import Config, DictAction

from davit_backbone.convert import CheckpointFormatError, detect_format, unwrap_state_dict

TOY_HINTS = {
    'mmdet': 'python tools/make_toy_data.py coco data/toy_coco',
    'mmseg': 'python tools/make_toy_data.py ade data/toy_ade',
    'mmpretrain': 'python tools/make_toy_data.py imagenet data/toy_imagenet',
}


class UserError(Exception):
    """A problem with the user's input: printed as one line, exit code 2, nothing written."""


def add_common_args(parser) -> None:
    parser.add_argument('--work-dir', help='where logs and checkpoints go (default: work_dirs/<config name>)')
    parser.add_argument('--cfg-options', '--options', nargs='+', action=DictAction, dest='cfg_options',
                        help='override config keys, e.g. model.backbone.drop_path_rate=0.2 '
                             '(--options is the original release\'s name for it)')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0, help=argparse.SUPPRESS)


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
    _map_legacy_pretrained(cfg)
    if work_dir:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(path))[0])
    return cfg


def _map_legacy_pretrained(cfg: Config) -> None:
    """``model.pretrained=PATH`` (mmdet 2.x / the original release) -> the backbone's Pretrained init_cfg."""
    pretrained = cfg.model.pop('pretrained', None)
    if pretrained:
        cfg.model.backbone.init_cfg = dict(type='Pretrained', checkpoint=pretrained)


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
    """Fails before the Runner makes its work dir when a dataset folder or annotation file is missing."""
    scope = cfg.get('default_scope')
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


def setup_distributed(cfg: Config, launcher: str) -> None:
    """Makes ``launcher='pytorch'`` work on CPU-only machines too.

    mmengine's init_dist calls ``torch.cuda.set_device``, which fails without a GPU. On CPU we create the gloo
    process group ourselves (mmengine then sees an initialised group and skips init_dist) and wrap the model in
    DDP without device ids.
    """
    cfg.launcher = launcher
    if launcher == 'none' or torch.cuda.is_available():
        return
    if launcher != 'pytorch':
        raise UserError(f'launcher {launcher!r} needs GPUs; on CPU use tools/dist_train.sh (torchrun, gloo)')
    if not dist.is_initialized():
        dist.init_process_group(backend='gloo')
    cfg.env_cfg = cfg.get('env_cfg', {})
    cfg.env_cfg['dist_cfg'] = dict(backend='gloo')
    wrapper = dict(cfg.get('model_wrapper_cfg') or {})
    wrapper.setdefault('type', 'MMDistributedDataParallel')
    wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper


def build_runner(cfg: Config):
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner
    return RUNNERS.build(cfg) if 'runner_type' in cfg else Runner.from_cfg(cfg)


def read_checkpoint(path: str):
    """The object in ``path`` (weights_only, with mmengine's checkpoint classes allowed), or a UserError naming the
    file: missing, truncated, or not a checkpoint at all."""
    from mmdavit import load_checkpoint_file
    if not osp.isfile(path):
        raise UserError(f'checkpoint file not found: {path!r}')
    try:
        return load_checkpoint_file(path)
    except RuntimeError as e:
        raise UserError(f'{e}. Is the file complete (not cut off by a crash or an unfinished download)?') from None


def load_model_checkpoint(model, path: str, logger=None) -> None:
    """Loads ``path`` into a whole task model with mmengine's own loader: a checkpoint written by tools/train.py loads
    as is, and a bare DaViT checkpoint in any layout (official, timm, mmpretrain) is converted by the backbone's load
    hook, its classifier Linear going to the task model's head. A file that is neither is refused before loading."""
    from mmengine.runner.checkpoint import load_checkpoint
    obj = read_checkpoint(path)
    sd = obj.get('state_dict', obj) if isinstance(obj, dict) else None
    own = set(model.state_dict())
    if not isinstance(sd, dict) or not set(k.replace('module.', '', 1) for k in sd) & own:
        try:
            detect_format(unwrap_state_dict(obj))
        except CheckpointFormatError as e:
            raise UserError(f'{path}: neither a checkpoint of this model nor a DaViT checkpoint: {e}') from None
    try:
        load_checkpoint(model, path, map_location='cpu', strict=False, logger=logger or 'current',
                        revise_keys=[(r'^module\.', '')])
    except CheckpointFormatError as e:
        raise UserError(str(e)) from None


def run_main(main) -> None:
    """Runs a tool's main, turning UserError into one clear line and exit code 2."""
    try:
        main()
    except UserError as e:
        print(f'error: {e}', file=sys.stderr)
        sys.exit(2)
    finally:  # also on UserError: the group goes before the exit
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()


def local_rank_env(args) -> None:
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
