#!/usr/bin/env bash
# Distributed testing with torchrun:
#   bash tools/dist_test.sh CONFIG CHECKPOINT GPUS [test.py args...]
# GPUS is the number of processes per node. Without CUDA they are CPU
# processes: use the gloo backend (the toy configs do; otherwise add
# --cfg-options env_cfg.dist_cfg.backend=gloo).
CONFIG=$1
CHECKPOINT=$2
GPUS=$3

source "$(dirname "$0")/launch_common.sh"
torchrun_tool test.py "$CONFIG" "$CHECKPOINT" --launcher pytorch "${@:4}"
