#!/usr/bin/env bash
# Collects everything tools/setup_env.sh installs into one folder (a wheelhouse), on a machine that reaches PyPI, so
# that a machine without network can build the environment from it: `make test WHEELHOUSE=DIR` there.
#
#   bash tools/make_wheelhouse.sh DIR [--python X.Y] [--torch X.Y[.Z]] [--variant cuda|cpu] [--torch-index URL]
#                                     [--glibc X.Y] [--plan]
#   make wheelhouse WHEELHOUSE=DIR [WH_PYTHON=X.Y] [WH_TORCH=X.Y.Z] [WH_VARIANT=cuda|cpu] [WH_TORCH_INDEX=URL]
#                                  [WH_GLIBC=X.Y]
#
#   --python       the target's Python (default: this one). Another version makes this a foreign target: wheels
#                  only, for that Python and manylinux up to --glibc (default 2.28, what torch's wheels need).
#   --torch        torch for the target (default: requirements/runtime.txt's); torchvision follows (0.(minor+15)).
#   --variant      cuda (default): PyPI's torch, the CUDA build with its nvidia-* libraries (~3 GB). cpu: torch and
#                  torchvision from --torch-index (PyTorch's CPU wheel index or a mirror of it), which it requires:
#                  PyPI has no CPU-only torch for Linux, and its CUDA build does not import without the nvidia-*
#                  wheels (libtorch_cpu.so itself links libcudart and libcupti).
#   --plan         print the target, the pins and the pip options, and stop (no network, nothing written).
#
# DIR receives: a wheel for every requirement of requirements/*.txt for the target, mmcv's sdist (its ops compile on
# the target, against the target's torch and CUDA), the setuptools versions setup_env.sh switches between, wheels
# built here from the sdists of pure-Python packages (fvcore, iopath, ...) so the target compiles only mmcv, and
# mmdavit-wheelhouse.txt, the manifest setup_env.sh reads (target Python, torch and torchvision pins).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
MMCV_VERSION=2.1.0
MANIFEST=mmdavit-wheelhouse.txt
MARKER=.mmdavit-wheelhouse-options

die() { printf 'make_wheelhouse: error: %s\n' "$*" >&2; exit 2; }
say() { printf '[make_wheelhouse] %s\n' "$*" >&2; }

DIR="" TARGET_PY="" TORCH="" VARIANT=cuda TORCH_INDEX="" GLIBC="" PLAN=0
while (($#)); do
  case "$1" in
    --python|--torch|--variant|--torch-index|--glibc)
      (($# >= 2)) && [[ -n "$2" ]] || die "$1 needs a value (see the head of tools/make_wheelhouse.sh)"
      case "$1" in
        --python) TARGET_PY="$2" ;; --torch) TORCH="$2" ;; --variant) VARIANT="$2" ;;
        --torch-index) TORCH_INDEX="$2" ;; --glibc) GLIBC="$2" ;;
      esac
      shift 2 ;;
    --plan) PLAN=1; shift ;;
    -*) die "unknown option '$1'; the options are --python --torch --variant --torch-index --glibc --plan" ;;
    *) [[ -z "$DIR" ]] || die "one folder only, got '$DIR' and '$1'"; DIR="$1"; shift ;;
  esac
done

[[ -n "$DIR" ]] || die "no folder given: make wheelhouse WHEELHOUSE=DIR (or bash tools/make_wheelhouse.sh DIR)"
THIS_PY="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')" \
  || die "PYTHON=$PYTHON does not run; point PYTHON at a python3"
TARGET_PY="${TARGET_PY:-$THIS_PY}"
[[ "$TARGET_PY" =~ ^3\.[0-9]+$ ]] || die "--python '$TARGET_PY' is not a Python version like 3.12"
[[ -z "$GLIBC" || "$GLIBC" =~ ^2\.[0-9]+$ ]] || die "--glibc '$GLIBC' is not a glibc version like 2.28"
case "$VARIANT" in
  cuda) ;;
  cpu) [[ -n "$TORCH_INDEX" ]] || die "--variant cpu needs --torch-index URL (PyTorch's CPU wheel index or a mirror): PyPI's Linux torch is the CUDA build" ;;
  *) die "--variant '$VARIANT' is not cuda or cpu" ;;
esac
TORCH="${TORCH:-$(sed -n 's/^torch==\([0-9.]*\).*/\1/p' "$ROOT/requirements/runtime.txt")}"
[[ "$TORCH" =~ ^2\.([0-9]+)(\.([0-9]+))?$ ]] || die "--torch '$TORCH' is not a torch 2.x version like 2.11.0 or 2.11"
# torchvision 0.N pairs with torch 2.(N-15) throughout torch 2.x (2.0/0.15 ... 2.14/0.29), patch for patch; a
# mismatched pair fails at import (torchvision::nms missing), so the pair is fixed here rather than left to pip.
TV_MINOR=$((BASH_REMATCH[1] + 15))
if [[ -n "${BASH_REMATCH[3]}" ]]; then
  TORCH_SPEC="$TORCH" TV_SPEC="0.$TV_MINOR.${BASH_REMATCH[3]}"
else
  TORCH_SPEC="$TORCH.*" TV_SPEC="0.$TV_MINOR.*"
fi

# A foreign target (another Python, or an explicit glibc) gets wheels only, chosen by tag: pip cannot build for it.
FOREIGN=0 TARGET_OPTS=()
if [[ "$TARGET_PY" != "$THIS_PY" || -n "$GLIBC" ]]; then
  FOREIGN=1
  GLIBC="${GLIBC:-2.28}"
  ARCH="$(uname -m)"
  TARGET_OPTS=(--only-binary=:all: --implementation cp --python-version "$TARGET_PY")
  for ((m = ${GLIBC#2.}; m >= 5; m--)); do
    TARGET_OPTS+=(--platform "manylinux_2_${m}_$ARCH")
    case $m in 17) TARGET_OPTS+=(--platform "manylinux2014_$ARCH") ;; 12) TARGET_OPTS+=(--platform "manylinux2010_$ARCH") ;;
               5) TARGET_OPTS+=(--platform "manylinux1_$ARCH") ;; esac
  done
fi
# pip evaluates environment markers (python_version < "3.12", ...) with the interpreter it runs on, whatever
# --python-version says; so the collecting pip runs on the target's Python when this machine has it.
TOOL_PY="$PYTHON"
if [[ "$TARGET_PY" != "$THIS_PY" ]]; then
  if command -v "python$TARGET_PY" >/dev/null && "python$TARGET_PY" -c '' 2>/dev/null; then
    TOOL_PY="python$TARGET_PY"
  else
    TOOL_PY="$PYTHON"
    say "warning: no python$TARGET_PY here; dependency markers are judged as for Python $THIS_PY (put python$TARGET_PY on the PATH to make them exact)"
  fi
fi
OPTIONS="python=$TARGET_PY torch=$TORCH_SPEC torchvision=$TV_SPEC variant=$VARIANT glibc=${GLIBC:-native} torch-index=${TORCH_INDEX:-pypi}"

if ((PLAN)); then
  printf 'target: %s\nforeign: %s\ncollecting with: %s\npip target options: %s\n' \
    "$OPTIONS" "$FOREIGN" "$TOOL_PY" "${TARGET_OPTS[*]:-(none: the Python and platform of this machine)}"
  exit 0
fi

# Refuse a folder holding anything else: pip download would mix its files in, and `rm -rf` of it later would hurt.
if [[ -d "$DIR" && -n "$(ls -A "$DIR")" ]]; then
  [[ -f "$DIR/$MARKER" ]] || die "$DIR is not empty and is not a wheelhouse: choose a new or empty folder"
  [[ "$(cat "$DIR/$MARKER")" == "$OPTIONS" ]] \
    || die "$DIR holds a wheelhouse for other options ($(cat "$DIR/$MARKER")): choose a new or empty folder"
  say "refreshing the wheelhouse in $DIR (files already there are kept)"
fi
mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"
echo "$OPTIONS" > "$DIR/$MARKER"
rm -f "$DIR/$MANIFEST"   # written last: a wheelhouse without it is unfinished, and setup_env.sh refuses it
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
T0=$SECONDS

say "target $OPTIONS; collecting with $("$TOOL_PY" --version 2>&1)"
# A throw-away venv for the collecting pip: mmcv 2.1.0's setup.py (run for its metadata) needs setuptools < 70.
"$TOOL_PY" -m venv "$TMP/tools"
TPY="$TMP/tools/bin/python"
PIP=("$TPY" -m pip --disable-pip-version-check)
"${PIP[@]}" install --quiet 'setuptools<70' wheel

# torch + torchvision from another index first, so the resolution below takes them from DIR (exact pins).
if [[ -n "$TORCH_INDEX" ]]; then
  "${PIP[@]}" download --progress-bar off --no-deps --index-url "$TORCH_INDEX" "${TARGET_OPTS[@]}" \
    "torch==$TORCH_SPEC" "torchvision==$TV_SPEC" -d "$DIR"
fi
pin_of() {  # the version of the one $1 wheel in DIR, matching $2
  local f n
  f="$(ls "$DIR"/"$1"-$2[-+]*.whl 2>/dev/null | sort -V | tail -n1)"   # $2 unquoted: it may be a glob (2.11.*)
  [[ -n "$f" ]] || return 1
  n="$(basename "$f")"; n="${n#"$1"-}"; echo "${n%%-*}"
}
if [[ -n "$TORCH_INDEX" ]]; then
  TORCH_SPEC="$(pin_of torch "$TORCH_SPEC")" || die "no torch $TORCH_SPEC wheel for Python $TARGET_PY came from $TORCH_INDEX"
  TV_SPEC="$(pin_of torchvision "$TV_SPEC")" || die "no torchvision $TV_SPEC wheel for Python $TARGET_PY came from $TORCH_INDEX"
fi

# Every requirement the environment installs, with the target's torch pair in place of runtime.txt's.
REQ="$TMP/requirements.txt"
{
  grep -v -E '^(torch|torchvision)([^A-Za-z0-9_.-]|$)' "$ROOT/requirements/runtime.txt"
  echo "torch==$TORCH_SPEC"
  echo "torchvision==$TV_SPEC"
  # every other requirements file, so that one added for setup_env.sh cannot be missing here (deploy.txt once was)
  for f in "$ROOT"/requirements/*.txt; do [[ "$f" == */runtime.txt ]] || cat "$f"; done
} > "$REQ"

# mmcv: its sdist goes to the target. A torch-less wheel of it (pure Python, same metadata) stands in for it while
# pip resolves mmdet & co, which depend on mmcv but for which no mmcv wheel exists on PyPI; it never enters DIR.
"${PIP[@]}" download --quiet --no-deps --no-binary=:all: --no-build-isolation "mmcv==$MMCV_VERSION" -d "$DIR"
"${PIP[@]}" wheel --quiet --no-deps --no-build-isolation -w "$TMP/standin" "$DIR/mmcv-$MMCV_VERSION.tar.gz"
ls "$TMP"/standin/mmcv-"$MMCV_VERSION"-*none-any.whl >/dev/null \
  || die "the stand-in mmcv wheel is not pure Python: run this with a PYTHON that has no torch"

# Packages PyPI offers only as sdists (fvcore, iopath, ...): built here, once, so the target builds none of them;
# a foreign target can take them only when they are pure Python.
say "resolving to find the sdist-only packages"
"${PIP[@]}" install --quiet --dry-run --ignore-installed --report "$TMP/report.json" \
  --find-links "$TMP/standin" --find-links "$DIR" -r "$REQ"
"$TPY" - "$TMP/report.json" > "$TMP/sdists.txt" <<'EOF'
import json, sys
for item in json.load(open(sys.argv[1]))['install']:
    meta, url = item['metadata'], item['download_info']['url']
    if not url.endswith('.whl') and meta['name'].lower() != 'mmcv':
        print(f"{meta['name']}=={meta['version']}")
EOF
if [[ -s "$TMP/sdists.txt" ]]; then
  say "building wheels from sdists: $(tr '\n' ' ' < "$TMP/sdists.txt")"
  "${PIP[@]}" wheel --quiet --no-deps -w "$TMP/built" -r "$TMP/sdists.txt"
  for whl in "$TMP"/built/*.whl; do
    if ((FOREIGN)) && [[ "$whl" != *-none-any.whl ]]; then
      die "$(basename "$whl") has no wheel for Python $TARGET_PY on PyPI and compiles native code; build it on a machine like the target and add it to $DIR"
    fi
    cp "$whl" "$DIR/"
  done
fi

say "downloading"
"${PIP[@]}" download --progress-bar off --find-links "$TMP/standin" --find-links "$DIR" "${TARGET_OPTS[@]}" \
  -r "$REQ" -d "$DIR"
rm -f "$DIR"/mmcv-*.whl   # the stand-in: the target builds mmcv from the sdist
# setup_env.sh switches setuptools for mmcv's build (< 70) and for the mim-compatible editable install (< 64; on
# Python >= 3.12 77-79); tests/tools/test_wheelhouse.py checks that every spec it names is here.
for spec in 'setuptools<70' 'setuptools<64' 'setuptools>=77.0.3,<80'; do
  "${PIP[@]}" download --progress-bar off --no-deps "${TARGET_OPTS[@]}" "$spec" -d "$DIR"
done

# Proof of completeness: the same requirements resolve from DIR alone, for the target (pip takes the target options
# only with --target, even for a dry run that installs nothing).
"${PIP[@]}" install --quiet --dry-run --target "$TMP/target" --no-index --find-links "$DIR" --find-links "$TMP/standin" \
  "${TARGET_OPTS[@]}" -r "$REQ" \
  || die "the requirements do not resolve from $DIR alone (see pip's message above); report it with the options used"

TORCH_PIN="$(pin_of torch "$TORCH_SPEC")" TV_PIN="$(pin_of torchvision "$TV_SPEC")"
# The CUDA runtime torch was built with: nvcc on the target needs the same major version to compile mmcv's CUDA ops.
CUDA_RT="$(ls "$DIR"/nvidia_cuda_runtime*.whl 2>/dev/null | head -n1 | xargs -r basename | cut -d- -f2 | cut -d. -f1,2)"
cat > "$DIR/$MANIFEST" <<EOF
# mmdavit wheelhouse, made by tools/make_wheelhouse.sh; tools/setup_env.sh reads it (WHEELHOUSE=DIR).
python=$TARGET_PY
torch=$TORCH_PIN
torchvision=$TV_PIN
mmcv=$MMCV_VERSION
variant=$VARIANT
cuda=${CUDA_RT:-none}
platform=$([[ $FOREIGN == 1 ]] && echo "manylinux_2_${GLIBC#2.}_$(uname -m)" || echo "as $(uname -m) here, glibc $(ldd --version | head -n1 | awk '{print $NF}')")
commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
EOF
say "done in $((SECONDS - T0)) s: $DIR, $(ls "$DIR" | wc -l) files, $(du -sh "$DIR" | cut -f1); torch $TORCH_PIN, torchvision $TV_PIN, Python $TARGET_PY"
say "on the target: make test WHEELHOUSE=$DIR   (or make demo / make env)"
