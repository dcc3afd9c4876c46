#!/usr/bin/env bash
# Patches an unpacked mmcv 2.1.0 sdist (the folder holding its setup.py) for torch >= 2.14, whose headers need C++20:
# mmcv hard-codes -std=c++17 for its extension. Fails with one line when the patch no longer applies (another mmcv,
# or a setup.py that changed), rather than letting a 30-minute compile fail on the first header.
#   bash tools/_patch_mmcv.sh SRC
set -euo pipefail
SETUP="${1:?usage: _patch_mmcv.sh MMCV_SOURCE_FOLDER}/setup.py"
[[ -f "$SETUP" ]] || { echo "error: $SETUP not found: not an unpacked mmcv sdist" >&2; exit 2; }
if ! grep -q -- '-std=c++17' "$SETUP"; then
  grep -q -- '-std=c++20' "$SETUP" && exit 0   # patched already
  echo "error: $SETUP sets no -std=c++17 any more: the C++20 patch does not apply; check how this mmcv chooses its C++ standard and update tools/_patch_mmcv.sh" >&2
  exit 2
fi
sed -i 's/-std=c++17/-std=c++20/g' "$SETUP"
! grep -q -- '-std=c++17' "$SETUP"
