"""Shared test helpers (imported as ``helpers``; conftest puts tests/ on sys.path)."""
import os
import subprocess
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def randomize_norms(model):
    """Random affine params for every norm, so that a test cannot pass because norms are identity at init."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if 'norm' in name:
                p.normal_(1.0, 0.2) if name.endswith('weight') else p.normal_(0.0, 0.2)
    return model


def run_tool(*args, env=None, timeout=900, cwd=ROOT):
    """Runs a command from the repo root with this interpreter's environment; returns CompletedProcess."""
    full_env = dict(os.environ, PYTHONUNBUFFERED='1', **(env or {}))
    full_env['PATH'] = os.path.dirname(sys.executable) + os.pathsep + full_env.get('PATH', '')
    return subprocess.run(list(args), cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)
