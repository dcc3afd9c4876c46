"""A warm interpreter for the tests' tool runs (``helpers.python_tool``).

Each ``python tools/X.py`` spends 5-7 s importing torch, timm, mmengine and the task libraries before it parses its
arguments (2-core AVX2 EPYC), and the suite starts well over a hundred of them. This server imports those libraries
once, then forks one child per run: the child is a process of its own (pid, exit status, signals, open files,
environment and working directory as the test gives them), runs the tool as ``python TOOL ARGS`` would
(``runpy.run_path`` as ``__main__``, the tool's folder first on ``sys.path``) and exits; nothing it does reaches
the server or the next run. What a fork cannot give, a fresh interpreter's import-time state, is kept out by the
caller: runs with an environment that libraries read at import or start-up (``PYTHONPATH``, ``LD_PRELOAD``,
``MALLOC_*``, OpenMP/MKL settings other than ``OMP_NUM_THREADS``) go to a real subprocess (``helpers.FRESH_ENV``).

Protocol, one JSON line per request on stdin: {"argv", "cwd", "env", "out", "err"}; the server answers
``started PID`` and, when the child ends, ``status WAITSTATUS``, each on its own line.
"""
import json
import os
import sys


def _preload():
    # what every tool imports before its first line of work; the task libraries' model packages are the slowest
    import cv2  # noqa: F401
    import numpy  # noqa: F401
    import torch  # noqa: F401
    import torchvision  # noqa: F401
    import timm  # noqa: F401
    import mmengine.runner  # noqa: F401
    import mmcv.transforms  # noqa: F401
    import mmdavit  # noqa: F401  (first: mmpretrain's compatibility switch)
    for name in ('mmpretrain.models', 'mmdet.models', 'mmseg.models'):
        try:
            __import__(name)
        except Exception:  # an optional library: the tool that needs it says so itself
            pass


def _child(req):
    import atexit
    import runpy
    os.chdir(req['cwd'])
    os.environ.clear()
    os.environ.update(req['env'])
    for fd, path in ((1, req['out']), (2, req['err'])):
        target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(target, fd)
        os.close(target)
    os.close(0)
    os.open(os.devnull, os.O_RDONLY)  # fd 0: no stdin, as subprocess.run gives with capture_output
    sys.stdin = open(0, closefd=False)
    sys.stdout = open(1, 'w', buffering=1, closefd=False)
    sys.stderr = open(2, 'w', buffering=1, closefd=False)
    if 'OMP_NUM_THREADS' in os.environ:  # OpenMP read it when torch loaded, in the server
        import torch
        torch.set_num_threads(int(os.environ['OMP_NUM_THREADS']))
    tool = req['argv'][0]
    sys.argv = list(req['argv'])
    sys.path[0] = os.path.dirname(os.path.abspath(tool))
    code = 0
    try:
        runpy.run_path(tool, run_name='__main__')
    except SystemExit as e:
        if e.code is None:
            code = 0
        elif isinstance(e.code, int):
            code = e.code
        else:
            print(e.code, file=sys.stderr)
            code = 1
    except BaseException:
        import traceback
        traceback.print_exc()
        code = 1
    finally:
        try:
            atexit._run_exitfuncs()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)


def main():
    _preload()
    print('ready', flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            _child(req)
        print(f'started {pid}', flush=True)
        _, status = os.waitpid(pid, 0)
        print(f'status {status}', flush=True)


if __name__ == '__main__':
    main()
