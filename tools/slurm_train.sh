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
PY_ARGS=${@:5}

source "$(dirname "$0")/launch_common.sh"
srun_tool train.py "${CONFIG}" --work-dir="${WORK_DIR}" --launcher="slurm" \
    ${PY_ARGS}
