"""Command-line plumbing shared by the scripts in tools/ (imported as ``_cli``: a script's own folder is on
``sys.path``): config loading with the original release's overrides, early checks that fail before anything is
written, the CPU (gloo) distributed path, and one-line errors: exit code 2 for bad input, 1 for a rank lost mid-run.
Nothing here is library API."""
from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import os.path as osp
import re
import sys
import warnings
from typing import Callable, Iterable, List, Optional

# setuptools 80 warns each time mmengine, mmcv or openmim import pkg_resources (five times a run): nothing a user of
# these tools can act on, and it buried the first lines of every log. requirements/build.txt pins setuptools<81,
# under which pkg_resources still exists.
warnings.filterwarnings('ignore', message='pkg_resources is deprecated')

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
from mmengine.config import Config, DictAction  # noqa: E402

from davit_backbone.convert import CheckpointFormatError, convert_state_dict, detect_format, unwrap_state_dict
from mmdavit.resume import ResumeError, check_resumable, find_resume_checkpoint, load_checkpoint_file, short_cause

TOY_HINTS = {
    'mmdet': 'python tools/make_toy_data.py coco data/toy_coco',
    'mmseg': 'python tools/make_toy_data.py ade data/toy_ade',
    'mmpretrain': 'python tools/make_toy_data.py imagenet data/toy_imagenet',
}


class UserError(Exception):
    """A problem with the user's input: printed as one line, exit code 2, nothing written."""


class LostPeerError(Exception):
    """Another rank of a distributed run died or stopped answering: printed as one line, exit code 1 (not bad input:
    the same command, with --resume, is what to run again)."""


# what `train.py --validate-only` prints on stdout for the launchers: the checkpoint every rank resumes from
RESUME_LINE = 'resume-from: '
# set by the launchers after their one validation, so that the workers do not load the checkpoint once more each
PRECHECKED_ENV = 'MMDAVIT_PRECHECKED'
ATOMIC_CHECKPOINT_HOOK = 'mmdavit.AtomicCheckpointHook'
# Seconds a rank waits in a collective for the others (env_cfg.dist_cfg.timeout, mmengine's key) when the config sets
# none: what bounds the wait for a node that hangs or is cut off, where a node that dies is noticed at once (its
# sockets close). torch's defaults are 30 min for gloo and 10 min for NCCL; 10 min for both keeps NCCL's, which real
# runs are known to fit: every other rank waits in a collective while rank 0 alone computes the COCO metrics or
# writes a checkpoint, and that must not time out.
DIST_TIMEOUT = 600


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
    _use_atomic_checkpoints(cfg)
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


def _map_legacy_pretrained(cfg: Config) -> None:
    """``model.pretrained=PATH`` (mmdet 2.x / the original release) -> the backbone's Pretrained init_cfg."""
    pretrained = cfg.model.pop('pretrained', None)
    if pretrained:
        cfg.model.backbone.init_cfg = dict(type='Pretrained', checkpoint=pretrained)


def _use_atomic_checkpoints(cfg: Config) -> None:
    """mmengine's plain CheckpointHook -> ours, with the same arguments: writes that survive a kill at any moment
    and generator states for an exact resume (mmdavit/hooks.py), for every config, whoever wrote it."""
    import mmdavit.hooks  # noqa: F401  the mmdavit hook scope must exist before the Runner builds the hook
    from mmengine.hooks import CheckpointHook
    hooks = cfg.get('default_hooks')
    if hooks is None:
        cfg.default_hooks = hooks = {}
    if 'checkpoint' not in hooks:  # mmengine would add CheckpointHook(interval=1)
        hooks['checkpoint'] = dict(type=ATOMIC_CHECKPOINT_HOOK, interval=1)
    ckpt = hooks['checkpoint']
    if isinstance(ckpt, dict) and ckpt.get('type') in ('CheckpointHook', 'mmengine.CheckpointHook', CheckpointHook):
        ckpt['type'] = ATOMIC_CHECKPOINT_HOOK


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
            if launcher != 'none' and os.environ.get(PRECHECKED_ENV) == '1':
                why = f'resuming from {path} (checked by the launcher)'
            else:
                epoch, it = check_resumable(path)
                why = f'resuming from {path} (epoch {epoch}, iter {it}), as given'
    except ResumeError as e:
        raise UserError(str(e)) from None
    cfg.resume, cfg.load_from = True, path
    return why


def check_amp() -> None:
    from mmengine.device import is_cuda_available, is_mlu_available, is_musa_available, is_npu_available
    if not (is_cuda_available() or is_npu_available() or is_mlu_available() or is_musa_available()):
        raise UserError('--amp needs a GPU (mmengine\'s AmpOptimWrapper runs on CUDA, NPU, MLU or MUSA only); '
                        'leave --amp out on this machine')


def check_pretrained(cfg: Config, launcher: str = 'none') -> None:
    """A backbone Pretrained init_cfg (``model.pretrained=PATH``) must be a DaViT checkpoint that loads: checked here,
    before the Runner makes its work dir, rather than when the weights are initialised."""
    init = (cfg.model.get('backbone') or {}).get('init_cfg')
    path = init.get('checkpoint') if isinstance(init, dict) and init.get('type') == 'Pretrained' else None
    if not path or '://' in str(path) or (launcher != 'none' and os.environ.get(PRECHECKED_ENV) == '1'):
        return
    obj = read_checkpoint(path)
    try:
        convert_state_dict(obj)
    except CheckpointFormatError as e:
        raise UserError(f'{path}: {e}') from None


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
    if launcher == 'pytorch':
        die_with_launcher()
    if launcher == 'none':
        return
    timeout = dist_timeout(cfg)
    cfg.env_cfg = cfg.get('env_cfg') or {}
    if torch.cuda.is_available():  # mmengine's init_dist creates the group, with dist_cfg's timeout in seconds
        cfg.env_cfg['dist_cfg'] = dict(cfg.env_cfg.get('dist_cfg') or {}, timeout=timeout)
        return
    if launcher != 'pytorch':
        raise UserError(f'launcher {launcher!r} needs GPUs; on CPU use tools/dist_train.sh (torchrun, gloo)')
    if not dist.is_initialized():
        dist.init_process_group(backend='gloo', timeout=datetime.timedelta(seconds=timeout))
    cfg.env_cfg['dist_cfg'] = dict(backend='gloo', timeout=timeout)
    wrapper = dict(cfg.get('model_wrapper_cfg') or {})
    wrapper.setdefault('type', 'MMDistributedDataParallel')
    wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper


def die_with_launcher() -> None:
    """Makes this torchrun worker die when torchrun does.

    torchrun starts each worker in a session of its own, so a SIGKILL to the launcher's process group (a scheduler's
    ``kill -9``, ``timeout -s KILL``, a closed terminal's group) never reaches the workers: orphaned, they trained on
    and wrote checkpoints into the work dir beside the run resumed there (or stalled in a collective, holding memory).
    Linux's ``PR_SET_PDEATHSIG`` sends this process SIGKILL when its parent, torchrun, ends; elsewhere nothing changes.
    """
    if not sys.platform.startswith('linux'):
        return
    import ctypes
    import signal
    parent = os.getppid()
    pr_set_pdeathsig = 1
    if ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0) != 0:
        return
    if os.getppid() != parent:  # torchrun ended before the request was made
        os.kill(os.getpid(), signal.SIGKILL)


# gloo's and NCCL's errors when a peer's process ended (its sockets closed) or did not answer within the timeout;
# only errors that name the communication library count (a DataLoader's timeout is no lost node)
_COMM = re.compile(r'gloo|nccl|ProcessGroup|c10d', re.I)
_PEER_GONE = re.compile(r'Connection (reset|closed) by peer|Broken pipe|Connection refused|remote process exited',
                        re.I)


@contextlib.contextmanager
def lost_peers_as_one_line(what_to_do: Callable[[], str]):
    """Turns the error a rank gets when another rank died or stopped answering (gloo's C++ message, under a
    traceback through DDP or mmengine) into LostPeerError: one line saying which, and ``what_to_do()``."""
    try:
        yield
    except RuntimeError as e:
        text = str(e).strip()
        if not (dist.is_initialized() and (isinstance(e, dist.DistError) or _COMM.search(text))):
            raise
        rank = dist.get_rank()
        # gloo's message without its source path and its closing advice
        detail = re.sub(r'^\[[^\]]*:\d+\] ', '', text.splitlines()[-1]).split('. This is typically')[0]
        if _PEER_GONE.search(text):
            why = f'rank {rank} lost its connection to another rank ({detail}): a node or process of this run ended'
        else:
            why = (f'rank {rank} got no answer from another rank ({detail}; the limit is env_cfg.dist_cfg.timeout): '
                   'a node of this run hangs or is cut off')
        raise LostPeerError(f'{why}. Once no node runs it any more (stop those that do), start it again on every '
                            f'node; {what_to_do()}') from None


def last_checkpoint_hint(work_dir: str) -> str:
    """What --resume will continue from, as far as the work dir's last_checkpoint says (not loaded: this runs on the
    way out of a failed run)."""
    pointer = osp.join(work_dir, 'last_checkpoint')
    named = ''
    if osp.isfile(pointer):
        with open(pointer) as f:
            named = f.read().strip()
    where = f'the last complete checkpoint, {named}' if named else f'the start: {work_dir} holds no checkpoint yet'
    return f'with --resume it continues from {where}'


def build_runner(cfg: Config):
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner
    return RUNNERS.build(cfg) if 'runner_type' in cfg else Runner.from_cfg(cfg)


def read_checkpoint(path: str):
    """The checkpoint object of a local file (weights_only, mmengine's classes allowed) or a URL; one line for a
    missing, truncated or foreign file."""
    if '://' in path:
        from mmengine.runner.checkpoint import CheckpointLoader
        from mmdavit import allow_mmengine_checkpoints
        allow_mmengine_checkpoints()
        try:
            return CheckpointLoader.load_checkpoint(path, map_location='cpu')
        except Exception as e:  # noqa: BLE001  network or format: one line, not a traceback
            raise UserError(f'{path} could not be read ({short_cause(e)})') from None
    if not osp.isfile(path):
        raise UserError(f'checkpoint file not found: {path!r}')
    try:
        return load_checkpoint_file(path)
    except RuntimeError as e:  # truncated, foreign or not a torch file: one line, not a zip error
        raise UserError(f'{path} is incomplete or not a checkpoint ({short_cause(e.__cause__ or e)})') from None


def load_model_checkpoint(model, path: str, logger=None, obj=None) -> None:
    """Loads ``path`` (``obj``: its contents, when already read) into a whole task model with mmengine's own loader:
    a checkpoint written by tools/train.py loads as is, and a bare DaViT checkpoint in any layout (official, timm,
    mmpretrain) is converted by the backbone's load hook, its classifier Linear going to the task model's head. A file
    that is neither is refused before loading."""
    from mmengine.model import is_model_wrapper
    from mmengine.runner.checkpoint import load_state_dict
    if obj is None:
        obj = read_checkpoint(path)
    model = model.module if is_model_wrapper(model) else model
    sd = obj.get('state_dict', obj) if isinstance(obj, dict) else None
    if not isinstance(sd, dict):
        raise UserError(f'{path}: holds no state dict')
    sd = {(k[len('module.'):] if k.startswith('module.') else k): v for k, v in sd.items()}
    if not set(sd) & set(model.state_dict()):
        try:
            detect_format(unwrap_state_dict(obj))
        except CheckpointFormatError as e:
            raise UserError(f'{path}: neither a checkpoint of this model nor a DaViT checkpoint: {e}') from None
    try:
        load_state_dict(model, sd, strict=False, logger=logger or 'current')
    except CheckpointFormatError as e:
        raise UserError(str(e)) from None


def check_test_checkpoint(cfg: Config, path: str, tta: bool = False, obj=None) -> None:
    """Builds the model on CPU and loads the checkpoint into it as tools/test.py does after building the Runner: a
    file that is truncated, foreign or of another model fails here, before the Runner writes its work dir."""
    from mmengine.registry import MODELS, init_default_scope
    init_default_scope(cfg.default_scope)
    model = MODELS.build(cfg.model)
    load_model_checkpoint(model.module if tta else model, path, obj=obj)


def run_main(main) -> None:
    """Runs a tool's main, turning UserError into one clear line and exit code 2."""
    try:
        main()
    except (UserError, ResumeError) as e:  # ResumeError: from the checkpoint hook's own resume search
        print(f'error: {e}', file=sys.stderr)
        sys.exit(2)
    except LostPeerError as e:
        print(f'error: {e}', file=sys.stderr)
        sys.exit(1)
    finally:  # also on UserError: the group goes before the exit
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()


def local_rank_env(args) -> None:
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
