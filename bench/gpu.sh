#!/usr/bin/env bash
# The GPU checks of the trainer issue in one go, on a machine with an NVIDIA GPU and a
# `--features cuda` build: the golden check at f32 (`sweep selftest`), training throughput and
# MFU against HF transformers (bench/gpu_bench.py), the same with a `--features cuda-autotune`
# build when one is given, the golden check at bf16, the precision sweep end to end through the
# ledger, the golden check at f16 and a per-kernel profile. The steps run in that order of
# importance under one time budget, so a short lease still returns the first ones. Results go
# to $OUT (default bench/out).
#   cargo build --features cuda && bench/gpu.sh [path/to/cs.CL.tsv.xz]
# Environment: SWEEP_BIN (default target/debug/sweep), SWEEP_BIN_AUTOTUNE (optional),
# SWEEP_GPU_BUDGET_S (default 540), SWEEP_GPU_STEPS (optimizer steps per precision-sweep trial).
#
# LibTorch rows first (issue 14) when SWEEP_BIN_TCH (default bench/bin/sweep-tch) is a
# `--features tch` binary, built beforehand on any machine against the torch version this
# machine has (2.11.0; bench/RESULTS.md says how): `sweep selftest` at f32/bf16/f16 on
# tch:cuda:0, gpt2 at 8 x 1024 and at larger batches against HF in the same call, and
# sweeps/gpu_precision.toml end to end. It runs on this machine's torch (its lib/ goes on
# LD_LIBRARY_PATH) and builds nothing. The CubeCL rows then follow only when SWEEP_BIN is set.
set -u
T=${SWEEP_BIN_TCH:-bench/bin/sweep-tch}
CUBECL=1
[ -x "$T" ] && [ -z "${SWEEP_BIN:-}" ] && CUBECL=0
S=${SWEEP_BIN:-target/debug/sweep}
SA=${SWEEP_BIN_AUTOTUNE:-}
OUT=${OUT:-bench/out}
DATA=${1:-data/arxiv/cs.CL.tsv.xz}
STEPS=${SWEEP_GPU_STEPS:-200}
END=$(($(date +%s) + ${SWEEP_GPU_BUDGET_S:-540}))
mkdir -p "$OUT"
# At most $1 seconds, and never past the budget (less 15 s to pack the results).
left() {
    local l=$((END - $(date +%s) - 15))
    [ "$l" -lt "$1" ] && echo $((l > 1 ? l : 1)) || echo "$1"
}
# cubecl compiles its kernels with NVRTC at run time: find it where the toolkit or pip put it.
if ! ldconfig -p | grep -q libnvrtc; then
    lib=$(find /usr/local /opt /usr/lib -name 'libnvrtc.so*' 2>/dev/null | head -1)
    [ -n "$lib" ] && export LD_LIBRARY_PATH="$(dirname "$lib"):${LD_LIBRARY_PATH:-}"
fi
START=$(mktemp /tmp/gpu-start.XXXX)
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/selftest.txt"
selftest() { # $1 precision, $2 binary, $3 device (default cuda:0)
    /usr/bin/time -f "selftest $1 ($2 on ${3:-cuda:0}): %es" timeout "$(left 150)" "$2" selftest \
        --device "${3:-cuda:0}" --precision "$1" 2>&1 | tee -a "$OUT/selftest.txt"
}
bench() { # $1 binary, $2 label, $3 precisions, $4 impls, then more gpu_bench.py flags
    local bin=$1 label=$2 precisions=$3 impls=$4
    shift 4
    timeout "$(left 240)" python3 bench/gpu_bench.py --sweep "$bin" --tch "$T" --warmup 3 \
        --steps 8 --precisions "$precisions" --impls "$impls" "$@" 2>"$OUT/gpu_bench_$label.log" \
        | tee "$OUT/gpu_bench_$label.txt"
}
if [ -x "$T" ]; then
    TORCH_LIB=$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
    export LD_LIBRARY_PATH="$TORCH_LIB:${LD_LIBRARY_PATH:-}"
    python3 -c 'import torch; print("torch", torch.__version__)' | tee -a "$OUT/selftest.txt"
    selftest f32 "$T" tch:cuda:0
    bench "$T" tch bf16,f32,tf32 hf,tch
    # Larger batches under bf16 until the LibTorch run fails (out of memory), each against HF.
    for b in 16 32 64; do
        [ "$(left 60)" -ge 60 ] || break
        bench "$T" "tch_b$b" bf16 hf,tch --batch "$b"
        grep -q '"impl_name": "tch".*"tokens_per_s"' "$OUT/gpu_bench_tch_b$b.txt" || break
    done
    selftest bf16 "$T" tch:cuda:0
    selftest f16 "$T" tch:cuda:0
    SWEEP_DB="sqlite:///tmp/gpu-sweep-tch.db" timeout "$(left 200)" "$T" run \
        sweeps/gpu_precision.toml --devices tch:cuda:0 --set "data.sources=[\"$DATA\"]" \
        --set "max_steps=$STEPS" >/tmp/gpu-sweep-tch.log 2>&1
    tail -30 /tmp/gpu-sweep-tch.log | tee -a "$OUT/results_tch.txt"
    SWEEP_DB="sqlite:///tmp/gpu-sweep-tch.db" "$T" results gpu_precision 2>&1 \
        | tee -a "$OUT/results_tch.txt"
fi
if [ "$CUBECL" = 0 ]; then
    ls -la "$OUT"
    exit 0
fi
selftest f32 "$S"
bench "$S" fusion bf16,f32,tf32 hf,burn
# With autotune (when given): the first process tunes each matmul shape (minutes on a bare
# machine, RESULTS); a carried cache (target/autotune) skips what it already holds.
[ -n "$SA" ] && [ "$(left 60)" -ge 60 ] && timeout "$(left 240)" python3 bench/gpu_bench.py \
    --sweep "$SA" --warmup 3 --steps 8 --precisions bf16,f32 --impls burn \
    2>"$OUT/gpu_bench_autotune.log" | tee "$OUT/gpu_bench_autotune.txt"
selftest bf16 "$S"
export SWEEP_DB="sqlite:///tmp/gpu-sweep.db"
timeout "$(left 180)" "$S" run sweeps/gpu_precision.toml --devices cuda:0 \
    --set "data.sources=[\"$DATA\"]" --set "max_steps=$STEPS" >/tmp/gpu-sweep.log 2>&1
tail -30 /tmp/gpu-sweep.log | tee -a "$OUT/results.txt"
"$S" results gpu_precision 2>&1 | tee -a "$OUT/results.txt"
"$S" query "SELECT t.id, json_extract(t.config_json, '$.precision') AS precision, m.step, m.split, \
    round(m.loss, 4) AS loss, round(m.tokens_per_s) AS tok_s FROM metrics m JOIN trials t \
    ON t.id = m.trial_id WHERE m.split != 'train' ORDER BY t.id, m.step" 2>&1 | tee -a "$OUT/results.txt"
selftest f16 "$S"
[ "$(left 60)" -ge 60 ] && timeout "$(left 60)" bash bench/gpu_profile.sh bf16 2>&1 | tee "$OUT/profile.txt"
# The compiled kernels (CubeCL's disk cache under target/), so a later lease can start warm.
find target -newer "$START" -type f 2>/dev/null | grep -v "^target/debug/sweep" \
    | tar czf "$OUT/cubecl-cache.tgz" -T - 2>/dev/null
ls -la "$OUT"
