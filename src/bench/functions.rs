//! The test functions of `sweep bench-sampler` (issue 16): Branin (2-D), Hartmann-6 (6-D) and a
//! learning-rate-like function with a log-scaled, a uniform, an int and a choice parameter.
//! `bench/sampler_optuna.py` defines the same functions over the same distributions.

use crate::search::Dist;

/// A minimisation problem with a known optimum.
pub struct Function {
    pub name: &'static str,
    /// Parameter names and distributions, in the order `f` reads them.
    pub space: Vec<(&'static str, Dist)>,
    /// The known minimum of `f` over the space.
    pub optimum: f64,
    /// The function of a point (choice parameters as indices).
    pub f: fn(&[f64]) -> f64,
}

impl Function {
    /// The distributions alone, in parameter order.
    pub fn dists(&self) -> Vec<Dist> {
        self.space.iter().map(|(_, d)| d.clone()).collect()
    }
}

/// All three functions, in table order.
pub fn all() -> Vec<Function> {
    vec![branin(), hartmann6(), lr_like()]
}

/// Branin-Hoo on [-5, 10] x [0, 15]; three global minima of 0.397887.
pub fn branin() -> Function {
    Function {
        name: "branin",
        space: vec![
            (
                "x1",
                Dist::Uniform {
                    low: -5.0,
                    high: 10.0,
                },
            ),
            (
                "x2",
                Dist::Uniform {
                    low: 0.0,
                    high: 15.0,
                },
            ),
        ],
        optimum: 0.397_887_357_729_738_2,
        f: branin_f,
    }
}

fn branin_f(p: &[f64]) -> f64 {
    use std::f64::consts::PI;
    let (x1, x2) = (p[0], p[1]);
    let b = 5.1 / (4.0 * PI * PI);
    let c = 5.0 / PI;
    let t = 1.0 / (8.0 * PI);
    (x2 - b * x1 * x1 + c * x1 - 6.0).powi(2) + 10.0 * (1.0 - t) * x1.cos() + 10.0
}

/// Hartmann-6 on [0, 1]^6; global minimum -3.32237.
pub fn hartmann6() -> Function {
    let space = ["x1", "x2", "x3", "x4", "x5", "x6"]
        .into_iter()
        .map(|n| {
            (
                n,
                Dist::Uniform {
                    low: 0.0,
                    high: 1.0,
                },
            )
        })
        .collect();
    Function {
        name: "hartmann6",
        space,
        optimum: -3.322_368_011_415_515,
        f: hartmann6_f,
    }
}

const H_ALPHA: [f64; 4] = [1.0, 1.2, 3.0, 3.2];
const H_A: [[f64; 6]; 4] = [
    [10.0, 3.0, 17.0, 3.5, 1.7, 8.0],
    [0.05, 10.0, 17.0, 0.1, 8.0, 14.0],
    [3.0, 3.5, 1.7, 10.0, 17.0, 8.0],
    [17.0, 8.0, 0.05, 10.0, 0.1, 14.0],
];
const H_P: [[f64; 6]; 4] = [
    [0.1312, 0.1696, 0.5569, 0.0124, 0.8283, 0.5886],
    [0.2329, 0.4135, 0.8307, 0.3736, 0.1004, 0.9991],
    [0.2348, 0.1451, 0.3522, 0.2883, 0.3047, 0.6650],
    [0.4047, 0.8828, 0.8732, 0.5743, 0.1091, 0.0381],
];

fn hartmann6_f(p: &[f64]) -> f64 {
    -(0..4)
        .map(|i| {
            let s: f64 = (0..6).map(|j| H_A[i][j] * (p[j] - H_P[i][j]).powi(2)).sum();
            H_ALPHA[i] * (-s).exp()
        })
        .sum::<f64>()
}

/// A fine-tuning-like bowl: `(log10 lr + 3.5)^2 + 10 (wd - 0.1)^2 + ((warmup - 150) / 250)^2 +
/// 0.25 * schedule` with lr log-uniform in [1e-5, 1e-1], wd uniform in [0, 0.3], warmup an int in
/// [0, 500] step 50 and schedule a choice of 3; minimum 0 at lr = 10^-3.5, wd 0.1, warmup 150,
/// schedule 0.
pub fn lr_like() -> Function {
    Function {
        name: "lr_like",
        space: vec![
            (
                "learning_rate",
                Dist::LogUniform {
                    low: 1e-5,
                    high: 1e-1,
                },
            ),
            (
                "weight_decay",
                Dist::Uniform {
                    low: 0.0,
                    high: 0.3,
                },
            ),
            (
                "warmup_steps",
                Dist::Int {
                    low: 0,
                    high: 500,
                    step: 50,
                    log: false,
                },
            ),
            ("schedule", Dist::Choice { n: 3 }),
        ],
        optimum: 0.0,
        f: lr_like_f,
    }
}

fn lr_like_f(p: &[f64]) -> f64 {
    (p[0].log10() + 3.5).powi(2)
        + 10.0 * (p[1] - 0.1).powi(2)
        + ((p[2] - 150.0) / 250.0).powi(2)
        + 0.25 * p[3]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_known_optima_are_where_the_literature_puts_them() {
        let b = branin();
        for x in [[-std::f64::consts::PI, 12.275], [9.42478, 2.475]] {
            assert!(((b.f)(&x) - b.optimum).abs() < 1e-5, "{}", (b.f)(&x));
        }
        let h = hartmann6();
        let x = [0.20169, 0.150011, 0.476874, 0.275332, 0.311652, 0.6573];
        assert!(((h.f)(&x) - h.optimum).abs() < 1e-5, "{}", (h.f)(&x));
        let l = lr_like();
        assert_eq!((l.f)(&[10f64.powf(-3.5), 0.1, 150.0, 0.0]), 0.0);
        assert!((l.f)(&[1e-3, 0.1, 150.0, 0.0]) > 0.2);
    }
}
