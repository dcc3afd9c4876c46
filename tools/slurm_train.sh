#!/usr/bin/env bash
# As mmdet's: GPUS=16 bash tools/slurm_train.sh PARTITION JOB_NAME CONFIG [WORK_DIR] [train.py args]
set -o pipefail
if [[ $# -lt 3 ]]; then
    echo "error: usage: GPUS=16 bash tools/slurm_train.sh PARTITION JOB_NAME CONFIG [WORK_DIR] [train.py args]" >&2
    exit 2
fi
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
WORK_DIR=${4:-work_dirs/$JOB_NAME}
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SRUN_ARGS=${SRUN_ARGS:-""}
PY_ARGS=${@:5}
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
export PYTHONPATH="$ROOT:${PYTHONPATH:-}"
# Checked once here, before srun starts GPUS processes: bad input is one line and exit code 2, and --resume is
# resolved to one file that every rank loads (see _dist_env.sh's precheck).
RESUME=$(python "$ROOT/tools/train.py" ${CONFIG} --work-dir=${WORK_DIR} ${PY_ARGS} --validate-only \
         | sed -n 's/^resume-from: //p') || exit $?
set -x
MMDAVIT_PRECHECKED=1 \
srun -p ${PARTITION} \
    --job-name=${JOB_NAME} \
    --gres=gpu:${GPUS_PER_NODE} \
    --ntasks=${GPUS} \
    --ntasks-per-node=${GPUS_PER_NODE} \
    --cpus-per-task=${CPUS_PER_TASK} \
    --kill-on-bad-exit=1 \
    ${SRUN_ARGS} \
    python -u "$ROOT/tools/train.py" ${CONFIG} --work-dir=${WORK_DIR} --launcher="slurm" ${PY_ARGS} \
    ${RESUME:+--resume "$RESUME"}
