# Sourced by the GPU scripts (gpu_check.sh, gpu_study.sh) after `cd` to the
# repository root, with the default output folder in DEFAULT_OUT_DIR and the
# script's arguments: sets OUT_DIR (first argument or the default, created,
# absolute), PYTHONPATH for a .devpkgs/ folder of pure-Python packages where
# there is one (a bare machine without a package index), unbuffered output,
# and PY (the Python to use: $PYTHON or python3).
OUT_DIR=${1:-$DEFAULT_OUT_DIR}
mkdir -p "$OUT_DIR"
OUT_DIR=$(cd "$OUT_DIR" && pwd)
if [ -d .devpkgs ]; then
  export PYTHONPATH=$PWD:$PWD/.devpkgs${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
