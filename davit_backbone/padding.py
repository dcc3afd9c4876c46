"""Right/bottom zero padding to a multiple, as the official DaViT pads: shared by the plain model (davit.py, which
makes these leaves for torch.fx, since they branch on sizes) and the CPU fast paths (kernels.py).

Under a tracer or exporter (``torch.jit.trace``, the TorchScript ONNX exporter, ``torch.export`` and so ONNX's
dynamo exporter, ``torch.compile``) the pad is always recorded, with amounts computed from the input's size: a
branch on "is padding needed" would be baked in at the traced size (the graph then fails at any size that needs a
different pad) or, under ``torch.export``, become a guard that rules out the sizes that take the other branch.
Eager runs skip the zero-size pad (F.pad would still copy).
"""
import torch
import torch.nn.functional as F


def _recording() -> bool:
    if torch.jit.is_scripting():  # a scripted model keeps the branch: TorchScript sizes are dynamic anyway
        return False
    return torch.jit.is_tracing() or torch.compiler.is_compiling()


def _pad_amount(size: int, multiple: int) -> int:
    """How much to add to ``size`` to reach a multiple: ``ceil(size / m) * m - size``, written so that symbolic
    shapes (torch.export) see the padded size as ``m * ceil(size / m)``, which divides by ``m`` exactly."""
    return (size + multiple - 1) // multiple * multiple - size


def _pad_hw(x: torch.Tensor, multiple_h: int, multiple_w: int) -> torch.Tensor:
    """Zero-pads a (B, H, W, C) tensor on the bottom/right up to multiples of the given sizes."""
    pad_b = _pad_amount(x.shape[1], multiple_h)
    pad_r = _pad_amount(x.shape[2], multiple_w)
    if _recording() or pad_b > 0 or pad_r > 0:
        x = F.pad(x, [0, 0, 0, pad_r, 0, pad_b])
    return x


def _pad_image(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Zero-pads a (B, C, H, W) image on the bottom/right up to a multiple of ``multiple``."""
    pad_b = _pad_amount(x.shape[2], multiple)
    pad_r = _pad_amount(x.shape[3], multiple)
    if _recording() or pad_b > 0 or pad_r > 0:
        x = F.pad(x, [0, pad_r, 0, pad_b])
    return x


def _window_size(height: int, width: int, window_size: int, pad_small_map: bool) -> int:
    """The official model pads maps smaller than a window up to it; mmpretrain's ``pad_small_map=False`` shrinks
    the window to the map instead (a window size that depends on the input: such a model exports at its traced
    size only)."""
    if pad_small_map:
        return window_size
    return min(window_size, min(height, width))
