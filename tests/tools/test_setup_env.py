"""tools/setup_env.sh's C++20 patch (tools/_patch_mmcv.sh) against mmcv 2.1.0's real sdist: it must still apply, so
that a CUDA build (hours on small machines) never starts from an unpatched setup.py. The sdist is the one
setup_env.sh kept in its cache; without one (the wheel came from a wheelhouse) it is fetched from the package index
by tools/_fetch_mmcv_sdist.py, setup_env.sh's own fetcher for Python >= 3.13."""
import hashlib
import os
import sys
import tarfile

from helpers import run_tool

MMCV_SDIST = 'mmcv-2.1.0.tar.gz'
SHA256 = 'd387bcab66b467479b6660310e23746cfc79c6e57acf04094680adb499a5cd3f'  # PyPI's, for the fetched copy


def _sdist(tmp_path):
    cache = os.environ.get('MMDAVIT_CACHE') or os.path.join(
        os.environ.get('XDG_CACHE_HOME') or os.path.expanduser('~/.cache'), 'mmdavit')
    kept = os.path.join(cache, 'sdist', MMCV_SDIST)
    if os.path.isfile(kept):
        return kept
    # the fetcher setup_env.sh uses where pip cannot prepare the sdist (Python >= 3.13)
    r = run_tool(sys.executable, 'tools/_fetch_mmcv_sdist.py', '2.1.0', str(tmp_path), 'https://pypi.org/simple')
    assert r.returncode == 0, r.stderr
    path = r.stdout.strip()
    with open(path, 'rb') as f:
        assert hashlib.sha256(f.read()).hexdigest() == SHA256
    return path


def test_patches_apply_to_the_mmcv_sdist(tmp_path):
    """The C++20 patch, and the Python 3.13 one: get_version() must give the version under any Python, 3.13's too
    (PEP 667: exec no longer writes into the locals() a function reads back)."""
    import ast
    with tarfile.open(_sdist(tmp_path)) as tar:
        members = [tar.getmember('mmcv-2.1.0/setup.py'), tar.getmember('mmcv-2.1.0/mmcv/version.py')]
        tar.extractall(tmp_path, members=members, filter='data')
    src = tmp_path / 'mmcv-2.1.0'
    before = (src / 'setup.py').read_text()
    assert '-std=c++17' in before and "return locals()['__version__']" in before
    r = run_tool('bash', 'tools/_patch_mmcv.sh', str(src))
    assert r.returncode == 0, r.stderr
    after = (src / 'setup.py').read_text()
    assert '-std=c++17' not in after and after.count('-std=c++20') == before.count('-std=c++17')
    assert "locals()" not in after
    # nothing else touched
    assert after.replace('-std=c++20', '-std=c++17').replace(
        "ns = {}\n        exec(compile(f.read(), version_file, 'exec'), ns)",
        "exec(compile(f.read(), version_file, 'exec'))").replace(
        "return ns['__version__']", "return locals()['__version__']") == before
    get_version = [n for n in ast.parse(after).body if isinstance(n, ast.FunctionDef) and n.name == 'get_version']
    ns = {}
    exec(compile(ast.Module(get_version, []), 'setup.py', 'exec'), ns)
    cwd = os.getcwd()
    try:
        os.chdir(src)
        assert ns['get_version']() == '2.1.0'
    finally:
        os.chdir(cwd)
    r = run_tool('bash', 'tools/_patch_mmcv.sh', str(src))  # again: already patched is fine
    assert r.returncode == 0 and (src / 'setup.py').read_text() == after
    # without the C++20 part (torch < 2.14): the Python patch alone
    (src / 'setup.py').write_text(before)
    r = run_tool('bash', 'tools/_patch_mmcv.sh', str(src), '--no-cxx20')
    assert r.returncode == 0 and '-std=c++17' in (src / 'setup.py').read_text()
    assert "return ns['__version__']" in (src / 'setup.py').read_text()


def test_patch_that_no_longer_applies_is_one_line(tmp_path):
    setup = "    return ns['__version__']\nextra_compile_args = {'cxx': ['-std=c++14']}\n"
    (tmp_path / 'setup.py').write_text(setup)
    r = run_tool('bash', 'tools/_patch_mmcv.sh', str(tmp_path))
    assert r.returncode == 2 and r.stderr.count('\n') == 1 and 'C++20 patch does not apply' in r.stderr
    assert (tmp_path / 'setup.py').read_text() == setup
    (tmp_path / 'setup.py').write_text("def get_version():\n    return '1.0'\n")
    r = run_tool('bash', 'tools/_patch_mmcv.sh', str(tmp_path))
    assert r.returncode == 2 and r.stderr.count('\n') == 1 and 'Python 3.13 patch does not apply' in r.stderr
    r = run_tool('bash', 'tools/_patch_mmcv.sh', str(tmp_path / 'nope'))
    assert r.returncode == 2 and 'not an unpacked mmcv sdist' in r.stderr
