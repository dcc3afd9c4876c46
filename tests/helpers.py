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


def toy_data(kind):
    """Generates (once per machine) the toy set of that kind under data/ and returns its path."""
    path = os.path.join(ROOT, 'data', f'toy_{kind}')
    if not os.path.exists(path):
        r = run_tool(sys.executable, 'tools/make_toy_data.py', kind, path)
        assert r.returncode == 0, r.stderr
    return path


def config_files(folder):
    import glob
    return sorted(glob.glob(os.path.join(ROOT, 'configs', folder, '*.py')))


def build_from_config(path, **overrides):
    """Builds the model of a config in its own scope (what tools/train.py does, minus the Runner)."""
    from mmengine.registry import MODELS, init_default_scope
    import _cli as ru
    cfg = ru.load_config(path, overrides or None, None)
    init_default_scope(cfg.default_scope)
    return cfg, MODELS.build(cfg.model)


def scalars(work_dir):
    """The training log's scalar records (mmengine's vis_data/scalars.json), oldest first."""
    import glob
    import json
    files = sorted(glob.glob(os.path.join(work_dir, '*', 'vis_data', 'scalars.json')))
    assert files, f'no scalars.json under {work_dir}'
    with open(files[-1]) as f:
        return [json.loads(line) for line in f if line.strip()]


def python_tool(*args, **kw):
    return run_tool(sys.executable, *args, **kw)
