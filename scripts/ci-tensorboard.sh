# shellcheck shell=bash
# Sourced by .ci/run before the ignored tests: installs tensorboard==2.21.0 from PyPI into a venv
# beside the checkout and exports SWEEP_TEST_TB_PYTHON, the interpreter tests/tensorboard.rs runs
# TensorBoard's own event reader with. A failed install fails CI (set -e): the test never skips.
# TB_VENV overrides the venv's place.
TB_VENV=${TB_VENV:-$(cd .. && pwd)/.tensorboard-venv-2.21.0}
if ! "$TB_VENV/bin/python" -c 'import tensorboard' >/dev/null 2>&1; then
  echo "== installing tensorboard==2.21.0 into $TB_VENV"
  if ! python3 -m venv "$TB_VENV"; then
    apt-get update -qq && apt-get install -y -qq --no-install-recommends python3-venv
    python3 -m venv "$TB_VENV"
  fi
  "$TB_VENV/bin/pip" install --quiet --disable-pip-version-check tensorboard==2.21.0
fi
"$TB_VENV/bin/python" -c 'import tensorboard; print("tensorboard", tensorboard.__version__)'
export SWEEP_TEST_TB_PYTHON="$TB_VENV/bin/python"
