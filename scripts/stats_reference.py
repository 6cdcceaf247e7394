#!/usr/bin/env python3
"""Write the scipy reference numbers that src/stats (and the report's effects) are tested against.

Every number in tests/fixtures/stats/reference.json comes from scipy.stats / scipy.special here;
the Rust tests read the file and compare to 1e-9, so CI needs no scipy. The inputs are in the file
too. Edge cases on purpose: n = 1 and 2, ties, zero variance, all-zero differences, the n = 12 / 13
boundary of the exact sign-flip test, equal samples in the probability of improvement.

    python3 -m venv /work/venvs/scipy && /work/venvs/scipy/bin/pip install scipy numpy
    /work/venvs/scipy/bin/python scripts/stats_reference.py     # (re)writes the fixture

Definitions (the same as src/stats says):
- interval of a mean: Student t, 95%, `scipy.stats.ttest_1samp(x, 0).confidence_interval(0.95)`;
- paired test: `ttest_rel(a, b)` (= one-sample t on a - b), its interval and two-sided p;
- Welch: `ttest_ind(a, b, equal_var=False)`, its interval and two-sided p;
- exact sign-flip permutation p: `permutation_test((d,), mean, permutation_type="samples",
  n_resamples=inf)`, two-sided (2 x the smaller tail, capped at 1; scipy's tie tolerance);
- probability of improvement as rliable defines it: `mannwhitneyu(x, y, alternative="greater")`
  statistic / (n_x n_y) = P(X > Y) + P(X = Y) / 2, and 0.5 when the samples are equal;
- expected validation performance (Dodge et al. 2019, allentune's `samplemax` without
  replacement): E[max of k of the N values drawn without replacement] and its variance, k = 1..N,
  from P(max <= v_(i)) = C(i, k) / C(N, k); checked here against enumerating every k-subset.
"""
import itertools
import json
import math
import os

import numpy as np
import scipy
import scipy.special
import scipy.stats as st

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "stats",
                   "reference.json")


def num(x):
    """JSON number, or None for nan (inf stays as a string the tests understand)."""
    x = float(x)
    if math.isnan(x):
        return None
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return x


def t_quantiles():
    out = []
    for df in list(range(1, 31)) + [40, 50, 75, 100, 250, 1000, 10000]:
        for p in [0.9, 0.975, 0.995]:
            out.append({"p": p, "df": df, "q": num(st.t.ppf(p, df))})
    # Welch's non-integer degrees of freedom.
    for df in [1.5, 2.7, 4.685775006685339, 11.2]:
        out.append({"p": 0.975, "df": df, "q": num(st.t.ppf(0.975, df))})
    return out


def samples(rng):
    return {
        "issue_ppl": [191.09, 203.22, 197.59, 196.08],
        "n1": [3.5],
        "n2": [1.0, 3.0],
        "ties": [2.0, 2.0, 3.0, 3.0],
        "zero_variance": [0.5, 0.5, 0.5],
        "normal5": list(rng.normal(4.2, 0.05, 5)),
        "normal12": list(rng.normal(-0.01, 0.02, 12)),
        "normal30": list(rng.normal(100.0, 7.0, 30)),
    }


def summary(xs):
    x = np.asarray(xs)
    n = len(x)
    row = {"x": list(map(float, x)), "n": n, "mean": num(x.mean())}
    if n >= 2:
        row["sd"] = num(x.std(ddof=1))
        r = st.ttest_1samp(x, 0.0)
        if x.std(ddof=1) > 0:
            ci = r.confidence_interval(0.95)
            row["ci95"] = [num(ci.low), num(ci.high)]
        else:
            row["ci95"] = [num(x.mean()), num(x.mean())]
    return row


def paired(a, b):
    a, b = np.asarray(a), np.asarray(b)
    r = st.ttest_rel(a, b)
    d = a - b
    row = {"a": list(map(float, a)), "b": list(map(float, b)), "mean": num(d.mean()),
           "df": int(r.df), "t": num(r.statistic), "p": num(r.pvalue)}
    ci = r.confidence_interval(0.95)
    row["ci95"] = [num(ci.low), num(ci.high)]
    return row


def welch(a, b):
    a, b = np.asarray(a), np.asarray(b)
    r = st.ttest_ind(a, b, equal_var=False)
    ci = r.confidence_interval(0.95)
    return {"a": list(map(float, a)), "b": list(map(float, b)), "diff": num(a.mean() - b.mean()),
            "df": num(r.df), "t": num(r.statistic), "p": num(r.pvalue),
            "ci95": [num(ci.low), num(ci.high)]}


def sign_flip(d):
    d = np.asarray(d, dtype=float)
    r = st.permutation_test((d,), np.mean, permutation_type="samples", n_resamples=np.inf,
                            alternative="two-sided", vectorized=True)
    assert len(r.null_distribution) == 2 ** len(d), "not exact"
    return {"d": list(map(float, d)), "p": num(r.pvalue)}


def prob_improvement(x, y):
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if np.array_equal(x, y):
        p = 0.5
    else:
        u, _ = st.mannwhitneyu(x, y, alternative="greater")
        p = u / (len(x) * len(y))
    # The definition by counting, as a cross-check of the U statistic.
    count = sum((xi > yj) + 0.5 * (xi == yj) for xi in x for yj in y) / (len(x) * len(y))
    assert np.array_equal(x, y) or abs(count - p) < 1e-12
    return {"x": list(map(float, x)), "y": list(map(float, y)), "p": num(p)}


def expected_max(values):
    v = sorted(float(x) for x in values)
    n_total = len(v)
    means, variances = [], []
    for k in range(1, n_total + 1):
        cdf = [scipy.special.comb(i, k, exact=True) / scipy.special.comb(n_total, k, exact=True)
               for i in range(1, n_total + 1)]
        pdf = [c - (cdf[i - 1] if i else 0.0) for i, c in enumerate(cdf)]
        mean = sum(p * x for p, x in zip(pdf, v))
        var = sum(p * (x - mean) ** 2 for p, x in zip(pdf, v))
        # Every k-subset is equally likely without replacement: the same numbers by enumeration.
        maxima = [max(c) for c in itertools.combinations(v, k)]
        assert abs(np.mean(maxima) - mean) < 1e-9 * max(1.0, abs(mean))
        assert abs(np.var(maxima) - var) < 1e-9 * max(1.0, abs(var))
        means.append(num(mean))
        variances.append(num(var))
    return {"values": list(map(float, values)), "mean": means, "var": variances}


def seeds_needed(sd, margin, cap=1000):
    """Smallest n >= 2 with t(0.975, n-1) * sd / sqrt(n) < margin (None: more than cap)."""
    for n in range(2, cap + 1):
        if st.t.ppf(0.975, n - 1) * sd / math.sqrt(n) < margin:
            return {"sd": sd, "margin": margin, "n": n}
    return {"sd": sd, "margin": margin, "n": None}


def effect(row, base, seeds_row, seeds_base):
    """A row against the baseline as the report computes it (changes as fractions, lower better)."""
    rb = dict(zip(seeds_base, base))
    out = {"row": row, "base": base, "row_seeds": seeds_row, "base_seeds": seeds_base}
    r = np.asarray(row, dtype=float)
    b = np.asarray(base, dtype=float)
    # rliable's P(row better than baseline) where better is lower: X = -row, Y = -baseline.
    out["prob_improvement"] = prob_improvement(-r, -b)["p"]
    if all(s in rb for s in seeds_row):
        rel = np.array([(x - rb[s]) / rb[s] for x, s in zip(row, seeds_row)])
        out["method"] = "paired"
        out["n"] = len(rel)
        out["change"] = num(rel.mean())
        if len(rel) >= 2:
            t = st.ttest_1samp(rel, 0.0)
            ci = t.confidence_interval(0.95)
            out["ci95"] = [num(ci.low), num(ci.high)]
            out["p_value"] = num(t.pvalue)
            out["sd"] = num(rel.std(ddof=1))
            if len(rel) <= 12:
                out["p_permutation"] = sign_flip(rel)["p"]
    else:
        out["method"] = "welch"
        out["n"] = len(r)
        mb = b.mean()
        out["change"] = num((r.mean() - mb) / mb)
        t = st.ttest_ind(r, b, equal_var=False)
        ci = t.confidence_interval(0.95)
        out["ci95"] = [num(ci.low / mb), num(ci.high / mb)]
        out["p_value"] = num(t.pvalue)
    return out


def main():
    rng = np.random.default_rng(20261206)
    s = samples(rng)
    doc = {
        "scipy": scipy.__version__,
        "numpy": np.__version__,
        "t_quantile": t_quantiles(),
        "t_two_sided_p": [{"t": t, "df": df, "p": num(2 * st.t.sf(abs(t), df))}
                          for t in [0.0, 0.5, 1.96, 2.6457513110645907, 4.0, 12.0, -3.1]
                          for df in [1, 2, 3, 7, 29, 4.685775006685339]],
        "summary": [summary(x) for x in s.values()],
        "paired": [
            paired([191.32, 203.47, 197.37, 196.31], [191.09, 203.22, 197.59, 196.08]),
            paired([1.0, 2.0], [0.5, 0.9]),
            paired(list(rng.normal(5.0, 0.3, 6)), list(rng.normal(5.1, 0.3, 6))),
            paired(list(rng.normal(20.0, 1.0, 12)), list(rng.normal(20.0, 1.0, 12))),
            paired([2.0, 3.0, 3.0, 5.0], [1.0, 2.0, 2.0, 3.0]),
        ],
        "welch": [
            welch([1.0, 2.0, 3.5], [2.0, 2.5, 4.0, 5.0]),
            welch([10.0, 12.0], [9.0, 9.5]),
            welch(list(rng.normal(3.0, 0.1, 5)), list(rng.normal(3.1, 0.4, 9))),
            welch([4.0, 4.0, 5.0, 5.0], [3.0, 3.0, 3.0, 4.0]),
        ],
        "sign_flip": [sign_flip(d) for d in [
            [0.3, -0.1],
            [0.1, 0.2, 0.4],
            [0.00115, 0.00123, -0.00111, 0.00117],
            [0.1, -0.1, 0.1, 0.2],
            [0.0, 0.1, 0.2],
            [0.0, 0.0, 0.0],
            list(rng.normal(0.02, 0.03, 5)),
            list(rng.normal(0.01, 0.01, 8)),
            list(rng.normal(0.005, 0.01, 12)),
            [0.01] * 12,
        ]],
        "sign_flip_n13": list(rng.normal(0.0, 1.0, 13)),
        "prob_improvement": [prob_improvement(x, y) for x, y in [
            ([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]),
            ([1.0, 2.0, 3.0], [0.5, 2.0, 2.5]),
            ([5.0, 6.0], [1.0, 2.0, 3.0]),
            ([1.0], [2.0]),
            ([2.0, 2.0, 2.0], [2.0, 2.0, 1.0]),
            (list(rng.normal(0.0, 1.0, 7)), list(rng.normal(0.3, 1.0, 5))),
        ]],
        "expected_max": [expected_max(v) for v in [
            [3.0, 1.0, 2.0],
            [5.0, 5.0, 1.0, 2.0],
            [0.81, 0.83, 0.79, 0.85, 0.80],
            list(rng.normal(60.0, 5.0, 8)),
        ]],
        "seeds_needed": [seeds_needed(sd, m) for sd, m in [
            (0.01, 0.02), (0.025, 0.01), (0.0012, 0.0002), (0.05, 0.5), (0.3, 0.001),
        ]],
        "effects": [
            # Table 5's weight decay 0.1 in the issue: per-seed changes of about +0.1%.
            effect([191.32, 203.47, 197.37, 196.31], [191.09, 203.22, 197.59, 196.08],
                   [42, 1, 2, 3], [42, 1, 2, 3]),
            effect([210.0, 221.0, 215.5], [191.09, 203.22, 197.59], [42, 1, 2], [42, 1, 2]),
            effect([191.2, 203.3, 197.7], [191.09, 203.22, 197.59], [42, 1, 2], [42, 1, 2]),
            # The baseline lacks seed 3: Welch over all seeds of both.
            effect([200.0, 204.0, 199.0, 201.0], [191.09, 203.22, 197.59], [42, 1, 2, 3],
                   [42, 1, 2]),
            effect([150.0], [191.09], [42], [42]),
        ],
    }
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print("wrote", os.path.normpath(OUT))


if __name__ == "__main__":
    main()
