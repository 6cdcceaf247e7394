"""Optuna's side of `sweep bench-sampler` (issue 16): the same test functions over the same
distributions, Optuna's RandomSampler(seed) and TPESampler(seed=seed) with their defaults, and the
time of one ask() on TPE with RDB storage on SQLite. Prints the same JSON lines as the Rust side.

    python bench/sampler_optuna.py [--trials 50] [--seeds 30]
    python bench/sampler_optuna.py --cost 100 1000 [--repeats 20]
"""

import argparse
import json
import math
import os
import random
import statistics
import tempfile
import time

import optuna

optuna.logging.set_verbosity(optuna.logging.WARNING)

SCHEDULES = ["cosine", "linear", "constant"]


def branin(t):
    x1 = t.suggest_float("x1", -5.0, 10.0)
    x2 = t.suggest_float("x2", 0.0, 15.0)
    b = 5.1 / (4.0 * math.pi**2)
    c = 5.0 / math.pi
    s = 1.0 / (8.0 * math.pi)
    return (x2 - b * x1 * x1 + c * x1 - 6.0) ** 2 + 10.0 * (1.0 - s) * math.cos(x1) + 10.0


H_ALPHA = [1.0, 1.2, 3.0, 3.2]
H_A = [
    [10.0, 3.0, 17.0, 3.5, 1.7, 8.0],
    [0.05, 10.0, 17.0, 0.1, 8.0, 14.0],
    [3.0, 3.5, 1.7, 10.0, 17.0, 8.0],
    [17.0, 8.0, 0.05, 10.0, 0.1, 14.0],
]
H_P = [
    [0.1312, 0.1696, 0.5569, 0.0124, 0.8283, 0.5886],
    [0.2329, 0.4135, 0.8307, 0.3736, 0.1004, 0.9991],
    [0.2348, 0.1451, 0.3522, 0.2883, 0.3047, 0.6650],
    [0.4047, 0.8828, 0.8732, 0.5743, 0.1091, 0.0381],
]


def hartmann6(t):
    x = [t.suggest_float(f"x{j + 1}", 0.0, 1.0) for j in range(6)]
    total = 0.0
    for i in range(4):
        s = sum(H_A[i][j] * (x[j] - H_P[i][j]) ** 2 for j in range(6))
        total += H_ALPHA[i] * math.exp(-s)
    return -total


def lr_like_value(lr, wd, warmup, schedule):
    return (
        (math.log10(lr) + 3.5) ** 2
        + 10.0 * (wd - 0.1) ** 2
        + ((warmup - 150.0) / 250.0) ** 2
        + 0.25 * SCHEDULES.index(schedule)
    )


def lr_like(t):
    lr = t.suggest_float("learning_rate", 1e-5, 1e-1, log=True)
    wd = t.suggest_float("weight_decay", 0.0, 0.3)
    warmup = t.suggest_int("warmup_steps", 0, 500, step=50)
    schedule = t.suggest_categorical("schedule", SCHEDULES)
    return lr_like_value(lr, wd, warmup, schedule)


FUNCTIONS = [
    ("branin", branin, 0.3978873577297382),
    ("hartmann6", hartmann6, -3.322368011415515),
    ("lr_like", lr_like, 0.0),
]


def quality(args):
    samplers = [
        ("optuna-random", lambda s: optuna.samplers.RandomSampler(seed=s)),
        ("optuna-tpe", lambda s: optuna.samplers.TPESampler(seed=s)),
        # Optuna 5's default TPE is multivariate; this is its independent (univariate) TPE.
        ("optuna-tpe-univariate", lambda s: optuna.samplers.TPESampler(seed=s, multivariate=False)),
    ]
    for fname, f, optimum in FUNCTIONS:
        if args.function and fname not in args.function:
            continue
        for sname, make in samplers:
            if args.sampler and sname not in args.sampler:
                continue
            for seed in range(args.seeds):
                study = optuna.create_study(sampler=make(seed))
                study.optimize(f, n_trials=args.trials)
                line = {"sampler": sname, "function": fname, "seed": seed,
                        "regret": study.best_value - optimum}
                print(json.dumps(line), flush=True)


def lr_like_space():
    d = optuna.distributions
    return {
        "learning_rate": d.FloatDistribution(1e-5, 1e-1, log=True),
        "weight_decay": d.FloatDistribution(0.0, 0.3),
        "warmup_steps": d.IntDistribution(0, 500, step=50),
        "schedule": d.CategoricalDistribution(SCHEDULES),
    }


def cost(n, repeats, dirpath):
    """Median time of study.ask(space) (TPE samples every parameter inside ask) on a SQLite RDB
    study holding n completed trials; each asked trial is told FAIL (not timed), which TPE skips."""
    space = lr_like_space()
    path = os.path.join(dirpath, f"optuna-{n}.db")
    storage = optuna.storages.RDBStorage(f"sqlite:///{path}")
    rng = random.Random(1)
    trials = []
    for _ in range(n):
        p = {
            "learning_rate": math.exp(rng.uniform(math.log(1e-5), math.log(1e-1))),
            "weight_decay": rng.uniform(0.0, 0.3),
            "warmup_steps": rng.choice(range(0, 501, 50)),
            "schedule": rng.choice(SCHEDULES),
        }
        v = lr_like_value(p["learning_rate"], p["weight_decay"], p["warmup_steps"], p["schedule"])
        trials.append(optuna.trial.create_trial(params=p, distributions=space, value=v))
    study = optuna.create_study(storage=storage, study_name="search",
                                sampler=optuna.samplers.TPESampler(seed=0))
    study.add_trials(trials)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        t = study.ask(space)
        times.append((time.perf_counter() - t0) * 1e3)
        study.tell(t, state=optuna.trial.TrialState.FAIL)
    return {"sampler": "optuna-tpe", "finished": n, "repeats": repeats,
            "median_ms": statistics.median(times)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=50)
    ap.add_argument("--seeds", type=int, default=30)
    ap.add_argument("--function", action="append", default=[])
    ap.add_argument("--sampler", action="append", default=[])
    ap.add_argument("--cost", type=int, nargs="+", default=[])
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    if args.cost:
        with tempfile.TemporaryDirectory() as d:
            for n in args.cost:
                print(json.dumps(cost(n, args.repeats, d)), flush=True)
    else:
        quality(args)


if __name__ == "__main__":
    main()
