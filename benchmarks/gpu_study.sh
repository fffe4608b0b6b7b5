#!/usr/bin/env bash
# The accuracy study's GPU protocol (PROTOCOLS['gpu'] in accuracy_study.py;
# sizes and estimates: benchmarks/README.md) as one call on a GPU machine:
#   bash benchmarks/gpu_study.sh [OUT_DIR]         # default work_dirs/gpu_study
#   TINY=1 bash benchmarks/gpu_study.sh /tmp/dry   # dry run on the CPU
# Rows go to OUT_DIR/accuracy_study_gpu*.csv (then `accuracy_study.py
# report`). Cut at LIMIT s (default 470; TINY 900): finished runs stay in the
# CSV and the next call resumes. WORK_DIR (default OUT_DIR/runs), SEEDS,
# JOBS, PYTHON.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=${1:-work_dirs/gpu_study}
mkdir -p "$OUT_DIR"
OUT_DIR=$(cd "$OUT_DIR" && pwd)
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
EXTRA=()
if [ "${TINY:-0}" = 1 ]; then
  LIMIT=${LIMIT:-900} JOBS=${TINY_JOBS:-1} EXTRA=(--tiny)
fi
start=$SECONDS
# shellcheck disable=SC2086  # SEEDS: several values
timeout --kill-after=10 "${LIMIT:-470}" "${PYTHON:-python3}" \
  benchmarks/accuracy_study.py run --protocol gpu --dataset toystreets \
  --arms round4 --seeds ${SEEDS:-0 1 2} --jobs "${JOBS:-6}" \
  --work-dir "${WORK_DIR:-$OUT_DIR/runs}" \
  --csv "$OUT_DIR/accuracy_study_gpu.csv" "${EXTRA[@]}"
status=$?
echo "gpu_study: exit $status after $((SECONDS - start)) s" \
  "(limit ${LIMIT:-470} s)"
for f in "$OUT_DIR"/accuracy_study_gpu*.csv; do
  [ -f "$f" ] && { echo "== $f"; cat "$f"; }
done
exit $status
