#!/usr/bin/env bash
# bash tools/dist_test.sh CONFIG CHECKPOINT GPUS [test.py args, e.g. --aug-test --eval mIoU]
# Multi-node: NNODES, NODE_RANK, MASTER_ADDR, PORT, RDZV_TIMEOUT (docs/distributed.md). Without CUDA the processes
# run on CPU with gloo.
set -euo pipefail
if [[ $# -lt 3 || ! ${3} =~ ^[1-9][0-9]*$ ]]; then
    echo "error: usage: bash tools/dist_test.sh CONFIG CHECKPOINT GPUS [test.py args] (GPUS: the number of processes per node)" >&2
    exit 2
fi
CONFIG=$1
CHECKPOINT=$2
GPUS=$3
source "$(dirname "$0")/_dist_env.sh"
precheck "$ROOT/tools/test.py" "$CONFIG" "$CHECKPOINT" "${@:4}" >/dev/null
exec "${TORCHRUN[@]}" "$ROOT/tools/test.py" "$CONFIG" "$CHECKPOINT" --launcher pytorch "${@:4}"
