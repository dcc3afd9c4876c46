#!/usr/bin/env bash
# bash tools/dist_train.sh CONFIG GPUS [train.py args]; multi-node: NNODES, NODE_RANK, MASTER_ADDR, PORT.
# Without CUDA the GPUS processes run on CPU with the gloo backend.
set -euo pipefail
CONFIG=$1
GPUS=$2
source "$(dirname "$0")/_dist_env.sh"
exec "${TORCHRUN[@]}" "$ROOT/tools/train.py" "$CONFIG" --launcher pytorch "${@:3}"
