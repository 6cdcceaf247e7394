#!/usr/bin/env bash
# Records, once, the learning curves that the replay benchmark (bench/replay.sh) reads: a random
# search of CONFIGS configurations of sweeps/lr_search.toml's space, --profile quick, every trial
# trained fully (no pruning), validation every `eval_every` steps as shipped; then writes them to
# bench/lr_curves.json (bench/replay_curves.py).
#   bench/replay_record.sh [OUTDIR]     (~1 h on 2 shared cores for 100 configurations)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-/tmp/sweep-replay-record}
bin=${SWEEP_BIN:-target/debug/sweep}
n=${CONFIGS:-100}
mkdir -p "$out"
# Beside the original, so that its relative data path resolves; the quick profile's budget
# becomes the number of configurations, [prune] off (its keys other than the method go too).
sed -e 's/^name = "lr_search"/name = "lr_curves"/' -e 's/^kind = "tpe"/kind = "random"/' \
    -e '/^startup = /d' -e "s/^trials = 30/trials = $n/" \
    -e '/^\[prune\]/,/^\[/{/^\(min_steps\|max_steps\|reduction_factor\) = /d}' \
    -e 's/^method = .*/method = "none"/' sweeps/lr_search.toml > sweeps/.lr_curves_record.toml
trap 'rm -f sweeps/.lr_curves_record.toml' EXIT
"$bin" run sweeps/.lr_curves_record.toml --profile quick --db "$out/record.db" \
  --artifacts "$out/art"
python3 bench/replay_curves.py "$out/record.db" lr_curves@quick > bench/lr_curves.json
echo "bench/lr_curves.json: $(python3 -c 'import json; print(len(json.load(open("bench/lr_curves.json"))["configs"]))') configurations"
