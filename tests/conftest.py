import os
import sys

# Before torch loads OpenMP: waiting threads sleep instead of spinning. pytest-xdist's workers and the tools they start
# share the cores; with spinning threads, two benchmark runs side by side on 2 cores took 129 s instead of 22 s, and
# one thread per process leaves a core idle whenever the other worker waits (2026-12-06, 2-core AVX2 EPYC: 26 s for
# the pair at two passive threads each, 27 s at one thread each; 22 s for one run alone, 28 s at one thread).
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')

import pytest  # noqa: E402
import torch  # noqa: E402

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


@pytest.fixture
def seed():
    torch.manual_seed(0)


# seconds each file's tests took in the suite (2026-12-06, tool runs forked, 2 workers on the 2-core AVX2 EPYC), for
# the order below only: a file missing here is placed by its slow tests, a stale figure costs balance, never a result
FILE_SECONDS = {
    'tests/mmdavit/training/test_crash_safe.py': 380, 'tests/tools/test_multinode.py': 270,
    'tests/tools/test_gpu_check.py': 260, 'tests/tools/test_tools.py': 240, 'tests/docs/test_custom_dataset.py': 200,
    'tests/tools/test_deploy.py': 170, 'tests/mmdet_davit/test_configs.py': 170,
    'tests/davit_backbone/test_export.py': 140, 'tests/mmdet_davit/test_train_test.py': 140,
    'tests/tools/test_demo.py': 140, 'tests/davit_backbone/test_timm_contract.py': 120,
    'tests/davit_backbone/test_florence2.py': 100, 'tests/mmseg_davit/test_train_test.py': 90,
    'tests/tools/test_infer.py': 80, 'tests/mmcls_davit/test_train_validate.py': 60,
    'tests/tools/test_reliability_cli.py': 60, 'tests/mmseg_davit/test_configs.py': 60,
    'tests/davit_backbone/test_convert.py': 50, 'tests/davit_backbone/test_kernels.py': 40,
    'tests/davit_backbone/test_davit.py': 30, 'tests/mmdavit/training/test_checkpoint_hook.py': 30,
    'tests/mmdavit/test_mim.py': 30,
}


def pytest_collection_modifyitems(session, config, items):
    """The longest files first (pytest -n hands whole files to its workers in this order, with --dist loadfile): the
    long end-to-end files then overlap one another and the short ones fill in at the end, instead of one worker
    running a five-minute file alone while the other has finished. Within a file the order stays as written."""
    def path(item):
        return item.nodeid.split('::')[0]
    weight = {}
    for item in items:
        weight[path(item)] = weight.get(path(item), 0) + (20 if item.get_closest_marker('slow') else 1)
    weight.update((f, s) for f, s in FILE_SECONDS.items() if f in weight)
    first_seen = {}
    for i, item in enumerate(items):
        first_seen.setdefault(path(item), i)
    items.sort(key=lambda item: (-weight[path(item)], first_seen[path(item)]))
