//! Every function against scipy's numbers in tests/fixtures/stats/reference.json (written by
//! scripts/stats_reference.py), to 1e-9, plus the conventions scipy leaves undefined.

use super::*;
use serde_json::Value;

const TOL: f64 = 1e-9;

fn fixture() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/stats/reference.json"
    );
    let text = std::fs::read_to_string(path).expect("tests/fixtures/stats/reference.json");
    serde_json::from_str(&text).expect("valid JSON")
}

fn f(v: &Value) -> f64 {
    match v {
        Value::String(s) if s == "inf" => f64::INFINITY,
        Value::String(s) if s == "-inf" => f64::NEG_INFINITY,
        Value::Null => f64::NAN,
        v => v.as_f64().expect("a number"),
    }
}

fn fs(v: &Value) -> Vec<f64> {
    v.as_array().expect("an array").iter().map(f).collect()
}

/// Equal to 1e-9, relative for large numbers.
#[track_caller]
fn close(ours: f64, theirs: f64, what: &str) {
    let ok = (ours.is_nan() && theirs.is_nan())
        || ours == theirs
        || (ours - theirs).abs() <= TOL * theirs.abs().max(1.0);
    assert!(ok, "{what}: ours {ours:e}, scipy {theirs:e}");
}

fn close_opt(ours: Option<f64>, theirs: &Value, what: &str) {
    match theirs {
        Value::Null => assert!(ours.is_none(), "{what}: ours {ours:?}, scipy none"),
        v => close(ours.unwrap_or(f64::NAN), f(v), what),
    }
}

#[test]
fn t_quantiles_and_p_values_match_scipy() {
    let fx = fixture();
    for c in fx["t_quantile"].as_array().unwrap() {
        let (p, df) = (f(&c["p"]), f(&c["df"]));
        close(t_quantile(p, df), f(&c["q"]), &format!("t.ppf({p}, {df})"));
    }
    for c in fx["t_two_sided_p"].as_array().unwrap() {
        let (t, df) = (f(&c["t"]), f(&c["df"]));
        close(
            t_two_sided_p(t, df),
            f(&c["p"]),
            &format!("2 t.sf(|{t}|, {df})"),
        );
    }
}

#[test]
fn summaries_match_scipy() {
    for c in fixture()["summary"].as_array().unwrap() {
        let x = fs(&c["x"]);
        let s = Summary::of(&x).unwrap();
        assert_eq!(s.n, c["n"].as_u64().unwrap() as usize);
        close(s.mean, f(&c["mean"]), "mean");
        if x.len() == 1 {
            assert_eq!((s.sd, s.ci95), (None, None), "one value: no interval");
            continue;
        }
        close(s.sd.unwrap(), f(&c["sd"]), "sd");
        let ci = fs(&c["ci95"]);
        let ours = s.ci95.unwrap();
        close(ours[0], ci[0], &format!("ci low of {x:?}"));
        close(ours[1], ci[1], &format!("ci high of {x:?}"));
    }
    assert!(Summary::of(&[]).is_none());
}

#[test]
fn paired_and_welch_tests_match_scipy() {
    let fx = fixture();
    for c in fx["paired"].as_array().unwrap() {
        let t = paired(&fs(&c["a"]), &fs(&c["b"])).unwrap();
        close(t.estimate, f(&c["mean"]), "paired mean");
        close(t.t, f(&c["t"]), "paired t");
        close(t.df, f(&c["df"]), "paired df");
        close_opt(t.p, &c["p"], "paired p");
        let ci = fs(&c["ci95"]);
        close(t.ci95[0], ci[0], "paired ci low");
        close(t.ci95[1], ci[1], "paired ci high");
    }
    for c in fx["welch"].as_array().unwrap() {
        let t = welch(&fs(&c["a"]), &fs(&c["b"])).unwrap();
        close(t.estimate, f(&c["diff"]), "welch diff");
        close(t.t, f(&c["t"]), "welch t");
        close(t.df, f(&c["df"]), "welch df");
        close_opt(t.p, &c["p"], "welch p");
        let ci = fs(&c["ci95"]);
        close(t.ci95[0], ci[0], "welch ci low");
        close(t.ci95[1], ci[1], "welch ci high");
    }
    assert!(paired(&[1.0], &[2.0]).is_none(), "n = 1: no test");
    assert!(paired(&[1.0, 2.0], &[2.0]).is_none(), "unpaired lengths");
    assert!(welch(&[1.0], &[2.0, 3.0]).is_none());
}

#[test]
fn zero_variance_has_a_zero_width_interval() {
    // scipy's answer here is rounding noise (t ~ 1e16 from a variance of ~1e-33); ours is exact.
    let t = one_sample(&[0.5, 0.5, 0.5]).unwrap();
    assert_eq!((t.ci95, t.p), ([0.5, 0.5], Some(0.0)));
    assert_eq!(t.t, f64::INFINITY);
    let z = one_sample(&[0.0, 0.0]).unwrap();
    assert_eq!((z.ci95, z.p), ([0.0, 0.0], None), "all zero: no p-value");
    assert!(z.t.is_nan());
    let w = welch(&[2.0, 2.0], &[1.0, 1.0, 1.0]).unwrap();
    assert_eq!((w.estimate, w.ci95, w.p), (1.0, [1.0, 1.0], Some(0.0)));
}

#[test]
fn sign_flip_p_matches_scipy_up_to_twelve_values() {
    let fx = fixture();
    for c in fx["sign_flip"].as_array().unwrap() {
        let d = fs(&c["d"]);
        close(
            sign_flip_p(&d).unwrap(),
            f(&c["p"]),
            &format!("sign flip {d:?}"),
        );
    }
    let n13 = fs(&fx["sign_flip_n13"]);
    assert_eq!(n13.len(), 13);
    assert_eq!(sign_flip_p(&n13), None, "13 values: no exact test");
    assert!(sign_flip_p(&n13[..12]).is_some());
    assert_eq!(sign_flip_p(&[]), None);
}

#[test]
fn probability_of_improvement_matches_rliable_via_scipy() {
    for c in fixture()["prob_improvement"].as_array().unwrap() {
        let (x, y) = (fs(&c["x"]), fs(&c["y"]));
        close(
            prob_improvement(&x, &y).unwrap(),
            f(&c["p"]),
            &format!("P({x:?} > {y:?})"),
        );
    }
    assert_eq!(prob_improvement(&[], &[1.0]), None);
}

#[test]
fn expected_maximum_matches_scipy_and_enumeration() {
    for c in fixture()["expected_max"].as_array().unwrap() {
        let v = fs(&c["values"]);
        let e = evp::expected_max(&v);
        let (means, vars) = (fs(&c["mean"]), fs(&c["var"]));
        assert_eq!(e.len(), v.len());
        for (k, x) in e.iter().enumerate() {
            assert_eq!(x.k, k + 1);
            close(x.mean, means[k], &format!("E[max of {}] of {v:?}", k + 1));
            close(x.var, vars[k], &format!("Var[max of {}] of {v:?}", k + 1));
        }
        // The best of all N is the maximum, with no spread; of one, the mean.
        let last = e.last().unwrap();
        close(
            last.mean,
            v.iter().cloned().fold(f64::MIN, f64::max),
            "k = N",
        );
        close(last.var, 0.0, "k = N variance");
        close(e[0].mean, mean(&v), "k = 1");
    }
    // Minimising: the expected minimum, mirrored.
    let best = expected_best(&[3.0, 1.0, 2.0], true);
    close(best[1].mean, (1.0 + 1.0 + 2.0) / 3.0, "E[min of 2]");
    // Large N stays finite (C(1000, 500) overflows f64).
    let many: Vec<f64> = (0..1000).map(|i| (i as f64 * 0.37).sin()).collect();
    let e = evp::expected_max(&many);
    assert!(e.iter().all(|x| x.mean.is_finite() && x.var >= -1e-12));
    assert!(e.windows(2).all(|w| w[1].mean >= w[0].mean - 1e-12));
}

#[test]
fn seeds_needed_match_scipy() {
    for c in fixture()["seeds_needed"].as_array().unwrap() {
        let n = seeds_needed(f(&c["sd"]), f(&c["margin"]), 1000);
        assert_eq!(n, c["n"].as_u64().map(|n| n as usize), "{c}");
    }
    assert_eq!(seeds_needed(0.0, 0.01, 100), Some(2));
    assert_eq!(seeds_needed(0.1, 0.0, 100), None);
}

#[test]
fn effects_match_scipy() {
    for c in fixture()["effects"].as_array().unwrap() {
        let seeds = |k: &str| -> Vec<i64> {
            c[k].as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_i64().unwrap())
                .collect()
        };
        let row: Vec<(i64, f64)> = seeds("row_seeds").into_iter().zip(fs(&c["row"])).collect();
        let base: Vec<(i64, f64)> = seeds("base_seeds")
            .into_iter()
            .zip(fs(&c["base"]))
            .collect();
        let e = compare(&row, &base, FLAT, true).unwrap();
        let what = format!("effect of {row:?} on {base:?}");
        assert_eq!(e.n, c["n"].as_u64().unwrap() as usize, "{what}");
        close(e.change, f(&c["change"]), &what);
        close_opt(e.prob_improvement, &c["prob_improvement"], &what);
        match c["method"].as_str().unwrap() {
            "paired" if e.n == 1 => {
                assert_eq!(e.method, Method::None);
                assert_eq!((e.ci95, e.p_value), (None, None), "n = 1: no interval");
                assert_eq!(e.verdict, Verdict::Inconclusive);
            }
            m => {
                let expected = if m == "paired" {
                    Method::Paired
                } else {
                    Method::Welch
                };
                assert_eq!(e.method, expected, "{what}");
                let ci = fs(&c["ci95"]);
                let ours = e.ci95.unwrap();
                close(ours[0], ci[0], &what);
                close(ours[1], ci[1], &what);
                close_opt(e.p_value, &c["p_value"], &what);
                if m == "paired" {
                    close_opt(e.p_permutation, &c["p_permutation"], &what);
                    close_opt(e.sd, &c["sd"], &what);
                }
                assert_eq!(e.verdict, verdict(Some(ours), FLAT));
            }
        }
    }
}

#[test]
fn verdicts_need_the_whole_interval() {
    let f = FLAT;
    assert_eq!(verdict(Some([0.002, 0.01]), f), Verdict::Up);
    assert_eq!(verdict(Some([-0.01, -0.0011]), f), Verdict::Down);
    assert_eq!(verdict(Some([-0.0009, 0.001]), f), Verdict::Flat);
    // Excludes 0 but reaches into the flat band: not yet decided either way.
    assert_eq!(verdict(Some([0.0005, 0.01]), f), Verdict::Inconclusive);
    assert_eq!(verdict(Some([-0.01, 0.01]), f), Verdict::Inconclusive);
    assert_eq!(verdict(None, f), Verdict::Inconclusive, "one seed");
    assert!(Verdict::Flat.is_decided() && !Verdict::Inconclusive.is_decided());
}
