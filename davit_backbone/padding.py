"""Right/bottom zero padding to a multiple, as the official DaViT pads: shared by the plain model (davit.py, which
makes these leaves for torch.fx, since they branch on sizes) and the CPU fast paths (kernels.py)."""
import torch
import torch.nn.functional as F


def _pad_hw(x: torch.Tensor, multiple_h: int, multiple_w: int) -> torch.Tensor:
    """Zero-pads a (B, H, W, C) tensor on the bottom/right up to multiples of the given sizes."""
    pad_b = (multiple_h - x.shape[1] % multiple_h) % multiple_h
    pad_r = (multiple_w - x.shape[2] % multiple_w) % multiple_w
    if pad_b > 0 or pad_r > 0:
        x = F.pad(x, [0, 0, 0, pad_r, 0, pad_b])
    return x


def _pad_image(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Zero-pads a (B, C, H, W) image on the bottom/right up to a multiple of ``multiple``."""
    pad_b = (multiple - x.shape[2] % multiple) % multiple
    pad_r = (multiple - x.shape[3] % multiple) % multiple
    if pad_b > 0 or pad_r > 0:
        x = F.pad(x, [0, pad_r, 0, pad_b])
    return x


def _window_size(height: int, width: int, window_size: int, pad_small_map: bool) -> int:
    """The official model pads maps smaller than a window up to it; mmpretrain's ``pad_small_map=False`` shrinks
    the window to the map instead."""
    if pad_small_map:
        return window_size
    return min(window_size, min(height, width))
