#!/usr/bin/env bash
# bash tools/dist_train.sh CONFIG GPUS [train.py args]; multi-node: NNODES, NODE_RANK, MASTER_ADDR, PORT.
# Without CUDA the GPUS processes run on CPU with the gloo backend.
set -euo pipefail
CONFIG=$1
GPUS=$2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${DAVIT_VENV:-$ROOT/.venv}"
if [[ -z "${PYTHON:-}" ]]; then [[ -x "$VENV/bin/python" ]] && PYTHON="$VENV/bin/python" || PYTHON=python; fi
# CPU workers each want a share of the cores, not all of them
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(( ($(nproc) + GPUS - 1) / GPUS ))}
PYTHONPATH="$ROOT:${PYTHONPATH:-}" exec "$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" --node_rank="$NODE_RANK" --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$GPUS" --master_port="$PORT" \
    "$ROOT/tools/train.py" "$CONFIG" --launcher pytorch "${@:3}"
