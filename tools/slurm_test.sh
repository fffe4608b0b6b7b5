#!/usr/bin/env bash
# Testing on a Slurm cluster:
#   GPUS=4 bash tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [args]
# CPU-only cluster: GRES= (empty) requests no GPUs; GPUS/GPUS_PER_NODE are
# then processes, and the config needs the gloo backend
# (--cfg-options env_cfg.dist_cfg.backend=gloo).
set -x

PARTITION=$1
JOB_NAME=$2
CONFIG=$3
CHECKPOINT=$4
GPUS=${GPUS:-4}
GPUS_PER_NODE=${GPUS_PER_NODE:-4}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
PY_ARGS=${@:5}
SRUN_ARGS=${SRUN_ARGS:-""}
# generic resources per node; unset: one GPU per task, empty: none
GRES=${GRES-gpu:${GPUS_PER_NODE}}

PYTHONPATH="$(dirname "$0")/..":$PYTHONPATH \
srun -p "${PARTITION}" \
    --job-name="${JOB_NAME}" \
    ${GRES:+--gres="${GRES}"} \
    --ntasks="${GPUS}" \
    --ntasks-per-node="${GPUS_PER_NODE}" \
    --cpus-per-task="${CPUS_PER_TASK}" \
    --kill-on-bad-exit=1 \
    ${SRUN_ARGS} \
    python -u "$(dirname "$0")/test.py" "${CONFIG}" "${CHECKPOINT}" \
    --launcher="slurm" ${PY_ARGS}
