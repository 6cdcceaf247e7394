//! Search sweeps' algorithms: the distributions of a `[space]`, the samplers that suggest the next
//! point (random, TPE) and the pruners that stop a trial early (ASHA, median).
//!
//! Everything here is a pure function of its inputs (the space, a seed, the trials so far): the
//! scheduler (`exec::search`) derives those inputs from the ledger, so a search's state is never
//! kept anywhere else and a killed search resumes from the ledger alone.
//!
//! A point is one `f64` per parameter, in the parameter's own units: the value for `uniform`,
//! `log_uniform` and `int`, the index of the value for `choice`.

pub mod prune;
pub mod sampler;

pub use prune::{Curve, Decision, Placement, Pruner, Resource};
pub use sampler::{suggest, Method, Observed, Outcome};

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

/// The distribution of one parameter of a `[space]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dist {
    /// `{ uniform = [low, high] }`
    Uniform { low: f64, high: f64 },
    /// `{ log_uniform = [low, high] }`, `0 < low < high`: uniform in `ln x` (learning rates).
    LogUniform { low: f64, high: f64 },
    /// `{ int = [low, high], step = 50 }` (both ends included), optionally `log = true`.
    Int {
        low: i64,
        high: i64,
        step: i64,
        log: bool,
    },
    /// `{ choice = [v1, v2, ...] }`: any values, by index.
    Choice { n: usize },
}

impl Dist {
    /// The parameter's value for a raw coordinate in `[0, 1)` (random sampling).
    pub fn from_unit(&self, u: f64) -> f64 {
        match *self {
            Dist::Uniform { low, high } => low + u * (high - low),
            Dist::LogUniform { low, high } => (low.ln() + u * (high.ln() - low.ln())).exp(),
            Dist::Int {
                low,
                high,
                step,
                log: false,
            } => {
                let k = (high - low) / step;
                (low + step * ((u * (k + 1) as f64).floor() as i64).min(k)) as f64
            }
            Dist::Int { .. } => {
                // Log-uniform over [low - 0.5, high + 0.5] in ln, then onto the step grid.
                let (lo, hi) = self.tpe_bounds();
                self.snap(lo + u * (hi - lo))
            }
            Dist::Choice { n } => ((u * n as f64).floor() as usize).min(n - 1) as f64,
        }
    }

    /// The interval TPE models this parameter on (log space for log scales; ints widened by half
    /// a step on each side, as Optuna does, so that both ends get their share).
    pub fn tpe_bounds(&self) -> (f64, f64) {
        match *self {
            Dist::Uniform { low, high } => (low, high),
            Dist::LogUniform { low, high } => (low.ln(), high.ln()),
            Dist::Int {
                low,
                high,
                step,
                log: false,
            } => (
                low as f64 - 0.5 * step as f64,
                high as f64 + 0.5 * step as f64,
            ),
            Dist::Int { low, high, .. } => ((low as f64 - 0.5).ln(), (high as f64 + 0.5).ln()),
            Dist::Choice { n } => (0.0, n as f64),
        }
    }

    /// A value in TPE's coordinates for a parameter value.
    pub fn to_tpe(&self, x: f64) -> f64 {
        let (lo, hi) = self.tpe_bounds();
        let t = match self {
            Dist::LogUniform { .. } | Dist::Int { log: true, .. } => x.ln(),
            _ => x,
        };
        // TPE's interval is half-open.
        t.clamp(lo, next_down(hi))
    }

    /// The parameter value of a coordinate in TPE's space, on the parameter's grid.
    pub fn snap(&self, t: f64) -> f64 {
        match *self {
            Dist::Uniform { low, high } => t.clamp(low, high),
            Dist::LogUniform { low, high } => t.exp().clamp(low, high),
            Dist::Int {
                low,
                high,
                step,
                log,
            } => {
                let x = if log { t.exp() } else { t };
                let k = ((x - low as f64) / step as f64).round() as i64;
                (low + step * k).clamp(low, high - (high - low) % step) as f64
            }
            Dist::Choice { n } => (t.floor().max(0.0) as usize).min(n - 1) as f64,
        }
    }

    pub fn is_choice(&self) -> bool {
        matches!(self, Dist::Choice { .. })
    }

    /// How this distribution is written in a sweep file, for plans and reports.
    pub fn describe(&self, choices: &[Json]) -> String {
        match self {
            Dist::Uniform { low, high } => format!("uniform [{low}, {high}]"),
            Dist::LogUniform { low, high } => format!("log-uniform [{low:e}, {high:e}]"),
            Dist::Int {
                low,
                high,
                step,
                log,
            } => format!(
                "int [{low}, {high}]{}{}",
                if *step != 1 {
                    format!(" step {step}")
                } else {
                    String::new()
                },
                if *log { " log" } else { "" }
            ),
            Dist::Choice { .. } => {
                let v: Vec<String> = choices.iter().map(Json::to_string).collect();
                format!("choice [{}]", v.join(", "))
            }
        }
    }
}

fn next_down(x: f64) -> f64 {
    if x.is_finite() && x != 0.0 {
        f64::from_bits(if x > 0.0 {
            x.to_bits() - 1
        } else {
            x.to_bits() + 1
        })
    } else {
        x
    }
}

/// Which way the search metric is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    #[default]
    Minimize,
    Maximize,
}

impl Direction {
    /// The value samplers and pruners compare: lower is better.
    pub fn oriented(self, v: f64) -> f64 {
        match self {
            Direction::Minimize => v,
            Direction::Maximize => -v,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Minimize => "minimize",
            Direction::Maximize => "maximize",
        }
    }
    /// Is `a` better than `b`?
    pub fn better(self, a: f64, b: f64) -> bool {
        self.oriented(a) < self.oriented(b)
    }
}

/// The metrics a search may optimise: a trial's recorded final numbers.
pub const METRICS: &[&str] = &[
    "valid_loss",
    "valid_ppl",
    "valid_loss_fixed",
    "train_loss",
    "train_ppl",
    "test_loss",
    "test_ppl",
    "tokens_per_s",
    "wall_seconds",
    "train_seconds",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_land_on_the_grid_and_inside_the_bounds() {
        let int = Dist::Int {
            low: 0,
            high: 500,
            step: 50,
            log: false,
        };
        for u in [0.0, 0.04, 0.5, 0.999_999] {
            let x = int.from_unit(u);
            assert!((0.0..=500.0).contains(&x) && x % 50.0 == 0.0, "{x}");
        }
        assert_eq!(int.from_unit(0.999_999), 500.0);
        assert_eq!(int.snap(int.to_tpe(500.0)), 500.0);
        assert_eq!(int.snap(-24.0), 0.0);
        assert_eq!(int.snap(524.0), 500.0);
        let lr = Dist::LogUniform {
            low: 1e-5,
            high: 1e-3,
        };
        assert!((lr.from_unit(0.5) - 1e-4).abs() < 1e-12);
        assert!((lr.snap(lr.to_tpe(1e-3)) - 1e-3).abs() < 1e-15);
        let c = Dist::Choice { n: 4 };
        assert_eq!(c.from_unit(0.999_999), 3.0);
        assert_eq!(c.snap(c.to_tpe(3.0)), 3.0);
        let log_int = Dist::Int {
            low: 1,
            high: 64,
            step: 1,
            log: true,
        };
        for u in [0.0, 0.3, 0.999_999] {
            let x = log_int.from_unit(u);
            assert!((1.0..=64.0).contains(&x) && x.fract() == 0.0, "{x}");
        }
    }
}
