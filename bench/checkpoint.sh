#!/usr/bin/env bash
# Issue 23: what verified checkpoints cost at gpt2-medium's size (weights + AdamW's two moments,
# ~4.3 GB), through the trainer's own code: sweep's write (SHA-256 while writing, every file
# synced) beside the safetensors crate's writer with and without a sync, SHA-256 alone over the
# same bytes, and resuming (read + verify + parse) beside a plain read, both from a cold cache.
#   bench/checkpoint.sh [DIR] [MODEL]   (after `cargo build`; DIR on the disk to measure,
#                                       default results/bench-checkpoint; REPS=3)
# Needs ~7 GB of free memory for gpt2-medium (peak measured 7.0 GB; gpt2: 2.5 GB) and twice its
# checkpoint on disk.
set -euo pipefail
cd "$(dirname "$0")/.."
SWEEP=${SWEEP:-target/debug/sweep}
DIR=${1:-results/bench-checkpoint}
MODEL=${2:-gpt2-medium}
mkdir -p "$DIR"
echo "disk under $DIR: $(df -h --output=source,fstype,size,avail "$DIR" | tail -1)"
echo "memory: $(free -g | awk '/^Mem/ {print $2 " GiB, " $7 " GiB available"}')"
"$SWEEP" bench-checkpoint --dir "$DIR" --model "$MODEL" --reps "${REPS:-3}"
