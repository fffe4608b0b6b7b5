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
PY_ARGS=${@:5}

source "$(dirname "$0")/launch_common.sh"
srun_tool test.py "${CONFIG}" "${CHECKPOINT}" --launcher="slurm" ${PY_ARGS}
