"""Crash-safe checkpoints: mmengine's CheckpointHook with an order of operations that survives ``kill -9``.

mmengine 0.10.7 removes the oldest checkpoint *before* writing the next, writes the file in place (a kill leaves a
truncated file under a checkpoint's name) and rewrites ``last_checkpoint`` in place. ``AtomicCheckpointHook`` keeps
every argument and behaviour of ``CheckpointHook`` and changes only that order:

1. the checkpoint goes to ``<name>.tmp`` in the same directory, is flushed and fsynced, then renamed over ``<name>``
   (and the directory fsynced), so a name either holds a complete file or does not exist;
2. ``last_checkpoint`` is replaced the same way, after the rename;
3. only then are checkpoints beyond ``max_keep_ckpts`` (and a superseded ``best_*`` file) removed.

So once one checkpoint has been written, a complete one exists at every moment. A kill between 2 and 3 leaves one
surplus file; the new checkpoint still lists it in ``keep_ckpt_ids``, so mmengine's own ``before_train`` removes
it on resume.

It also makes resume exact: mmengine does not save the random number generators (torch, numpy, python; the data
augmentations, drop path and mmdet's samplers draw from them). Each checkpoint stores every rank's generator states
(tensors and plain containers: they load under ``weights_only=True``), and a resumed run restores them where the
uninterrupted run stood when it saved. Validation runs between its own save and restore of the states, so whether
a validation happened after the last save (it did in the killed run, not in the resumed one) changes nothing.

Configs name it ``type='mmdavit.AtomicCheckpointHook'``; ``tools/train.py`` swaps mmengine's plain
``CheckpointHook`` for it in every config.
"""
from __future__ import annotations

import os
import os.path as osp
import random
from collections import deque
from typing import Optional

import numpy as np
import torch
from mmengine.dist import all_gather_object, get_rank, get_world_size, is_main_process
from mmengine.fileio import LocalBackend
from mmengine.hooks import CheckpointHook
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import Registry

__all__ = ['HOOKS', 'AtomicCheckpointHook', 'AtomicLocalBackend', 'atomic_write', 'TMP_SUFFIX']

HOOKS = Registry('hook', parent=MMENGINE_HOOKS, scope='mmdavit', locations=['mmdavit.hooks'])

TMP_SUFFIX = '.tmp'
ATOMIC_BACKEND = 'mmdavit_atomic_local'


def _write_all(f, data: bytes) -> None:
    f.write(data)


def _fsync_dir(path: str) -> None:
    # the rename is durable only once the directory entry is on disk too
    try:
        fd = os.open(path or '.', os.O_RDONLY)
    except OSError:  # some filesystems do not open directories; the rename itself is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str, data) -> None:
    """Writes ``data`` (bytes or str) to ``path`` so that ``path`` never names a partial file."""
    if isinstance(data, str):
        data = data.encode('utf-8')
    path = str(path)
    tmp = path + TMP_SUFFIX
    os.makedirs(osp.dirname(path) or '.', exist_ok=True)
    try:
        with open(tmp, 'wb') as f:
            _write_all(f, data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(osp.dirname(path))


class AtomicLocalBackend(LocalBackend):
    """mmengine's local file backend whose writes go through :func:`atomic_write`. ``Runner.save_checkpoint``
    writes through the hook's ``backend_args``, so every checkpoint the hook saves (periodic and best) uses it."""

    def put(self, obj: bytes, filepath) -> None:
        atomic_write(str(filepath), obj)

    def put_text(self, obj: str, filepath, encoding: str = 'utf-8') -> None:
        atomic_write(str(filepath), obj.encode(encoding))


def _atomic_backend_name() -> str:
    # registered on first use by a hook, not at import: importing mmdavit changes nothing in mmengine
    from mmengine.fileio.backends import backends, register_backend
    if ATOMIC_BACKEND not in backends:
        register_backend(ATOMIC_BACKEND, AtomicLocalBackend)
    return ATOMIC_BACKEND


class _DeferredRemovals:
    """Stands in for the hook's file backend while mmengine's best-checkpoint logic runs: it removes the previous
    best before writing the new one; here the removals wait until the new file is complete."""

    def __init__(self, backend):
        self._backend = backend
        self.pending = []

    def remove(self, path):
        self.pending.append(path)

    def rmtree(self, path):
        self.pending.append(path)

    def __getattr__(self, name):
        return getattr(self._backend, name)


# ----------------------------------------------------------------------------------------------- RNG states
def rng_state() -> dict:
    """This process's generator states as tensors and plain values (weights-only loadable)."""
    np_state = np.random.get_state()
    state = {
        'torch': torch.get_rng_state(),
        # MT19937 keys as int64: a uint32 ndarray would need numpy's dtype classes on the unpickling allow-list
        'numpy': (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]), int(np_state[3]),
                  float(np_state[4])),
        'python': random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state['torch'])
    name, keys, pos, has_gauss, gauss = state['numpy']
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state['python']
    random.setstate((version, tuple(internal), gauss_next))
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


class _RestoreBeforeNextBatch:
    """Wraps IterBasedTrainLoop's dataloader iterator after a resume. mmengine first draws the ``skip`` batches
    already trained (that puts the sampler and the workers where they were; with ``num_workers=0`` it also spends
    the main process's generators), so the saved states may be restored only right before the first new batch."""

    def __init__(self, inner, skip: int, state: dict):
        self._inner, self._skip, self._state = inner, skip, state

    def __iter__(self):
        return self

    def __next__(self):
        if self._skip == 0 and self._state is not None:
            set_rng_state(self._state)
            self._state = None
        self._skip -= 1
        return next(self._inner)

    def __getattr__(self, name):
        return getattr(self._inner, name)


def _is_remote(path) -> bool:
    return path is not None and '://' in str(path)


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """``CheckpointHook`` (same arguments) whose checkpoints survive a kill at any moment; see the module doc.

    With ``backend_args``/``file_client_args`` or a remote ``out_dir`` the writes go where mmengine sends them
    (no temporary name and rename there): the removal order and the generator states still apply.
    """

    def __init__(self, *args, out_dir=None, backend_args: Optional[dict] = None,
                 file_client_args: Optional[dict] = None, **kwargs):
        self.atomic = backend_args is None and file_client_args is None and not _is_remote(out_dir)
        if self.atomic:
            backend_args = dict(backend=_atomic_backend_name())
        super().__init__(*args, out_dir=out_dir, backend_args=backend_args, file_client_args=file_client_args,
                         **kwargs)
        self._rng_to_save = None      # all ranks' states, for the checkpoint being written now
        self._rng_before_val = None   # this rank's states when validation began
        self._rng_loaded = None       # from the checkpoint resumed from

    # ------------------------------------------------------------------------------------------ resume
    def before_run(self, runner) -> None:
        # Auto-resume for entry points other than tools/train.py (which resolves it itself): mmengine's own search
        # trusts last_checkpoint blindly, so pick the newest checkpoint that loads instead.
        if getattr(runner, '_resume', False) and getattr(runner, '_load_from', None) is None:
            from .resume import find_resume_checkpoint
            path, why = find_resume_checkpoint(runner.work_dir, self._ckpt_dirs(runner))
            runner.logger.info(why)
            if path is not None:
                runner._load_from = path  # Runner.load_or_resume resumes from _load_from when it is set

    def _ckpt_dirs(self, runner):
        if self.out_dir is None or _is_remote(self.out_dir) or self.out_dir == runner.work_dir:
            return []
        return [osp.join(str(self.out_dir), osp.basename(runner.work_dir.rstrip(osp.sep)))]

    def before_train(self, runner) -> None:
        super().before_train(runner)
        if self.atomic and is_main_process():
            self._remove_stale_temporaries(runner)
        state, self._rng_loaded = self._rng_loaded, None
        if runner.iter == 0:  # not resumed (load_from, fine-tuning): fresh generators
            return
        if state is None:
            runner.logger.warning('resume: the checkpoint holds no random generator states (it was written by '
                                  'mmengine\'s plain CheckpointHook): the run continues, but not bit-exactly')
            return
        states = state.get('ranks', [])
        if len(states) != get_world_size():
            runner.logger.warning(
                f'resume: the checkpoint holds random generator states of {len(states)} processes, this run has '
                f'{get_world_size()}: continuing with freshly seeded generators (the run is not bit-exact)')
            return
        mine = states[get_rank()]
        loop = runner.train_loop
        if hasattr(loop, 'dataloader_iterator'):  # IterBasedTrainLoop: after its replay of the trained batches
            loop.dataloader_iterator = _RestoreBeforeNextBatch(loop.dataloader_iterator, loop.iter, mine)
        else:
            set_rng_state(mine)

    def _remove_stale_temporaries(self, runner):
        # a kill during a write leaves <name>.tmp (never read by anything); it would only take disk space
        for folder in {str(self.out_dir), runner.work_dir}:
            if not osp.isdir(folder):
                continue
            for name in os.listdir(folder):
                if name.endswith(TMP_SUFFIX) and (name[:-len(TMP_SUFFIX)].endswith('.pth')
                                                  or name == 'last_checkpoint' + TMP_SUFFIX):
                    os.remove(osp.join(folder, name))
                    runner.logger.info(f'removed {name}, the remains of a write that was interrupted')

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        self._rng_loaded = checkpoint.get('rng_state')

    # ------------------------------------------------------------------------------------------ generators
    def before_val(self, runner) -> None:
        self._rng_before_val = rng_state()

    def after_val(self, runner) -> None:
        if self._rng_before_val is not None:
            set_rng_state(self._rng_before_val)
            self._rng_before_val = None

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if self._rng_to_save is not None:
            checkpoint['rng_state'] = self._rng_to_save

    # ------------------------------------------------------------------------------------------ saving
    def _save_checkpoint_with_step(self, runner, step, meta):
        # runs on every rank (Runner.save_checkpoint itself only on rank 0): gather the generators here.
        # Inside validation (a best checkpoint triggers a re-save) the training states are the ones saved at its start
        self._rng_to_save = dict(ranks=all_gather_object(self._rng_before_val or rng_state()))
        try:
            self._save_in_safe_order(runner, step, meta)
        finally:
            self._rng_to_save = None

    def _save_in_safe_order(self, runner, step, meta):
        stale = []
        if self.max_keep_ckpts > 0 and not (self.keep_ckpt_ids and self.keep_ckpt_ids[-1] == step):
            ids = list(self.keep_ckpt_ids) + [step]
            stale = ids[:-self.max_keep_ckpts]
            self.keep_ckpt_ids = deque(ids[-self.max_keep_ckpts:], self.max_keep_ckpts)
            # the file being written still lists the ids to be removed: if the process dies before removing them,
            # mmengine's before_train trims the list to max_keep_ckpts on resume and removes those files then
            runner.message_hub.update_info('keep_ckpt_ids', ids)

        ckpt_filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir, ckpt_filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        runner.save_checkpoint(
            self.out_dir, ckpt_filename, self.file_client_args, save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler, meta=meta, by_epoch=self.by_epoch,
            backend_args=self.backend_args, **self.args)
        if self.max_keep_ckpts > 0:
            runner.message_hub.update_info('keep_ckpt_ids', list(self.keep_ckpt_ids))
        if not is_main_process():
            return
        atomic_write(osp.join(runner.work_dir, 'last_checkpoint'), str(self.last_ckpt))
        for old in stale:
            self._remove(self.file_backend.join_path(self.out_dir, self.filename_tmpl.format(old)))

    def _remove(self, path):
        if self.file_backend.isfile(path):
            self.file_backend.remove(path)
        elif self.file_backend.isdir(path):  # deepspeed checkpoints are folders
            self.file_backend.rmtree(path)

    def _save_best_checkpoint(self, runner, metrics) -> None:
        if not self.save_best:
            return
        backend = self.file_backend
        deferred = self.file_backend = _DeferredRemovals(backend)
        try:
            super()._save_best_checkpoint(runner, metrics)
        finally:
            self.file_backend = backend
        if is_main_process():
            for path in deferred.pending:
                self._remove(path)
