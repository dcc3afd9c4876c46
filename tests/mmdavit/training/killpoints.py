"""Test-only (imported through a test config's custom_imports): stalls a training run at a chosen moment and drops
a marker file, so that the test can ``kill -9`` the run exactly there, not whenever a poll happens to notice.

KILLPOINT_SAVE=epoch_2.pth  stall with half of that checkpoint written to its temporary file
KILLPOINT_ITER=5            stall after the 5th training iteration (between two saves)
KILLPOINT_MARK=PATH         the marker, created once stalled

Without these variables it does nothing, so reference runs use the same config.
"""
import os
import time

from mmengine.hooks import Hook
from mmengine.registry import HOOKS

import mmdavit.training.atomic_io as atomic

SAVE = os.environ.get('KILLPOINT_SAVE')
ITER = int(os.environ.get('KILLPOINT_ITER') or 0)
MARK = os.environ.get('KILLPOINT_MARK')


def _stall():
    with open(MARK, 'w'):
        pass
    time.sleep(3600)


if SAVE:
    _write_all = atomic._write_all

    def _half_then_stall(f, data):
        if os.path.basename(f.name) == SAVE + atomic.TMP_SUFFIX:
            f.write(data[:len(data) // 2])
            f.flush()
            _stall()
        _write_all(f, data)

    atomic._write_all = _half_then_stall


@HOOKS.register_module()
class KillPoint(Hook):
    priority = 'LOWEST'  # after the checkpoint hook: an iteration's save, if any, is complete

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if ITER and runner.iter + 1 == ITER:
            _stall()
