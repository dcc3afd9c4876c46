"""The first import of every script in tools/: a script started by a Python without the project's environment (the
system ``python``, another venv) stops with one line saying which environment to use, not with a traceback ending in
``ModuleNotFoundError: No module named 'torch'``."""
import importlib.util
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def require(*modules: str) -> None:
    """Exits with code 2 and one line when one of ``modules`` cannot be imported by this Python."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if not missing:
        return
    venv = os.environ.get('DAVIT_VENV') or os.path.join(ROOT, '.venv')
    if os.path.exists(os.path.join(venv, 'bin', 'python')):
        shown = os.path.relpath(venv)
        how = f'activate the project\'s environment first: . {venv if shown.startswith("..") else shown}/bin/activate'
    else:
        how = 'build the project\'s environment first (make demo or make test), then: . .venv/bin/activate'
    print(f'error: {sys.executable} cannot import {", ".join(missing)}; {how}', file=sys.stderr)
    sys.exit(2)
