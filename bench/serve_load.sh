#!/usr/bin/env bash
# Live dashboard under load (issue 17): trains one trial alone, then an identical-shape trial
# (another seed) while CLIENTS concurrent clients hit `sweep serve` (sweep page + running-trials
# JSON, alternately, keep-alive) for as long as it trains, then the lone trial again. Prints each
# trial's training throughput (the trainer's own tokens/s), the slowdown under load against the
# mean of the two lone runs, and the load's requests/s and latency percentiles.
#
#   bench/serve_load.sh            # 50 clients, ~20 s of training per trial
#   CLIENTS=50 STEPS=600 SWEEP_BIN=target/release/sweep bench/serve_load.sh
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
bin=${SWEEP_BIN:-$repo/target/debug/sweep}
clients=${CLIENTS:-50}
steps=${STEPS:-600}
data=${DATA:-$repo/data/arxiv/cs.CL.tsv.xz}
[ -x "$bin" ] || { echo "error: no binary at $bin; run cargo build first (or set SWEEP_BIN)" >&2; exit 2; }
[ -f "$data" ] || { echo "error: no data at $data (set DATA=path/to/cs.CL.tsv.xz)" >&2; exit 2; }

work=$(mktemp -d)
serve_pid=""
run_pid=""
cleanup() {
  for p in $serve_pid $run_pid; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
cd "$work"
export SWEEP_DB="$work/sweep.db" SWEEP_ARTIFACTS="$work/results" SWEEP_CACHE="$work/cache"

# One trial of the quick Table-4 shape; only the seed (and so the identity) differs between runs.
sweep_file() { # NAME SEED STEPS
  cat > "$work/$1.toml" <<EOF
[sweep]
name = "$1"
[base]
model = "gpt2-tiny"
tokenizer = "bpe-1024"
data = { sources = ["$data"], categories = ["cs.CL"] }
block_size = 64
batch_size = 8
grad_accum = 1
learning_rate = 1e-3
weight_decay = 0.0
epochs = 1
max_steps = $3
eval_every = 1000000
eval_tokens = 4000
seed = $2
EOF
}

tokens_per_s() { # SWEEP
  "$bin" query "SELECT t.tokens_per_s FROM trials t JOIN sweep_trials st ON st.trial_id = t.id JOIN sweeps s ON s.id = st.sweep_id WHERE s.name = '$1'" --format csv | tail -1
}

train() { # NAME SEED
  sweep_file "$1" "$2" "$steps"
  "$bin" run "$work/$1.toml" >"$work/$1.log" 2>&1
  tokens_per_s "$1"
}

echo "== warm-up (data preparation, tokenizer, first trial; not measured)"
sweep_file warmup 0 20
"$bin" run "$work/warmup.toml" >"$work/warmup.log" 2>&1

echo "== lone trial (before)"
before=$(train alone_a 1)
echo "tokens/s $before"

echo "== trial under load: $clients clients while it trains"
"$bin" serve --port 0 >"$work/serve.log" 2>&1 &
serve_pid=$!
for _ in $(seq 50); do grep -q "serving http" "$work/serve.log" && break; sleep 0.2; done
addr=$(grep -o 'http://[^/]*' "$work/serve.log" | head -1 | sed 's#http://##')
sweep_file loaded 2 "$steps"
"$bin" run "$work/loaded.toml" >"$work/loaded.log" 2>&1 &
run_pid=$!
load=$("$bin" bench-serve --addr "$addr" --sweep loaded --clients "$clients" --seconds 600 --until-idle)
wait "$run_pid"
run_pid=""
loaded=$(tokens_per_s loaded)
echo "tokens/s $loaded"
echo "$load"
kill "$serve_pid"; wait "$serve_pid" 2>/dev/null || true; serve_pid=""

echo "== lone trial (after)"
after=$(train alone_b 3)
echo "tokens/s $after"

python3 - "$before" "$loaded" "$after" <<'EOF'
import sys
b, l, a = map(float, sys.argv[1:])
base = (b + a) / 2
print(f"== summary: lone {b:.0f} / {a:.0f} tokens/s (spread {abs(b - a) / base * 100:.1f}%), "
      f"under load {l:.0f} tokens/s: {(1 - l / base) * 100:+.1f}% slower than the lone mean")
EOF
