#!/usr/bin/env bash
# Where a Burn training step spends its GPU time: CubeCL's per-kernel profile of `sweep
# bench-train` (gpt2, batch 8 x 1024 by default), summed per kernel by bench/cubecl_profile.py,
# beside the step's wall time from the same run.
#   bench/gpu_profile.sh [precision] [extra bench-train flags...]
set -u
S=${SWEEP_BIN:-target/debug/sweep}
P=${1:-f32}
shift || true
LOG=$(mktemp /tmp/cubecl-profile.XXXX)
STEPS=3
CUBECL_DEBUG_LOG=$LOG CUBECL_DEBUG_OPTION=profile "$S" bench-train --device cuda:0 --preset gpt2 \
    --block-size 1024 --batch-size 8 --warmup 1 --steps $STEPS --precision "$P" "$@" 2>&1 | tail -4
# The warmup step's kernels are in the log too: count them as one more step.
python3 "$(dirname "$0")/cubecl_profile.py" "$LOG" --steps $((STEPS + 1))
rm -f "$LOG"
