//! `[search]`, `[space]` and `[prune]` of a search sweep (`kind = "random" | "tpe"`): each key
//! checked with its location, a profile's tables applied over the file's key by key, the result a
//! typed [`Search`].

use super::check::{check_axis_in, key_kind};
use super::source::{
    as_f64, as_i64, entries, get_str, int_at_least, type_name, PathBase, Source, SpannedKey,
};
use super::{AxisValue, Kind, Setting};
use crate::search::{Direction, Dist, Method, Pruner, METRICS};
use crate::trial::KeyKind;
use serde_json::{json, Map, Value as Json};
use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// One parameter of the space.
#[derive(Debug, Clone)]
pub struct Param {
    /// A trial key, or (for a `choice` of tables) a name of the sweep's choosing.
    pub name: String,
    pub dist: Dist,
    /// The values of a `choice`, checked like a grid axis's.
    pub choices: Vec<AxisValue>,
    pub at: String,
}

/// A search sweep's budget, objective, space and pruning.
#[derive(Debug, Clone)]
pub struct Search {
    pub method: Method,
    pub trials: usize,
    pub metric: String,
    pub direction: Direction,
    pub seed: u64,
    pub space: Vec<Param>,
    pub prune: Pruner,
    /// Where `[search]` is, for messages.
    pub at: String,
    /// Where `[prune]` is, if present.
    pub prune_at: Option<String>,
}

impl Param {
    /// How the values of a `choice` show (plans, reports).
    pub fn choice_labels(&self) -> Vec<Json> {
        self.choices.iter().map(|c| choice_label(self, c)).collect()
    }
}

impl Search {
    pub fn dists(&self) -> Vec<Dist> {
        self.space.iter().map(|p| p.dist.clone()).collect()
    }

    /// The settings and the report label of a point.
    pub fn settings_of(&self, point: &[f64]) -> (Vec<(String, Setting)>, Map<String, Json>) {
        let (mut settings, mut label) = (Vec::new(), Map::new());
        for (p, &x) in self.space.iter().zip(point) {
            match p.dist {
                Dist::Choice { .. } => {
                    let v = &p.choices[(x as usize).min(p.choices.len() - 1)];
                    settings.extend(v.settings.iter().cloned());
                    label.insert(p.name.clone(), choice_label(p, v));
                }
                _ => {
                    let value = number(&p.dist, x);
                    settings.push((
                        p.name.clone(),
                        Setting {
                            value: value.clone(),
                            at: p.at.clone(),
                        },
                    ));
                    label.insert(p.name.clone(), value);
                }
            }
        }
        (settings, label)
    }

    /// The point of a trial's label (`None` when the label does not fit this space: a trial
    /// recorded before the space changed).
    pub fn point_of(&self, label: &Map<String, Json>) -> Option<Vec<f64>> {
        self.space
            .iter()
            .map(|p| {
                let v = label.get(&p.name)?;
                match p.dist {
                    Dist::Choice { .. } => p
                        .choices
                        .iter()
                        .position(|c| &choice_label(p, c) == v)
                        .map(|i| i as f64),
                    _ => v.as_f64(),
                }
            })
            .collect()
    }

    /// The points at the space's extremes: every value of each `choice` with both ends of each
    /// range, or (past [`MAX_EXTREMES`] combinations) the two corners. What a rule over all
    /// trials (the step counts Hyperband's brackets come from) is checked on.
    pub fn extreme_points(&self) -> Vec<Vec<f64>> {
        let axes: Vec<Vec<f64>> = self
            .space
            .iter()
            .map(|p| match p.dist {
                Dist::Choice { n } => (0..n).map(|i| i as f64).collect(),
                _ => vec![p.dist.from_unit(0.0), p.dist.from_unit(1.0 - 1e-12)],
            })
            .collect();
        let combos = axes
            .iter()
            .map(Vec::len)
            .try_fold(1usize, |a, n| a.checked_mul(n));
        if combos.is_none_or(|c| c > MAX_EXTREMES) {
            return [0.0, 1.0 - 1e-12]
                .iter()
                .map(|&u| self.space.iter().map(|p| p.dist.from_unit(u)).collect())
                .collect();
        }
        axes.iter().fold(vec![Vec::new()], |acc, values| {
            acc.iter()
                .flat_map(|pre| {
                    values.iter().map(move |&x| {
                        let mut p = pre.clone();
                        p.push(x);
                        p
                    })
                })
                .collect()
        })
    }

    /// Hyperband's rules over the whole search, given the length of each of
    /// [`Search::extreme_points`] in the pruner's resource (`None`: it depends on the data's
    /// size): `min` below the trials' lengths, and every bracket with a trial within the
    /// budget. With a default `max` and lengths that depend on the data, the trial process
    /// decides alone.
    pub fn check_prune(&self, lengths: &[Option<u64>]) -> anyhow::Result<()> {
        let Pruner::Hyperband {
            min,
            max: max_set,
            reduction_factor: eta,
            resource,
        } = self.prune
        else {
            return Ok(());
        };
        let unit = resource.unit();
        let at = self.prune_at.as_deref().unwrap_or(&self.at);
        let max = match max_set {
            Some(m) => m,
            None => match lengths.iter().copied().collect::<Option<Vec<u64>>>() {
                Some(counts) if !counts.is_empty() => {
                    let most = counts.iter().copied().max().unwrap_or(0);
                    if most <= min {
                        return Err(super::source::usage(format!(
                            "{at}: prune.min_{unit}: {min} is not below the trials' length \
                             (at most {most} {unit} here), so Hyperband never prunes; fix: \
                             lower min_{unit} below {most}, or train longer"
                        )));
                    }
                    most
                }
                _ => return Ok(()),
            },
        };
        let brackets = crate::search::prune::bracket_count(min, max, eta);
        let counts =
            crate::search::prune::bracket_counts(self.seed, self.trials as u64, brackets, eta);
        let Some(empty) = counts.iter().position(|&c| c == 0) else {
            return Ok(());
        };
        let enough = crate::search::prune::trials_for_every_bracket(self.seed, brackets, eta)
            .map(|n| format!(" to at least {n}"))
            .unwrap_or_default();
        let rungs: Vec<String> = (0..brackets)
            .map(|b| min.saturating_mul(eta.saturating_pow(b)).to_string())
            .collect();
        Err(super::source::usage(format!(
            "{at}: prune.method: Hyperband with min_{unit} {min}, max_{unit} {max}{} and \
             reduction_factor {eta} has {brackets} brackets (first rungs at {} {unit}), and the \
             budget of {} trials leaves bracket {empty} without a trial (trials per bracket: \
             {counts:?}); fix: raise [search] trials{enough}, or raise min_{unit} or \
             reduction_factor, or lower max_{unit} (fewer brackets)",
            if max_set.is_none() {
                " (the longest trial's length)"
            } else {
                ""
            },
            rungs.join(", "),
            self.trials
        )))
    }

    /// As recorded in the sweep's spec (`spec.search`).
    pub fn spec_json(&self) -> Json {
        let space: Vec<Json> = self
            .space
            .iter()
            .map(|p| {
                let mut m = json!({"name": p.name, "dist": p.dist});
                if !p.choices.is_empty() {
                    m["values"] = p.choice_labels().into();
                }
                m
            })
            .collect();
        let mut m = json!({
            "method": self.method.name(),
            "trials": self.trials,
            "metric": self.metric,
            "direction": self.direction,
            "seed": self.seed,
            "space": space,
            "prune": self.prune,
        });
        if let Method::Tpe { startup } = self.method {
            m["startup"] = json!(startup);
        }
        m
    }
}

/// More combinations of extreme values than this: [`Search::extreme_points`] takes the corners.
const MAX_EXTREMES: usize = 4096;

/// How a choice shows in labels: the value itself for a trial key, the table for paired values.
fn choice_label(p: &Param, v: &AxisValue) -> Json {
    match v.label.get(&p.name) {
        Some(x) if v.label.len() == 1 => x.clone(),
        _ => Json::Object(v.label.clone()),
    }
}

/// A numeric parameter's value as JSON: integers for `int`; floats to 4 significant digits (a
/// config reads `learning_rate = 0.001109`, not `0.0011089451585091096`), kept within bounds.
fn number(d: &Dist, x: f64) -> Json {
    match *d {
        Dist::Int { .. } => json!(x.round() as i64),
        Dist::Uniform { low, high } | Dist::LogUniform { low, high } => {
            json!(round_sig(x, 4).clamp(low, high))
        }
        Dist::Choice { .. } => json!(x),
    }
}

fn round_sig(x: f64, digits: i32) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let scale = 10f64.powi(digits - 1 - x.abs().log10().floor() as i32);
    // Through the decimal text: `0.001109` exactly as written, not 0.0011090000000000001.
    format!("{}", (x * scale).round() / scale)
        .parse()
        .unwrap_or(x)
}

/// The search tables of the file and of the selected profile.
pub(super) struct Tables<'d, 'i> {
    pub search: Vec<&'d DeTable<'i>>,
    pub space: Vec<&'d DeTable<'i>>,
    pub prune: Vec<&'d DeTable<'i>>,
    pub search_key: Option<&'d SpannedKey<'i>>,
    pub prune_key: Option<&'d SpannedKey<'i>>,
}

/// Checks and merges the search tables of a `kind = "random" | "tpe"` sweep.
pub(super) fn search(
    src: &Source,
    base: &PathBase,
    kind: Kind,
    t: &Tables,
    default_min_steps: Option<u64>,
) -> anyhow::Result<Search> {
    let at = t
        .search_key
        .map(|k| src.loc(&k.span()))
        .unwrap_or_else(|| src.name.clone());
    let mut s = Search {
        method: match kind {
            Kind::Tpe => Method::Tpe { startup: 10 },
            _ => Method::Random,
        },
        trials: 0,
        metric: "valid_loss".into(),
        direction: Direction::Minimize,
        seed: 0,
        space: Vec::new(),
        prune: Pruner::None,
        at: at.clone(),
        prune_at: t.prune_key.map(|k| src.loc(&k.span())),
    };
    for table in &t.search {
        search_keys(src, table, &mut s)?;
    }
    if s.trials == 0 {
        return Err(super::source::usage(format!(
            "{at}: search.trials: missing; fix: add `trials = 50` (the budget) under [search]"
        )));
    }
    for table in &t.space {
        for (k, v) in entries(table) {
            let p = param(src, base, k.get_ref(), v)?;
            match s.space.iter_mut().find(|q| q.name == p.name) {
                Some(q) => *q = p,
                None => s.space.push(p),
            }
        }
    }
    if s.space.is_empty() {
        return Err(super::source::usage(format!(
            "{at}: space: no parameters; fix: add a [space] section, e.g. `learning_rate = {{ \
             log_uniform = [1e-5, 1e-3] }}`"
        )));
    }
    let mut prune = super::prune::PruneKeys::default();
    for table in &t.prune {
        super::prune::prune_keys(src, table, &mut prune)?;
    }
    s.prune = prune.pruner(default_min_steps);
    prune.check(&s.prune)?;
    Ok(s)
}

fn search_keys(src: &Source, t: &DeTable, s: &mut Search) -> anyhow::Result<()> {
    for (k, v) in entries(t) {
        let key = format!("search.{}", k.get_ref());
        match k.get_ref().as_ref() {
            "trials" => s.trials = int_at_least(src, v, &key, 1, "trials = 50")? as usize,
            "seed" => s.seed = int_at_least(src, v, &key, 0, "seed = 0")? as u64,
            "startup" => {
                let n = int_at_least(src, v, &key, 0, "startup = 10")? as usize;
                match &mut s.method {
                    Method::Tpe { startup } => *startup = n,
                    Method::Random => {
                        return Err(src.err(
                            &k.span(),
                            &key,
                            "random search has no start-up phase",
                            "remove `startup`, or use kind = \"tpe\"",
                        ))
                    }
                }
            }
            "metric" => {
                let m = get_str(src, t, "metric", "search")?.unwrap_or_default();
                if !METRICS.contains(&m.as_str()) {
                    return Err(src.err(
                        &v.span(),
                        &key,
                        &format!("unknown metric `{m}`"),
                        &format!("use one of: {}", METRICS.join(", ")),
                    ));
                }
                s.metric = m;
            }
            "direction" => {
                s.direction = match get_str(src, t, "direction", "search")?.as_deref() {
                    Some("minimize") => Direction::Minimize,
                    Some("maximize") => Direction::Maximize,
                    other => {
                        return Err(src.err(
                            &v.span(),
                            &key,
                            &format!("unknown direction `{}`", other.unwrap_or_default()),
                            "use \"minimize\" or \"maximize\"",
                        ))
                    }
                }
            }
            _ => {
                return Err(src.err(
                    &k.span(),
                    &key,
                    "unknown key",
                    "use trials, metric, direction, seed, startup (tpe)",
                ))
            }
        }
    }
    Ok(())
}

const DISTS: &str = "`{ log_uniform = [1e-5, 1e-3] }`, `{ uniform = [0.0, 0.1] }`, `{ int = [0, \
                     500], step = 50 }` or `{ choice = [1, 2, 4] }`";

/// One `[space]` entry.
fn param(src: &Source, base: &PathBase, name: &str, v: &Spanned<DeValue>) -> anyhow::Result<Param> {
    let key = format!("space.{name}");
    let at = src.loc(&v.span());
    let DeValue::Table(t) = v.get_ref() else {
        return Err(src.err(
            &v.span(),
            &key,
            &format!(
                "expected a distribution table, found {}",
                type_name(v.get_ref())
            ),
            &format!("write e.g. {DISTS}"),
        ));
    };
    let dist_keys: Vec<_> = entries(t)
        .into_iter()
        .filter(|(k, _)| !["step", "log"].contains(&k.get_ref().as_ref()))
        .collect();
    let [(dk, dv)] = dist_keys.as_slice() else {
        return Err(src.err(
            &v.span(),
            &key,
            "expected exactly one distribution",
            &format!("write e.g. {DISTS}"),
        ));
    };
    let kind = key_kind(name).map(|(k, _)| k);
    if dk.get_ref() != "choice" && kind.is_none() {
        return Err(src.err(
            &v.span(),
            &key,
            "not a trial key",
            &format!(
                "use a trial key ({}), or `{{ choice = [{{ key = value, ... }}, ...] }}` for \
                 values that set several keys",
                super::check::key_list()
            ),
        ));
    }
    let (dist, choices) = match dk.get_ref().as_ref() {
        "choice" => {
            let axis = check_axis_in(src, base, "space", name, dv)?;
            let n = axis.values.len();
            (Dist::Choice { n }, axis.values)
        }
        "uniform" | "log_uniform" => (float_dist(src, &key, dk.get_ref(), dv, kind)?, vec![]),
        "int" => (int_dist(src, &key, t, dv, kind)?, vec![]),
        other => {
            return Err(src.err(
                &dk.span(),
                &key,
                &format!("unknown distribution `{other}`"),
                &format!("use {DISTS}"),
            ))
        }
    };
    if !matches!(dist, Dist::Int { .. }) {
        if let Some((k, _)) = entries(t)
            .into_iter()
            .find(|(k, _)| ["step", "log"].contains(&k.get_ref().as_ref()))
        {
            return Err(src.err(
                &k.span(),
                &format!("{key}.{}", k.get_ref()),
                "only `int` distributions take `step` and `log`",
                "remove it (log_uniform is the log scale of floats)",
            ));
        }
    }
    for bound in bounds(&dist) {
        crate::trial::check_value(name, &bound)
            .map_err(|e| src.err(&dv.span(), &key, &e, "narrow the range"))?;
    }
    Ok(Param {
        name: name.to_string(),
        dist,
        choices,
        at,
    })
}

/// The two ends of a numeric range, to check against the key's rule.
fn bounds(d: &Dist) -> Vec<Json> {
    match *d {
        Dist::Uniform { low, high } | Dist::LogUniform { low, high } => {
            vec![json!(low), json!(high)]
        }
        Dist::Int { low, high, .. } => vec![json!(low), json!(high)],
        Dist::Choice { .. } => vec![],
    }
}

/// `[low, high]` as two numbers, `low < high`.
fn pair(src: &Source, key: &str, v: &Spanned<DeValue>, ints: bool) -> anyhow::Result<(f64, f64)> {
    let example = if ints { "[0, 500]" } else { "[1e-5, 1e-3]" };
    let two = match v.get_ref() {
        DeValue::Array(a) if a.len() == 2 => {
            let get = |i: usize| {
                if ints {
                    as_i64(a[i].get_ref()).map(|x| x as f64)
                } else {
                    as_f64(a[i].get_ref())
                }
            };
            get(0).zip(get(1))
        }
        _ => None,
    };
    let Some((low, high)) = two else {
        return Err(src.err(
            &v.span(),
            key,
            &format!(
                "expected [low, high] ({}), found {}",
                if ints { "two integers" } else { "two numbers" },
                type_name(v.get_ref())
            ),
            &format!("write e.g. `{example}`"),
        ));
    };
    if low >= high {
        let what = if low > high { "reversed" } else { "empty" };
        return Err(src.err(
            &v.span(),
            key,
            &format!("{what} range [{low}, {high}]"),
            "write [low, high] with low < high (a fixed value belongs in [base])",
        ));
    }
    Ok((low, high))
}

fn float_dist(
    src: &Source,
    key: &str,
    dist: &str,
    v: &Spanned<DeValue>,
    kind: Option<KeyKind>,
) -> anyhow::Result<Dist> {
    if matches!(kind, Some(KeyKind::PosInt | KeyKind::NonNegInt)) {
        return Err(src.err(
            &v.span(),
            key,
            "this key takes integers",
            "use `{ int = [low, high] }` (with `log = true` for a log scale)",
        ));
    }
    if !matches!(
        kind,
        Some(KeyKind::PosFloat | KeyKind::NonNegFloat | KeyKind::Dropout)
    ) {
        return Err(src.err(
            &v.span(),
            key,
            "this key is not a number",
            "use `{ choice = [...] }`",
        ));
    }
    let (low, high) = pair(src, key, v, false)?;
    if dist == "log_uniform" {
        if low <= 0.0 {
            return Err(src.err(
                &v.span(),
                key,
                &format!("log_uniform needs bounds above 0, got {low}"),
                "use a positive lower bound, e.g. [1e-6, ...], or `uniform`",
            ));
        }
        return Ok(Dist::LogUniform { low, high });
    }
    Ok(Dist::Uniform { low, high })
}

fn int_dist(
    src: &Source,
    key: &str,
    t: &DeTable,
    v: &Spanned<DeValue>,
    kind: Option<KeyKind>,
) -> anyhow::Result<Dist> {
    if !matches!(
        kind,
        Some(KeyKind::PosInt | KeyKind::NonNegInt | KeyKind::PosFloat | KeyKind::NonNegFloat)
    ) {
        return Err(src.err(
            &v.span(),
            key,
            "this key is not a number",
            "use `{ choice = [...] }`",
        ));
    }
    let (low, high) = pair(src, key, v, true)?;
    let (low, high) = (low as i64, high as i64);
    let step = match t.get("step") {
        Some(s) => int_at_least(src, s, &format!("{key}.step"), 1, "step = 50")?,
        None => 1,
    };
    let log = match t.get("log") {
        None => false,
        Some(l) => match l.get_ref() {
            DeValue::Boolean(b) => *b,
            other => {
                return Err(src.err(
                    &l.span(),
                    &format!("{key}.log"),
                    &format!("expected true or false, found {}", type_name(other)),
                    "write `log = true`",
                ))
            }
        },
    };
    if step > high - low {
        return Err(src.err(
            &v.span(),
            key,
            &format!("step {step} leaves only {low} in [{low}, {high}]"),
            "use a smaller step or a wider range",
        ));
    }
    if log && (low < 1 || step != 1) {
        return Err(src.err(
            &v.span(),
            key,
            "a log-scaled int needs low >= 1 and no step",
            "raise low to 1 or more and remove `step`, or drop `log = true`",
        ));
    }
    Ok(Dist::Int {
        low,
        high,
        step,
        log,
    })
}
