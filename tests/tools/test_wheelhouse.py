"""The offline install's contracts that need no network and no compiler: tools/make_wheelhouse.sh's option checks and
plan, and tools/setup_env.sh refusing a folder that is not a finished wheelhouse before it writes anything. The
install from a real wheelhouse (minutes, several GB) is measured by hand: docs/install.md, "Offline install"."""
import os
import re
import sys

import pytest

from helpers import ROOT, run_tool

ENV = {'PYTHON': sys.executable}


def wheelhouse(*args):
    return run_tool('bash', 'tools/make_wheelhouse.sh', *args, env=ENV, timeout=60)


def setup_env(wheelhouse_dir, venv):
    return run_tool('bash', 'tools/setup_env.sh', env=dict(ENV, WHEELHOUSE=str(wheelhouse_dir), DAVIT_VENV=str(venv)),
                    timeout=60)


def one_error_line(r, prefix):
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert len(lines) == 1 and lines[0].startswith(prefix), r.stderr
    return lines[0]


def runtime_pin(name):
    with open(os.path.join(ROOT, 'requirements', 'runtime.txt')) as f:
        return re.search(rf'^{name}==(\S+)', f.read(), re.M).group(1)


@pytest.mark.parametrize('args,says', [
    ((), 'no folder given'),
    (('--variant', 'gpu'), "--variant 'gpu' is not cuda or cpu"),
    (('--variant', 'cpu'), '--variant cpu needs --torch-index'),
    (('--torch', '3.1'), "--torch '3.1' is not a torch 2.x version"),
    (('--python', 'py312'), "--python 'py312' is not a Python version"),
    (('--glibc', '228'), "--glibc '228' is not a glibc version"),
    (('--python',), '--python needs a value'),
    (('--offline',), "unknown option '--offline'"),
])
def test_make_wheelhouse_rejects_bad_options_before_writing(tmp_path, args, says):
    target = tmp_path / 'wh'
    r = wheelhouse(*((str(target),) if args else ()), *args)
    assert says in one_error_line(r, 'make_wheelhouse: error: ')
    assert not target.exists()


def test_make_wheelhouse_refuses_a_folder_that_is_not_a_wheelhouse(tmp_path):
    (tmp_path / 'notes.txt').write_text('mine')
    r = wheelhouse(str(tmp_path))
    assert 'is not empty and is not a wheelhouse' in one_error_line(r, 'make_wheelhouse: error: ')
    assert sorted(os.listdir(tmp_path)) == ['notes.txt']


def test_make_wheelhouse_plan_defaults_to_the_pinned_torch_pair(tmp_path):
    """The torchvision the script derives for runtime.txt's torch is runtime.txt's torchvision: the rule that pairs
    them (0.(minor + 15), patch for patch) agrees with the pair the online install uses."""
    r = wheelhouse(str(tmp_path / 'wh'), '--plan')
    assert r.returncode == 0, r.stderr
    py = '%d.%d' % sys.version_info[:2]
    assert f'python={py} torch={runtime_pin("torch")} torchvision={runtime_pin("torchvision")} variant=cuda' in r.stdout
    assert 'foreign: 0' in r.stdout and '--only-binary' not in r.stdout
    assert not (tmp_path / 'wh').exists()


def test_make_wheelhouse_plan_for_the_gpu_machine_profile(tmp_path):
    """The GPU image's Python 3.12 and torch 2.11: a foreign target (pip's target options) from any other Python; run
    on 3.12 itself, the plan is native and a 3.13 target stands in for the foreign one."""
    host = '%d.%d' % sys.version_info[:2]
    r = wheelhouse(str(tmp_path / 'wh'), '--plan', '--python', '3.12', '--torch', '2.11.0')
    assert r.returncode == 0, r.stderr
    assert 'torch=2.11.0 torchvision=0.26.0' in r.stdout and f'foreign: {int(host != "3.12")}' in r.stdout
    target = '3.12'
    if host == '3.12':
        assert 'pip target options: (none' in r.stdout
        target = '3.13'
        r = wheelhouse(str(tmp_path / 'wh'), '--plan', '--python', target, '--torch', '2.11.0')
    opts = re.search(r'^pip target options: (.*)$', r.stdout, re.M).group(1).split()
    assert opts[:5] == ['--only-binary=:all:', '--implementation', 'cp', '--python-version', target]
    platforms = [opts[i + 1] for i, o in enumerate(opts) if o == '--platform']
    # torch's wheels need glibc 2.28; every older manylinux tag stays acceptable, none newer
    assert platforms[0].startswith('manylinux_2_28_') and platforms[-1].startswith('manylinux1_')
    assert not any(re.match(r'manylinux_2_(29|[3-9]\d)_', p) for p in platforms)
    r = wheelhouse(str(tmp_path / 'wh'), '--plan', '--torch', '2.11')
    assert 'torch=2.11.* torchvision=0.26.*' in r.stdout


def test_make_wheelhouse_target_needs_a_folder():
    r = run_tool('make', '-s', 'wheelhouse', 'WHEELHOUSE=', env=ENV, timeout=60)
    assert r.returncode == 2 and 'make_wheelhouse: error: no folder given' in r.stderr, r.stderr


def test_setup_env_refuses_an_empty_wheelhouse_and_writes_nothing(tmp_path):
    empty, venv = tmp_path / 'wh', tmp_path / 'venv'
    empty.mkdir()
    r = setup_env(empty, venv)
    assert 'holds no finished wheelhouse' in one_error_line(r, 'setup_env: error: ')
    assert not venv.exists() and os.listdir(empty) == []


def test_setup_env_refuses_a_wheelhouse_for_another_python(tmp_path):
    wh, venv = tmp_path / 'wh', tmp_path / 'venv'
    wh.mkdir()
    other = '3.%d' % (sys.version_info[1] + 1)
    (wh / 'mmdavit-wheelhouse.txt').write_text(f'python={other}\ntorch=2.11.0\ntorchvision=0.26.0\n')
    r = setup_env(wh, venv)
    line = one_error_line(r, 'setup_env: error: ')
    assert f'the wheelhouse is for Python {other}' in line and f'PYTHON=python{other}' in line
    assert not venv.exists()


def _text(path):
    with open(os.path.join(ROOT, path)) as f:
        return f.read()


def test_the_wheelhouse_collects_everything_setup_env_installs():
    """The offline install broke once: setup_env.sh installed requirements/deploy.txt, which the wheelhouse did not
    collect, and `make env WHEELHOUSE=DIR` stopped at 'No matching distribution found for onnx'. The plan is read
    from both scripts, without downloading: every requirements file setup_env.sh installs is collected, and every
    setuptools it switches to is downloaded."""
    setup, wheelhouse = _text('tools/setup_env.sh'), _text('tools/make_wheelhouse.sh')
    installed = set(re.findall(r'requirements/(\w+)\.txt', setup))
    assert {'build', 'runtime', 'deploy', 'tests'} <= installed
    assert installed <= {f[:-4] for f in os.listdir(os.path.join(ROOT, 'requirements')) if f.endswith('.txt')}
    # make_wheelhouse.sh takes runtime.txt (with the target's torch pair) and every other file of requirements/
    assert 'for f in "$ROOT"/requirements/*.txt; do [[ "$f" == */runtime.txt ]] || cat "$f"; done' in wheelhouse
    assert '"$ROOT/requirements/runtime.txt"' in wheelhouse
    switched = set(re.findall(r"'(setuptools[^']*)'", setup))
    assert len(switched) >= 3, switched
    downloaded = set(re.findall(r"'(setuptools[^']*)'", wheelhouse.split('for spec in', 1)[1].split('\n', 1)[0]))
    assert switched <= downloaded, switched - downloaded
