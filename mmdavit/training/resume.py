"""Which checkpoint ``--resume`` continues from: the newest one of the run that is complete and loads.

mmengine's auto-resume reads ``last_checkpoint`` and trusts it: a name of a deleted file crashes the run, a missing
``last_checkpoint`` starts it over silently next to perfectly good checkpoints. Here ``last_checkpoint`` is taken
when the file it names loads; otherwise the newest ``epoch_*.pth`` / ``iter_*.pth`` that loads; and when checkpoints
exist but none loads, :class:`ResumeError` names them instead of starting from scratch.
"""
from __future__ import annotations

import os
import os.path as osp
import re
from typing import Iterable, List, Optional, Tuple

__all__ = ['ResumeError', 'check_resumable', 'load_checkpoint_file', 'find_resume_checkpoint', 'CKPT_NAME']

CKPT_NAME = re.compile(r'^(epoch|iter)_(\d+)\.pth$')


class ResumeError(RuntimeError):
    """No checkpoint to resume from although the run has some, or a given one is not a training checkpoint.
    The message is one line naming the files and what to do."""


# load_checkpoint_file: kept for 0.1's callers; the reader is read_checkpoint
from ..checkpoints.allow_list import load_checkpoint_file  # noqa: E402,F401
from ..checkpoints.reader import CheckpointError, read_checkpoint  # noqa: E402


def check_resumable(path: str) -> Tuple[int, int]:
    """Returns (epoch, iter) of a complete training checkpoint; ResumeError (one line) for anything else.

    Read through the one gate, memory-mapped: only ``meta`` is looked at here, and mmengine reads the tensors when it
    resumes, so the file is read whole once."""
    if not osp.isfile(path):
        raise ResumeError(f'{path}: no such file')
    try:
        ckpt = read_checkpoint(path, mmap=True)
    except CheckpointError as e:  # the gate's one wording
        raise ResumeError(str(e)) from None
    meta = ckpt.get('meta') if isinstance(ckpt, dict) else None
    if not isinstance(meta, dict) or 'state_dict' not in ckpt or not {'epoch', 'iter'} <= set(meta):
        raise ResumeError(f'{path} holds weights but no training state (meta epoch/iter): it was not written by '
                          f'tools/train.py; start from these weights instead (load_from={path})')
    return int(meta['epoch']), int(meta['iter'])


def _candidates(dirs: Iterable[str], exclude: Optional[str]) -> List[str]:
    """epoch_*.pth / iter_*.pth in ``dirs``, newest first: by number within a kind; when both kinds are present (the
    run switched between by_epoch settings) the kind written last comes first."""
    kinds = {}
    for d in dirs:
        if not osp.isdir(d):
            continue
        for name in os.listdir(d):
            m = CKPT_NAME.match(name)
            path = osp.join(d, name)
            if m and osp.isfile(path) and (exclude is None or osp.abspath(path) != osp.abspath(exclude)):
                kinds.setdefault(m.group(1), []).append((int(m.group(2)), path))
    order = sorted(kinds.values(), key=lambda files: max(osp.getmtime(p) for _, p in files), reverse=True)
    return [p for files in order for _, p in sorted(files, reverse=True)]


def find_resume_checkpoint(work_dir: str, extra_dirs: Iterable[str] = ()) -> Tuple[Optional[str], str]:
    """Returns (path or None, a line saying which and why) for ``--resume`` without a path; None means the run has no
    checkpoint at all.

    Raises ResumeError when checkpoints exist but none loads (or ``last_checkpoint`` names a file that is gone and
    nothing else loads): starting over would silently throw the run away.
    """
    bad = []  # one line per unusable file, in the order tried
    named = None
    pointer = osp.join(work_dir, 'last_checkpoint')
    why = 'no last_checkpoint'
    if osp.isfile(pointer):
        with open(pointer) as f:
            named = f.read().strip() or None
        if named is None:
            bad.append(f'{pointer} is empty')
        else:
            try:
                epoch, it = check_resumable(named)
                return named, f'resuming from {named} (epoch {epoch}, iter {it}): last_checkpoint names it and it loads'
            except ResumeError as e:
                bad.append(f'last_checkpoint names {e}')
        why = 'last_checkpoint is unusable'
    for path in _candidates([work_dir, *extra_dirs], exclude=named):
        try:
            epoch, it = check_resumable(path)
        except ResumeError as e:
            bad.append(str(e))
            continue
        skipped = f'; skipped: {"; ".join(bad)}' if bad else ''
        return path, (f'resuming from {path} (epoch {epoch}, iter {it}): the newest checkpoint that loads '
                      f'({why}{skipped})')
    if bad:
        raise ResumeError(f'no checkpoint in {work_dir} can be resumed from: {"; ".join(bad)}. Move the bad files '
                          '(and last_checkpoint) away to start over, or name the checkpoint to resume from')
    return None, f'no checkpoint in {work_dir}: starting from scratch'
