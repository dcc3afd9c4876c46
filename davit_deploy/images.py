"""The images a command is given (one file, or the images directly inside a folder) and their decoding, for both
inference paths and the export's verification, so that all three take the same files."""
import os
import os.path as osp

import cv2
import numpy as np

from .errors import ImageError

IMAGE_EXTS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')


def list_images(path: str) -> list:
    """``path`` itself, or the images directly inside the folder ``path`` in name order (not recursive)."""
    if osp.isdir(path):
        names = sorted(n for n in os.listdir(path) if n.lower().endswith(IMAGE_EXTS) and osp.isfile(osp.join(path, n)))
        if not names:
            raise ImageError(path, 'no images', f'no images ({", ".join(IMAGE_EXTS)}) directly inside the folder '
                             f'{path!r}')
        return [osp.join(path, n) for n in names]
    if osp.isfile(path):
        return [path]
    raise ImageError(path, 'not found', f'image or folder not found: {path!r}')


def read_image(path: str) -> np.ndarray:
    """BGR uint8, as mmcv's LoadImageFromFile (cv2 backend) decodes."""
    data = np.fromfile(path, dtype=np.uint8) if osp.isfile(path) else None
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data is not None and data.size else None
    if img is None:
        raise ImageError(path, 'undecodable', f'cannot decode image {path!r}: not an image, or a damaged file')
    return img
