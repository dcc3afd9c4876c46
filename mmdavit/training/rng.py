"""The random generators of a process (torch, numpy, python, CUDA) as weights-only loadable values, and their
restoration at the right moment of a resumed iteration-based loop: what makes a resume bit-exact."""
from __future__ import annotations

import random

import numpy as np
import torch

__all__ = ['rng_state', 'set_rng_state', 'RestoreBeforeNextBatch']


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


class RestoreBeforeNextBatch:
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
