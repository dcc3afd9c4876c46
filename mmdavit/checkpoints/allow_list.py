"""mmengine's checkpoints under torch >= 2.6's ``weights_only=True`` loading: the project's one allow-list.

torch >= 2.6 unpickles with ``weights_only=True`` by default, which refuses every class not on an allow-list.
Checkpoints written by mmengine hold numpy arrays/scalars (in ``meta`` and ``message_hub``) and mmengine's
``HistoryBuffer``; mmengine 0.10.7 calls ``torch.load`` without ``weights_only``, so resume and test fail with
``UnpicklingError: Weights only load failed``. Rather than turning the safety off (``weights_only=False`` executes
arbitrary pickled code), we allow exactly the globals those checkpoints need, and only while one of our readers
reads (:func:`mmengine_checkpoint_globals`): nothing is added to torch's allow-list for the rest of the process.
"""
from __future__ import annotations

import contextlib
import importlib
import warnings
from typing import Any, List

import torch

__all__ = ['mmengine_checkpoint_globals', 'allow_mmengine_checkpoints', 'load_checkpoint_file', 'CHECKPOINT_GLOBALS']

# module path -> attribute names. Only data containers, nothing callable with side effects.
CHECKPOINT_GLOBALS = {
    'numpy': ['ndarray', 'dtype'],
    'numpy.core.multiarray': ['_reconstruct', 'scalar'],
    'numpy._core.multiarray': ['_reconstruct', 'scalar'],
    'numpy.dtypes': ['Float64DType', 'Float32DType', 'Float16DType', 'Int64DType', 'Int32DType', 'Int16DType',
                     'Int8DType', 'UInt8DType', 'BoolDType', 'StrDType', 'ObjectDType'],
    'mmengine.logging.history_buffer': ['HistoryBuffer'],
    'collections': ['OrderedDict', 'defaultdict'],
    'builtins': ['set', 'slice'],
    'argparse': ['Namespace'],  # timm's train.py stores its args in checkpoints
}


def _history_buffer_getattr(obj, name):
    """Stands in for ``builtins.getattr`` while unpickling: mmengine pickles HistoryBuffer statistics as bound methods
    (``getattr(buffer, 'min')``). Allowing the real getattr would hand any pickle arbitrary attribute access; this
    one resolves public attributes of the HistoryBuffer class and its objects only."""
    import pickle
    try:
        from mmengine.logging.history_buffer import HistoryBuffer
    except Exception:  # pragma: no cover - without mmengine nothing legitimate pickles getattr
        HistoryBuffer = ()
    if (obj is HistoryBuffer or isinstance(obj, HistoryBuffer)) and isinstance(name, str) and not name.startswith('_'):
        return getattr(obj, name)
    raise pickle.UnpicklingError(f'checkpoint asks for getattr({type(obj).__name__}, {name!r}); refused')


def _resolve_globals() -> List[Any]:
    """(object, the name a pickle calls it by) for each allowed global. The name is given rather than read from the
    object: a file written under numpy 1 names ``numpy.core.multiarray._reconstruct``, which numpy 2 keeps as an
    alias of ``numpy._core``, but the function says it lives in ``numpy._core``: torch's own naming would not match
    the pickle."""
    found = []
    for module, names in CHECKPOINT_GLOBALS.items():
        try:
            with warnings.catch_warnings():  # numpy 2's notice that numpy.core is deprecated
                warnings.simplefilter('ignore', DeprecationWarning)
                mod = importlib.import_module(module)
        except Exception:  # numpy 1 vs 2 naming, mmengine absent: skip what does not exist here
            continue
        found += [(getattr(mod, n), f'{module}.{n}') for n in names if hasattr(mod, n)]
    return found + [(_history_buffer_getattr, 'builtins.getattr'), (_history_buffer_getattr, '__builtin__.getattr')]


@contextlib.contextmanager
def mmengine_checkpoint_globals():
    """torch's weights-only allow-list extended by :data:`CHECKPOINT_GLOBALS` for the ``with`` block only: the
    readers (``mmdavit.checkpoints.reader.read_checkpoint`` and the mmengine scheme that uses it) read inside it."""
    if not hasattr(torch.serialization, 'safe_globals'):  # torch < 2.5 loads these without an allow-list
        yield
        return
    with torch.serialization.safe_globals(_resolve_globals()):
        yield


def allow_mmengine_checkpoints() -> None:
    """Deprecated: adds the allow-list to torch's for the whole process, for code outside this package that calls
    ``torch.load`` itself on mmengine's checkpoints. Nothing in this package calls it; its readers use
    :func:`mmengine_checkpoint_globals`."""
    if hasattr(torch.serialization, 'add_safe_globals'):
        torch.serialization.add_safe_globals(_resolve_globals())


def load_checkpoint_file(path: str, map_location='cpu'):
    """Thin alias kept for callers of 0.1: ``davit_backbone.load_file`` inside :func:`mmengine_checkpoint_globals`;
    its errors are ``load_file``'s. The tools' gate is ``mmdavit.checkpoints.reader.read_checkpoint``."""
    from davit_backbone import load_file
    with mmengine_checkpoint_globals():
        return load_file(path, map_location)
