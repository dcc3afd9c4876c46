"""mmdavit/models/mmpretrain_compat.py: with transformers importable (the tests' reference folder on the path, as in a
user's environment that has it), mmdet's and mmpretrain's models import once mmdavit is imported first, and fail
with mmpretrain 1.2.0's own error without it."""
import os
import subprocess
import sys

from helpers import reference


def _run(code):
    folder = os.path.dirname(os.path.dirname(reference('transformers').__file__))
    return subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONPATH=folder))


def test_mmdavit_first_keeps_mmpretrain_importable_beside_transformers():
    r = _run('import mmdavit, mmdet.models, mmpretrain.models\n'
             'from mmpretrain.utils import dependency\n'
             'print("multimodal", dependency.WITH_MULTIMODAL)')
    assert r.returncode == 0 and r.stdout.strip().endswith('multimodal False'), r.stderr[-2000:]
    r = _run('import mmpretrain.models')
    assert r.returncode != 0 and 'NoneType takes no arguments' in r.stderr
