#!/usr/bin/env bash
# bash tools/dist_test.sh CONFIG CHECKPOINT GPUS [test.py args, e.g. --aug-test --eval mIoU]
# Multi-node: NNODES, NODE_RANK, MASTER_ADDR, PORT. Without CUDA the processes run on CPU with gloo.
set -euo pipefail
CONFIG=$1
CHECKPOINT=$2
GPUS=$3
source "$(dirname "$0")/_dist_env.sh"
exec "${TORCHRUN[@]}" "$ROOT/tools/test.py" "$CONFIG" "$CHECKPOINT" --launcher pytorch "${@:4}"
