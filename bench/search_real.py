"""Reads the three ledgers of bench/search_real.sh and prints the comparison of issue 16's
benchmark 3: best valid PPL by trial count (TPE vs random, equal budget) and ASHA's token savings."""
import sqlite3
import sys

out = sys.argv[1]


def trials(name):
    db = sqlite3.connect(f"{out}/{name}.db")
    rows = db.execute(
        """SELECT st.position, t.state, t.valid_ppl,
                  (SELECT MAX(m.tokens_seen) FROM metrics m WHERE m.trial_id = t.id)
           FROM sweep_trials st JOIN trials t ON t.id = st.trial_id ORDER BY st.position"""
    ).fetchall()
    return [(p, s, v, tok or 0) for p, s, v, tok in rows]


def best_curve(ts):
    best, curve = float("inf"), []
    for _, state, v, _ in ts:
        if state == "completed" and v is not None:
            best = min(best, v)
        curve.append(best)
    return curve


runs = {n: trials(n) for n in ["asha", "tpe_full", "random_full"]}
for n, ts in runs.items():
    c = best_curve(ts)
    states = {}
    for _, s, _, _ in ts:
        states[s] = states.get(s, 0) + 1
    tokens = sum(t[3] for t in ts)
    print(f"{n:12} trials {len(ts):3}  best valid PPL {c[-1]:8.2f}  training tokens {tokens:>10,}  {states}")
rand_best = best_curve(runs["random_full"])[-1]
tpe = best_curve(runs["tpe_full"])
reach = next((i + 1 for i, b in enumerate(tpe) if b <= rand_best), None)
rand_reach = next(i + 1 for i, b in enumerate(best_curve(runs["random_full"])) if b <= rand_best)
print(f"random reaches its best ({rand_best:.2f}) at trial {rand_reach}; TPE reaches it at trial "
      f"{reach if reach else 'never (within the budget)'}")
full_best = tpe[-1]
asha_best = best_curve(runs["asha"])[-1]
ratio = sum(t[3] for t in runs["tpe_full"]) / max(1, sum(t[3] for t in runs["asha"]))
print(f"ASHA best {asha_best:.2f} vs unpruned TPE best {full_best:.2f} "
      f"({100 * (asha_best / full_best - 1):+.2f}%); unpruned / ASHA training tokens = {ratio:.2f}x")
for n in runs:
    print(n, "best-so-far by trial:", " ".join(f"{b:.1f}" for b in best_curve(runs[n])))
