//! Expected validation performance (Dodge et al., "Show Your Work", EMNLP 2019): the expected
//! best of k configurations drawn without replacement from the N a sweep tried, k = 1..N, with
//! its variance, as allentune's `samplemax(..., with_replacement=False)` computes it.
//!
//! With the N values sorted, v_(1) <= ... <= v_(N), the best of k distinct draws is at most
//! v_(i) with probability C(i, k) / C(N, k); the differences of that CDF weight the values. The
//! CDF is computed in logs (C(1000, 500) overflows f64), O(N) per k.

use serde::Serialize;

/// The expected best of k draws and its spread.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Expected {
    pub k: usize,
    pub mean: f64,
    pub var: f64,
}

impl Expected {
    pub fn sd(&self) -> f64 {
        self.var.max(0.0).sqrt()
    }
}

/// The expected maximum of k values drawn without replacement from `values`, k = 1..N.
pub fn expected_max(values: &[f64]) -> Vec<Expected> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    (1..=n)
        .map(|k| {
            // ln F(i) for i = k..=n: F(k) = 1 / C(n, k), F(i) = F(i-1) * i / (i - k).
            let mut ln_f: f64 = (0..k).map(|j| ((k - j) as f64 / (n - j) as f64).ln()).sum();
            let mut pdf = vec![0.0; n];
            let mut prev = 0.0;
            for i in k..=n {
                if i > k {
                    ln_f += (i as f64).ln() - ((i - k) as f64).ln();
                }
                // F(n) = 1 exactly: the best of k draws is at most the largest value.
                let f = if i == n { 1.0 } else { ln_f.exp() };
                pdf[i - 1] = f - prev;
                prev = f;
            }
            let mean: f64 = pdf.iter().zip(&v).map(|(p, x)| p * x).sum();
            let var: f64 = pdf
                .iter()
                .zip(&v)
                .map(|(p, x)| p * (x - mean).powi(2))
                .sum();
            Expected { k, mean, var }
        })
        .collect()
}

/// The expected best of k configurations: the maximum, or with `lower_is_better` the minimum
/// (perplexity), k = 1..N.
pub fn expected_best(values: &[f64], lower_is_better: bool) -> Vec<Expected> {
    if !lower_is_better {
        return expected_max(values);
    }
    let neg: Vec<f64> = values.iter().map(|x| -x).collect();
    expected_max(&neg)
        .into_iter()
        .map(|e| Expected { mean: -e.mean, ..e })
        .collect()
}
