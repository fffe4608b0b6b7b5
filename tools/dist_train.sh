#!/usr/bin/env bash
# Distributed training on one or more nodes with torchrun:
#   bash tools/dist_train.sh CONFIG GPUS [train.py args...]
# GPUS is the number of processes per node. Without CUDA they are CPU
# processes: use the gloo backend (the toy configs do; otherwise add
# --cfg-options env_cfg.dist_cfg.backend=gloo).
# Multi-node: NNODES=2 NODE_RANK=0 MASTER_ADDR=host PORT=29500 bash ...
CONFIG=$1
GPUS=$2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}

PYTHONPATH="$(dirname "$0")/..":$PYTHONPATH \
torchrun \
    --nnodes="$NNODES" \
    --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$GPUS" \
    --master_port="$PORT" \
    "$(dirname "$0")/train.py" \
    "$CONFIG" \
    --launcher pytorch "${@:3}"
