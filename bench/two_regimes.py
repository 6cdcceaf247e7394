#!/usr/bin/env python3
"""Issue 27's two-regime table: each row of Tables 3-7 at quick scale, fine-tuned (`quick`) and
from scratch (`quick-scratch`), against the paper's change, as Markdown for bench/RESULTS.md.

    sweep run experiments/ablations.toml --profile quick           # and --profile quick-scratch
    python3 bench/two_regimes.py [--sweep target/debug/sweep] [--db results/sweep.db]
                                 [--scratch-db LEDGER]   # the from-scratch trials, if elsewhere

Reads `sweep results ablations@P --format json` (each row's valid-PPL change from the baseline,
paired by seed, with its 95% interval and verdict) and the paper's numbers from
experiments/ablations.toml. Nothing here computes statistics: they are sweep's (src/stats/).
"""
import argparse
import json
import subprocess
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
AXES = ["grad_accum", "block_size", "weight_decay", "epochs", "batch_size"]
TABLE = {"grad_accum": 3, "block_size": 4, "weight_decay": 5, "epochs": 6, "batch_size": 7}


def results(sweep, db, profile):
    r = subprocess.run(
        [sweep, "results", f"ablations@{profile}", "--db", db, "--format", "json"],
        capture_output=True, text=True)
    if r.returncode != 0:
        print(f"(no ablations@{profile} in {db}: {r.stderr.strip()})")
        return {"effects": [], "rows": []}
    return json.loads(r.stdout)


def paper_changes():
    """(axis, paper value) -> the paper's relative change of valid PPL from the 82M* baseline."""
    spec = tomllib.loads((ROOT / "experiments/ablations.toml").read_text())
    refs = spec["reference"]
    base = next(r for r in refs if r["label"] == "82M*")["valid_ppl"]
    out = {}
    for r in refs:
        axis = [a for a in AXES if a in r and r["label"] != "82M*"]
        if axis:
            out[(axis[0], r[axis[0]])] = r["valid_ppl"] / base - 1
    return out, spec


def quick_to_paper(spec, axis, value):
    """A quick row's value as the paper's (block sizes are scaled down 4x at quick scale)."""
    full = spec["grid"][axis]
    quick = spec.get("profile", {}).get("quick", {}).get("grid", {}).get(axis, full)
    return full[quick.index(value)] if value in quick else value


def effects(doc):
    """(axis, value) -> the valid-PPL effect of the row that varies that axis alone."""
    out = {}
    for e in doc["effects"]:
        if e["metric"] != "valid_ppl":
            continue
        varied = [a for a in AXES if e["label"].get(a) != e["baseline"].get(a)]
        if len(varied) == 1:
            out[(varied[0], e["label"][varied[0]])] = e
    return out


def pct(x):
    """A fraction as a signed percentage, with two decimals below 1%."""
    return f"{x*100:+.2f}%" if abs(x) < 0.01 else f"{x*100:+.1f}%"


def cell(e):
    if e is None:
        return "–"
    if e["ci95"] is None:
        return f"{pct(e['change'])} (n = {e['n']})"
    lo, hi = e["ci95"]
    return f"{pct(e['change'])} [{pct(lo)}, {pct(hi)}] (n = {e['n']}) {e['verdict']}"


def way(e, paper):
    """Whether a decided row moves the paper's way."""
    if e is None or e["verdict"] in ("inconclusive",):
        return "undecided"
    if e["verdict"] == "flat":
        return "no effect"
    return "holds" if (e["change"] > 0) == (paper > 0) else "reversed"


def baseline_spread(doc):
    row = next(r for r in doc["rows"] if r["baseline"])
    v = row["valid_ppl"] or {"mean": float("nan"), "std": None, "n": 0}
    return v["mean"], v.get("std"), v["n"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sweep", default=str(ROOT / "target/debug/sweep"))
    ap.add_argument("--db", default="results/sweep.db")
    ap.add_argument("--scratch-db", help="the ledger of the quick-scratch trials (default: --db)")
    a = ap.parse_args()
    paper, spec = paper_changes()
    dbs = {"quick-scratch": a.scratch_db or a.db, "quick": a.db}
    regimes = {p: results(a.sweep, db, p) for p, db in dbs.items()}
    eff = {p: effects(d) for p, d in regimes.items()}
    for p, d in regimes.items():
        if not d["rows"]:
            continue
        mean, sd, n = baseline_spread(d)
        sd_txt = f", sd {sd:.3f} ({sd / mean * 100:.2f}%)" if sd else ""
        print(f"- `{p}` baseline valid PPL: mean {mean:.2f} over n = {n}{sd_txt}")
    print()
    print("| Table | row (paper's value) | paper | from scratch (`quick-scratch`) | | fine-tuned (`quick`) | |")
    print("|---|---|---|---|---|---|---|")
    for axis in AXES:
        rows = sorted({k for k in eff["quick"] if k[0] == axis} | {k for k in eff["quick-scratch"] if k[0] == axis},
                      key=lambda k: spec["profile"]["quick"].get("grid", {}).get(axis, spec["grid"][axis]).index(k[1]))
        for (_, v) in rows:
            pv = quick_to_paper(spec, axis, v)
            pc = paper.get((axis, pv))
            s, f = eff["quick-scratch"].get((axis, v)), eff["quick"].get((axis, v))
            shown = f"{axis} = {v}" + (f" ({pv})" if pv != v else "")
            print(f"| {TABLE[axis]} | {shown} | {pc*100:+.1f}% | {cell(s)} | {way(s, pc)} | {cell(f)} | {way(f, pc)} |"
                  if pc is not None else f"| {TABLE[axis]} | {shown} | – | {cell(s)} | | {cell(f)} | |")


if __name__ == "__main__":
    main()
