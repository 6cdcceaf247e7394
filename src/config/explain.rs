//! Where each key of a sweep's first trial was set (`sweep plan --explain`, like `git config
//! --show-origin`): the table, axis, space or flag, and its file:line:column.

use super::{Kind, ResolvedTrial, Setting, Sweep};
use serde_json::Value as Json;
use std::collections::BTreeMap;

/// One resolved key of a trial and where its value came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Origin {
    /// A trial key, `data.*` flattened (`data.sources`).
    pub key: String,
    pub value: Json,
    /// What set it: `[base]`, `[profile.P]`, `axis NAME`, `[space]`, `--set`, or `default`
    /// (set nowhere: the trial's default).
    pub layer: String,
    /// `file:line:column` (the file of the chain that wrote it), the `--set` flag, or empty for
    /// a default.
    pub at: String,
}

/// The table of each key of `settings` (`[base]`, then the profile's keys over them): a key
/// whose value is not `[base]`'s own setting was set by the profile.
pub(super) fn table_layers(
    base: &BTreeMap<String, Setting>,
    settings: &BTreeMap<String, Setting>,
    profile: Option<&str>,
) -> BTreeMap<String, String> {
    settings
        .iter()
        .map(|(k, s)| {
            let layer = match profile {
                Some(p) if base.get(k).is_none_or(|b| b.at != s.at) => format!("[profile.{p}]"),
                _ => "[base]".to_string(),
            };
            (k.clone(), layer)
        })
        .collect()
}

impl Sweep {
    /// The sweep's first trial and where each of its keys was set. A search's first trial is its
    /// first suggestion: `point` (see `exec::search::Searcher::preview_points`).
    pub fn explain(&self, point: Option<&[f64]>) -> anyhow::Result<(ResolvedTrial, Vec<Origin>)> {
        // The settings the first trial adds over the tables, each with its layer.
        let mut extra: Vec<(String, Setting, String)> = Vec::new();
        let trial = match (&self.search, point) {
            (Some(search), Some(point)) => {
                let (settings, _) = search.settings_of(point);
                extra.extend(settings.into_iter().map(|(k, s)| (k, s, "[space]".into())));
                self.point(point)?
            }
            (Some(_), None) => anyhow::bail!("the first trial of a search is a point of its space"),
            (None, _) => {
                // A grid's first trial takes every axis's first value; an ablation's is the base.
                if self.kind == Kind::Grid {
                    for axis in &self.axes {
                        let first = axis.values.first().map(|v| v.settings.iter());
                        extra.extend(
                            first.into_iter().flatten().map(|(k, s)| {
                                (k.clone(), s.clone(), format!("axis {}", axis.name))
                            }),
                        );
                    }
                }
                self.trials
                    .first()
                    .cloned()
                    .ok_or_else(|| anyhow::anyhow!("sweep {} has no trials", self.name))?
            }
        };
        let origins = flat_keys(&serde_json::to_value(&trial.config)?)
            .into_iter()
            .map(|(key, value)| {
                let (layer, at) = self.origin_of(&key, &extra);
                Origin {
                    key,
                    value,
                    layer,
                    at,
                }
            })
            .collect();
        Ok((trial, origins))
    }

    /// The last place that set `key`, in the order the values apply: `--set`, the trial's own
    /// values (axis, space), the profile, `[base]`.
    fn origin_of(&self, key: &str, extra: &[(String, Setting, String)]) -> (String, String) {
        let r = &self.resolver;
        if let Some((_, s)) = r.trial_sets.iter().rev().find(|(k, _)| k == key) {
            return ("--set".into(), s.at.clone());
        }
        if let Some((_, s, layer)) = extra.iter().rev().find(|(k, _, _)| k == key) {
            return (layer.clone(), s.at.clone());
        }
        match (r.settings.get(key), r.layers.get(key)) {
            (Some(s), Some(layer)) => (layer.clone(), s.at.clone()),
            _ => ("default".into(), String::new()),
        }
    }
}

/// A trial config's keys with a value, `data.*` flattened, sorted.
fn flat_keys(config: &Json) -> Vec<(String, Json)> {
    let mut out = Vec::new();
    for (k, v) in config.as_object().into_iter().flatten() {
        match (k.as_str(), v) {
            ("data", Json::Object(data)) => out.extend(
                data.iter()
                    .filter(|(_, v)| !v.is_null())
                    .map(|(sk, sv)| (format!("data.{sk}"), sv.clone())),
            ),
            (_, Json::Null) => {}
            _ => out.push((k.clone(), v.clone())),
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}
