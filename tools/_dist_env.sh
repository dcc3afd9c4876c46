# Sourced by dist_train.sh and dist_test.sh: torchrun's settings (multi-node through NNODES, NODE_RANK, MASTER_ADDR,
# PORT), the interpreter (the project's venv when present), CPU threads per worker, and the one check of the input
# that runs before torchrun.
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${DAVIT_VENV:-$ROOT/.venv}"
if [[ -z "${PYTHON:-}" ]]; then [[ -x "$VENV/bin/python" ]] && PYTHON="$VENV/bin/python" || PYTHON=python; fi
# without CUDA the workers are CPU processes (gloo): each gets a share of the cores, not all of them
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(( ($(nproc) + GPUS - 1) / GPUS ))}
TORCHRUN=("$PYTHON" -m torch.distributed.run --nnodes="$NNODES" --node_rank="$NODE_RANK" \
          --master_addr="$MASTER_ADDR" --nproc_per_node="$GPUS" --master_port="$PORT")
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
