#!/usr/bin/env bash
# Training on a Slurm cluster:
#   GPUS=8 bash tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [args]
# CPU-only cluster: GRES= (empty) requests no GPUs; GPUS/GPUS_PER_NODE are
# then processes, and the config needs the gloo backend
# (--cfg-options env_cfg.dist_cfg.backend=gloo).
set -x

PARTITION=$1
JOB_NAME=$2
CONFIG=$3
WORK_DIR=$4
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SRUN_ARGS=${SRUN_ARGS:-""}
# generic resources per node; unset: one GPU per task, empty: none
GRES=${GRES-gpu:${GPUS_PER_NODE}}
PY_ARGS=${@:5}

PYTHONPATH="$(dirname "$0")/..":$PYTHONPATH \
srun -p "${PARTITION}" \
    --job-name="${JOB_NAME}" \
    ${GRES:+--gres="${GRES}"} \
    --ntasks="${GPUS}" \
    --ntasks-per-node="${GPUS_PER_NODE}" \
    --cpus-per-task="${CPUS_PER_TASK}" \
    --kill-on-bad-exit=1 \
    ${SRUN_ARGS} \
    python -u "$(dirname "$0")/train.py" "${CONFIG}" --work-dir="${WORK_DIR}" \
    --launcher="slurm" ${PY_ARGS}
