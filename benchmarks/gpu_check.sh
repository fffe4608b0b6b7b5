#!/usr/bin/env bash
# The GPU checks, as one script for one call on a GPU machine (a lent
# machine has a short budget: everything that needs the GPU is here, each
# part with its own time limit so that a slow part cannot eat the others).
#
#   bash benchmarks/gpu_check.sh [OUT_DIR]     # default work_dirs/gpu_check
#
# 1. the CUDA tests (the loss on the GPU against the float64 reference;
#    fp16 autocast; a CUDA-graph capture of forward+backward);
# 2. the loss benchmark's GPU rows (loss vs memory-bound floor and CWD,
#    growing sizes; before/after columns with the loss of 6829419 where
#    git has that revision: operators, host waits, ms, MiB)
#    -> OUT_DIR/results_gpu_loss.md, and the loss under torch.compile
#    (inductor, then reduce-overhead: CUDA graphs) at the Cityscapes
#    feature size -> OUT_DIR/loss_compiled.log (the --primitives pass
#    timings of an earlier run are in results_gpu.md);
# 3. the step-cost benchmark on the GPU (toy and Cityscapes 512x1024
#    R101 -> R18) -> OUT_DIR/results_gpu_step.md;
# 4. a short GPU run of the demo with mixed precision: toy data, teacher,
#    student alone, I2CKD, I2CKD + CWD, mIoU, export, plain-MMSeg inference
#    -> OUT_DIR/demo.log, OUT_DIR/prediction_val.png.
# Limits: measured on an H200, the tests, loss, step and demo parts took
# 29, 76, 26 and 292 s (the demo at the iterations below); the compiled-
# loss part is new and its 240 s limit an estimate (two compilations of
# forward+backward); 8 files at most come back from a
# lent machine, hence the machine description on stdout only.
#
# Environment: a Python with torch (CUDA) and this repository's
# requirements. On a bare machine without a package index the pure-Python
# OpenMMLab packages can be put in .devpkgs/ (copied from a venv's
# site-packages: mmcv (lite), mmengine, mmseg, mmrazor and their small
# pure-Python dependencies); it is put on PYTHONPATH when present.
set -uo pipefail
cd "$(dirname "$0")/.."
DEFAULT_OUT_DIR=work_dirs/gpu_check
# shellcheck source=benchmarks/gpu_env.sh
. benchmarks/gpu_env.sh "$@"
status=0
part() {  # part NAME SECONDS LOG CMD...: run with a limit, log, keep going
  local name=$1 limit=$2 log=$3
  shift 3
  echo "=== $name (limit ${limit}s)"
  local t0=$SECONDS
  timeout "$limit" "$@" >"$log" 2>&1
  local rc=$?
  echo "=== $name: exit $rc after $((SECONDS - t0)) s"
  [ "$rc" -eq 0 ] || { status=1; tail -n 25 "$log"; }
}

{
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm \
    --format=csv
  "$PY" -c 'import torch, mmengine, mmseg, mmrazor; print("torch",
torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(),
"| mmengine", mmengine.__version__, "mmseg", mmseg.__version__, "mmrazor",
mmrazor.__version__)'
} 2>&1

part 'CUDA tests' 60 "$OUT_DIR/tests.log" \
  "$PY" -m pytest -q -p no:cacheprovider \
  tests/test_models/test_losses/test_i2ckd_loss.py -k cuda -rs
tail -n 3 "$OUT_DIR/tests.log"

# before/after rows need the earlier loss from git (absent in a copy of
# the work tree without .git)
BEFORE=()
git cat-file -e '6829419^{commit}' 2>/dev/null && BEFORE=(--baseline 6829419)
part 'loss benchmark' 150 "$OUT_DIR/loss.log" \
  "$PY" benchmarks/bench_i2ckd_loss.py --device cuda --no-step "${BEFORE[@]}" \
  --classes 19 150 --channels 256 512 --sizes 64x128 128x256 256x512 \
  --batches 2 8 --runs 15 --naive-runs 2 --warmup 3 \
  --out "$OUT_DIR/results_gpu_loss.md"

# the loss compiled (Triton kernels; then CUDA graphs) at the Cityscapes
# feature size, against eager and CWD in the same rows: whether compiling
# the loss is worth an option (one log: 8 files at most come back)
part 'compiled loss' 240 "$OUT_DIR/loss_compiled.log" bash -c '
  for mode in "" "--compile-mode reduce-overhead"; do
    "$0" benchmarks/bench_i2ckd_loss.py --device cuda --no-step \
      --classes 19 --channels 256 --sizes 64x128 --batches 2 --runs 15 \
      --naive-runs 1 --warmup 3 --compile inductor $mode || exit 1
  done' "$PY"
grep -E '^\| 19 ' "$OUT_DIR/loss_compiled.log"

part 'step benchmark' 60 "$OUT_DIR/step.log" \
  "$PY" benchmarks/bench_distill_step.py --device cuda --big-extras \
  --big-warmup 2 --big-runs 7 --out "$OUT_DIR/results_gpu_step.md"

part 'demo (AMP)' 320 "$OUT_DIR/demo.log" \
  "$PY" tools/demo.py --amp --work-dir /tmp/i2ckd_gpu_demo --iters 400 \
  --teacher-iters 600 --vis-images 2
cp /tmp/i2ckd_gpu_demo/prediction_val.png "$OUT_DIR/" 2>/dev/null
grep -E '^\||demo wall time|prediction \[' "$OUT_DIR/demo.log"
grep -m3 -E 'AmpOptimWrapper|amp' "$OUT_DIR/demo.log"
exit $status
