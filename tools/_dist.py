"""The distributed path of the tools: the CPU (gloo) process group mmengine cannot make, workers that die with
their launcher, a lost rank as one line, and the Runner (given a model built and loaded before it, when there is
one)."""
from __future__ import annotations

import contextlib
import datetime
import os
import os.path as osp
import re
import sys
from typing import Callable

import torch
import torch.distributed as dist
from mmengine.config import Config

from _cli import LostPeerError, UserError
from _config import dist_timeout


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



def build_runner(cfg: Config, model=None):
    """The config's Runner (``runner_type`` or mmengine's), building its parts so that an image that cannot be
    decoded costs a sample, not the run (mmdavit.data.unreadable_images), and mmdet's COCO metric as
    mmdet_davit.evaluation's. ``model``: a task model already built and loaded (one build and one checkpoint read,
    where a tool has done both to check the input first)."""
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner
    from mmdavit.data.unreadable_images import skipping_unreadable_images
    runner_cls = RUNNERS.get(cfg.runner_type) if 'runner_type' in cfg else Runner
    runner_cls = skipping_unreadable_images(runner_cls, cfg.get('corrupt_images'))
    if cfg.get('default_scope') == 'mmdet':
        from mmdet_davit.evaluation import naming_coco_metric_keys
        runner_cls = naming_coco_metric_keys(runner_cls)
    if model is not None:
        built = model

        class _Prebuilt(runner_cls):
            def build_model(self, model_cfg):
                return built

        runner_cls = _Prebuilt
    return runner_cls.from_cfg(cfg)
