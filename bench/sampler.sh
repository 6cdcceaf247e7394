#!/usr/bin/env bash
# Issue 16, benchmarks 1 and 2: sweep's samplers beside Optuna's, same machine, one run.
#   bench/sampler.sh [OUTDIR]      (after `cargo build`; Optuna in $OPTUNA_PY's environment)
# 1. Quality: final regret after 50 trials, 30 seeds, on branin, hartmann6 and lr_like.
# 2. Cost: median time of one suggestion with 100 and 1,000 finished trials in the ledger.
set -euo pipefail
cd "$(dirname "$0")/.."
SWEEP=${SWEEP:-target/debug/sweep}
PY=${OPTUNA_PY:-/work/optunavenv/bin/python}
OUT=${1:-$(mktemp -d)}
TRIALS=${TRIALS:-50} SEEDS=${SEEDS:-30} REPEATS=${REPEATS:-20}
mkdir -p "$OUT"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "optuna $("$PY" -c 'import optuna; print(optuna.__version__)'), $("$SWEEP" --version)"
"$SWEEP" bench-sampler --trials "$TRIALS" --seeds "$SEEDS" > "$OUT/quality-sweep.jsonl"
"$PY" bench/sampler_optuna.py --trials "$TRIALS" --seeds "$SEEDS" > "$OUT/quality-optuna.jsonl"
"$SWEEP" bench-sampler --cost 100 1000 --repeats "$REPEATS" > "$OUT/cost-sweep.jsonl"
"$PY" bench/sampler_optuna.py --cost 100 1000 --repeats "$REPEATS" > "$OUT/cost-optuna.jsonl"
python3 - "$OUT" <<'PY'
import json, statistics, sys, pathlib
out = pathlib.Path(sys.argv[1])
rows = [json.loads(l) for f in ("quality-sweep.jsonl", "quality-optuna.jsonl")
        for l in (out / f).read_text().splitlines() if l.strip()]
samplers = ["sweep-random", "sweep-tpe", "optuna-random", "optuna-tpe", "optuna-tpe-univariate"]
funcs = list(dict.fromkeys(r["function"] for r in rows))
def stats(f, s):
    v = [r["regret"] for r in rows if r["function"] == f and r["sampler"] == s]
    q1, med, q3 = statistics.quantiles(v, n=4, method="inclusive")
    return med, q1, q3, len(v)
print("\nFinal regret: median [IQR q1 - q3] over seeds")
print("| function | " + " | ".join(samplers) + " | sweep-TPE / Optuna-TPE (median) |")
print("|---" * (len(samplers) + 2) + "|")
for f in funcs:
    st = {s: stats(f, s) for s in samplers}
    cells = [f"{m:.4g} [{a:.3g} - {b:.3g}]" for m, a, b, _ in st.values()]
    ratio = st["sweep-tpe"][0] / st["optuna-tpe"][0]
    n = st["sweep-tpe"][3]
    print(f"| {f} ({n} seeds) | " + " | ".join(cells) + f" | {ratio:.2f}x |")
cost = [json.loads(l) for f in ("cost-sweep.jsonl", "cost-optuna.jsonl")
        for l in (out / f).read_text().splitlines() if l.strip()]
print("\nOne suggestion (median ms)")
print("| finished trials | sweep-TPE (ledger read + suggest) | of which ledger read | Optuna-TPE ask() on RDB SQLite | sweep / Optuna |")
print("|---|---|---|---|---|")
for n in sorted({c["finished"] for c in cost}):
    s = next(c for c in cost if c["finished"] == n and c["sampler"] == "sweep-tpe")
    o = next(c for c in cost if c["finished"] == n and c["sampler"] == "optuna-tpe")
    print(f"| {n} | {s['median_ms']:.2f} | {s['read_median_ms']:.2f} | {o['median_ms']:.2f} | {s['median_ms'] / o['median_ms']:.3f}x |")
PY
