#!/usr/bin/env bash
# Patches an unpacked mmcv 2.1.0 sdist (the folder holding its setup.py) for today's Python and torch. Fails with one
# line when a patch no longer applies (another mmcv, or a setup.py that changed), rather than letting a 30-minute
# compile fail on the first header.
#   bash tools/_patch_mmcv.sh SRC [--no-cxx20]
# - Python >= 3.13 (PEP 667): get_version() exec()s mmcv/version.py and reads __version__ back from locals(), which
#   no longer sees what exec wrote; the exec gets a namespace of its own. Harmless on older Pythons.
# - torch >= 2.14, whose headers need C++20: mmcv hard-codes -std=c++17 for its extension (--no-cxx20 skips this).
set -euo pipefail
SETUP="${1:?usage: _patch_mmcv.sh MMCV_SOURCE_FOLDER [--no-cxx20]}/setup.py"
[[ -f "$SETUP" ]] || { echo "error: $SETUP not found: not an unpacked mmcv sdist" >&2; exit 2; }

if grep -q "return locals()\['__version__'\]" "$SETUP"; then
  sed -i "s/exec(compile(f.read(), version_file, 'exec'))/ns = {}\n        exec(compile(f.read(), version_file, 'exec'), ns)/; s/return locals()\['__version__'\]/return ns['__version__']/" "$SETUP"
  grep -q "return ns\['__version__'\]" "$SETUP" && grep -q "exec(compile(f.read(), version_file, 'exec'), ns)" "$SETUP" || {
    echo "error: $SETUP: get_version() no longer reads mmcv/version.py as expected: update tools/_patch_mmcv.sh" >&2; exit 2; }
elif ! grep -q "return ns\['__version__'\]" "$SETUP"; then
  echo "error: $SETUP: get_version() changed: the Python 3.13 patch does not apply; update tools/_patch_mmcv.sh" >&2
  exit 2
fi

[[ "${2:-}" == --no-cxx20 ]] && exit 0
if ! grep -q -- '-std=c++17' "$SETUP"; then
  grep -q -- '-std=c++20' "$SETUP" && exit 0   # patched already
  echo "error: $SETUP sets no -std=c++17 any more: the C++20 patch does not apply; check how this mmcv chooses its C++ standard and update tools/_patch_mmcv.sh" >&2
  exit 2
fi
sed -i 's/-std=c++17/-std=c++20/g' "$SETUP"
! grep -q -- '-std=c++17' "$SETUP"
