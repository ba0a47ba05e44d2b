#!/usr/bin/env bash
# Set up .venv (when missing) and run the quick experiment; `bash run.sh test` runs the tests.
#   bash run.sh                # quick SAM experiment on MNIST (needs ../shared/data/mnist or network)
#   bash run.sh test [ARGS]    # the fast lane: every test not marked slow (pytest ARGS)
#   bash run.sh test all [ARGS]  # the whole suite (what CI runs), on TEST_WORKERS processes (2)
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
export JAX_PLATFORMS=${JAX_PLATFORMS:-}
if [ "${1:-}" = "test" ]; then
  shift
  LANE=(-m "not slow")
  if [ "${1:-}" = "all" ]; then
    shift
    LANE=()
  fi
  JAX_PLATFORMS=cpu exec .venv/bin/python -m pytest -q -n "${TEST_WORKERS:-2}" "${LANE[@]}" "$@" tests
fi
MANUAL_DIR=${MANUAL_DIR:-../shared/data/mnist}
OFFLINE=()
[ -d "$MANUAL_DIR" ] && OFFLINE=(--manual_dir="$MANUAL_DIR")   # else TFDS downloads MNIST
exec .venv/bin/python -m image_classification --rho=0.1 --time_limit_in_hours=0.03 \
  --hessian_check_gap=0.001 --mlp_width=100 "${OFFLINE[@]}" "$@"
