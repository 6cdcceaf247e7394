"""Tables of the learning-curve replay (issue 25) from the JSON lines of `sweep bench-replay` and
bench/replay_optuna.py: final regret (best replayed final valid PPL minus the best recorded one)
at equal tokens, median [IQR] over seeds, per side x sampler x pruner; the regret-vs-tokens
curve; the same searches cut at the shipped budget of 30 trials; and the issue's two targets.
An SVG of the TPE curves goes to OUT/replay_curve.svg.
    python3 bench/replay_report.py OUT/replay-sweep.jsonl OUT/replay-optuna.jsonl [--svg FILE]
"""
import argparse
import json
import random
import statistics

PRUNERS = ["none", "median", "asha", "hyperband"]
FRACTIONS = [0.1, 0.25, 0.5, 0.75, 1.0]


def load(paths):
    rows = []
    for p in paths:
        with open(p) as f:
            rows += [json.loads(line) for line in f if line.strip()]
    return rows


def regret_at(row, tokens):
    """Best final value among the trials finished within `tokens`, minus the best recorded."""
    spent, best = 0, float("inf")
    for t in row["trials"]:
        spent += t["tokens"]
        if spent > tokens:
            break
        if "final" in t:
            best = min(best, t["final"])
    return best - row["best_recorded"]


def after_trials(row, n):
    ts = row["trials"][:n]
    finals = [t["final"] for t in ts if "final" in t]
    best = min(finals) if finals else float("inf")
    return best - row["best_recorded"], sum(t["tokens"] for t in ts), len(ts)


def quartiles(v):
    q1, med, q3 = statistics.quantiles(v, n=4, method="inclusive")
    return med, q1, q3


def fmt(v):
    m, a, b = quartiles(v)
    return f"{m:.2f} [{a:.2f} - {b:.2f}]"


def median_diff(a, b, resamples=2000):
    """Median of `a` minus median of `b`, with a 95% percentile-bootstrap interval (seeded)."""
    rng = random.Random(0)
    diffs = sorted(
        statistics.median(rng.choices(a, k=len(a))) - statistics.median(rng.choices(b, k=len(b)))
        for _ in range(resamples))
    return (statistics.median(a) - statistics.median(b),
            diffs[int(0.025 * resamples)], diffs[int(0.975 * resamples) - 1])


def svg(groups, budget, path):
    w, h, pad = 720, 420, 60
    keys = [k for k in groups if k[1] == "tpe" and k[0] in ("sweep", "optuna")]
    xs = [budget * f / 20 for f in range(1, 21)]
    curves = {k: [statistics.median(regret_at(r, x) for r in groups[k]) for x in xs] for k in keys}
    # Clipped: the first few trials' regrets would flatten everything after them.
    top = min(60.0, max(max(v for v in c if v != float("inf")) for c in curves.values()))
    colors = {"none": "#444", "median": "#1b9e77", "asha": "#d95f02", "hyperband": "#7570b3"}
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
             f'font-family="sans-serif" font-size="12">',
             f'<rect width="{w}" height="{h}" fill="white"/>',
             f'<text x="{w / 2}" y="20" text-anchor="middle">Median regret (valid PPL) vs training '
             f'tokens, TPE, {len(next(iter(groups.values())))} seeds: solid sweep, dashed Optuna '
             f'(clipped at {top:.0f})</text>']
    X = lambda x: pad + (w - 2 * pad) * x / budget
    Y = lambda y: h - pad - (h - 2 * pad) * min(y, top) / top
    parts.append(f'<line x1="{pad}" y1="{h - pad}" x2="{w - pad}" y2="{h - pad}" stroke="black"/>')
    parts.append(f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{h - pad}" stroke="black"/>')
    for i in range(5):
        y = top * i / 4
        parts.append(f'<text x="{pad - 6}" y="{Y(y) + 4}" text-anchor="end">{y:.0f}</text>')
        x = budget * i / 4
        parts.append(f'<text x="{X(x)}" y="{h - pad + 16}" text-anchor="middle">'
                     f'{x / 1e6:.1f}M</text>')
    parts.append(f'<text x="{w / 2}" y="{h - 15}" text-anchor="middle">training tokens</text>')
    for k, c in curves.items():
        side, _, pruner = k
        pts = " ".join(f"{X(x):.1f},{Y(y):.1f}" for x, y in zip(xs, c) if y != float("inf"))
        dash = "" if side == "sweep" else ' stroke-dasharray="6 4"'
        parts.append(f'<polyline points="{pts}" fill="none" stroke="{colors[pruner]}" '
                     f'stroke-width="2"{dash}/>')
    for i, p in enumerate(PRUNERS):
        y = pad + 16 * i
        parts.append(f'<line x1="{w - pad - 110}" y1="{y}" x2="{w - pad - 85}" y2="{y}" '
                     f'stroke="{colors[p]}" stroke-width="2"/>')
        parts.append(f'<text x="{w - pad - 80}" y="{y + 4}">{p}</text>')
    parts.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(parts) + "\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("files", nargs="+")
    ap.add_argument("--svg")
    args = ap.parse_args()
    rows = load(args.files)
    groups = {}
    for r in rows:
        groups.setdefault((r["side"], r["sampler"], r["pruner"]), []).append(r)
    budget = rows[0]["budget"]
    seeds = {k: len(v) for k, v in groups.items()}
    print(f"budget {budget:,} tokens; seeds per row: {sorted(set(seeds.values()))}")

    sides = [s for s in ["sweep", "optuna", "sweep-worst"] if any(k[0] == s for k in groups)]
    print("\n### Final regret at equal tokens (the budget): median [IQR], mean\n")
    print("| sampler | pruner | " + " | ".join(sides) + " | "
          + " | ".join(f"{s} trials (median)" for s in sides) + " |")
    print("|---" * (2 + 2 * len(sides)) + "|")
    at_budget = {}
    for sampler in ["random", "tpe"]:
        for pruner in PRUNERS:
            cells, ns = [], []
            for side in sides:
                g = groups.get((side, sampler, pruner), [])
                v = [regret_at(r, budget) for r in g]
                at_budget[(side, sampler, pruner)] = v
                cells.append(f"{fmt(v)}, {statistics.mean(v):.2f}" if v else "-")
                ns.append(f"{statistics.median(len(r['trials']) for r in g):g}" if g else "-")
            print(f"| {sampler} | {pruner} | " + " | ".join(cells) + " | " + " | ".join(ns) + " |")

    print("\n### Regret vs tokens: median regret at each fraction of the budget\n")
    head = " | ".join(f"{f:g} x ({budget * f / 1e6:.2f}M)" for f in FRACTIONS)
    print(f"| side | sampler | pruner | {head} |")
    print("|---" * (3 + len(FRACTIONS)) + "|")
    for (side, sampler, pruner), g in sorted(groups.items()):
        cells = [f"{statistics.median(regret_at(r, budget * f) for r in g):.2f}"
                 for f in FRACTIONS]
        print(f"| {side} | {sampler} | {pruner} | " + " | ".join(cells) + " |")

    print("\n### The shipped budget: the first 30 trials of each search\n")
    print("| side | sampler | pruner | regret median [IQR] | tokens (median) | vs unpruned |")
    print("|---|---|---|---|---|---|")
    for sampler in ["random", "tpe"]:
        for side in sides:
            if (side, sampler, "none") not in groups:
                continue
            base = statistics.median(after_trials(r, 30)[1] for r in groups[(side, sampler, "none")])
            for pruner in PRUNERS:
                g = groups[(side, sampler, pruner)]
                res = [after_trials(r, 30) for r in g]
                tok = statistics.median(x[1] for x in res)
                print(f"| {side} | {sampler} | {pruner} | {fmt([x[0] for x in res])} | "
                      f"{tok:,.0f} | {base / tok:.2f}x fewer |")

    def med(k):
        return statistics.median(at_budget[k])
    pruned = ["median", "asha", "hyperband"]
    s_best = min(pruned, key=lambda p: med(("sweep", "tpe", p)))
    o_best = min(pruned, key=lambda p: med(("optuna", "tpe", p)))
    def diff(a, b):
        d, lo, hi = median_diff(at_budget[a], at_budget[b])
        return f"difference of medians {d:+.2f}, 95% bootstrap interval [{lo:+.2f}, {hi:+.2f}]"
    print("\n### Targets (at the budget)\n")
    ok = med(("sweep", "tpe", s_best)) <= med(("optuna", "tpe", o_best))
    print(f"- sweep's best pruner x TPE ({s_best}: {med(('sweep', 'tpe', s_best)):.2f}) <= "
          f"Optuna's best pruner x TPESampler ({o_best}: {med(('optuna', 'tpe', o_best)):.2f}): "
          f"{'met' if ok else 'missed'}; "
          f"{diff(('sweep', 'tpe', s_best), ('optuna', 'tpe', o_best))}")
    for sampler in ["tpe", "random"]:
        h, a = med(("sweep", sampler, "hyperband")), med(("sweep", sampler, "asha"))
        print(f"- sweep Hyperband ({h:.2f}) <= sweep ASHA ({a:.2f}) with {sampler}: "
              f"{'met' if h <= a else 'missed'}; "
              f"{diff(('sweep', sampler, 'hyperband'), ('sweep', sampler, 'asha'))}")
    for side in ["sweep", "optuna"]:
        n, h = med((side, "tpe", "none")), med((side, "tpe", "hyperband"))
        print(f"- {side}: unpruned TPE ({n:.2f}) vs Hyperband x TPE ({h:.2f}): "
              f"{diff((side, 'tpe', 'none'), (side, 'tpe', 'hyperband'))}")
    if args.svg:
        svg(groups, budget, args.svg)
        print(f"\n(curve: {args.svg})")


if __name__ == "__main__":
    main()
