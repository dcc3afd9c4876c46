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
from collections import deque
from typing import Optional

from mmengine.dist import all_gather_object, get_rank, get_world_size, is_main_process
from mmengine.hooks import CheckpointHook

from .atomic_io import TMP_SUFFIX, atomic_backend_name, atomic_write
from ..registry import HOOKS
from .rng import RestoreBeforeNextBatch, rng_state, set_rng_state

__all__ = ['AtomicCheckpointHook', 'use_atomic_checkpoints', 'ATOMIC_CHECKPOINT_HOOK']

ATOMIC_CHECKPOINT_HOOK = 'mmdavit.AtomicCheckpointHook'


def use_atomic_checkpoints(cfg) -> None:
    """mmengine's plain CheckpointHook in ``cfg.default_hooks`` (or none: mmengine would add one) -> ours, with the
    same arguments, in place: for every config, whoever wrote it."""
    hooks = cfg.get('default_hooks')
    if hooks is None:
        cfg.default_hooks = hooks = {}
    if 'checkpoint' not in hooks:  # mmengine would add CheckpointHook(interval=1)
        hooks['checkpoint'] = dict(type=ATOMIC_CHECKPOINT_HOOK, interval=1)
    ckpt = hooks['checkpoint']
    if isinstance(ckpt, dict) and ckpt.get('type') in ('CheckpointHook', 'mmengine.CheckpointHook', CheckpointHook):
        ckpt['type'] = ATOMIC_CHECKPOINT_HOOK


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
            backend_args = dict(backend=atomic_backend_name())
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
            loop.dataloader_iterator = RestoreBeforeNextBatch(loop.dataloader_iterator, loop.iter, mine)
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
