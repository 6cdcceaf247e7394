"""Table of bench/replay_resource.sh: per rung unit, first rung, reduction factor, sampler and
pruner, over the first 30 trials of 100 replayed searches: the median regret [IQR] (best final
valid PPL minus the best recorded), the share of searches whose best is within 2% of the unpruned
search of the same seed, the chance that the median of three searches is (what issue 25's
real-task target asks), and the median ratio of the unpruned search's training tokens to the
pruned one's.
First, how well one early evaluation ranks the 100 recorded configurations by their final valid
PPL (Spearman's rho over the configurations evaluated by then): at a step, and at a number of
training tokens.
    python3 bench/replay_resource.py OUT/*.jsonl [--curves bench/lr_curves.json]"""
import json
import os
import statistics
import sys

TRIALS = 30


def first(row):
    ts = row["trials"][:TRIALS]
    finals = [t["final"] for t in ts if "final" in t]
    return (min(finals) if finals else float("inf")), sum(t["tokens"] for t in ts)


def ranks(v):
    order = sorted(range(len(v)), key=lambda i: v[i])
    r = [0] * len(v)
    for rank, i in enumerate(order):
        r[i] = rank
    return r


def spearman(a, b):
    return statistics.correlation(ranks(a), ranks(b))


def early(curves, resource, at):
    """(value at the first evaluation at or past `at`, final) per configuration evaluated then."""
    out = []
    for c in curves:
        for step, loss, tokens in c["curve"]:
            if (step if resource == "steps" else tokens) >= at:
                out.append((loss, c["valid_ppl"]))
                break
    return out


args = sys.argv[1:]
curves_path = "bench/lr_curves.json"
if "--curves" in args:
    i = args.index("--curves")
    curves_path = args[i + 1]
    del args[i:i + 2]
curves = json.load(open(curves_path))["configs"]
print("| first evaluation at or past | configurations | Spearman rho with the final valid PPL |")
print("|---|---|---|")
for resource, at in [("steps", 20), ("steps", 60), ("tokens", 20480), ("tokens", 40960),
                     ("tokens", 61440)]:
    pairs = early(curves, resource, at)
    rho = spearman([p[0] for p in pairs], [p[1] for p in pairs])
    print(f"| {at} {resource} | {len(pairs)} | {rho:.2f} |")
print()
print("| rungs in | first rung | factor | sampler | pruner | regret median [IQR] | within 2% of "
      "unpruned | P(median of 3 within 2%) | unpruned / pruned tokens (median) |")
print("|---|---|---|---|---|---|---|---|---|")
for path in args:
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
