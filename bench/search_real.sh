#!/usr/bin/env bash
# Benchmark 3 of issue 16: sweeps/lr_search.toml --profile quick on the real data, three ways with
# the same seed and budget: TPE + ASHA (the file as shipped), TPE without pruning, random search
# without pruning. Prints how fast TPE reaches random's best valid PPL and what ASHA saves.
#   bench/search_real.sh [OUT_DIR]      (default /tmp/sweep-search-bench; ~25 min on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-/tmp/sweep-search-bench}
bin=${SWEEP_BIN:-target/release/sweep}
[ -x "$bin" ] || bin=target/debug/sweep
mkdir -p "$out"
file=sweeps/lr_search.toml
# The variants live beside the original, so its relative data path still resolves.
sed 's/^method = "asha"/method = "none"/' "$file" > sweeps/.bench_tpe_full.toml
sed -e 's/^kind = "tpe"/kind = "random"/' -e 's/^method = "asha"/method = "none"/' \
    -e '/^startup = /d' "$file" > sweeps/.bench_random_full.toml
trap 'rm -f sweeps/.bench_tpe_full.toml sweeps/.bench_random_full.toml' EXIT
for v in asha:$file tpe_full:sweeps/.bench_tpe_full.toml random_full:sweeps/.bench_random_full.toml; do
  name=${v%%:*}; f=${v#*:}
  echo "== $name ($f)"
  start=$(date +%s)
  "$bin" run "$f" --profile quick --db "$out/$name.db" --artifacts "$out/$name" 2>"$out/$name.log" \
    || { tail -5 "$out/$name.log"; exit 1; }
  echo "   $(( $(date +%s) - start )) s"
done
python3 bench/search_real.py "$out"
