"""Table of bench/replay_resource.sh: per rung unit, first rung, reduction factor, sampler and
pruner, over the first 30 trials of 100 replayed searches: the median regret [IQR] (best final
valid PPL minus the best recorded), the share of searches whose best is within 2% of the unpruned
search of the same seed, the chance that the median of three searches is (what issue 25's
real-task target asks), and the median ratio of the unpruned search's training tokens to the
pruned one's.
    python3 bench/replay_resource.py OUT/*.jsonl"""
import json
import os
import statistics
import sys

TRIALS = 30


def first(row):
    ts = row["trials"][:TRIALS]
    finals = [t["final"] for t in ts if "final" in t]
    return (min(finals) if finals else float("inf")), sum(t["tokens"] for t in ts)


print("| rungs in | first rung | factor | sampler | pruner | regret median [IQR] | within 2% of "
      "unpruned | P(median of 3 within 2%) | unpruned / pruned tokens (median) |")
print("|---|---|---|---|---|---|---|---|---|")
for path in sys.argv[1:]:
    unit, low, eta = os.path.basename(path)[:-len(".jsonl")].split("_")
    rows = [json.loads(line) for line in open(path) if line.strip()]
    for sampler in ("tpe", "random"):
        base = {r["seed"]: first(r) for r in rows
                if r["sampler"] == sampler and r["pruner"] == "none"}
        for pruner in ("hyperband", "asha"):
            regret, rel, ratio = [], [], []
            for r in rows:
                if r["sampler"] != sampler or r["pruner"] != pruner:
                    continue
                best, tokens = first(r)
                b0, t0 = base[r["seed"]]
                regret.append(best - r["best_recorded"])
                rel.append(best / b0 - 1)
                ratio.append(t0 / tokens)
            q1, med, q3 = statistics.quantiles(regret, n=4, method="inclusive")
            p = sum(x <= 0.02 for x in rel) / len(rel)
            p3 = p ** 3 + 3 * p * p * (1 - p)
            print(f"| {unit} | {low} | {eta} | {sampler} | {pruner} | {med:.2f} [{q1:.2f} - "
                  f"{q3:.2f}] | {p:.2f} | {p3:.2f} | {statistics.median(ratio):.2f}x |")
