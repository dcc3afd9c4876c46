#!/usr/bin/env bash
# Builds the project's environment in $DAVIT_VENV (default: .venv at the repo root) when it is missing or stale.
#
# Stale = the hash of the files that define the environment (requirements/*, setup.py, this script) differs from
# the one recorded at the last successful install. A fresh install takes ~15 min on 2 CPU cores, most of it
# compiling mmcv's ops; the compiled mmcv wheel is cached (see below) so later installs take ~2 min.
#
# Environment:
#   DAVIT_VENV      where the venv lives (default: <repo>/.venv)
#   PYTHON          interpreter that creates it (default: python3; the suite has run on 3.11, 3.12 and 3.13)
#   MMDAVIT_CACHE   where built mmcv wheels are kept (default: ~/.cache/mmdavit)
#   FORCE_CUDA=1    build mmcv's CUDA ops (also chosen automatically when nvcc and a GPU are both present)
#   MAX_JOBS        parallel compile jobs for mmcv (default: number of cores)
#   TORCH_CUDA_ARCH_LIST  GPU architectures for mmcv's CUDA ops (default: the present GPU's only)
#   WHEELHOUSE      install from this folder only, with no network (made by `make wheelhouse`, README "Offline
#                   install"); its manifest may pin another torch/torchvision than requirements/runtime.txt
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${DAVIT_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
CACHE="${MMDAVIT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mmdavit}"
MMCV_VERSION=2.1.0

say() { printf '[setup_env] %s\n' "$*" >&2; }
die() { printf 'setup_env: error: %s\n' "$*" >&2; exit 2; }

RUNTIME_REQ="$ROOT/requirements/runtime.txt"
WHEELHOUSE="${WHEELHOUSE:-}"
if [[ -n "$WHEELHOUSE" ]]; then
  # Checked before anything is written: a wrong folder must not leave a half-built venv behind.
  WH_MANIFEST="$WHEELHOUSE/mmdavit-wheelhouse.txt"
  [[ -f "$WH_MANIFEST" ]] || die "WHEELHOUSE=$WHEELHOUSE holds no finished wheelhouse (no mmdavit-wheelhouse.txt): make one on a connected machine with 'make wheelhouse WHEELHOUSE=DIR' and copy DIR here"
  WHEELHOUSE="$(cd "$WHEELHOUSE" && pwd)"
  # pip splits PIP_FIND_LINKS (below) on whitespace
  [[ "$WHEELHOUSE" != *[[:space:]]* ]] || die "WHEELHOUSE=$WHEELHOUSE contains a space, which pip cannot take: move or link it to a path without one"
  WH_MANIFEST="$WHEELHOUSE/mmdavit-wheelhouse.txt"
  wh_get() { sed -n "s/^$1=//p" "$WH_MANIFEST"; }
  WH_PY="$(wh_get python)" WH_TORCH="$(wh_get torch)" WH_TV="$(wh_get torchvision)"
  [[ -n "$WH_PY" && -n "$WH_TORCH" && -n "$WH_TV" ]] || die "$WH_MANIFEST lacks python=, torch= or torchvision=: make the wheelhouse again"
  if [[ -x "$VENV/bin/python" ]]; then HAVE_PY="$VENV/bin/python"; else HAVE_PY="$PYTHON"; fi
  HAVE_PY_VERSION="$("$HAVE_PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
  [[ "$HAVE_PY_VERSION" == "$WH_PY" ]] \
    || die "the wheelhouse is for Python $WH_PY but $HAVE_PY is $HAVE_PY_VERSION: set PYTHON=python$WH_PY (and remove $VENV if it exists) or make a wheelhouse with --python $HAVE_PY_VERSION"
  # Environment variables rather than flags: they reach every pip call below, and the pip that build isolation
  # starts, and they replace any find-links or index from pip's configuration, so DIR is the only source.
  export PIP_NO_INDEX=1 PIP_FIND_LINKS="$WHEELHOUSE"
fi

stamp_of() {
  cat "$ROOT"/requirements/*.txt "$ROOT/setup.py" "$ROOT/tools/setup_env.sh" | sha256sum | cut -d' ' -f1
}
STAMP="$(stamp_of)"
# A venv from a wheelhouse may hold another torch than runtime.txt's: its stamp differs, so a later install without
# WHEELHOUSE rebuilds it rather than calling it up to date.
[[ -z "$WHEELHOUSE" ]] || STAMP="$( (echo "$STAMP"; grep -E '^(python|torch|torchvision)=' "$WH_MANIFEST") | sha256sum | cut -d' ' -f1)"
if [[ -x "$VENV/bin/python" && -f "$VENV/.mmdavit-stamp" && "$(cat "$VENV/.mmdavit-stamp")" == "$STAMP" ]]; then
  say "environment $VENV is up to date"
  exit 0
fi

if [[ ! -x "$VENV/bin/python" ]]; then
  say "creating $VENV with $($PYTHON --version 2>&1)"
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip install --disable-pip-version-check --progress-bar off)

if [[ -n "$WHEELHOUSE" ]]; then
  # runtime.txt with the wheelhouse's torch pair; kept in the venv as the record of what it was built from.
  RUNTIME_REQ="$VENV/.mmdavit-runtime.txt"
  { grep -v -E '^(torch|torchvision)([^A-Za-z0-9_.-]|$)' "$ROOT/requirements/runtime.txt"
    echo "torch==$WH_TORCH"; echo "torchvision==$WH_TV"; } > "$RUNTIME_REQ"
  say "installing from $WHEELHOUSE only (pip --no-index): torch $WH_TORCH, torchvision $WH_TV"
fi
"${PIP[@]}" -r "$ROOT/requirements/build.txt"
"${PIP[@]}" -r "$RUNTIME_REQ"

# ---- mmcv 2.1.0 with compiled ops ------------------------------------------------------------------------------
# The OpenMMLab wheel index is out of reach, so mmcv is compiled from PyPI's sdist. pip's own wheel cache does not
# know which torch a wheel was compiled against (and a mismatch fails only at import, with undefined symbols), so
# pip's cache is bypassed and the wheel is kept under a key naming mmcv, torch, the op variant and the Python tag.
TORCH_VERSION="$("$PY" -c 'import torch; print(torch.__version__)')"
PY_TAG="$("$PY" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')"
if [[ "${FORCE_CUDA:-0}" == "1" ]] || { command -v nvcc >/dev/null && "$PY" -c 'import torch,sys; sys.exit(not torch.cuda.is_available())'; }; then
  export FORCE_CUDA=1
  VARIANT="cuda$("$PY" -c 'import torch; print(torch.version.cuda)')"
  # Unset, torch compiles every architecture it knows (hours for mmcv); the present GPU's is what runs here. The
  # list is part of the cache key: a wheel built for one GPU has no kernels for another.
  if [[ -z "${TORCH_CUDA_ARCH_LIST:-}" ]]; then
    TORCH_CUDA_ARCH_LIST="$("$PY" -c 'import torch; print("%d.%d" % torch.cuda.get_device_capability() if torch.cuda.is_available() else "")')"
    if [[ -n "$TORCH_CUDA_ARCH_LIST" ]]; then
      export TORCH_CUDA_ARCH_LIST
      say "TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST (the present GPU); set it to build for others"
    else
      unset TORCH_CUDA_ARCH_LIST
      say "FORCE_CUDA=1 without a visible GPU: torch builds for all the architectures it knows; set TORCH_CUDA_ARCH_LIST to shorten it"
    fi
  fi
  [[ -z "${TORCH_CUDA_ARCH_LIST:-}" ]] || VARIANT="$VARIANT-arch$(printf '%s' "$TORCH_CUDA_ARCH_LIST" | tr -c 'A-Za-z0-9.+' '_')"
else
  export FORCE_CUDA=0
  VARIANT=cpu
fi
KEY="mmcv${MMCV_VERSION}-torch${TORCH_VERSION}-${VARIANT}-${PY_TAG}"
WHEEL_DIR="$CACHE/wheels/$KEY"
WHEEL="$(ls "$WHEEL_DIR"/mmcv-*.whl 2>/dev/null | head -n1 || true)"
if [[ -z "$WHEEL" ]]; then
  say "building mmcv $MMCV_VERSION ops ($VARIANT) against torch $TORCH_VERSION; ~10 min on 2 cores"
  if [[ "$FORCE_CUDA" == 1 ]]; then
    # torch refuses an nvcc of another CUDA major version only once the build runs, inside pip's output: say it first.
    CUDA_PROBLEM="$("$PY" - <<'EOF'
import os, re, subprocess, torch
from torch.utils.cpp_extension import CUDA_HOME
nvcc = os.path.join(CUDA_HOME, 'bin', 'nvcc') if CUDA_HOME else ''
if not torch.version.cuda:
    print(f'torch {torch.__version__} is a CPU-only build, so FORCE_CUDA=1 cannot build CUDA ops: unset FORCE_CUDA')
elif not os.path.exists(nvcc):
    print('FORCE_CUDA=1 but torch finds no nvcc (CUDA_HOME, PATH): install the CUDA toolkit or unset FORCE_CUDA')
else:
    m = re.search(r'release (\d+)\.(\d+)', subprocess.run([nvcc, '--version'], capture_output=True, text=True).stdout)
    need = torch.version.cuda.split('.')[0]
    if m and m.group(1) != need:
        print(f'{nvcc} is CUDA {m.group(1)}.{m.group(2)} but torch {torch.__version__} was built with CUDA '
              f'{torch.version.cuda}: set CUDA_HOME to a CUDA {need} toolkit, or use a torch built for CUDA {m.group(1)} '
              f'(make wheelhouse WH_TORCH_INDEX=<its index>)')
    elif not os.path.exists(os.path.join(CUDA_HOME, 'include', 'cuda_runtime_api.h')):
        # e.g. an nvcc wrapper script in /usr/local/bin: torch then takes CUDA_HOME=/usr/local, which has no CUDA headers
        print(f'torch takes CUDA_HOME={CUDA_HOME} (from {nvcc}) but it has no include/cuda_runtime_api.h: '
              f'set CUDA_HOME to the toolkit itself (e.g. /usr/local/cuda)')
    elif not any(os.path.exists(os.path.join(CUDA_HOME, d, 'libcudart.so')) for d in ('lib64', 'lib')):
        # the PyPI nvidia-* wheels (site-packages/nvidia/cu13) ship libcudart.so.13 only; linking needs -lcudart
        print(f'CUDA_HOME={CUDA_HOME} has no lib64/libcudart.so (PyPI nvidia-* wheels ship libcudart.so.13 only): '
              f'make a folder of symlinks (bin, include, nvvm, lib64/ with libcudart.so -> libcudart.so.13) '
              f'and set CUDA_HOME to it')
EOF
)"
    [[ -z "$CUDA_PROBLEM" ]] || die "$CUDA_PROBLEM"
    # torch's CUDA headers include cuSPARSE's, cuBLAS's and cuSOLVER's (ATen/cuda/CUDAContextLight.h). A toolkit of
    # nvcc and the runtime alone lacks them; the nvidia-* wheels torch came with carry them, for its CUDA exactly.
    # Appended (CPATH for g++, NVCC_APPEND_FLAGS for nvcc), so that CUDA_HOME's own headers still come first.
    NV_INCLUDE="$("$PY" - <<'EOF'
import glob, os, sysconfig
from torch.utils.cpp_extension import CUDA_HOME
if os.path.exists(os.path.join(CUDA_HOME, 'include', 'cusparse.h')):
    print('')
else:
    found = sorted(glob.glob(os.path.join(sysconfig.get_paths()['purelib'], 'nvidia', 'cu*', 'include', 'cusparse.h')))
    print(os.path.dirname(found[-1]) if found else 'missing')
EOF
)"
    [[ "$NV_INCLUDE" != missing ]] || die "neither CUDA_HOME nor torch's nvidia wheels have cusparse.h, which torch's CUDA headers include: install the CUDA toolkit's library headers (cuSPARSE, cuBLAS, cuSOLVER) or the nvidia-cusparse/cublas/cusolver wheels of torch's CUDA"
    if [[ -n "$NV_INCLUDE" ]]; then
      export CPATH="${CPATH:+$CPATH:}$NV_INCLUDE" NVCC_APPEND_FLAGS="${NVCC_APPEND_FLAGS:+$NVCC_APPEND_FLAGS }-I$NV_INCLUDE"
      say "CUDA_HOME has no cusparse.h (torch's CUDA headers include it): adding $NV_INCLUDE, from torch's nvidia wheels"
    fi
  fi
  BUILD="$(mktemp -d)"
  trap 'rm -rf "$BUILD"' EXIT
  # mmcv 2.1.0's setup.py (run for metadata too) fails on setuptools >= 70; torch wants >= 77 at run time: downgrade
  # for this build only (pip's warning about torch's requirement is expected), build.txt's range is restored after.
  "${PIP[@]}" 'setuptools<70'
  SDIST="$CACHE/sdist/mmcv-$MMCV_VERSION.tar.gz"
  if [[ -f "$SDIST" ]]; then
    cp "$SDIST" "$BUILD/"
  elif ! "$PY" -m pip download --disable-pip-version-check --no-deps --no-binary=:all: --no-build-isolation \
      "mmcv==$MMCV_VERSION" -d "$BUILD"; then
    # pip runs the sdist's setup.py for its metadata, which fails on Python >= 3.13 before _patch_mmcv.sh can mend
    # it: the file itself from the index instead
    say "pip could not prepare mmcv's sdist (Python >= 3.13 cannot run its setup.py unpatched): fetching the file"
    "$PY" "$ROOT/tools/_fetch_mmcv_sdist.py" "$MMCV_VERSION" "$BUILD" >/dev/null || die "mmcv's sdist (above)"
  fi
  tar -xzf "$BUILD"/mmcv-*.tar.gz -C "$BUILD"
  # the sdist is kept beside the wheels: tests/tools/test_setup_env.py checks that the patch below still applies to it
  mkdir -p "$CACHE/sdist"
  [[ -f "$SDIST" ]] || cp "$BUILD/mmcv-$MMCV_VERSION.tar.gz" "$SDIST"
  SRC="$(ls -d "$BUILD"/mmcv-*/ | head -n1)"
  # Python >= 3.13 cannot run mmcv 2.1.0's get_version(); torch >= 2.14's headers use C++20 features, and mmcv 2.1.0
  # hard-codes -std=c++17 for its extension (tools/_patch_mmcv.sh says more)
  CXX20=--no-cxx20
  if "$PY" -c 'import torch,sys; v=tuple(int(x) for x in torch.__version__.split("+")[0].split(".")[:2]); sys.exit(v < (2, 14))'; then
    CXX20=
  fi
  bash "$ROOT/tools/_patch_mmcv.sh" "$SRC" $CXX20 || die "the patch of mmcv $MMCV_VERSION's setup.py did not apply (above)"
  export MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}"
  mkdir -p "$WHEEL_DIR.tmp"
  "$PY" -m pip wheel --disable-pip-version-check --no-deps --no-build-isolation --no-cache-dir \
    -w "$WHEEL_DIR.tmp" "$SRC"
  rm -rf "$WHEEL_DIR" && mv "$WHEEL_DIR.tmp" "$WHEEL_DIR"   # only a finished build becomes visible to the cache
  "${PIP[@]}" -r "$ROOT/requirements/build.txt"
  WHEEL="$(ls "$WHEEL_DIR"/mmcv-*.whl | head -n1)"
else
  say "reusing cached $WHEEL"
fi
"${PIP[@]}" --no-deps --force-reinstall "$WHEEL"
# mmcv's own runtime deps (addict, yapf, ...) without letting pip rebuild it:
"${PIP[@]}" -r "$ROOT/requirements/mminstall.txt" -r "$ROOT/requirements/optional.txt" -r "$ROOT/requirements/deploy.txt" \
  -r "$ROOT/requirements/tests.txt" -r "$ROOT/requirements/docs.txt" \
  -c "$RUNTIME_REQ" -c "$ROOT/requirements/build.txt" --find-links "$WHEEL_DIR"
# The tests' references that must not be importable by the environment itself (requirements/reference.txt says why);
# an environment made before that was so loses its copy.
"$PY" -m pip uninstall --disable-pip-version-check -y -q transformers tokenizers >/dev/null 2>&1 || true
rm -rf "$VENV/reference"
"${PIP[@]}" --no-deps --target "$VENV/reference" -r "$ROOT/requirements/reference.txt"
# Editable install the way OpenMMLab projects (and `mim install -e .`) do it: a legacy `setup.py develop` egg-link,
# so the distribution's location is the repo and mim finds mmdavit/.mim (configs, tools, model-index.yml).
# setuptools >= 64 would make a PEP 660 install that mim cannot locate; setuptools 80 is put back right after.
# Python >= 3.12 has no pkgutil.ImpImporter, which setuptools < 64 needs; there 77-79 (before `develop` changed in
# 80) makes the same egg-link through --no-use-pep517 (checked with Python 3.12.1, 2026-12-04).
if "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 12))'; then
  "${PIP[@]}" 'setuptools>=77.0.3,<80'
else
  "${PIP[@]}" 'setuptools<64'
fi
"${PIP[@]}" --no-deps --no-build-isolation --no-use-pep517 -e "$ROOT"
"${PIP[@]}" -r "$ROOT/requirements/build.txt"

"$PY" - <<'EOF'
import mmcv, mmcv.ops, mmdet, mmseg, mmpretrain, mmengine, torch, torchvision, timm
from mmcv.ops import roi_align, nms  # fails here, not in a test, if the ops did not compile
print(f"[setup_env] torch {torch.__version__}, torchvision {torchvision.__version__}, mmcv {mmcv.__version__} (ops ok), "
      f"mmengine {mmengine.__version__}, mmdet {mmdet.__version__}, mmseg {mmseg.__version__}, "
      f"mmpretrain {mmpretrain.__version__}, timm {timm.__version__}")
EOF
echo "$STAMP" > "$VENV/.mmdavit-stamp"
say "environment ready: $VENV"
