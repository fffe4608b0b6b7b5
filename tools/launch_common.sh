# The torchrun and srun command lines of tools/dist_{train,test}.sh and
# tools/slurm_{train,test}.sh, written once. Sourced by them, not a launcher
# itself: each script names its own arguments (its usage line) and calls one
# of these functions with the tool to start and that tool's arguments.
TOOLS_DIR=$(dirname "${BASH_SOURCE[0]}")

# torchrun_tool TOOL ARGS...: GPUS processes on this node; NNODES, NODE_RANK,
# MASTER_ADDR and PORT from the environment (one node on 127.0.0.1:29500).
torchrun_tool() {
    local tool=$1
    shift
    PYTHONPATH="$TOOLS_DIR/..":$PYTHONPATH \
    torchrun \
        --nnodes="${NNODES:-1}" \
        --node_rank="${NODE_RANK:-0}" \
        --master_addr="${MASTER_ADDR:-127.0.0.1}" \
        --nproc_per_node="$GPUS" \
        --master_port="${PORT:-29500}" \
        "$TOOLS_DIR/$tool" "$@"
}

# srun_tool TOOL ARGS...: GPUS tasks, GPUS_PER_NODE a node, on PARTITION as
# JOB_NAME; CPUS_PER_TASK (5), SRUN_ARGS and GRES from the environment.
srun_tool() {
    local tool=$1
    shift
    # generic resources per node; unset: one GPU per task, empty: none
    local gres=${GRES-gpu:${GPUS_PER_NODE}}
    PYTHONPATH="$TOOLS_DIR/..":$PYTHONPATH \
    srun -p "${PARTITION}" \
        --job-name="${JOB_NAME}" \
        ${gres:+--gres="${gres}"} \
        --ntasks="${GPUS}" \
        --ntasks-per-node="${GPUS_PER_NODE}" \
        --cpus-per-task="${CPUS_PER_TASK:-5}" \
        --kill-on-bad-exit=1 \
        ${SRUN_ARGS} \
        python -u "$TOOLS_DIR/$tool" "$@"
}
