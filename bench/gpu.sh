#!/usr/bin/env bash
# The GPU checks of the trainer issue in one go, on a machine with an NVIDIA GPU and a
# `--features cuda` build: the golden check at f32/bf16/f16 (`sweep selftest`), training
# throughput and MFU against HF transformers (bench/gpu_bench.py), and the precision sweep run end
# to end through the ledger. Results go to $OUT (default bench/out).
#   cargo build --features cuda && bench/gpu.sh [path/to/cs.CL.tsv.xz]
set -u
S=${SWEEP_BIN:-target/debug/sweep}
OUT=${OUT:-bench/out}
DATA=${1:-data/arxiv/cs.CL.tsv.xz}
STEPS=${SWEEP_GPU_STEPS:-200}
mkdir -p "$OUT"
# cubecl compiles its kernels with NVRTC at run time: find it where the toolkit or pip put it.
if ! ldconfig -p | grep -q libnvrtc; then
    lib=$(find /usr/local /opt /usr/lib -name 'libnvrtc.so*' 2>/dev/null | head -1)
    [ -n "$lib" ] && export LD_LIBRARY_PATH="$(dirname "$lib"):${LD_LIBRARY_PATH:-}"
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/selftest.txt"
for p in f32 bf16 f16; do
    /usr/bin/time -f "selftest $p: %es" timeout 120 "$S" selftest --device cuda:0 --precision "$p" \
        2>&1 | tee -a "$OUT/selftest.txt"
done
timeout 300 python3 bench/gpu_bench.py --sweep "$S" --warmup 3 --steps 8 \
    2>"$OUT/gpu_bench.log" | tee "$OUT/gpu_bench.txt"
export SWEEP_DB="sqlite://$OUT/gpu.db"
timeout 300 "$S" run sweeps/gpu_precision.toml --devices cuda:0 \
    --set "data.sources=[\"$DATA\"]" --set "max_steps=$STEPS" 2>&1 | tee "$OUT/sweep.log"
"$S" results gpu_precision 2>&1 | tee "$OUT/results.txt"
"$S" query "SELECT t.id, json_extract(t.config_json, '$.precision') AS precision, m.step, m.split, \
    round(m.loss, 4) AS loss, round(m.tokens_per_s) AS tok_s FROM metrics m JOIN trials t \
    ON t.id = m.trial_id WHERE m.split != 'train' ORDER BY t.id, m.step" 2>&1 | tee -a "$OUT/results.txt"
