#!/usr/bin/env bash
# The accuracy study's GPU protocol (issue 16), as one script for one call on
# a lent GPU machine (one H200, 16 CPU cores), sized to finish in <= 8 min:
#
#   bash benchmarks/gpu_study.sh [OUT_DIR]         # default work_dirs/gpu_study
#   TINY=1 bash benchmarks/gpu_study.sh /tmp/dry   # dry run on the CPU
#
# ToyStreets at 256x512 (generator seed 16: fresh train/val/test splits),
# DeepLabV3 ResNetV1c-18-D8 student at full width, DeepLabV3 ResNetV1c-50-D8
# teacher, both backbones pretrained first on ToyNet classification
# (tools/pretrain_toy_backbone.py) and loaded as MMSeg `Pretrained` inits;
# 3 paired seeds of student / CWD / I2CKD (shipped, bottleneck) / I2CKD +
# CWD (two locations), AMP, 6 runs on the GPU at once. Writes the same CSV
# rows as the CPU study, to OUT_DIR/accuracy_study_gpu.csv (+ _classes,
# _curves, _pretrain); copy them to benchmarks/ and run
# `python benchmarks/accuracy_study.py report` for the report section.
# Settings: PROTOCOLS['gpu'] in benchmarks/accuracy_study.py.
#
# Time: an estimate, not a measurement (no GPU was lent when this was
# written): backbones ~80 s (both at once; 800 steps, ToyNet images rendered
# on the CPU) overlapping the data (~90 s), teacher ~70 s (600 iterations),
# 12 student runs of 500 iterations in 2 waves of 6 (~120 s each at
# 37-150 ms per iteration with 6 processes sharing the GPU, plus ~30 s of
# start-up and testing each). The whole call is cut at LIMIT seconds
# (default 470); finished runs are in the CSV by then, and running it again
# resumes (runs in the CSV are skipped; on a new machine the backbones and
# the teacher, whose checkpoints are not in the CSV, are trained again).
# WORK_DIR: where the runs go (default OUT_DIR/runs; benchmarks/gpu_run.sh
# keeps them out of the folder whose files come back).
set -uo pipefail
cd "$(dirname "$0")/.."
DEFAULT_OUT_DIR=work_dirs/gpu_study
# shellcheck source=benchmarks/gpu_env.sh
. benchmarks/gpu_env.sh "$@"
# a CPU dry run needs longer: ~40 s per run (start-up, R50 on the CPU);
# the last one (2026-12-03, 2 shared cores) did the backbones, data, teacher
# and 8 of the 12 runs, rows included, in 470 s
if [ "${TINY:-0}" = 1 ]; then LIMIT=${LIMIT:-900}; fi
LIMIT=${LIMIT:-470}
SEEDS=${SEEDS:-"0 1 2"}
JOBS=${JOBS:-6}
EXTRA=()
if [ "${TINY:-0}" = 1 ]; then
  EXTRA=(--tiny)
  JOBS=${TINY_JOBS:-1}
fi
start=$(date +%s)
"$PY" - <<'PY' || true
import torch
print('torch', torch.__version__, 'cuda', torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')
PY
timeout --kill-after=10 "$LIMIT" "$PY" benchmarks/accuracy_study.py run \
  --protocol gpu --dataset toystreets --arms round4 --seeds $SEEDS \
  --jobs "$JOBS" --work-dir "${WORK_DIR:-$OUT_DIR/runs}" \
  --csv "$OUT_DIR/accuracy_study_gpu.csv" "${EXTRA[@]}"
status=$?
echo "gpu_study: exit $status after $(( $(date +%s) - start )) s" \
  "(limit $LIMIT s)"
for f in "$OUT_DIR"/accuracy_study_gpu*.csv; do
  [ -f "$f" ] && { echo "== $f"; cat "$f"; }
done
exit $status
