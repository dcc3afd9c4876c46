"""The deployed folder's contract, read and written here alone: ``DIR/model.onnx`` and ``DIR/deploy.json`` (format
and version, task, the graph's file, inputs and outputs, preprocessing, class names and palette, the export's
provenance and verification). ``tools/deploy.py`` writes it through ``write``, the runtime reads it through
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
TASKS = ('mmpretrain', 'mmseg', 'mmdet')
REQUIRED = ('format', 'task', 'model', 'input', 'outputs', 'preprocess')
REQUIRED_INPUT = ('min_size', 'max_size')


def meta_path(folder: str) -> str:
    return osp.join(folder, META_FILE)


def new_meta(task: str, *, outputs: Sequence[str], preprocess: dict, classes: Sequence[str], palette,
             min_size: int, max_size: int, source: dict, verification: list, size_input: Optional[str] = None,
             postprocess: Optional[dict] = None) -> dict:
    """deploy.json's content for a graph whose first input is the preprocessed batch; ``size_input``: the name of
    a second input taking each image's (h, w) before padding (a detector's)."""
    inputs = dict(name='input', layout='NCHW float32, preprocessed (see preprocess)', min_size=min_size,
                  max_size=max_size, dynamic=['batch', 'height', 'width'])
    if size_input:
        inputs['size_input'] = size_input  # (B, 2) int64
    meta = dict(format=FORMAT, task=task, model=MODEL_FILE, input=inputs, outputs=list(outputs),
                preprocess=preprocess, classes=list(classes),
                palette=[list(c) for c in palette] if palette is not None else None,
                source=source, verification=verification)
    if postprocess is not None:
        meta['postprocess'] = postprocess
    return meta


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
