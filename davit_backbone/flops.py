"""FLOP counting shared by tools/get_flops.py and tools/benchmark.py.

Counter: ``torch.utils.flop_counter.FlopCounterMode`` (PyTorch's own). It counts matrix products, convolutions and
``scaled_dot_product_attention`` (both of its products) at dispatch level, so it needs no tracing and sees the
attention that fvcore's tracer skips. It reports 2 FLOPs per multiply-add; like the DaViT/Swin papers and
fvcore/mmengine, we report multiply-adds, i.e. half of its total. Element-wise ops, norms, softmax and GELU are not
counted (as in those papers' tables).
"""
from __future__ import annotations

from typing import Callable, Dict, Tuple

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from . import kernels


def _sdpa_cpu_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


# SDPA's CPU kernel is missing from PyTorch's registry (CUDA's flash/efficient/cudnn kernels are in it), so without
# this every CPU count would leave attention out.
_EXTRA = {}
if hasattr(torch.ops.aten, '_scaled_dot_product_flash_attention_for_cpu'):
    _EXTRA[torch.ops.aten._scaled_dot_product_flash_attention_for_cpu] = _sdpa_cpu_flops


def count_macs(fn: Callable, *args, **kwargs) -> Tuple[float, Dict[str, float]]:
    """Runs ``fn(*args, **kwargs)`` once under no_grad and returns (total multiply-adds, per-op multiply-adds).

    DaViT runs its plain forward here (``kernels.disabled()``): the counter then sees the model's own matrix
    products, whatever fused kernels the CPU fast path would call instead."""
    counter = FlopCounterMode(display=False, custom_mapping=_EXTRA)
    with torch.no_grad(), kernels.disabled(), counter:
        fn(*args, **kwargs)
    per_op = {str(op).split('.')[1] if '.' in str(op) else str(op): n / 2 for op, n in counter.get_flop_counts().get('Global', {}).items()}
    return counter.get_total_flops() / 2, per_op
