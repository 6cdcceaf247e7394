#!/usr/bin/env bash
# Issue 25: rungs counted in optimizer steps against rungs counted in training tokens, replayed on
# the recorded curves of bench/lr_curves.json (`sweep bench-replay`, 100 search seeds each): for
# ASHA and Hyperband x {random, TPE} and several first rungs and reduction factors, over the
# shipped budget of 30 trials, each search against the unpruned search of the same seed.
#   bench/replay_resource.sh [OUTDIR]     (after `cargo build`; about a minute)
set -euo pipefail
cd "$(dirname "$0")/.."
SWEEP=${SWEEP:-target/debug/sweep}
OUT=${1:-$(mktemp -d)}
mkdir -p "$OUT"
files=()
trap 'rm -f "${files[@]}"' EXIT
variants="steps:20:2 steps:20:3 steps:20:4 steps:40:3 tokens:10240:2 tokens:10240:3 tokens:20480:2
tokens:12288:3 tokens:15360:3 tokens:17920:3 tokens:20480:3 tokens:20480:4 tokens:40960:3"
for v in $variants; do
  IFS=: read -r unit min eta <<<"$v"
  f=sweeps/.bench_replay_${unit}_${min}_$eta.toml
  files+=("$f")
  python3 - "$unit" "$min" "$eta" > "$f" <<'PY'
import re, sys
unit, low, eta = sys.argv[1:]
text = open("sweeps/lr_search.toml").read()
section = f'[prune]\nmethod = "hyperband"\nmin_{unit} = {low}\nreduction_factor = {eta}\n\n'
print(re.sub(r"(?ms)^\[prune\]\n.*?(?=^\[)", section, text), end="")
PY
  "$SWEEP" bench-replay --file "$f" --seeds 100 > "$OUT/${unit}_${min}_$eta.jsonl"
done
python3 bench/replay_resource.py "$OUT"/*.jsonl
