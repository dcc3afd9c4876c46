#!/usr/bin/env bash
# The GPU check: bash tools/gpu_check.sh OUT   (or make gpu-check OUT=DIR); docs/install.md, "The GPU check".
#
# On a CUDA machine, in at most 10 minutes on one H200, each step timed: mmcv's nms and roi_align on CUDA against
# their CPU results; toy Mask R-CNN and toy UPerNet trained and tested on one GPU through tools/dist_train.sh and
# tools/dist_test.sh (UPerNet also --aug-test), in fp32 and with --amp; tools/benchmark.py on DaViT-T bf16 training
# at batch 64, 224x224 (ours vs timm: ratio, TFLOP/s, fraction of peak). Without CUDA, or with GPU_CHECK_CPU=1, the
# same steps as far as a CPU takes them (ops against torchvision, 2 iterations, fp32, a tiny benchmark; --amp skipped).
# A failed step does not stop the others. OUT (new or empty) receives gpu_check.json, gpu_check.md (the table) and
# gpu_check.log (every step's output); exit code 0 if no step failed, 1 if one did, 2 for bad input (nothing written).
#
# What it needs: an interpreter that imports torch, torchvision, timm, numpy, mmengine, mmcv with its ops (built with
# CUDA ops for a CUDA check), mmdet, mmseg, mmpretrain and pycocotools. Either the project's venv (make env), or:
#   PYTHON=python3 GPU_CHECK_KIT=DIR  an interpreter with torch, torchvision, timm and numpy of its own (a GPU image),
#                   plus a folder of wheels for that Python holding what it lacks (installed with pip --no-index
#                   --no-deps into a temporary folder put on PYTHONPATH; nothing is installed into the interpreter)
#   DAVIT_VENV=DIR  the venv to take the interpreter from (default: the repository's .venv), as the launchers do
#   GPU_CHECK_CPU=1       CPU mode even where a GPU is visible
#   GPU_CHECK_BUDGET=S    seconds for all the steps (default 540 with CUDA, so that the check fits a 10-minute
#                         slot with its start; none in CPU mode); a step left without time fails as "not run"
#   GPU_CHECK_WORK=DIR    new or empty folder for the work dirs and checkpoints (default: a temporary folder, removed)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
die() { printf 'error: %s\n' "$*" >&2; exit 2; }
say() { printf '[gpu_check] %s\n' "$*"; }
empty_or_new() { [[ ! -e "$1" ]] || { [[ -d "$1" && -z "$(ls -A "$1")" ]]; }; }

[[ $# -eq 1 && -n "$1" ]] || die "usage: bash tools/gpu_check.sh OUT (or make gpu-check OUT=DIR): OUT, a new or empty folder, receives gpu_check.json, gpu_check.md and gpu_check.log"
OUT="$1"
empty_or_new "$OUT" || die "OUT '$OUT' exists and is not an empty folder: give a new or empty one (the report of an earlier check is not overwritten)"
WORK="${GPU_CHECK_WORK:-}"
[[ -z "$WORK" ]] || empty_or_new "$WORK" || die "GPU_CHECK_WORK '$WORK' exists and is not an empty folder: give a new or empty one"
case "${GPU_CHECK_CPU:-0}" in 0|1|'') ;; *) die "GPU_CHECK_CPU must be 1 (CPU mode) or 0, got '$GPU_CHECK_CPU'" ;; esac
BUDGET="${GPU_CHECK_BUDGET:-}"
[[ -z "$BUDGET" || "$BUDGET" =~ ^[1-9][0-9]*$ ]] || die "GPU_CHECK_BUDGET must be a number of seconds > 0, got '$BUDGET'"
KIT="${GPU_CHECK_KIT:-}"
if [[ -n "$KIT" ]]; then
  [[ -d "$KIT" ]] || die "GPU_CHECK_KIT '$KIT' is not a folder: point it at the folder of wheels (docs/install.md, \"The GPU check\")"
  compgen -G "$KIT/*.whl" >/dev/null || die "GPU_CHECK_KIT '$KIT' holds no .whl files (docs/install.md, \"The GPU check\", lists what goes in)"
fi

# The interpreter as tools/_dist_env.sh picks it (PYTHON, else the venv's), exported so that the launchers take the
# same one; python3 rather than python where there is no venv, since GPU images often have no plain `python`.
VENV="${DAVIT_VENV:-$ROOT/.venv}"
if [[ -n "${PYTHON:-}" ]]; then
  FROM="PYTHON"
elif [[ -x "$VENV/bin/python" ]]; then
  PYTHON="$VENV/bin/python" FROM="the venv $VENV"
else
  PYTHON="$(command -v python3 || command -v python || true)" FROM="the PATH (no venv at $VENV)"
fi
[[ -n "$PYTHON" ]] && "$PYTHON" -c '' 2>/dev/null \
  || die "no Python to run the check with (${PYTHON:-none found}): run 'make env' for the project's venv, or set PYTHON or DAVIT_VENV"
# an absolute path, since the steps run from the repository root; not resolved through links, which would leave the venv
PYTHON="$(command -v "$PYTHON")"
[[ "$PYTHON" == /* ]] || PYTHON="$(cd "$(dirname "$PYTHON")" && pwd)/$(basename "$PYTHON")"
export PYTHON

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

if [[ -n "$KIT" ]]; then
  # --no-deps: the kit holds exactly what the interpreter lacks; pip resolving with --target would ignore what is
  # installed and want torch itself from the kit
  "$PYTHON" -m pip install --quiet --disable-pip-version-check --no-index --no-deps --no-compile --no-cache-dir \
    --target "$TMP/site" "$KIT"/*.whl >"$TMP/pip.log" 2>&1 \
    || die "GPU_CHECK_KIT '$KIT': pip could not install its wheels into $PYTHON's Python: $(grep -m1 -i error "$TMP/pip.log" || tail -n1 "$TMP/pip.log")"
  export PYTHONPATH="$TMP/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

# Every import the steps need, before anything is written: a broken environment is one line, not ten failed steps.
if ! "$PYTHON" "$ROOT/tools/_gpu_check.py" probe "$TMP/probe.json" 2>"$TMP/probe.err"; then
  MISSING="$("$PYTHON" -c 'import json,sys; m=json.load(open(sys.argv[1]))["missing"]; print(", ".join(x.split()[0] for x in m), "(" + m[0].split(" (", 1)[1])' "$TMP/probe.json" 2>/dev/null \
             || tail -n1 "$TMP/probe.err")"
  die "$PYTHON (from $FROM) cannot import $MISSING: run 'make env' for the project's venv, set DAVIT_VENV or PYTHON to an environment that has them, or GPU_CHECK_KIT=DIR to a folder of wheels for this Python (docs/install.md, \"The GPU check\")"
fi
read -r CUDA DEVICE MMCV_CUDA VERSIONS < <("$PYTHON" - "$TMP/probe.json" <<'EOF'
import json, sys
p = json.load(open(sys.argv[1]))
v = p['versions']
print(int(bool(p.get('cuda_available'))), (p.get('device_name') or 'none').replace(' ', '_'),
      p.get('mmcv_cuda', '?').replace(' ', '_'),
      f"Python {p['python_version']}, torch {v['torch']}, mmcv {v['mmcv']}, mmdet {v['mmdet']}, mmseg {v['mmseg']}, "
      f"mmpretrain {v['mmpretrain']}, numpy {v['numpy']}")
EOF
)
if [[ "${GPU_CHECK_CPU:-0}" == 1 ]]; then
  MODE=cpu REASON="GPU_CHECK_CPU=1"
elif [[ "$CUDA" == 1 ]]; then
  MODE=cuda REASON="CUDA visible: ${DEVICE//_/ }"
else
  MODE=cpu REASON="no CUDA visible to torch"
fi
say "interpreter: $PYTHON (from $FROM${KIT:+, with the wheels of GPU_CHECK_KIT=$KIT}); $VERSIONS"
say "mode: $MODE ($REASON); mmcv's ops were compiled with CUDA: ${MMCV_CUDA//_/ }"
if [[ "$MODE" == cuda && "$MMCV_CUDA" == not_available ]]; then
  say "warning: this mmcv has CPU ops only: the ops steps and Mask R-CNN's (RoIAlign, nms) will fail; build mmcv with FORCE_CUDA=1 (docs/install.md, CUDA)"
fi
[[ "$MODE" == cpu || -n "$BUDGET" ]] || BUDGET=540

mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
if [[ -z "$WORK" ]]; then WORK="$TMP/work"; fi
mkdir -p "$WORK"
WORK="$(cd "$WORK" && pwd)"
cd "$ROOT"
# In the background so that a TERM or Ctrl-C here reaches the check, which then ends the step in flight (each runs
# in a process group of its own) and leaves an unfinished report; bash alone would wait for the check to end.
"$PYTHON" tools/_gpu_check.py run "$OUT" --mode "$MODE" --mode-reason "$REASON" --probe "$TMP/probe.json" \
  --work "$WORK" ${BUDGET:+--budget "$BUDGET"} &
CHECK=$!
trap 'kill -TERM "$CHECK" 2>/dev/null || true' INT TERM
RC=0
wait "$CHECK" || RC=$?
while kill -0 "$CHECK" 2>/dev/null; do RC=0; wait "$CHECK" || RC=$?; done
exit "$RC"
