"""The documentation: the site builds with warnings as errors (broken links and anchors, pages missing from the nav),
and what the README's and the pages' code names exists: repository paths, `make` targets, and the options given to
tools/*.py and the launchers."""
import glob
import itertools
import os
import re
import shlex
import sys

import pytest

from helpers import ROOT, run_tool

PAGES = sorted(glob.glob(os.path.join(ROOT, 'docs', '**', '*.md'), recursive=True)) + [os.path.join(ROOT, 'README.md')]
# top-level folders of the repository: a path starting with one of them names a file that must exist. Paths under
# data/, work_dirs/, checkpoints/ ... are what users bring or runs write.
REPO_DIRS = ('configs', 'davit_backbone', 'docs', 'mmcls_davit', 'mmdavit', 'mmdet_davit', 'mmseg_davit',
             'requirements', 'tests', 'tools')
# written by the editable install (setup.py), not tracked
GENERATED = ('mmdavit/.mim',)
# the launchers hand their options to these scripts
LAUNCHED = {'dist_train.sh': 'train.py', 'slurm_train.sh': 'train.py', 'dist_test.sh': 'test.py'}
FENCE = re.compile(r'^```(\w*)[^\n]*\n(.*?)^```', re.M | re.S)
INLINE = re.compile(r'`([^`\n]+)`')


def _tracked_basenames():
    names = set()
    for d in REPO_DIRS:
        for p in glob.glob(os.path.join(ROOT, d, '**', '*'), recursive=True):
            names.add(os.path.basename(p))
    return names | set(os.listdir(ROOT))


def _expand_braces(s):
    """'a_{1x,3x}.py' -> ['a_1x.py', 'a_3x.py'], as bash does."""
    parts = re.split(r'\{([^{}]*,[^{}]*)\}', s)
    options = [p.split(',') if i % 2 else [p] for i, p in enumerate(parts)]
    return [''.join(c) for c in itertools.product(*options)]


def _commands(text):
    """Shell lines of a code block, continuation lines joined, as token lists (comments and [ ] dropped)."""
    for line in text.replace('\\\n', ' ').splitlines():
        try:
            tokens = shlex.split(line, comments=True)
        except ValueError:  # an unbalanced quote in prose-like code: nothing to check
            continue
        if tokens:
            yield [t.strip('[]') for t in tokens if t.strip('[]')]


def _script_text(script):
    """The script's own text plus the modules it imports from tools/ (train.py takes its common options from _cli)
    and the package modules whose parsers it hands its arguments to (infer.py: davit_deploy.infer for a deployed
    folder)."""
    with open(os.path.join(ROOT, 'tools', script)) as f:
        text = f.read()
    for mod in set(re.findall(r'^\s*(?:import|from)\s+(\w+)', text, re.M)):
        if os.path.isfile(os.path.join(ROOT, 'tools', mod + '.py')):
            with open(os.path.join(ROOT, 'tools', mod + '.py')) as f:
                text += f.read()
    for pkg, mod in set(re.findall(r'^\s*from\s+(davit_\w+)\.(\w+)\s+import', text, re.M)):
        path = os.path.join(ROOT, pkg, mod + '.py')
        if os.path.isfile(path):
            with open(path) as f:
                text += f.read()
    return text


def _check_path(token, declared, problems, where):
    token = token.rstrip('.,;:)')
    if '=' in token:
        token = token.rsplit('=', 1)[1]
    if (not token.startswith(tuple(d + '/' for d in REPO_DIRS)) or token.startswith(GENERATED)
            or '...' in token or '<' in token):
        return
    for path in _expand_braces(token):
        if path in declared or any(d.startswith(path.rstrip('/') + '/') for d in declared):  # the folder of one
            continue
        if not (glob.glob(os.path.join(ROOT, path)) if '*' in path else os.path.exists(os.path.join(ROOT, path))):
            problems.append(f'{where}: {path} does not exist')


def _check_command(tokens, declared, problems, where):
    for t in tokens:
        _check_path(t, declared, problems, where)
    if tokens[0] == 'make' and len(tokens) > 1:
        with open(os.path.join(ROOT, 'Makefile')) as f:
            targets = set(re.findall(r'^([\w-]+):', f.read(), re.M))
        for t in tokens[1:]:
            if '=' not in t and t not in targets:
                problems.append(f'{where}: make has no target {t!r}')
    script = next((t for t in tokens if re.fullmatch(r'tools/[\w.-]+\.(py|sh)', t)), None)
    if script is None:
        return
    name = os.path.basename(script)
    if not os.path.isfile(os.path.join(ROOT, script)):
        return  # reported by _check_path
    target = LAUNCHED.get(name, name)
    text = _script_text(target)
    # argparse names an option as a string; a shell script's option loop as a case pattern (`--plan)`)
    option = (r'''['"]{}['"\s=]''' if target.endswith('.py') else r'(?<![\w-]){}[)|]')
    for t in tokens[tokens.index(script) + 1:]:
        if t in ('|', '&&', ';', '>'):
            break
        for flag in re.split(r'[|=]', t) if t.startswith('--') else ():
            if flag.startswith('--') and not re.search(option.format(re.escape(flag)), text):
                problems.append(f'{where}: {script} has no option {flag}')


def check_page(text, where):
    """Every problem the page's code shows: paths that do not exist, make targets and tool options that are not
    there. A python block whose first line is `# PATH` is a file the page asks the user to write: PATH counts as
    present on that page."""
    problems, basenames = [], _tracked_basenames()
    blocks = FENCE.findall(text)
    declared = {m.group(1) for lang, body in blocks if lang == 'python'
                for m in [re.match(r'#\s*(\S+\.py)\s*$', body.splitlines()[0] if body else '')] if m}
    for lang, body in blocks:
        if lang in ('bash', 'sh', 'shell'):
            for tokens in _commands(body):
                _check_command(tokens, declared, problems, where)
    prose = FENCE.sub('', text)
    for span in INLINE.findall(prose):
        tokens = list(_commands(span))
        if not tokens:
            continue
        tokens = tokens[0]
        if re.fullmatch(r'[\w.{},-]+\.(py|sh|yml)', span):
            problems += [f'{where}: no file named {n}' for n in _expand_braces(span) if n not in basenames]
        _check_command(tokens, declared, problems, where)
    for path in re.findall(r'\]\(([^)#\s]+)[^)]*\)', prose):  # markdown links to repository files
        if '://' not in path and not path.startswith('mailto:'):
            base = os.path.dirname(where)
            if not os.path.exists(os.path.join(ROOT, base, path)):
                problems.append(f'{where}: link to {path}, which does not exist')
    return problems


@pytest.mark.parametrize('page', PAGES, ids=lambda p: os.path.relpath(p, ROOT))
def test_code_names_only_what_exists(page):
    with open(page) as f:
        text = f.read()
    problems = check_page(text, os.path.relpath(page, ROOT))
    assert not problems, '\n'.join(problems)


def test_checker_catches_a_missing_path_a_wrong_option_and_a_missing_target():
    page = '\n'.join([
        '```bash',
        'python tools/train.py configs/mmdet/nope_coco.py --work-dir w --no-such-option',
        'bash tools/dist_test.sh configs/mmdet/mask-rcnn_davit-t_fpn_1x_coco.py CKPT 8 --aug-test --evil',
        'make tset',
        '```',
        '```python',
        '# configs/mine/written_by_the_user.py',
        '```',
        '```bash',
        'python tools/train.py configs/mine/written_by_the_user.py --amp',
        '```',
        'Run `tools/get_flops.py CONFIG --shape 1 --flops-only`; see `test_nothing_here.py` and [x](docs/nope.md).',
    ])
    assert sorted(check_page(page, 'README.md')) == sorted([
        'README.md: configs/mmdet/nope_coco.py does not exist',
        'README.md: tools/train.py has no option --no-such-option',
        'README.md: tools/dist_test.sh has no option --evil',
        "README.md: make has no target 'tset'",
        'README.md: tools/get_flops.py has no option --flops-only',
        'README.md: no file named test_nothing_here.py',
        'README.md: link to docs/nope.md, which does not exist',
    ])


def test_readme_is_short_and_sets_up_with_make_demo_and_make_test():
    with open(os.path.join(ROOT, 'README.md')) as f:
        text = f.read()
    assert len(text.splitlines()) <= 200
    setup = text.split('## Set-up', 1)[1]
    lang, body = FENCE.search(setup).groups()
    assert [t[:2] for t in _commands(body)] == [['make', 'demo'], ['make', 'test']]


@pytest.fixture(scope='module')
def site(tmp_path_factory):
    """The site built as `make docs` builds it (about 4 s), with this environment's mkdocs and plugins."""
    out = tmp_path_factory.mktemp('docs') / 'site'
    r = run_tool(sys.executable, '-m', 'mkdocs', 'build', '--strict', '--site-dir', str(out),
                 env={'NO_MKDOCS_2_WARNING': '1'})
    return r, out


def test_site_builds_with_warnings_as_errors(site):
    r, out = site
    # also an API page entry (docs/api.md) that names nothing griffe finds in the source
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    # every page of docs/ became a page of the site, as a file of its own (what file:// needs)
    for page in glob.glob(os.path.join(ROOT, 'docs', '**', '*.md'), recursive=True):
        rel = os.path.relpath(page, os.path.join(ROOT, 'docs'))[:-3]
        assert (out / (rel + '.html')).is_file(), rel + '.html'


def test_site_reads_from_disk(site):
    """Opened as files (file://), a link to a folder shows a directory listing and a script from the network may not
    load: every navigation link names an .html file that exists, search's index is a script, and every script the
    pages load is the site's own."""
    r, out = site
    assert r.returncode == 0, r.stderr[-3000:]
    pages = sorted(p for p in out.rglob('*.html') if p.name != '404.html')  # a server's page, with absolute links
    assert len(pages) > 10
    for page in pages:
        html = page.read_text()
        nav = re.search(r'<nav class="md-nav md-nav--primary".*?</nav>', html, re.S)
        assert nav, f'{page.name}: no navigation'
        hrefs = re.findall(r'<a href="([^"]*)" class="md-nav__link', nav.group(0))
        assert hrefs, f'{page.name}: no navigation links'
        for href in hrefs:
            target = href.split('#', 1)[0]
            if not target:  # a link into the page itself
                continue
            assert target.endswith('.html'), f'{page.relative_to(out)}: navigation link {href!r} is not a file'
            assert (page.parent / target).resolve().is_file(), f'{page.relative_to(out)}: {href!r} does not exist'
        for src in re.findall(r'<script src="([^"]+)"', html):
            assert '://' not in src and not src.startswith('//'), f'{page.relative_to(out)} loads {src}'
            assert (page.parent / src.split('?')[0]).resolve().is_file(), f'{page.relative_to(out)}: {src} missing'
    assert (out / 'search' / 'search_index.js').read_text().startswith('var __index = ')


def test_the_quick_demos_figures_agree_across_pages():
    """get_started.md states the spread of the quick demo's mAPs over the recorded runs; a single run quoted on
    another page must lie inside it (deployment.md once quoted 0.866 beside a promised 0.871-0.903)."""
    with open(os.path.join(ROOT, 'docs', 'get_started.md')) as f:
        spread = re.search(r'bbox mAP\s+(\d\.\d+)-(\d\.\d+) and segm mAP\s+(\d\.\d+)-(\d\.\d+)', f.read())
    assert spread, 'get_started.md no longer states the spread of the demo mAPs'
    lo_b, hi_b, lo_s, hi_s = map(float, spread.groups())
    quoted = 0
    for page in PAGES:
        with open(page) as f:
            text = f.read()
        for b, s in re.findall(r'`make demo`[^|\n]*?bbox mAP (\d\.\d+), segm mAP (\d\.\d+)', text):
            quoted += 1
            assert lo_b <= float(b) <= hi_b and lo_s <= float(s) <= hi_s, \
                f'{os.path.relpath(page, ROOT)}: demo mAPs {b} / {s} outside get_started.md\'s {spread.group(0)}'
    assert quoted, 'no page quotes a demo run any more: drop this test or the spread'
