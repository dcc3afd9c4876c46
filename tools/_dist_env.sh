# Sourced by dist_train.sh and dist_test.sh: torchrun's settings (multi-node through NNODES, NODE_RANK, MASTER_ADDR,
# PORT, RDZV_TIMEOUT; docs/distributed.md), the interpreter (the project's venv when present), CPU threads per worker,
# and the one check of the input that runs before torchrun.
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${DAVIT_VENV:-$ROOT/.venv}"
if [[ -z "${PYTHON:-}" ]]; then [[ -x "$VENV/bin/python" ]] && PYTHON="$VENV/bin/python" || PYTHON=python; fi
# without CUDA the workers are CPU processes (gloo): each gets a share of the cores, not all of them
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(( ($(nproc) + GPUS - 1) / GPUS ))}
# seconds a node waits for all NNODES to meet at MASTER_ADDR:PORT (torchrun's static rendezvous, hosted by node 0)
RDZV_TIMEOUT=${RDZV_TIMEOUT:-900}
# a NODE_RANK outside 0..NNODES-1 would wait out RDZV_TIMEOUT for a place that never comes
if [[ ! $NNODES =~ ^[1-9][0-9]*$ || ! $NODE_RANK =~ ^(0|[1-9][0-9]*)$ || $NODE_RANK -ge $NNODES ]]; then
    echo "error: NODE_RANK must be one of 0..NNODES-1 and NNODES a number of nodes, got NNODES='$NNODES'" \
         "NODE_RANK='$NODE_RANK' (every node runs the same command with its own NODE_RANK; 0 on MASTER_ADDR)" >&2
    exit 2
fi
if [[ ! $PORT =~ ^[1-9][0-9]*$ || $PORT -gt 65535 || ! $RDZV_TIMEOUT =~ ^[1-9][0-9]*$ ]]; then
    echo "error: PORT must be a TCP port (1-65535, free on node 0) and RDZV_TIMEOUT a number of seconds > 0," \
         "got PORT='$PORT' RDZV_TIMEOUT='$RDZV_TIMEOUT'" >&2
    exit 2
fi
# torchrun itself: tools/_torchrun.py only shortens how it ends when something fails. --max-restarts stays 0: a
# restarted worker group does not bring back a node that died, it waits for it (docs/distributed.md).
TORCHRUN=("$PYTHON" "$ROOT/tools/_torchrun.py" --nnodes="$NNODES" --node_rank="$NODE_RANK" \
          --master_addr="$MASTER_ADDR" --nproc_per_node="$GPUS" --master_port="$PORT" \
          --rdzv-conf="timeout=$RDZV_TIMEOUT")
export PYTHONPATH="$ROOT:${PYTHONPATH:-}"

# precheck TOOL ARGS...: runs the tool with --validate-only. Bad input (config, data paths, checkpoints, --amp without
# a GPU) stops the script here with the tool's one line and exit code 2, instead of every worker printing it and
# torchrun ending in a ChildFailedError traceback. Prints what follows the tool's "resume-from: " line (train.py:
# the checkpoint --resume resolved to, so that every rank loads the same file).
precheck() {
    "$PYTHON" "$@" --validate-only | sed -n 's/^resume-from: //p'
}
# the workers skip loading a checkpoint the precheck has loaded already
export MMDAVIT_PRECHECKED=1
