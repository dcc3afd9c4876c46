"""COCO's run-length encoding of a binary mask, the ``counts`` string pycocotools writes (``mask.encode``), in numpy:
predictions.json keeps the PyTorch path's schema without pycocotools."""
import numpy as np


def encode(mask: np.ndarray) -> dict:
    h, w = mask.shape
    flat = np.asarray(mask, dtype=bool).ravel(order='F')  # column-major, as COCO
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        counts = [0] + counts  # runs start with zeros
    return dict(size=[int(h), int(w)], counts=_to_string(counts))


def _to_string(counts) -> str:
    """pycocotools' ``rleToString``: each count (after the first two, as a difference to the one two before) in
    5-bit groups, low first, 0x20 marking that more follow, offset by 48 into printable characters."""
    out = []
    for i, x in enumerate(counts):
        x = int(x) - (int(counts[i - 2]) if i > 2 else 0)
        more = True
        while more:
            c = x & 0x1f
            x >>= 5
            more = (x != -1) if c & 0x10 else (x != 0)
            out.append(chr((c | 0x20 if more else c) + 48))
    return ''.join(out)
