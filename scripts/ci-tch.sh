# shellcheck shell=bash
# Sourced by .ci/run: installs torch 2.11.0 from PyPI into a venv, then builds and tests the
# `tch` feature (Burn's LibTorch backend) on the CPU: clippy, the fused-op unit tests and
# tests/tch.rs (golden check, training, resume, bad devices). Exits non-zero on any failure,
# the install included. TORCH_VENV overrides the venv's place (default: beside the checkout).
TORCH_VENV=${TORCH_VENV:-$(cd .. && pwd)/.torch-venv-2.11.0}
if ! "$TORCH_VENV/bin/python" -c 'import torch' >/dev/null 2>&1; then
  echo "== installing torch==2.11.0 into $TORCH_VENV"
  if ! python3 -m venv "$TORCH_VENV"; then
    apt-get update -qq && apt-get install -y -qq --no-install-recommends python3-venv
    python3 -m venv "$TORCH_VENV"
  fi
  "$TORCH_VENV/bin/pip" install --quiet --disable-pip-version-check torch==2.11.0
fi
TORCH_LIB=$("$TORCH_VENV/bin/python" -c \
  'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
"$TORCH_VENV/bin/python" -c 'import torch; print("torch", torch.__version__)'
# torch-sys' build script asks the venv's `python` for libtorch (LIBTORCH_USE_PYTORCH and
# LIBTORCH_BYPASS_VERSION_CHECK come from .cargo/config.toml); the binaries link libtorch and
# find it through LD_LIBRARY_PATH.
tch_env=(env "PATH=$TORCH_VENV/bin:$PATH" "VIRTUAL_ENV=$TORCH_VENV"
  "LD_LIBRARY_PATH=$TORCH_LIB:${LD_LIBRARY_PATH:-}")
"${tch_env[@]}" cargo clippy --features tch --all-targets -- -D warnings
"${tch_env[@]}" cargo test --features tch --lib -- libtorch:: backend::
"${tch_env[@]}" cargo test --features tch --test tch
