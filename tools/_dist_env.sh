# Sourced by dist_train.sh and dist_test.sh: torchrun's settings (multi-node through NNODES, NODE_RANK, MASTER_ADDR,
# PORT), the interpreter (the project's venv when present) and CPU threads per worker.
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
