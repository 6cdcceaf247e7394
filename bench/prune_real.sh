#!/usr/bin/env bash
# Issue 25, benchmark 2: pruning on the real task, not replayed. sweeps/lr_search.toml --profile
# quick (TPE, 30 trials) with three search seeds, each three ways: Hyperband, no pruning, and
# ASHA as shipped before issue 25 (min_steps 20, reduction factor 3). Prints best valid PPL and
# training tokens per run and the medians over seeds (bench/prune_real.py).
#   bench/prune_real.sh [OUT_DIR]     (~1.5 h on 2 shared cores; SEEDS="0 1 2" METHODS=...)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-/tmp/sweep-prune-real}
bin=${SWEEP_BIN:-target/debug/sweep}
seeds=${SEEDS:-0 1 2}
methods=${METHODS:-hyperband none asha}
mkdir -p "$out"
files=()
trap 'rm -f "${files[@]}"' EXIT
for seed in $seeds; do
  for m in $methods; do
    name=${m}_s$seed
    # Beside the original, so that its relative data path still resolves.
    f=sweeps/.bench_prune_$name.toml
    files+=("$f")
    sed -e "s/^seed = 0/seed = $seed/" -e "s/^method = .*/method = \"$m\"/" \
        -e '/^\[prune\]/,/^\[/{/^max_steps = /d}' sweeps/lr_search.toml > "$f"
    [ -e "$out/$name.done" ] && { echo "== $name: done before"; continue; }
    echo "== $name"
    start=$(date +%s)
    # A run stopped half-way resumes from its ledger when the script runs again.
    "$bin" run "$f" --profile quick --db "$out/$name.db" --artifacts "$out/$name" \
      2>>"$out/$name.log" || { tail -5 "$out/$name.log"; exit 1; }
    touch "$out/$name.done"
    echo "   $(( $(date +%s) - start )) s (wall time under load: not a result)"
  done
done
python3 bench/prune_real.py "$out" $seeds
