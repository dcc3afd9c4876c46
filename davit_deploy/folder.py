"""The deployed folder's contract, read and written here alone: ``DIR/model.onnx`` and ``DIR/deploy.json`` (format
and version, task, the graph's file, inputs and outputs, preprocessing, class names and palette, the export's
provenance and verification, and since 2026-12 the onnxruntime session settings chosen for the task: ``runtime``;
an int8 folder (``tools/deploy.py --int8``) holds ``model-int8.onnx`` instead, named by ``model``, and says how it
was quantised and verified under ``quantization``).
``tools/deploy.py`` writes it through ``write``, the runtime reads it through
``read``; both check the same keys, so a folder the writer makes is one the reader takes, and a folder of another
format, or from a newer version of the writer, is refused before a session is opened."""
import json
import os.path as osp
from typing import Optional, Sequence

import numpy as np

from .errors import DeployFolderError

FORMAT_NAME = 'mmdavit-deploy'
VERSION = 1
FORMAT = f'{FORMAT_NAME}/{VERSION}'
META_FILE = 'deploy.json'
MODEL_FILE = 'model.onnx'
INT8_MODEL_FILE = 'model-int8.onnx'  # the graph of a folder written with --int8: its name says what it is
MODEL_FILES = (MODEL_FILE, INT8_MODEL_FILE)
# deploy.json's "quantization" (int8 folders only; a reader of version 1 that predates it opens "model" all the
# same, and onnxruntime runs the int8 graph): "method" one of QUANT_METHODS, the rest is the record of how
# (mmdavit.export.quantize's settings), on what, and within which tolerances it was verified
QUANT_METHODS = ('dynamic', 'static')
TASKS = ('mmpretrain', 'mmseg', 'mmdet')
REQUIRED = ('format', 'task', 'model', 'input', 'outputs', 'preprocess')
REQUIRED_INPUT = ('min_size', 'max_size')

# deploy.json's "runtime": {"onnxruntime": {...}}: the session settings the folder runs with. A folder written before
# the key existed reads as DEFAULT_SESSION, which is how its sessions were opened then (onnxruntime's defaults).
# intra_op_num_threads: 0 = onnxruntime's own choice (its count of physical cores), -1 = every CPU this process may
# run on, N = N; tools/infer.py --threads overrides it. allow_spinning: whether idle pool threads spin waiting for
# work (onnxruntime's default), which costs time where the CPUs are shared.
LEVELS = ('disable', 'basic', 'extended', 'all')
EXECUTION_MODES = ('sequential', 'parallel')
DEFAULT_SESSION = dict(graph_optimization_level='all', intra_op_num_threads=0, inter_op_num_threads=0,
                       execution_mode='sequential', enable_cpu_mem_arena=True, enable_mem_pattern=True,
                       allow_spinning=True)
# what tools/deploy.py writes, per task, measured interleaved with eager PyTorch on an AVX2 EPYC (2 vCPUs shared with
# other jobs; docs/deployment.md#speed): every CPU the process may use, one inter-op thread (sequential execution), all
# of onnxruntime's graph optimisations (its fusions: BiasGelu, MatMul with scale, NCHWc convolutions; applied when
# the session opens, since the NCHWc blocking depends on the CPU's vector width). The classifier's pool threads sleep
# when idle (1.2x faster than spinning there); the segmenter's and detector's spin (within the noise of sleeping, a
# few percent ahead). The detector's shapes after NMS change from image to image: no memory pattern to plan.
TASK_SESSION = {
    'mmpretrain': dict(DEFAULT_SESSION, intra_op_num_threads=-1, inter_op_num_threads=1, allow_spinning=False),
    'mmseg': dict(DEFAULT_SESSION, intra_op_num_threads=-1, inter_op_num_threads=1),
    'mmdet': dict(DEFAULT_SESSION, intra_op_num_threads=-1, inter_op_num_threads=1, enable_mem_pattern=False),
}


def meta_path(folder: str) -> str:
    return osp.join(folder, META_FILE)


def new_meta(task: str, *, outputs: Sequence[str], preprocess: dict, classes: Sequence[str], palette,
             min_size: int, max_size: int, source: dict, verification: list, size_input: Optional[str] = None,
             postprocess: Optional[dict] = None, session: Optional[dict] = None,
             quantization: Optional[dict] = None) -> dict:
    """deploy.json's content for a graph whose first input is the preprocessed batch; ``size_input``: the name of
    a second input taking each image's (h, w) before padding (a detector's); ``quantization``: an int8 graph's
    record (``model`` is then ``INT8_MODEL_FILE``)."""
    inputs = dict(name='input', layout='NCHW float32, preprocessed (see preprocess)', min_size=min_size,
                  max_size=max_size, dynamic=['batch', 'height', 'width'])
    if size_input:
        inputs['size_input'] = size_input  # (B, 2) int64
    meta = dict(format=FORMAT, task=task, model=INT8_MODEL_FILE if quantization else MODEL_FILE, input=inputs,
                outputs=list(outputs),
                preprocess=preprocess, classes=list(classes),
                palette=[list(c) for c in palette] if palette is not None else None,
                source=source, verification=verification)
    if postprocess is not None:
        meta['postprocess'] = postprocess
    meta['runtime'] = dict(onnxruntime=dict(session if session is not None else TASK_SESSION[task]))
    if quantization is not None:
        meta['quantization'] = dict(quantization)
    return meta


def _check_session(given) -> Optional[str]:
    """What is off in deploy.json's runtime.onnxruntime, or None. Keys this version does not know are left alone (a
    newer writer's hints), known ones must have a value this runtime can apply."""
    if not isinstance(given, dict):
        return f'runtime.onnxruntime is a JSON {type(given).__name__}, not an object'
    for key, value in given.items():
        if key == 'graph_optimization_level' and value not in LEVELS:
            return f'runtime.onnxruntime.{key} {value!r} (one of {", ".join(LEVELS)})'
        if key == 'execution_mode' and value not in EXECUTION_MODES:
            return f'runtime.onnxruntime.{key} {value!r} (one of {", ".join(EXECUTION_MODES)})'
        if key in ('intra_op_num_threads', 'inter_op_num_threads') and (
                type(value) is not int or value < (-1 if key.startswith('intra') else 0)):
            return f'runtime.onnxruntime.{key} {value!r} (a whole number, -1 or more)'
        if key in ('enable_cpu_mem_arena', 'enable_mem_pattern', 'allow_spinning') and type(value) is not bool:
            return f'runtime.onnxruntime.{key} {value!r} (true or false)'
    return None


def _check_model(meta: dict) -> Optional[str]:
    """What is off in deploy.json's model and quantization, or None: the graph is one of MODEL_FILES, in the folder
    (no path), and an int8 graph comes with its record."""
    model, quant = meta.get('model'), meta.get('quantization')
    if model not in MODEL_FILES:
        return f'model {model!r} (one of {", ".join(MODEL_FILES)})'
    if quant is None:
        return f'model {model!r} without a quantization record' if model == INT8_MODEL_FILE else None
    if not isinstance(quant, dict):
        return f'quantization is a JSON {type(quant).__name__}, not an object'
    if quant.get('method') not in QUANT_METHODS:
        return f'quantization.method {quant.get("method")!r} (one of {", ".join(QUANT_METHODS)})'
    if model != INT8_MODEL_FILE:
        return f'quantization with model {model!r} (an int8 graph is {INT8_MODEL_FILE})'
    return None


def session_settings(meta: dict) -> dict:
    """onnxruntime's settings for a checked deploy.json: its runtime.onnxruntime over DEFAULT_SESSION, so a folder
    written before the key existed runs as it did then."""
    given = (meta.get('runtime') or {}).get('onnxruntime') or {}
    return {k: given.get(k, v) for k, v in DEFAULT_SESSION.items()}


def check(meta, folder: str) -> dict:
    """``meta`` if this runtime reads it; DeployFolderError saying what is off otherwise."""
    path = meta_path(folder)
    if not isinstance(meta, dict):
        raise DeployFolderError(folder, path, DeployFolderError.UNREADABLE, f'a JSON {type(meta).__name__}, '
                                'not an object')
    fmt = meta.get('format')
    name, _, version = str(fmt).partition('/')
    if name == FORMAT_NAME and version.isdigit() and int(version) > VERSION:
        raise DeployFolderError(folder, path, DeployFolderError.NEWER, f'{fmt}; this runtime reads {FORMAT}')
    if fmt != FORMAT:
        raise DeployFolderError(folder, path, DeployFolderError.FOREIGN, f'format {fmt!r}')
    if meta.get('task') not in TASKS:
        raise DeployFolderError(folder, path, DeployFolderError.FOREIGN, f'task {meta.get("task")!r}')
    missing = [k for k in REQUIRED if k not in meta]
    missing += [f'input.{k}' for k in REQUIRED_INPUT if k not in (meta.get('input') or {})]
    if missing:
        raise DeployFolderError(folder, path, DeployFolderError.INCOMPLETE, ', '.join(missing))
    runtime = meta.get('runtime', {})
    off = (f'runtime is a JSON {type(runtime).__name__}, not an object' if not isinstance(runtime, dict)
           else _check_session(runtime.get('onnxruntime', {}))) or _check_model(meta)
    if off:
        raise DeployFolderError(folder, path, DeployFolderError.UNREADABLE, off)
    return meta


def write(folder: str, meta: dict) -> str:
    """``folder``/deploy.json; returns its path."""
    check(meta, folder)
    with open(meta_path(folder), 'w') as f:
        json.dump(meta, f, indent=1)
    return meta_path(folder)


def read(folder: str) -> dict:
    path = meta_path(folder)
    if not osp.isfile(path):
        raise DeployFolderError(folder, path, DeployFolderError.MISSING)
    try:
        with open(path) as f:
            meta = json.load(f)
    except (OSError, ValueError) as e:
        raise DeployFolderError(folder, path, DeployFolderError.UNREADABLE, str(e)) from None
    return check(meta, folder)


def palette_for(classes: Sequence[str], *candidates) -> Optional[list]:
    """The first candidate palette with one colour per class, as (r, g, b) int tuples; else colours drawn from a
    fixed seed, so that a class keeps its colour from run to run and in both inference paths. Without class names:
    the first palette given, or None (labels are drawn by number)."""
    for p in candidates:
        if isinstance(p, (list, tuple)) and len(p) and (len(p) == len(classes) or not classes):
            return [tuple(int(c) for c in rgb) for rgb in p]
    if not classes:
        return None
    return [tuple(rgb) for rgb in np.random.RandomState(0).randint(0, 256, (len(classes), 3)).tolist()]
