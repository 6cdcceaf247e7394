//! The checks of single values and axes of a sweep file: each key by its rule (`trial/keys.rs`),
//! with the location and the fix in the message; data paths resolved and required to exist.

use super::source::{de_to_json, entries, type_name, PathBase, Source};
use super::{Axis, AxisValue, Setting};
use crate::trial::{key_rule, keys, KeyKind, Preset};
use serde_json::{Map, Value as Json};
use std::path::Path;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

pub(super) fn key_kind(key: &str) -> Option<(KeyKind, &'static str)> {
    key_rule(key).map(|r| (r.kind, r.example))
}

pub(super) fn key_list() -> String {
    let keys: Vec<String> = keys().into_iter().filter(|k| k != "data").collect();
    keys.join(", ")
}

/// The fix for `extends` written below a section header (TOML makes it a key of that section).
pub(super) fn misplaced_extends(key: &str) -> Option<&'static str> {
    (key == "extends").then_some(
        "move `extends = \"...\"` above the first [section]: it is a top-level key of the file",
    )
}

/// Check one value of a known key and convert it to JSON. A `data` table expands into several
/// `data.*` settings, so this returns a list.
pub(super) fn check_value(
    src: &Source,
    base: &PathBase,
    key: &str,
    v: &Spanned<DeValue>,
) -> anyhow::Result<Vec<(String, Setting)>> {
    let Some((kind, example)) = key_kind(key) else {
        return Err(src.err(
            &v.span(),
            key,
            "unknown key",
            &format!("use one of: {}", key_list()),
        ));
    };
    let span = v.span();
    let at = src.loc(&span);
    let wrong = |expected: &str| {
        src.err(
            &span,
            key,
            &format!("expected {expected}, found {}", type_name(v.get_ref())),
            &format!("write e.g. `{key} = {example}`"),
        )
    };
    let bad = |msg: &str| src.err(&span, key, msg, &format!("write e.g. `{key} = {example}`"));
    let value = v.get_ref();
    let json = match kind {
        KeyKind::DataTable => {
            let DeValue::Table(t) = value else {
                return Err(wrong("a table"));
            };
            let mut out = Vec::new();
            for (k, sub) in entries(t) {
                let full = format!("data.{}", k.get_ref());
                if key_kind(&full).is_none() {
                    return Err(src.err(
                        &k.span(),
                        &full,
                        "unknown key",
                        "use data.sources, data.categories or data.split",
                    ));
                }
                out.extend(check_value(src, base, &full, sub)?);
            }
            return Ok(out);
        }
        // A checkpoint directory given as `model` resolves like data paths: against the project
        // root, so a sweep runs the same from any working directory.
        KeyKind::Model => match check_value_rule(key, value) {
            Ok(Json::String(s)) => {
                let p = Path::new(&s);
                let (full, found) = base.resolve(src, &span, p, Path::is_dir);
                if Preset::from_name(&s).is_none() && !p.is_absolute() && found {
                    let full = crate::util::absolute_clean(&full);
                    Json::String(full.display().to_string())
                } else {
                    Json::String(s)
                }
            }
            Ok(other) => other,
            Err(e) => return Err(bad(&e)),
        },
        KeyKind::Paths | KeyKind::Strings | KeyKind::Split => {
            check_value_rule(key, value).map_err(|e| bad(&e))?;
            match kind {
                KeyKind::Paths => resolve_paths(src, base, key, v)?,
                _ => de_to_json(value),
            }
        }
        _ => check_value_rule(key, value).map_err(|e| bad(&e))?,
    };
    Ok(vec![(key.to_string(), Setting { value: json, at })])
}

/// The rule of `key` (trial/keys.rs) applied to a TOML value.
pub(super) fn check_value_rule(key: &str, value: &DeValue) -> Result<Json, String> {
    crate::trial::check_value(key, &de_to_json(value))
}

/// `data.sources`: each file resolved against the sweep file's base and required to exist
/// (unless a `--set` replaces the key), errors at the offending item.
pub(super) fn resolve_paths(
    src: &Source,
    base: &PathBase,
    key: &str,
    v: &Spanned<DeValue>,
) -> anyhow::Result<Json> {
    let DeValue::Array(items) = v.get_ref() else {
        return Ok(de_to_json(v.get_ref()));
    };
    let mut out = Vec::new();
    for item in items.iter() {
        let s = item.get_ref().as_str().unwrap_or_default();
        let p = Path::new(s);
        let (full, found) = base.resolve(src, &item.span(), p, Path::is_file);
        if !found && !base.replaced.iter().any(|k| k == key) {
            let looked = if p.is_absolute() {
                full.display().to_string()
            } else {
                base.tried(src, &item.span(), p)
            };
            return Err(src.err(
                &item.span(),
                key,
                &format!("no such file: {looked}"),
                "fix the path (relative paths in a sweep file are relative to the file's own \
                 directory, else to the working directory) or fetch the data as the README says",
            ));
        }
        let full = crate::util::absolute_clean(&full);
        out.push(Json::String(full.display().to_string()));
    }
    Ok(Json::Array(out))
}

/// The settings of a table of config keys (`[base]`, `[profile.P]`, a paired axis value).
pub(super) fn check_table(
    src: &Source,
    base: &PathBase,
    t: &DeTable,
    skip: &[&str],
) -> anyhow::Result<Vec<(String, Setting)>> {
    let mut out = Vec::new();
    for (k, v) in entries(t) {
        if skip.contains(&k.get_ref().as_ref()) {
            continue;
        }
        if key_kind(k.get_ref()).is_none() {
            let fix = match misplaced_extends(k.get_ref()) {
                Some(fix) => fix.to_string(),
                None => format!("use one of: {}", key_list()),
            };
            return Err(src.err(&k.span(), k.get_ref(), "unknown key", &fix));
        }
        out.extend(check_value(src, base, k.get_ref(), v)?);
    }
    Ok(out)
}

/// Label value for reports: ints stay ints, paths keep only their file name.
pub(super) fn label_of(settings: &[(String, Setting)]) -> Map<String, Json> {
    settings
        .iter()
        .map(|(k, s)| {
            let v = if k == "data.sources" {
                match &s.value {
                    Json::Array(a) => Json::Array(
                        a.iter()
                            .map(|p| {
                                let p = p.as_str().unwrap_or_default();
                                Json::String(
                                    Path::new(p)
                                        .file_name()
                                        .map(|f| f.to_string_lossy().into_owned())
                                        .unwrap_or_else(|| p.to_string()),
                                )
                            })
                            .collect(),
                    ),
                    other => other.clone(),
                }
            } else {
                s.value.clone()
            };
            (k.clone(), v)
        })
        .collect()
}

pub(super) fn check_axis(
    src: &Source,
    base: &PathBase,
    name: &str,
    v: &Spanned<DeValue>,
) -> anyhow::Result<Axis> {
    check_axis_in(src, base, "grid", name, v)
}

/// An axis of `[grid]`, or the values of a `{ choice = [...] }` in `[space]` (`section` names
/// where, for messages).
pub(super) fn check_axis_in(
    src: &Source,
    base: &PathBase,
    section: &str,
    name: &str,
    v: &Spanned<DeValue>,
) -> anyhow::Result<Axis> {
    let span = v.span();
    let DeValue::Array(items) = v.get_ref() else {
        return Err(src.err(
            &span,
            &format!("{section}.{name}"),
            &format!("an axis must be an array, found {}", type_name(v.get_ref())),
            &format!("write `{name} = [value1, value2]`"),
        ));
    };
    if items.is_empty() {
        return Err(src.err(
            &span,
            &format!("{section}.{name}"),
            "empty axis",
            "give at least one value, or delete the axis",
        ));
    }
    let known = key_kind(name).is_some();
    let mut values: Vec<AxisValue> = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    for item in items.iter() {
        let settings = if known {
            check_value(src, base, name, item)?
        } else {
            let DeValue::Table(t) = item.get_ref() else {
                return Err(src.err(
                    &item.span(),
                    &format!("{section}.{name}"),
                    &format!(
                        "`{name}` is not a config key, so this must be a paired axis whose \
                         values are tables, found {}",
                        type_name(item.get_ref())
                    ),
                    &format!(
                        "use a config key ({}) or tables like `{name} = [{{ model = \"gpt2\", \
                         learning_rate = 5e-5 }}]`",
                        key_list()
                    ),
                ));
            };
            if t.is_empty() {
                return Err(src.err(
                    &item.span(),
                    &format!("{section}.{name}"),
                    "empty table in a paired axis",
                    "set at least one key in each table",
                ));
            }
            check_table(src, base, t, &[])?
        };
        let label = label_of(&settings);
        let canon = crate::util::sorted_json(&Json::Object(
            settings
                .iter()
                .map(|(k, s)| (k.clone(), s.value.clone()))
                .collect(),
        ));
        if seen.contains(&canon) {
            return Err(src.err(
                &item.span(),
                &format!("{section}.{name}"),
                "duplicate axis value",
                "remove the repeated value (each value of an axis must be different)",
            ));
        }
        seen.push(canon);
        values.push(AxisValue { settings, label });
    }
    Ok(Axis {
        name: name.to_string(),
        values,
        at: src.loc(&span),
    })
}

pub(super) fn check_grid(src: &Source, base: &PathBase, t: &DeTable) -> anyhow::Result<Vec<Axis>> {
    entries(t)
        .into_iter()
        .map(|(k, v)| check_axis(src, base, k.get_ref(), v))
        .collect()
}
