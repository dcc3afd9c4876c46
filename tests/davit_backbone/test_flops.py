"""davit_backbone/flops.py (what tools/get_flops.py and tools/benchmark.py count) against a count written out by hand
from the architecture: every conv, Linear and attention product, padding included."""
import pytest
import torch

from davit_backbone import DaViT
from davit_backbone.flops import count_macs
from helpers import analytic_macs


@pytest.mark.parametrize('arch,hw', [('tiny', (224, 224)), ('tiny', (97, 131)), ('base', (64, 200))])
def test_counted_macs_equal_the_hand_count(arch, hw):
    model = DaViT(arch, num_classes=1000).eval()
    counted, per_op = count_macs(model, torch.randn(1, 3, *hw))
    assert counted == analytic_macs(arch, *hw, num_classes=1000), per_op


def test_paper_figures_come_out():
    """The paper's table 1 at 224x224: 28.3M / 49.7M / 87.9M parameters, 4.5G / 8.8G / 15.5G FLOPs (MACs), as
    counted on the models themselves."""
    figures = []
    for arch in ('tiny', 'small', 'base'):
        with torch.device('meta'):
            params = sum(p.numel() for p in DaViT(arch, num_classes=1000).parameters())
        macs, _ = count_macs(DaViT(arch, num_classes=1000).eval(), torch.randn(1, 3, 224, 224))
        figures.append((int(params / 1e5) / 10, round(macs / 1e9, 1)))  # the paper truncates the parameters
    assert figures == [(28.3, 4.5), (49.7, 8.8), (87.9, 15.5)]
