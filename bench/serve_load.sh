#!/usr/bin/env bash
# Live dashboard under load (issue 17): trains one trial alone, then an identical-shape trial
# (another seed) while CLIENTS concurrent clients hit `sweep serve` (sweep page + running-trials
# JSON, alternately, keep-alive) for as long as it trains; ROUNDS (3) such pairs. Prints each
# trial's training throughput (the trainer's own tokens/s), the slowdown under load against the
# median of the lone runs, and the load's requests/s, latency percentiles and CPU time.
#
#   bench/serve_load.sh            # 50 clients, ~20 s of training per trial
#   CLIENTS=50 RATE=1 ROUNDS=3 STEPS=600 SWEEP_BIN=target/release/sweep bench/serve_load.sh
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
bin=${SWEEP_BIN:-$repo/target/debug/sweep}
clients=${CLIENTS:-50}
rate=${RATE:-0}  # requests/s per client; 0: closed loop (each client sends as fast as answers come)
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

rounds=${ROUNDS:-3}
lone=()
loaded=()
serve_cpu() { # PID: its user+system seconds
  awk -v t="$(getconf CLK_TCK)" '{ printf "%.1f", ($14 + $15) / t }' "/proc/$1/stat"
}
lone_run() { # ROUND
  local r=$1 t
  echo "== round $r: lone trial (load average $(cut -d' ' -f1 /proc/loadavg))"
  t=$(train "lone$r" "$((10 + r))")
  echo "tokens/s $t"
  lone+=("$t")
}
loaded_run() { # ROUND
  local r=$1 t addr load cpu
  echo "== round $r: trial under load, $clients clients while it trains (load average $(cut -d' ' -f1 /proc/loadavg))"
  "$bin" serve --port 0 >"$work/serve$r.log" 2>&1 &
  serve_pid=$!
  for _ in $(seq 50); do grep -qs "serving http" "$work/serve$r.log" && break; sleep 0.2; done
  addr=$(grep -o 'http://[^/]*' "$work/serve$r.log" | head -1 | sed 's#http://##')
  sweep_file "loaded$r" "$((20 + r))" "$steps"
  "$bin" run "$work/loaded$r.toml" >"$work/loaded$r.log" 2>&1 &
  run_pid=$!
  load=$("$bin" bench-serve --addr "$addr" --sweep "loaded$r" --clients "$clients" --rate "$rate" --seconds 600 --until-idle)
  wait "$run_pid"
  run_pid=""
  cpu=$(serve_cpu "$serve_pid")
  kill "$serve_pid"; wait "$serve_pid" 2>/dev/null || true; serve_pid=""
  t=$(tokens_per_s "loaded$r")
  echo "tokens/s $t"
  echo "$load  server CPU ${cpu}s"
  loaded+=("$t")
}
# Odd rounds train alone first, even rounds under load first, so neither always goes second.
for r in $(seq "$rounds"); do
  if [ $((r % 2)) -eq 1 ]; then lone_run "$r"; loaded_run "$r"; else loaded_run "$r"; lone_run "$r"; fi
done

python3 - "${lone[*]}" "${loaded[*]}" <<'EOF'
import statistics, sys
lone = [float(x) for x in sys.argv[1].split()]
loaded = [float(x) for x in sys.argv[2].split()]
m0, m1 = statistics.median(lone), statistics.median(loaded)
print("== summary")
print("lone   tokens/s: " + ", ".join(f"{x:.0f}" for x in lone) + f"  (median {m0:.0f})")
print("loaded tokens/s: " + ", ".join(f"{x:.0f}" for x in loaded) + f"  (median {m1:.0f})")
print(f"training under load: {(1 - m1 / m0) * 100:+.1f}% slower (median vs median; negative: faster)")
EOF
