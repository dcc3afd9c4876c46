"""The test pipelines' geometry and the data preprocessors' normalisation, as mmcv, mmseg and mmpretrain apply them
(their rounding and interpolation rules, checked against them by tests/davit_deploy/test_runtime.py)."""
import cv2
import numpy as np

from .errors import InputSizeError

_CV2 = {'nearest': cv2.INTER_NEAREST, 'bilinear': cv2.INTER_LINEAR, 'bicubic': cv2.INTER_CUBIC,
        'area': cv2.INTER_AREA, 'lanczos': cv2.INTER_LANCZOS4}


def _resize(img: np.ndarray, size, interpolation: str, backend: str) -> np.ndarray:
    """``mmcv.imresize``: size is (w, h)."""
    if backend == 'pillow':
        from PIL import Image
        codes = {'nearest': Image.NEAREST, 'bilinear': Image.BILINEAR, 'bicubic': Image.BICUBIC,
                 'box': Image.BOX, 'lanczos': Image.LANCZOS, 'hamming': Image.HAMMING}
        return np.array(Image.fromarray(img).resize(tuple(size), codes[interpolation]))
    return cv2.resize(img, tuple(size), interpolation=_CV2[interpolation])


def _rescale_size(w: int, h: int, scale) -> tuple:
    """``mmcv.rescale_size`` for a (w, h) bound: the largest size of the same aspect within it."""
    factor = min(max(scale) / max(h, w), min(scale) / min(h, w))
    return int(w * factor + 0.5), int(h * factor + 0.5)


def apply_step(img: np.ndarray, step: dict) -> np.ndarray:
    h, w = img.shape[:2]
    kind = step['type']
    if kind == 'resize':
        size = _rescale_size(w, h, step['scale']) if step['keep_ratio'] else tuple(step['scale'])
        return _resize(img, size, step['interpolation'], step['backend'])
    if kind == 'resize_edge':  # mmpretrain's ResizeEdge
        s, edge = step['scale'], step['edge']
        if (edge == 'short' and w < h) or (edge == 'long' and w > h) or edge == 'width':
            size = (s, int(s * h / w))
        else:
            size = (int(s * w / h), s)
        return _resize(img, size, step['interpolation'], step['backend'])
    if kind == 'center_crop':  # mmcv's CenterCrop without auto_pad
        cw, ch = min(step['size'][0], w), min(step['size'][1], h)
        y1, x1 = max(0, int(round((h - ch) / 2.))), max(0, int(round((w - cw) / 2.)))
        return img[y1:min(h, y1 + ch), x1:min(w, x1 + cw)]
    raise ValueError(f'unknown preprocessing step {kind!r}')


def preprocess(img_bgr: np.ndarray, recipe: dict):
    """BGR uint8 image -> ((1, 3, H, W) float32 batch, the (h, w) of the image before padding)."""
    img = img_bgr
    for step in recipe['pipeline']:
        img = apply_step(img, step)
    x = img.astype(np.float32)
    if recipe['to_rgb']:
        x = x[..., ::-1]
    if recipe['mean'] is not None:
        x = (x - np.asarray(recipe['mean'], np.float32)) / np.asarray(recipe['std'], np.float32)
    x = np.ascontiguousarray(x.transpose(2, 0, 1))[None]
    h, w = x.shape[2:]
    pad = recipe.get('pad')
    if pad:
        th, tw = (pad['size'][1], pad['size'][0]) if pad.get('size') else (h, w)  # size is (w, h)
        if pad.get('size_divisor'):
            d = pad['size_divisor']
            th, tw = -(-th // d) * d, -(-tw // d) * d
        x = np.pad(x, ((0, 0), (0, 0), (0, max(0, th - h)), (0, max(0, tw - w))), constant_values=pad['value'])
    return x, (h, w)


def check_size(x: np.ndarray, lo: int, hi: int, name: str = 'the image') -> None:
    """Refuses a preprocessed batch with a side outside the graph's ``lo``..``hi``: the exported graph was checked
    within that range only."""
    if not (lo <= x.shape[2] <= hi and lo <= x.shape[3] <= hi):
        raise InputSizeError(name, x.shape[2:], lo, hi)
