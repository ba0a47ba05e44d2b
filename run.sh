#!/usr/bin/env bash
# Set up .venv (when missing) and run the first experiment; `bash run.sh test` runs the tests.
#   bash run.sh                # the first run: SAM's λ1 held at its edge (MNIST, ~2 minutes)
#   bash run.sh reference      # the reference's quick experiment
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
  JAX_PLATFORMS=cpu exec .venv/bin/python -m pytest -q -n "${TEST_WORKERS:-2}" --dist loadgroup \
    "${LANE[@]}" "$@" tests
fi
MANUAL_DIR=${MANUAL_DIR:-../shared/data/mnist}
OFFLINE=()
[ -d "$MANUAL_DIR" ] && OFFLINE=(--manual_dir="$MANUAL_DIR")   # else TFDS downloads MNIST
if [ "${1:-}" = "reference" ]; then         # the reference's quick experiment
  shift
  exec .venv/bin/python -m image_classification --rho=0.1 --time_limit_in_hours=0.03 \
    --hessian_check_gap=0.001 --mlp_width=100 "${OFFLINE[@]}" "$@"
fi
# The first run: SAM on 5,000 MNIST images, full batch; λ1 rises to the SAM-edge and holds there.
exec .venv/bin/python -m image_classification --rho=0.05 --step_size=1.0 --mlp_depth=3 \
  --mlp_width=100 --batch_size=5000 --mini_training_set_num_batches=1 \
  --mini_test_set_num_batches=2 --max_steps=400 --measure_every_steps=20 \
  --lanczos_max_steps=40 "${OFFLINE[@]}" "$@"
