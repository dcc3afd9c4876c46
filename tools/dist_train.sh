#!/usr/bin/env bash
# bash tools/dist_train.sh CONFIG GPUS [train.py args]; multi-node: NNODES, NODE_RANK, MASTER_ADDR, PORT (and
# RDZV_TIMEOUT), see docs/distributed.md.
# Without CUDA the GPUS processes run on CPU with the gloo backend.
set -euo pipefail
if [[ $# -lt 2 || ! ${2} =~ ^[1-9][0-9]*$ ]]; then
    echo "error: usage: bash tools/dist_train.sh CONFIG GPUS [train.py args] (GPUS: the number of processes per node)" >&2
    exit 2
fi
CONFIG=$1
GPUS=$2
source "$(dirname "$0")/_dist_env.sh"
RESUME=$(precheck "$ROOT/tools/train.py" "$CONFIG" "${@:3}")
# a resolved --resume goes last: it overrides a bare --resume among the user's arguments
exec "${TORCHRUN[@]}" "$ROOT/tools/train.py" "$CONFIG" --launcher pytorch "${@:3}" ${RESUME:+--resume "$RESUME"}
