#!/usr/bin/env bash
# The main job on bundled-by-generation data: train, evaluate and draw, on CPU.
#   bash tools/demo.sh [det|seg|all]   (make demo = det, make demo-seg = seg)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
PY="${DAVIT_VENV:-$ROOT/.venv}/bin/python"
WHAT="${1:-det}"

run_det() {
  local cfg=configs/toy/mask-rcnn_davit-t_toy-coco.py wd=work_dirs/demo
  "$PY" tools/make_toy_data.py coco data/toy_coco
  local t0=$SECONDS
  "$PY" tools/train.py "$cfg" --work-dir "$wd"
  local train_s=$((SECONDS - t0))
  "$PY" tools/test.py "$cfg" "$wd/epoch_24.pth" --work-dir "$wd" --show-dir vis | tee "$wd/test_metrics.txt"
  "$PY" tools/demo_summary.py det "$wd" "$train_s"
}

run_seg() {
  local cfg=configs/toy/upernet_davit-t_toy-ade.py wd=work_dirs/demo-seg
  "$PY" tools/make_toy_data.py ade data/toy_ade
  local t0=$SECONDS
  "$PY" tools/train.py "$cfg" --work-dir "$wd"
  local train_s=$((SECONDS - t0))
  "$PY" tools/test.py "$cfg" "$wd/iter_300.pth" --work-dir "$wd" --show-dir vis --aug-test | tee "$wd/test_metrics.txt"
  "$PY" tools/demo_summary.py seg "$wd" "$train_s"
}

case "$WHAT" in
  det) run_det ;;
  seg) run_seg ;;
  all) run_det; run_seg ;;
  *) echo "usage: $0 [det|seg|all]" >&2; exit 2 ;;
esac
