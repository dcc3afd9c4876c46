#!/usr/bin/env bash
# The main jobs on bundled-by-generation data: train, evaluate and draw, on CPU.
#   bash tools/demo.sh [det|det-long|seg|all]   (make demo = det, make demo-long = det-long, make demo-seg = seg)
# det: a few minutes of DaViT-T Mask R-CNN training, then tools/infer.py on the validation images.
# det-long: the 24-epoch toy job (tens of minutes on 2 cores), evaluated and drawn by tools/test.py.
# For tests: DEMO_WORK_DIR replaces work_dirs/demo, DEMO_TRAIN_ARGS is appended to det's tools/train.py call.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
PY="${DAVIT_VENV:-$ROOT/.venv}/bin/python"
WHAT="${1:-det}"

last_checkpoint() {  # mmengine writes the path of the newest checkpoint here
  cat "$1/last_checkpoint"
}

run_det() {
  local cfg=configs/toy/mask-rcnn_davit-t_toy-coco-quick.py wd="${DEMO_WORK_DIR:-work_dirs/demo}"
  "$PY" tools/make_toy_data.py coco data/toy_coco
  local t0=$SECONDS
  # its last epoch ends with the COCO evaluation of the 16 validation images (bbox and segm mAP)
  # shellcheck disable=SC2086  # DEMO_TRAIN_ARGS is a list of arguments
  "$PY" tools/train.py "$cfg" --work-dir "$wd" ${DEMO_TRAIN_ARGS:-}
  local train_s=$((SECONDS - t0))
  "$PY" tools/infer.py "$cfg" "$(last_checkpoint "$wd")" data/toy_coco/val2017 --out "$wd/infer"
  # 000000.jpg holds one shape of each class
  "$PY" tools/demo_summary.py det "$wd" "$train_s" --picture "$wd/infer/vis/000000.png"
}

run_det_long() {
  local cfg=configs/toy/mask-rcnn_davit-t_toy-coco.py wd=work_dirs/demo-long
  "$PY" tools/make_toy_data.py coco data/toy_coco
  local t0=$SECONDS
  "$PY" tools/train.py "$cfg" --work-dir "$wd"
  local train_s=$((SECONDS - t0))
  "$PY" tools/test.py "$cfg" "$(last_checkpoint "$wd")" --work-dir "$wd" --show-dir vis | tee "$wd/test_metrics.txt"
  "$PY" tools/demo_summary.py det "$wd" "$train_s"
}

run_seg() {
  local cfg=configs/toy/upernet_davit-t_toy-ade.py wd=work_dirs/demo-seg
  "$PY" tools/make_toy_data.py ade data/toy_ade
  local t0=$SECONDS
  "$PY" tools/train.py "$cfg" --work-dir "$wd"
  local train_s=$((SECONDS - t0))
  "$PY" tools/test.py "$cfg" "$(last_checkpoint "$wd")" --work-dir "$wd" --show-dir vis --aug-test \
    | tee "$wd/test_metrics.txt"
  "$PY" tools/demo_summary.py seg "$wd" "$train_s"
}

case "$WHAT" in
  det) run_det ;;
  det-long) run_det_long ;;
  seg) run_seg ;;
  all) run_det; run_seg ;;
  *) echo "usage: $0 [det|det-long|seg|all]" >&2; exit 2 ;;
esac
