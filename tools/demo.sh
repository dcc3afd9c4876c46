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

# With other jobs on the cores, torch's threads wait for each other: on 2 cores shared with other jobs a step of the
# quick demo took 5-10 s with 2 threads and 1-1.7 s with one (README). So the demo uses only the cores that are idle
# during the second before it trains, unless OMP_NUM_THREADS is set.
threads_for_idle_cores() {
  [ -n "${OMP_NUM_THREADS:-}" ] && return 0
  local cores u1 n1 s1 i1 w1 q1 sq1 st1 u2 n2 s2 i2 w2 q2 sq2 st2 busy idle free
  cores=$(nproc)
  read -r _ u1 n1 s1 i1 w1 q1 sq1 st1 _ < /proc/stat || return 0
  sleep 1
  read -r _ u2 n2 s2 i2 w2 q2 sq2 st2 _ < /proc/stat || return 0
  busy=$(( (u2 + n2 + s2 + q2 + sq2 + st2) - (u1 + n1 + s1 + q1 + sq1 + st1) ))
  idle=$(( (i2 + w2) - (i1 + w1) ))
  [ $((busy + idle)) -gt 0 ] || return 0
  free=$(( (cores * idle + (busy + idle) / 2) / (busy + idle) ))  # idle cores, rounded
  if [ "$free" -lt "$cores" ]; then
    [ "$free" -ge 1 ] || free=1
    echo "other jobs are using $((cores - free)) of $cores cores: training with $free thread(s)" \
         "(set OMP_NUM_THREADS to choose)"
    export OMP_NUM_THREADS=$free
  fi
}

run_det() {
  local cfg=configs/toy/mask-rcnn_davit-t_toy-coco-quick.py wd="${DEMO_WORK_DIR:-work_dirs/demo}"
  "$PY" tools/make_toy_data.py coco data/toy_coco
  threads_for_idle_cores
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
