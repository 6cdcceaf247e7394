# shellcheck shell=bash
# Sourced by .ci/run before the ignored tests: installs huggingface_hub==2.4.0 from PyPI into a
# venv beside the checkout and exports SWEEP_TEST_HF_PYTHON, the interpreter tests/hub.rs fills a
# Hugging Face cache with (against the tests' own Hub on 127.0.0.1) to check that sweep reuses it
# and that Python reads what sweep fetched. A failed install fails CI (set -e): the test never
# skips. HF_HUB_VENV overrides the venv's place.
HF_HUB_VENV=${HF_HUB_VENV:-$(cd .. && pwd)/.hf-hub-venv-2.4.0}
if ! "$HF_HUB_VENV/bin/python" -c 'import huggingface_hub' >/dev/null 2>&1; then
  echo "== installing huggingface_hub==2.4.0 into $HF_HUB_VENV"
  if ! python3 -m venv "$HF_HUB_VENV"; then
    apt-get update -qq && apt-get install -y -qq --no-install-recommends python3-venv
    python3 -m venv "$HF_HUB_VENV"
  fi
  "$HF_HUB_VENV/bin/pip" install --quiet --disable-pip-version-check huggingface_hub==2.4.0
fi
"$HF_HUB_VENV/bin/python" -c 'import huggingface_hub as h; print("huggingface_hub", h.__version__)'
export SWEEP_TEST_HF_PYTHON="$HF_HUB_VENV/bin/python"
