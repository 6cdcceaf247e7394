#!/usr/bin/env bash
# Issue 25, benchmark 1: searches replayed against the recorded learning curves of
# bench/lr_curves.json (bench/replay_record.sh), sweep's {none, median, ASHA, Hyperband} x
# {random, TPE} (`sweep bench-replay`, the real sampler and pruner code) beside Optuna's
# {NopPruner, MedianPruner, SuccessiveHalvingPruner, HyperbandPruner} x {RandomSampler,
# TPESampler} (bench/replay_optuna.py), the same curves, token budget and seeds; and sweep with
# pruned trials told to TPE as the worst value (the rule before issue 25).
#   bench/replay.sh [OUTDIR]      (after `cargo build`; Optuna in $OPTUNA_PY's environment)
set -euo pipefail
cd "$(dirname "$0")/.."
SWEEP=${SWEEP:-target/debug/sweep}
PY=${OPTUNA_PY:-/work/venvs/optuna/bin/python}
OUT=${1:-$(mktemp -d)}
SEEDS=${SEEDS:-100}
CURVES=${CURVES:-bench/lr_curves.json}
mkdir -p "$OUT"
echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "optuna $("$PY" -c 'import optuna; print(optuna.__version__)'), $("$SWEEP" --version)"
"$SWEEP" bench-replay --curves "$CURVES" --seeds "$SEEDS" > "$OUT/replay-sweep.jsonl"
# The ablation: pruned trials told to TPE as the worst value, the rule before issue 25.
"$SWEEP" bench-replay --curves "$CURVES" --seeds "$SEEDS" --pruned-as-worst \
  > "$OUT/replay-sweep-worst.jsonl"
budget=$(head -1 "$OUT/replay-sweep.jsonl" | python3 -c 'import json,sys; print(json.load(sys.stdin)["budget"])')
"$PY" bench/replay_optuna.py --curves "$CURVES" --seeds "$SEEDS" --tokens "$budget" \
  > "$OUT/replay-optuna.jsonl"
python3 bench/replay_report.py "$OUT/replay-sweep.jsonl" "$OUT/replay-optuna.jsonl" \
  "$OUT/replay-sweep-worst.jsonl" \
  --svg "$OUT/replay_curve.svg"
