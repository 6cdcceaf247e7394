"""Reads the ledgers of bench/prune_real.sh and prints, per search seed and pruning method, the
best valid PPL, the training tokens (each trial's last `tokens_seen`, summed) and the trials'
states; then the medians over seeds and issue 25's targets for Hyperband against no pruning
(best valid PPL within 2%, at least 1.7x fewer tokens).
    python3 bench/prune_real.py OUT [--methods "hyperband none asha"] SEED..."""
import sqlite3
import statistics
import sys

args = sys.argv[1:]
METHODS = ["none", "hyperband", "hyperband-steps", "asha"]
if "--methods" in args:
    i = args.index("--methods")
    METHODS = ["none"] + [m for m in args[i + 1].split() if m != "none"]
    del args[i:i + 2]
out, seeds = args[0], args[1:]


def run(name):
    db = sqlite3.connect(f"file:{out}/{name}.db?mode=ro", uri=True)
    rows = db.execute(
        """SELECT t.state, t.valid_ppl,
                  (SELECT MAX(m.tokens_seen) FROM metrics m WHERE m.trial_id = t.id)
           FROM sweep_trials st JOIN trials t ON t.id = st.trial_id ORDER BY st.position"""
    ).fetchall()
    best = min((v for s, v, _ in rows if s == "completed" and v is not None), default=float("inf"))
    states = {}
    for s, _, _ in rows:
        states[s] = states.get(s, 0) + 1
    return best, sum(t or 0 for _, _, t in rows), len(rows), states


res = {(m, s): run(f"{m}_s{s}") for m in METHODS for s in seeds}
print("| method | seed | trials | best valid PPL | training tokens | states |")
print("|---|---|---|---|---|---|")
for m in METHODS:
    for s in seeds:
        best, tok, n, states = res[(m, s)]
        st = ", ".join(f"{v} {k}" for k, v in sorted(states.items()))
        print(f"| {m} | {s} | {n} | {best:.2f} | {tok:,} | {st} |")
print()
print("| method | median best valid PPL | vs none | median tokens | none / method tokens |")
print("|---|---|---|---|---|")
med = {m: (statistics.median(res[(m, s)][0] for s in seeds),
           statistics.median(res[(m, s)][1] for s in seeds)) for m in METHODS}
for m in METHODS:
    ppl, tok = med[m]
    print(f"| {m} | {ppl:.2f} | {100 * (ppl / med['none'][0] - 1):+.1f}% | {tok:,.0f} | "
          f"{med['none'][1] / tok:.2f}x |")
for m in METHODS[1:]:
    ppl_ok = med[m][0] <= 1.02 * med["none"][0]
    tok_ok = med["none"][1] / med[m][1] >= 1.7
    print(f"\n{m}: best valid PPL within 2% of unpruned: {'met' if ppl_ok else 'missed'}; "
          f">= 1.7x fewer tokens: {'met' if tok_ok else 'missed'}")
