"""Writes the learning curves of bench/replay_record.sh's ledger as the JSON that the replay
benchmark reads (bench/lr_curves.json): per completed trial, its searched parameters, every
validation evaluation during training as [step, valid loss, tokens seen], its step and token
counts and its final valid PPL.
    python3 bench/replay_curves.py LEDGER.db SWEEP_NAME > bench/lr_curves.json
"""
import json
import sqlite3
import sys

db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
name = sys.argv[2]
(sweep_id, spec) = db.execute("SELECT id, spec_json FROM sweeps WHERE name = ?", (name,)).fetchone()
rows = db.execute(
    """SELECT st.position, st.label_json, t.id, t.state, t.valid_ppl
       FROM sweep_trials st JOIN trials t ON t.id = st.trial_id
       WHERE st.sweep_id = ? ORDER BY st.position""",
    (sweep_id,),
).fetchall()
configs = []
for position, label, tid, state, ppl in rows:
    if state != "completed":
        print(f"trial at position {position} is {state}: left out", file=sys.stderr)
        continue
    curve = db.execute(
        "SELECT step, loss, tokens_seen FROM metrics WHERE trial_id = ? AND split = 'valid' "
        "ORDER BY step",
        (tid,),
    ).fetchall()
    steps, tokens = db.execute(
        "SELECT MAX(step), MAX(tokens_seen) FROM metrics WHERE trial_id = ?", (tid,)
    ).fetchone()
    configs.append({
        "position": position,
        "params": json.loads(label),
        "curve": [[s, round(l, 6), t] for s, l, t in curve],
        "steps": steps,
        "tokens": tokens,
        "valid_ppl": round(ppl, 4),
    })
search = json.loads(spec).get("search", {})
doc = {
    "about": "Validation curves of a random search over sweeps/lr_search.toml's space "
             "(--profile quick, unpruned, eval_every as shipped), recorded by "
             "bench/replay_record.sh for the replay benchmark of issue 25.",
    "space": search.get("space"),
    "seed": search.get("seed"),
    "configs": configs,
}
json.dump(doc, sys.stdout, separators=(",", ":"))
print()
