"""davit_backbone/flops.py (what tools/get_flops.py and tools/benchmark.py count) against a count written out by hand
from the architecture: every conv, Linear and attention product, padding included."""
import math

import pytest
import torch

from davit_backbone import DaViT, resolve_arch
from davit_backbone.flops import count_macs


def _analytic_macs(arch, height, width, num_classes=0, window=7, mlp_ratio=4):
    a = resolve_arch(arch)
    dims, depths, heads = a['embed_dims'], a['depths'], a['num_heads']
    h, w = math.ceil(height / 4), math.ceil(width / 4)
    macs = h * w * dims[0] * 3 * 7 * 7  # stem conv
    for i, (c, depth, nh) in enumerate(zip(dims, depths, heads)):
        if i:
            h, w = math.ceil(h / 2), math.ceil(w / 2)
            macs += h * w * c * dims[i - 1] * 2 * 2  # downsample conv
        n = h * w
        hp, wp = math.ceil(h / window) * window, math.ceil(w / window) * window
        per_sub = 2 * n * c * 9 + n * (4 * c * c + 2 * mlp_ratio * c * c)  # two CPEs, qkv + proj, MLP
        spatial = per_sub + (hp * wp - n) * 4 * c * c + 2 * hp * wp * window * window * c  # padded tokens, QK^T, AV
        channel = per_sub + 2 * n * c * (c // nh)  # K^T V and its product with Q^T, per head
        macs += depth * (spatial + channel)
    return macs + dims[-1] * num_classes


@pytest.mark.parametrize('arch,hw', [('tiny', (224, 224)), ('tiny', (97, 131)), ('base', (64, 200))])
def test_counted_macs_equal_the_hand_count(arch, hw):
    model = DaViT(arch, num_classes=1000).eval()
    counted, per_op = count_macs(model, torch.randn(1, 3, *hw))
    assert counted == _analytic_macs(arch, *hw, num_classes=1000), per_op


def test_paper_figures_come_out():
    """The paper's table: 4.5G / 8.8G / 15.5G at 224x224."""
    assert [round(_analytic_macs(a, 224, 224, 1000) / 1e9, 1) for a in ('tiny', 'small', 'base')] == [4.5, 8.8, 15.5]
