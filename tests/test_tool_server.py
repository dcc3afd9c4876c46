"""The tests' warm tool runner (tests/tool_server.py behind helpers.python_tool) against a fresh interpreter: the
suite's tool runs are only as good as the process they run in."""
import json
import os
import subprocess
import textwrap

import pytest

from helpers import python_tool

PROBE = textwrap.dedent('''
    import json, os, sys
    print(json.dumps(dict(argv=sys.argv, cwd=os.getcwd(), probe=os.environ.get('PROBE'), path0=sys.path[0],
                          name=__name__, file=__file__)))
    print('to stderr', file=sys.stderr)
    if os.environ.get('PROBE_WARM'):
        print('torch' in sys.modules, file=open(os.environ['PROBE_WARM'], 'w'))
    if sys.argv[1] == 'raise':
        raise ValueError('from the tool')
    if sys.argv[1] == 'sleep':
        import time
        time.sleep(60)
    sys.exit(int(sys.argv[1]) if sys.argv[1].isdigit() else sys.argv[1])
''')


@pytest.fixture
def probe(tmp_path):
    path = tmp_path / 'tools' / 'probe.py'
    path.parent.mkdir()
    path.write_text(PROBE)
    return str(path)


@pytest.mark.parametrize('how', ['0', '3', 'a message'])
def test_a_forked_run_sees_and_ends_as_a_fresh_interpreter_does(probe, tmp_path, how):
    """Arguments, working directory, environment, sys.path[0], __name__/__file__, both streams and the exit status
    (sys.exit with a number, or a message: printed, status 1)."""
    runs = [python_tool(probe, how, env={'PROBE': 'x', 'PROBE_WARM': str(tmp_path / f'warm-{fresh}')}, cwd=tmp_path,
                        fresh=fresh) for fresh in (False, True)]
    forked, fresh = runs
    # the forked run came from the warm interpreter (torch already imported), the fresh one from a new one
    assert [(tmp_path / f'warm-{f}').read_text() for f in (False, True)] == ['True\n', 'False\n']
    assert forked.returncode == fresh.returncode == (int(how) if how.isdigit() else 1)
    assert forked.stdout == fresh.stdout and forked.stderr == fresh.stderr, runs
    seen = json.loads(forked.stdout)
    assert seen['cwd'] == str(tmp_path) and seen['probe'] == 'x' and seen['name'] == '__main__'
    assert seen['path0'] == os.path.dirname(probe) and seen['argv'] == [probe, how]


def test_an_uncaught_exception_is_status_1_with_its_traceback(probe, tmp_path):
    r = python_tool(probe, 'raise', cwd=tmp_path)
    assert r.returncode == 1
    assert r.stderr.startswith('to stderr\nTraceback') and r.stderr.endswith('ValueError: from the tool\n'), r.stderr


def test_a_run_past_its_timeout_is_killed_and_the_next_run_is_served(probe, tmp_path):
    with pytest.raises(subprocess.TimeoutExpired):
        python_tool(probe, 'sleep', cwd=tmp_path, timeout=3)
    assert python_tool(probe, '0', cwd=tmp_path).returncode == 0


def test_start_up_environment_gets_a_fresh_interpreter(probe, tmp_path):
    """A variable that libraries read when they load (here PYTHONPATH, read by the interpreter itself) cannot reach
    a child forked from a process that has loaded them: such runs go to a new interpreter."""
    r = python_tool(probe, '0', env={'PYTHONPATH': str(tmp_path)}, cwd=tmp_path)
    assert r.returncode == 0
    r = python_tool('-c', 'import sys; print(sys.path[1])', env={'PYTHONPATH': str(tmp_path)}, cwd=tmp_path)
    assert r.stdout.strip() == str(tmp_path)
