"""timm's own model tests (timm 1.0.31's tests/test_models.py, vendored unmodified under tests/third_party/timm) run
on our DaViT_tiny and DaViT_base_fl beside timm's davit_tiny: every test timm's DaViT passes, ours passes too."""
import collections
import importlib
import os
import re
import sys

import pytest

import davit_backbone  # noqa: F401  registers DaViT_* with timm

from helpers import ROOT, run_tool

TIMM_TESTS = os.path.join(ROOT, 'tests', 'third_party', 'timm')
# tiny and base_fl between them take every code path (v1 and v2 channel attention, 2x2 and 3x3 downsampling,
# windows of 7 and 12); small and base are tiny's code with more blocks and channels, and added 70 s to the suite
OURS = ('DaViT_tiny', 'DaViT_base_fl')
# they download weights from the Hugging Face hub, which this machine cannot reach
HUB_TESTS = ('test_model_load_pretrained', 'test_model_features_pretrained')


def _outcomes(junit_xml):
    """{model name (tag dropped): {test function: outcome}} from the run's JUnit XML report (pytest's own)."""
    import xml.etree.ElementTree as ET
    out = collections.defaultdict(dict)
    for case in ET.parse(junit_xml).getroot().iter('testcase'):
        m = re.match(r'(\w+)\[([^\]]+)\]$', case.get('name', ''))
        if not m:
            continue
        kinds = {child.tag for child in case}
        outcome = ('FAILED' if 'failure' in kinds else 'ERROR' if 'error' in kinds
                   else 'SKIPPED' if 'skipped' in kinds else 'PASSED')
        name = next(p for p in m.group(2).split('-') if not p.isdigit()).split('.')[0]
        out[name][m.group(1)] = outcome
    return out


@pytest.mark.slow
def test_timm_model_suite_passes_on_our_models(tmp_path):
    timm = pytest.importorskip('timm')
    assert timm.__version__ == '1.0.31', 'the vendored test file is timm 1.0.31\'s: update it with the pin'
    report = tmp_path / 'timm.xml'
    r = run_tool(sys.executable, '-m', 'pytest', 'test_models.py', '-p', 'davit_timm_plugin', '-q',
                 f'--junitxml={report}',
                 '-p', 'no:cacheprovider', '-o', 'addopts=', '-k', ' and '.join(f'not {t}' for t in HUB_TESTS),
                 cwd=TIMM_TESTS, timeout=1800,
                 env={'DAVIT_TIMM_MODELS': ','.join(('davit_tiny',) + OURS),
                      'PYTHONPATH': os.pathsep.join([ROOT, TIMM_TESTS, os.environ.get('PYTHONPATH', '')])})
    assert report.is_file(), r.stdout[-3000:] + r.stderr[-3000:]
    outcomes = _outcomes(str(report))
    reference = {f for f, o in outcomes['davit_tiny'].items() if o == 'PASSED'}
    # forward/backward, default cfgs, torchscript, features_only (hooks and getter), forward_intermediates,
    # pruning, fx forward/backward, fx + torchscript, plus the davit-specific parametrisations
    assert len(reference) >= 12, r.stdout[-3000:]
    for name in OURS:
        ours = outcomes[name]
        assert all(o == 'PASSED' for o in ours.values()), (name, ours, r.stdout[-4000:])
        # tests that list timm's davit_tiny by name only (not every model) run on ours in the test below
        assert reference - {'test_head_hidden_size', 'test_headless_checkpoint_reload'} <= set(ours), (name, ours)


@pytest.mark.parametrize('name', OURS[:1])
def test_timm_davit_specific_tests_on_ours(name):
    """timm's tests that name its davit_tiny explicitly, called with ours (the same small arch for the reload)."""
    sys.path.insert(0, TIMM_TESTS)
    try:
        timm_tests = importlib.import_module('test_models')
    finally:
        sys.path.remove(TIMM_TESTS)
    timm_tests.test_head_hidden_size(name, {})  # timm's davit_tiny runs it with head_norm_first, a timm-only option
    timm_tests.test_headless_checkpoint_reload(
        name, dict(embed_dims=(16, 32, 64, 128), depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1)))
