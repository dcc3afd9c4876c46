"""Writes that never leave a partial file under the final name: temporary name, fsync, rename, directory fsync.

``atomic_write`` is the primitive; ``AtomicLocalBackend`` is mmengine's local file backend with its writes going
through it (registered on first use, as ``mmdavit_atomic_local``), which is how ``AtomicCheckpointHook`` makes
``Runner.save_checkpoint`` atomic without copying it.
"""
from __future__ import annotations

import os
import os.path as osp

from mmengine.fileio import LocalBackend

__all__ = ['TMP_SUFFIX', 'atomic_write', 'AtomicLocalBackend', 'atomic_backend_name']

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


def atomic_backend_name() -> str:
    # registered on first use by a hook, not at import: importing mmdavit changes nothing in mmengine
    from mmengine.fileio.backends import backends, register_backend
    if ATOMIC_BACKEND not in backends:
        register_backend(ATOMIC_BACKEND, AtomicLocalBackend)
    return ATOMIC_BACKEND
