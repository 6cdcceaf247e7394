#!/usr/bin/env bash
# Issue 25, benchmark 2: pruning on the real task, not replayed. sweeps/lr_search.toml --profile
# quick (TPE, 30 trials) with three search seeds, each several ways (METHODS):
#   hyperband        the [prune] section as shipped (rungs in training tokens)
#   hyperband-steps  Hyperband with rungs in steps (min_steps 20, reduction factor 3): the first
#                    Hyperband of issue 25
#   hyperband-tokens-N  Hyperband with min_tokens = N, reduction factor 3
#   none             no pruning
#   asha             ASHA as shipped before issue 25 (min_steps 20, reduction factor 3)
# Prints best valid PPL and training tokens per run and the medians over seeds
# (bench/prune_real.py).
#   bench/prune_real.sh [OUT_DIR]     (~1.5 h on 2 idle cores for the default four methods; SEEDS="0 1 2" METHODS=...)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-/tmp/sweep-prune-real}
bin=${SWEEP_BIN:-target/debug/sweep}
seeds=${SEEDS:-0 1 2}
methods=${METHODS:-hyperband none asha hyperband-steps}
mkdir -p "$out"
files=()
trap 'rm -f "${files[@]}"' EXIT
# The [prune] section for a method (empty: keep the shipped one).
prune_section() {
  case $1 in
    hyperband) ;;
    hyperband-steps) printf '[prune]\nmethod = "hyperband"\nmin_steps = 20\nreduction_factor = 3\n' ;;
    hyperband-tokens-*) printf '[prune]\nmethod = "hyperband"\nmin_tokens = %s\nreduction_factor = 3\n' "${1#hyperband-tokens-}" ;;
    none) printf '[prune]\nmethod = "none"\n' ;;
    asha) printf '[prune]\nmethod = "asha"\nmin_steps = 20\nreduction_factor = 3\n' ;;
    *) echo "unknown method $1" >&2; exit 2 ;;
  esac
}
for seed in $seeds; do
  for m in $methods; do
    name=${m}_s$seed
    # Beside the original, so that its relative data path still resolves.
    f=sweeps/.bench_prune_$name.toml
    files+=("$f")
    section=$(prune_section "$m")
    python3 - "$seed" "$section" > "$f" <<'PY'
import re, sys
seed, section = sys.argv[1], sys.argv[2]
text = open("sweeps/lr_search.toml").read()
text = re.sub(r"(?m)^seed = 0$", f"seed = {seed}", text)
if section:
    # The shipped [prune] section, up to the next table, gives way to the method's.
    text = re.sub(r"(?ms)^\[prune\]\n.*?(?=^\[)", section + "\n", text)
print(text, end="")
PY
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
python3 bench/prune_real.py "$out" --methods "$methods" $seeds
