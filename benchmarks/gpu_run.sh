#!/usr/bin/env bash
# Everything that needs a GPU as one command: parts a-e (benchmarks/README.md)
# each add their rows to OUT_DIR/results_gpu_run.md as they finish, their
# output to gpu_run.log. Prepare in a checkout with git and pip (OpenMMLab
# wheels, never torch, into .whl/; the loss of BASELINE_REV into
# .gpu_baseline/): bash benchmarks/gpu_run.sh --prepare WHEEL_DIR
# The call (device tool), carry ['.whl', '.gpu_baseline'], timeout_s 540:
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD || exit; bash benchmarks/gpu_run.sh $OUT
# CPU dry run: TINY=1 bash benchmarks/gpu_run.sh /tmp/gpu_dry. Environment:
# TOTAL (s, default 450; TINY 1200), PARTS (default "a b c d"), STUDY_DIR
# (the study's runs, kept for a second call), SEEDS, LIMIT_A, LIMIT_B1,
# LIMIT_B2, LIMIT_C, LIMIT_E (s), PYTHON, TINY_BACKEND=aot_eager.
set -uo pipefail
cd "$(dirname "$0")/.."
BASELINE_REV=87f5c15

if [ "${1:-}" = --prepare ]; then
  wheels=${2:?usage: gpu_run.sh --prepare WHEEL_DIR}
  exclude=$(git rev-parse --git-path info/exclude)
  mkdir -p "$(dirname "$exclude")" .whl .gpu_baseline
  for p in /.whl/ /.gpu_baseline/; do
    grep -qxF "$p" "$exclude" 2>/dev/null || echo "$p" >>"$exclude"
  done
  rm -f .whl/*.whl
  cp "$wheels"/*.whl .whl/ || exit 1
  if ls .whl | grep -qiE '^(torch|nvidia|triton)[-_]'; then
    echo "gpu_run --prepare: torch/nvidia/triton wheels in $wheels: the" \
      "machine's own torch must be used" >&2
    exit 1
  fi
  for f in i2ckd_loss prototypes; do
    git show "$BASELINE_REV:i2ckd_mm/models/losses/$f.py" \
      >".gpu_baseline/$f.py" || exit 1
  done
  du -sh .whl .gpu_baseline
  exit 0
fi

OUT_DIR=${1:-work_dirs/gpu_run}
mkdir -p "$OUT_DIR"
OUT_DIR=$(cd "$OUT_DIR" && pwd)
# this checkout's packages first (some wheels ship a 'tests' package)
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
TINY=${TINY:-0}
PARTS=${PARTS:-a b c d}
TOTAL=${TOTAL:-$([ "$TINY" = 1 ] && echo 1200 || echo 450)}
LOG=$OUT_DIR/gpu_run.log
RES=$OUT_DIR/results_gpu_run.md
TMP=$(mktemp -d /tmp/gpu_run.XXXXXX)
LOSS_COMPILE=(--compile inductor --compile-mode default reduce-overhead)
STEP_COMPILE=(--compile-losses default reduce-overhead)
START=$SECONDS
status=0
: >"$LOG"

say() { echo "$*" | tee -a "$LOG"; }
has() { case " $PARTS " in *" $1 "*) return 0 ;; esac; return 1; }
part() {  # part NAME LIMIT CMD...: run with a limit, full output to the log
  local name=$1 limit=$2 t0=$SECONDS rc
  shift 2
  say "=== $name (limit ${limit} s, at $((SECONDS - START)) s)"
  timeout --kill-after=10 "$limit" "$@" >>"$LOG" 2>&1
  rc=$?
  say "=== $name: exit $rc after $((SECONDS - t0)) s"
  [ "$rc" -eq 0 ] || status=1
  return $rc
}
add_report() {  # add_report TITLE FILE: a bench's report into the results
  { echo; echo "## $1"; echo
    if [ -s "$2" ]; then sed -n '/^- date:/,$p' "$2"
    else echo "(no report: the part failed or was cut before its rows)"; fi
  } >>"$RES"
  [ -s "$2" ] && grep -E '^\| (19|[0-9]+ \| [0-9]+ \||Cityscapes)' "$2"
}

if [ "$TINY" = 1 ]; then
  DEV=cpu
  LOSS_SIZES=("--channels 16 --sizes 8x16 --batches 2"
              "--channels 16 --sizes 16x32 --batches 2")
  LOSS_RUNS=(--runs 2 --warmup 1)
  # 32x64: a bf16 teacher on a CPU without native bf16 takes ~20x fp32
  STEP=(--device cpu --big-size 32x64 --big-warmup 0 --big-runs 1
        --teacher-sizes 32x64 --teacher-runs 1)
  LIMIT_A=${LIMIT_A:-120} LIMIT_B1=${LIMIT_B1:-240}
  LIMIT_B2=${LIMIT_B2:-240} LIMIT_C=${LIMIT_C:-400} LIMIT_E=${LIMIT_E:-900}
  DEMO=(--iters 4 --teacher-iters 4 --vis-images 1)
  JOBS=1 STUDY_TINY=(--tiny)
  if [ -n "${TINY_BACKEND:-}" ]; then
    LOSS_COMPILE=(--compile "$TINY_BACKEND")
    STEP_COMPILE=(--compile-losses "backend=$TINY_BACKEND")
  fi
else
  DEV=cuda
  LOSS_SIZES=("--channels 512 --sizes 64x128 --batches 2"
              "--channels 512 --sizes 256x512 --batches 8")
  LOSS_RUNS=(--runs 20 --warmup 3)
  STEP=(--device cuda --big-warmup 2 --big-runs 7 --teacher-sizes 512x1024
        --teacher-runs 5)
  # caps, not plans: the study gets what the parts leave of TOTAL
  LIMIT_A=${LIMIT_A:-60} LIMIT_B1=${LIMIT_B1:-120}
  LIMIT_B2=${LIMIT_B2:-100} LIMIT_C=${LIMIT_C:-180} LIMIT_E=${LIMIT_E:-330}
  DEMO=(--amp --iters 400 --teacher-iters 600 --vis-images 2)
  JOBS=6 STUDY_TINY=()  # 6 study runs share the GPU
fi

{
  echo "# GPU run: $(date '+%Y-%m-%d %H:%M %Z')"
  echo; echo '```'
  nvidia-smi --query-gpu=name,memory.total,driver_version \
    --format=csv 2>/dev/null || echo "nvidia-smi: not available"
  "$PY" benchmarks/harness.py 2>&1
  echo "nproc $(nproc); TINY=$TINY; parts: $PARTS; total ${TOTAL} s"
  echo '```'
} | tee -a "$LOG" >"$RES"

if has a; then
  part 'a. CUDA tests' "$LIMIT_A" "$PY" -m pytest -q -p no:cacheprovider \
    tests/test_models/test_losses/test_i2ckd_loss.py -k cuda -rs
  { echo; echo '## CUDA tests'; echo
    echo '`pytest tests/test_models/test_losses/test_i2ckd_loss.py -k cuda`:'
    grep -E '(passed|failed|skipped|deselected|error).* in [0-9.]+s' "$LOG" \
      | tail -n 1
  } | tee -a "$RES"
fi

if has b; then
  i=0
  for size in "${LOSS_SIZES[@]}"; do
    i=$((i + 1))
    limit=LIMIT_B$i
    # shellcheck disable=SC2086  # $size: several options
    part "b$i. loss ($size)" "${!limit}" "$PY" benchmarks/bench_i2ckd_loss.py \
      --device "$DEV" --no-step --classes 19 $size "${LOSS_RUNS[@]}" \
      --naive-runs 0 --baseline .gpu_baseline "${LOSS_COMPILE[@]}" \
      --out "$TMP/loss$i.md"
    add_report "Loss ($size)" "$TMP/loss$i.md"
  done
fi

if has c; then
  part 'c. distillation step' "$LIMIT_C" "$PY" benchmarks/bench_distill_step.py \
    "${STEP[@]}" --no-toy --big-extras --big-cwd --baseline none \
    "${STEP_COMPILE[@]}" --step-teachers bf16 \
    --teachers fp32 bf16 --out "$TMP/step.md"
  add_report 'Distillation step' "$TMP/step.md"
fi

if has d; then
  # the accuracy study's gpu protocol (accuracy_study.py), resumed from the
  # rows of an earlier call here (STUDY_DIR), else from the committed ones
  for f in benchmarks/accuracy_study_gpu*.csv; do
    b=$(basename "$f")
    if [ -n "${STUDY_DIR:-}" ] && [ -f "$STUDY_DIR/$b" ]; then f=$STUDY_DIR/$b; fi
    [ -f "$f" ] && [ ! -f "$OUT_DIR/$b" ] && cp "$f" "$OUT_DIR/"
  done
  saved=$status
  left=$((TOTAL - (SECONDS - START) - 20))
  if [ "$left" -lt 60 ]; then
    say "=== d. GPU study: skipped, ${left} s left of ${TOTAL} s"
  else
    # shellcheck disable=SC2086  # SEEDS: several values
    part "d. GPU study" "$left" "$PY" benchmarks/accuracy_study.py run \
      --protocol gpu --dataset toystreets --arms round4 \
      --seeds ${SEEDS:-0 1 2} --jobs "$JOBS" \
      --csv "$OUT_DIR/accuracy_study_gpu.csv" --work-dir "${STUDY_DIR:-$TMP/study}" "${STUDY_TINY[@]}"
    # cut at its limit (124) is how the study ends when time is short: its
    # finished runs are in the CSV, the next call resumes
    if [ $? -eq 124 ]; then
      status=$saved
      say "=== d. GPU study: cut at ${left} s; runs in the CSV are kept"
    fi
    [ -n "${STUDY_DIR:-}" ] && cp "$OUT_DIR"/accuracy_study_gpu*.csv \
      "$STUDY_DIR/" 2>/dev/null
    { echo; echo '## GPU study'; echo
      grep -E 'seed [0-9]+:' "$LOG" | tail -n 30
      echo; echo "rows: $(($(cat "$OUT_DIR/accuracy_study_gpu.csv" \
        2>/dev/null | wc -l) - 1)) in accuracy_study_gpu.csv"
    } | tee -a "$RES"
  fi
fi
if has e; then
  part 'e. demo (AMP)' "$LIMIT_E" "$PY" tools/demo.py "${DEMO[@]}" \
    --work-dir "$TMP/demo"
  cp "$TMP/demo/prediction_val.png" "$OUT_DIR/" 2>/dev/null
  { echo; echo "## Demo: tools/demo.py ${DEMO[*]}"; echo
    grep -E '^\| (model|teacher|student)|^\|-|demo wall time' "$LOG"
    grep -m1 AmpOptimWrapper "$LOG"
  } | tee -a "$RES"
fi
say "=== gpu_run: exit $status after $((SECONDS - START)) s"
exit $status
