#!/usr/bin/env python
"""Fetches mmcv's sdist file from a package index without running its setup.py, its sha256 checked against the
index's: ``pip download`` runs setup.py for the metadata, which mmcv 2.1.0's cannot on Python >= 3.13 before
tools/_patch_mmcv.sh mends it. One line and exit 2 on failure.

    python tools/_fetch_mmcv_sdist.py VERSION OUT_DIR [INDEX_URL]     (default index: $PIP_INDEX_URL, else PyPI)
"""
import hashlib
import os
import re
import sys
import urllib.parse
import urllib.request


def fetch(version: str, out: str, index: str) -> str:
    page_url = index.rstrip('/') + '/mmcv/'
    page = urllib.request.urlopen(urllib.request.Request(page_url, headers={'Accept': 'text/html'}),
                                  timeout=60).read()
    name = f'mmcv-{version}.tar.gz'
    link = re.search(rf'href="([^"]*/{re.escape(name)})#sha256=([0-9a-f]+)"', page.decode())
    if not link:
        raise ValueError(f'{name} is not listed at {page_url}')
    data = urllib.request.urlopen(urllib.parse.urljoin(page_url, link.group(1)), timeout=300).read()
    if hashlib.sha256(data).hexdigest() != link.group(2):
        raise ValueError(f'{name}: its sha256 does not match the index')
    path = os.path.join(out, name)
    with open(path, 'wb') as f:
        f.write(data)
    return path


if __name__ == '__main__':
    if len(sys.argv) not in (3, 4):
        sys.exit('usage: _fetch_mmcv_sdist.py VERSION OUT_DIR [INDEX_URL]')
    index = sys.argv[3] if len(sys.argv) == 4 else os.environ.get('PIP_INDEX_URL') or 'https://pypi.org/simple'
    try:
        print(fetch(sys.argv[1], sys.argv[2], index))
    except (OSError, ValueError) as e:
        print(f'error: could not fetch mmcv {sys.argv[1]} from {index}: {e}', file=sys.stderr)
        sys.exit(2)
