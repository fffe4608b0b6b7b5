#!/usr/bin/env bash
# Distributed training on one or more nodes with torchrun:
#   bash tools/dist_train.sh CONFIG GPUS [train.py args...]
# GPUS is the number of processes per node. Without CUDA they are CPU
# processes: use the gloo backend (the toy configs do; otherwise add
# --cfg-options env_cfg.dist_cfg.backend=gloo).
# Multi-node: NNODES=2 NODE_RANK=0 MASTER_ADDR=host PORT=29500 bash ...
CONFIG=$1
GPUS=$2

source "$(dirname "$0")/launch_common.sh"
torchrun_tool train.py "$CONFIG" --launcher pytorch "${@:3}"
