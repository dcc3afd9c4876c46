import os
import sys

import pytest
import torch

# first: transformers 5 (for the Florence-2 tests) beside mmpretrain 1.2.0 needs mmdavit.models.mmpretrain_compat to run
# before any test module imports mmpretrain.models
import mmdavit  # noqa: E402,F401,I100

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for p in (ROOT, os.path.join(ROOT, 'tests'), os.path.join(ROOT, 'tools')):  # tools/_cli as the scripts see it
    if p not in sys.path:
        sys.path.insert(0, p)
# timm's vendored test file runs only through tests/davit_backbone/test_timm_contract.py, on our model names
collect_ignore = ['third_party']
# the shell launchers (dist_train.sh, demo.sh) and the tests' own subprocesses run DAVIT_VENV's python, .venv by
# default: the environment running the suite, when it runs under another one (pytest called directly)
os.environ.setdefault('DAVIT_VENV', os.path.dirname(os.path.dirname(sys.executable)))
# the cores shared among pytest-xdist's workers (pytest -n N), each taking its part, in the worker and in every
# process a test starts (tools, launchers, torchrun's ranks read OMP_NUM_THREADS): two workers' subprocesses at torch's
# default of one thread per core put 4 spinning OpenMP threads on 2 cores, and two benchmark runs side by side took
# 129 s instead of 22 s (2026-12-06, 2-core AVX2 EPYC)
THREADS = max(1, (os.cpu_count() or 1) // int(os.environ.get('PYTEST_XDIST_WORKER_COUNT') or 1))
os.environ.setdefault('OMP_NUM_THREADS', str(THREADS))
torch.set_num_threads(THREADS)


@pytest.fixture
def seed():
    torch.manual_seed(0)


def pytest_collection_modifyitems(session, config, items):
    """Modules holding slow tests first, the slowest-looking first (pytest -n hands whole files to its workers in this
    order, with --dist loadfile): the long end-to-end files then overlap one another instead of leaving one worker
    busy at the end. Within a module the order stays as written."""
    slow = {}
    for item in items:
        slow[item.module.__name__] = slow.get(item.module.__name__, 0) + (item.get_closest_marker('slow') is not None)
    first_seen = {}
    for i, item in enumerate(items):
        first_seen.setdefault(item.module.__name__, i)
    items.sort(key=lambda item: (-slow[item.module.__name__], first_seen[item.module.__name__]))
