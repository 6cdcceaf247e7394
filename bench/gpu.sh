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
set -u
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
selftest() {
    /usr/bin/time -f "selftest $1 ($2): %es" timeout "$(left 150)" "$2" selftest --device cuda:0 \
        --precision "$1" 2>&1 | tee -a "$OUT/selftest.txt"
}
bench() { # $1 binary, $2 label, $3 precisions, $4 impls
    timeout "$(left 240)" python3 bench/gpu_bench.py --sweep "$1" --warmup 3 --steps 8 \
        --precisions "$3" --impls "$4" 2>"$OUT/gpu_bench_$2.log" | tee "$OUT/gpu_bench_$2.txt"
}
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
