import os
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for p in (ROOT, os.path.join(ROOT, 'tests'), os.path.join(ROOT, 'tools')):  # tools/_cli as the scripts see it
    if p not in sys.path:
        sys.path.insert(0, p)
# timm's vendored test file runs only through tests/davit_backbone/test_timm_contract.py, on our model names
collect_ignore = ['third_party']
torch.set_num_threads(max(1, os.cpu_count() or 1))


@pytest.fixture
def seed():
    torch.manual_seed(0)
