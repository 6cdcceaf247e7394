"""Optuna's side of the learning-curve replay (issue 25): the searches of `sweep bench-replay`
with Optuna 5's samplers and pruners on the same recorded curves, driven through
ask / report / should_prune / tell, one JSON line per search in the same format.

    python bench/replay_optuna.py --curves bench/lr_curves.json --seeds 100 --tokens N

The space is sweeps/lr_search.toml's: learning_rate log-uniform [1e-4, 1e-2], warmup_steps int
[0, 100] step 10, weight_decay uniform [0, 0.1], batch_size a choice of [2, 4, 8, 16]; TPE starts
after 8 trials (the file's quick profile, `startup = 8`). The surrogate is the same as the Rust
side's (`src/bench/replay.rs`): the recorded configuration with the same batch size nearest to
the suggested point in the unit cube of the other parameters (learning rate in log scale).
Pruners: NopPruner, MedianPruner() (n_startup_trials=5, n_warmup_steps=0, as sweep's median),
SuccessiveHalvingPruner(min_resource=20, reduction_factor=3) (the shipped ASHA), and
HyperbandPruner(min_resource=20, max_resource=MAX, reduction_factor=3) with MAX the longest
recorded trial's step count (Optuna's bracket count is one number for the study; sweep's comes
from each trial's own steps).
"""
import argparse
import json
import math
import os
import sys

# bench/tokenize.py would shadow the standard library's `tokenize` (NumPy imports it lazily).
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import optuna  # noqa: E402
from optuna.trial import TrialState  # noqa: E402

optuna.logging.set_verbosity(optuna.logging.WARNING)

LR = (1e-4, 1e-2)
WARMUP = (0, 100, 10)
WD = (0.0, 0.1)
BATCH = [2, 4, 8, 16]
MIN_STEPS, ETA, STARTUP = 20, 3, 8


def distance(a, b):
    """Squared distance of two parameter dicts, as src/bench/replay.rs measures it."""
    if a["batch_size"] != b["batch_size"]:
        return 100.0
    d = ((math.log(a["learning_rate"]) - math.log(b["learning_rate"]))
         / (math.log(LR[1]) - math.log(LR[0]))) ** 2
    d += ((a["warmup_steps"] - b["warmup_steps"]) / (WARMUP[1] - WARMUP[0])) ** 2
    d += ((a["weight_decay"] - b["weight_decay"]) / (WD[1] - WD[0])) ** 2
    return d


def nearest(configs, params):
    best = min(range(len(configs)), key=lambda i: (distance(params, configs[i]["params"]), i))
    return configs[best]


def samplers(seed):
    return {
        "random": optuna.samplers.RandomSampler(seed=seed),
        "tpe": optuna.samplers.TPESampler(seed=seed, n_startup_trials=STARTUP),
    }


def pruners(max_steps):
    return {
        "none": optuna.pruners.NopPruner(),
        "median": optuna.pruners.MedianPruner(),
        "asha": optuna.pruners.SuccessiveHalvingPruner(min_resource=MIN_STEPS, reduction_factor=ETA),
        "hyperband": optuna.pruners.HyperbandPruner(
            min_resource=MIN_STEPS, max_resource=max_steps, reduction_factor=ETA),
    }


def replay(configs, sampler, pruner, seed, budget, max_trials):
    study = optuna.create_study(
        study_name=f"replay-{seed}", direction="minimize", sampler=sampler, pruner=pruner)
    spent, out = 0, []
    while spent < budget and len(out) < max_trials:
        trial = study.ask()
        params = {
            "learning_rate": trial.suggest_float("learning_rate", *LR, log=True),
            "warmup_steps": trial.suggest_int("warmup_steps", WARMUP[0], WARMUP[1], step=WARMUP[2]),
            "weight_decay": trial.suggest_float("weight_decay", *WD),
            "batch_size": trial.suggest_categorical("batch_size", BATCH),
        }
        rec = nearest(configs, params)
        line = None
        for step, loss, tokens in rec["curve"]:
            trial.report(loss, step)
            if trial.should_prune():
                study.tell(trial, state=TrialState.PRUNED)
                line = {"tokens": tokens, "pruned_at": step}
                break
        if line is None:
            study.tell(trial, rec["valid_ppl"])
            line = {"tokens": rec["tokens"], "final": rec["valid_ppl"]}
        spent += line["tokens"]
        out.append(line)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--curves", default="bench/lr_curves.json")
    ap.add_argument("--seeds", type=int, default=100)
    ap.add_argument("--tokens", type=int, required=True)
    ap.add_argument("--max-trials", type=int, default=400)
    ap.add_argument("--sampler", action="append", help="only these samplers (random, tpe)")
    ap.add_argument("--pruner", action="append", help="only these pruners")
    args = ap.parse_args()
    configs = json.load(open(args.curves))["configs"]
    best = min(c["valid_ppl"] for c in configs)
    max_steps = max(c["steps"] for c in configs)
    for sampler_name in args.sampler or ["random", "tpe"]:
        for pruner_name in args.pruner or ["none", "median", "asha", "hyperband"]:
            for seed in range(args.seeds):
                sampler = samplers(seed)[sampler_name]
                pruner = pruners(max_steps)[pruner_name]
                trials = replay(configs, sampler, pruner, seed, args.tokens, args.max_trials)
                print(json.dumps({"side": "optuna", "sampler": sampler_name,
                                  "pruner": pruner_name, "seed": seed, "budget": args.tokens,
                                  "best_recorded": best, "trials": trials}))
                sys.stdout.flush()


if __name__ == "__main__":
    main()
