//! The sections of a sweep file, one step each: `[sweep]`, `[profile.NAME]` over `[base]` and
//! `[grid]`, `--set` overrides and `[[reference]]` rows.

use super::check::{check_axis, check_grid, check_table, check_value, key_kind, misplaced_extends};
use super::replicates::{self, Replicates};
use super::source::{
    as_f64, de_to_json, entries, get_str, parse_set, type_name, usage, PathBase, Source, SpannedKey,
};
use super::{Axis, Kind, Setting, REFERENCE_METRICS};
use serde_json::{Map, Value as Json};
use std::collections::BTreeMap;
use toml::de::{DeTable, DeValue};

/// `[sweep]`: name, title, description, kind.
pub(super) struct Meta {
    pub name: String,
    pub title: Option<String>,
    pub description: Option<String>,
    pub kind: Kind,
    /// `seeds` and `flat`.
    pub replicates: Replicates,
}

/// A top-level section that must be a table, if present.
pub(super) fn table<'d, 'i>(
    src: &Source,
    doc: &'d DeTable<'i>,
    name: &str,
) -> anyhow::Result<Option<(&'d SpannedKey<'i>, &'d DeTable<'i>)>> {
    match doc.get_key_value(name) {
        None => Ok(None),
        Some((k, v)) => match v.get_ref() {
            DeValue::Table(t) => Ok(Some((k, t))),
            other => Err(src.err(
                &v.span(),
                name,
                &format!("expected a table, found {}", type_name(other)),
                &format!("write a [{name}] section"),
            )),
        },
    }
}

/// The sections of a sweep file.
const SECTIONS: [&str; 8] = [
    "sweep",
    "base",
    "grid",
    "profile",
    "reference",
    "search",
    "space",
    "prune",
];

/// The sections only search sweeps have (also under `[profile.NAME]`).
pub(super) const SEARCH_SECTIONS: [&str; 3] = ["search", "space", "prune"];

/// Refuses sections other than those a sweep file has.
pub(super) fn check_sections(src: &Source, doc: &DeTable) -> anyhow::Result<()> {
    for (k, _) in entries(doc) {
        if !SECTIONS.contains(&k.get_ref().as_ref()) {
            return Err(src.err(
                &k.span(),
                k.get_ref(),
                "unknown section",
                "use `extends`, [sweep], [base], [grid], [profile.NAME] and [[reference]] (and \
                 for search sweeps [search], [space], [prune])",
            ));
        }
    }
    Ok(())
}

pub(super) fn meta(src: &Source, doc: &DeTable) -> anyhow::Result<Meta> {
    let Some((_, meta)) = table(src, doc, "sweep")? else {
        // A file without [sweep] is what other sweep files extend (experiments/baseline.toml).
        return Err(usage(format!(
            "{}: sweep: no [sweep] section: a file without one is a base that sweep files \
             extend (`extends = \"{}\"`), not a sweep to run; fix: run a sweep file that \
             extends it, or add `[sweep]` with `name = \"...\"`",
            src.name,
            std::path::Path::new(&src.name)
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default()
        )));
    };
    for (k, _) in entries(meta) {
        let known = ["name", "title", "description", "kind"];
        if !known.contains(&k.get_ref().as_ref())
            && !replicates::KEYS.contains(&k.get_ref().as_ref())
        {
            return Err(src.err(
                &k.span(),
                &format!("sweep.{}", k.get_ref()),
                "unknown key",
                misplaced_extends(k.get_ref())
                    .unwrap_or("use name, title, description, kind, seeds, flat"),
            ));
        }
    }
    let name = get_str(src, meta, "name", "sweep")?.ok_or_else(|| {
        usage(format!(
            "{}: sweep.name: missing; fix: add `name = \"my_sweep\"` under [sweep]",
            src.name
        ))
    })?;
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
    {
        let span = meta.get("name").map(|v| v.span()).unwrap_or(0..0);
        return Err(src.err(
            &span,
            "sweep.name",
            &format!("`{name}` is not a valid name"),
            "use letters, digits, `_`, `-` and `.` only",
        ));
    }
    let title = get_str(src, meta, "title", "sweep")?;
    let description = get_str(src, meta, "description", "sweep")?;
    let kind = match get_str(src, meta, "kind", "sweep")?.as_deref() {
        None | Some("grid") => Kind::Grid,
        Some("ablation") => Kind::Ablation,
        Some("random") => Kind::Random,
        Some("tpe") => Kind::Tpe,
        Some(other) => {
            let span = meta.get("kind").map(|v| v.span()).unwrap_or(0..0);
            return Err(src.err(
                &span,
                "sweep.kind",
                &format!("unknown kind `{other}`"),
                "use \"grid\", \"ablation\", \"random\" or \"tpe\"",
            ));
        }
    };

    let replicates = replicates::read(src, meta, "sweep")?;
    Ok(Meta {
        name,
        title,
        description,
        kind,
        replicates,
    })
}

/// Applies `[profile.NAME]` (keys over `[base]`, axes over `[grid]`), validating every profile;
/// returns the file's axes that the profile replaced (the paper's references map onto them) and
/// the selected profile's `seeds` and `flat`.
pub(super) fn apply_profile(
    src: &Source,
    doc: &DeTable,
    file_base: &PathBase,
    profile: Option<&str>,
    settings: &mut BTreeMap<String, Setting>,
    axes: &mut Vec<Axis>,
) -> anyhow::Result<(Vec<Axis>, Replicates)> {
    let mut selected = Replicates::default();
    // Axes of the file that the selected profile replaced: paper references are mapped onto them.
    let mut replaced_axes: Vec<Axis> = Vec::new();
    let profiles = table(src, doc, "profile")?;
    if let Some((_, ps)) = profiles {
        for (pk, pv) in entries(ps) {
            let DeValue::Table(pt) = pv.get_ref() else {
                return Err(src.err(
                    &pv.span(),
                    &format!("profile.{}", pk.get_ref()),
                    "expected a table",
                    &format!("write a [profile.{}] section", pk.get_ref()),
                ));
            };
            // Validate every profile, not only the selected one: a typo should not wait.
            let mut skip = vec!["grid"];
            skip.extend(SEARCH_SECTIONS);
            skip.extend(replicates::KEYS);
            let p_settings = check_table(src, file_base, pt, &skip)?;
            let p_replicates = replicates::read(src, pt, &format!("profile.{}", pk.get_ref()))?;
            let p_grid = match pt.get("grid") {
                None => Vec::new(),
                Some(g) => match g.get_ref() {
                    DeValue::Table(gt) => check_grid(src, file_base, gt)?,
                    other => {
                        return Err(src.err(
                            &g.span(),
                            &format!("profile.{}.grid", pk.get_ref()),
                            &format!("expected a table, found {}", type_name(other)),
                            &format!("write [profile.{}.grid]", pk.get_ref()),
                        ))
                    }
                },
            };
            if Some(pk.get_ref().as_ref()) == profile {
                selected = p_replicates;
                settings.extend(p_settings);
                for axis in p_grid {
                    match axes.iter_mut().find(|a| a.name == axis.name) {
                        Some(a) => {
                            replaced_axes.push(a.clone());
                            *a = axis
                        }
                        None => axes.push(axis),
                    }
                }
            }
        }
    }
    check_profile(src, doc, profile)?;
    Ok((replaced_axes, selected))
}

/// The profiles a sweep file defines (with those of the files it extends), in order.
pub(super) fn profile_names(doc: &DeTable) -> Vec<String> {
    match doc.get("profile").map(|p| p.get_ref()) {
        Some(DeValue::Table(ps)) => entries(ps)
            .into_iter()
            .map(|(k, _)| k.get_ref().to_string())
            .collect(),
        _ => Vec::new(),
    }
}

/// `--profile P` names a `[profile.P]` of the file or of a file it extends (else a usage error
/// listing those there are).
pub(super) fn check_profile(
    src: &Source,
    doc: &DeTable,
    profile: Option<&str>,
) -> anyhow::Result<()> {
    let Some(p) = profile else {
        return Ok(());
    };
    let defined = profile_names(doc);
    if defined.iter().any(|d| d == p) {
        return Ok(());
    }
    Err(usage(format!(
        "--profile {p}: {}: no [profile.{p}] in this file or the files it extends; fix: use one \
         of: {}",
        src.name,
        if defined.is_empty() {
            "(none defined)".to_string()
        } else {
            defined.join(", ")
        }
    )))
}

/// `--set key=value` (a trial key) and `--set grid.KEY=[...]` (an axis, replaced or added);
/// returns the trial keys' settings.
pub(super) fn apply_sets(
    sets: &[String],
    flag_base: &PathBase,
    axes: &mut Vec<Axis>,
) -> anyhow::Result<Vec<(String, Setting)>> {
    let mut trial_sets: Vec<(String, Setting)> = Vec::new();
    for flag in sets {
        let (key, raw) = parse_set(flag)?;
        let flag_text = format!("--set {flag}");
        let parsed = DeValue::parse(&raw);
        let owned_raw;
        let value_src: &str = match &parsed {
            Ok(_) => &raw,
            Err(_) => {
                owned_raw = format!("{:?}", raw);
                &owned_raw
            }
        };
        let fsrc = Source::of_flag(flag_text.clone(), value_src);
        let value = DeValue::parse(value_src).map_err(|e| {
            usage(format!(
                "{flag_text}: {key}: cannot parse the value: {}; fix: quote it",
                e.message()
            ))
        })?;
        if let Some(axis) = key.strip_prefix("grid.") {
            let axis = check_axis(&fsrc, flag_base, axis, &value)?;
            match axes.iter_mut().find(|a| a.name == axis.name) {
                Some(a) => *a = axis,
                None => axes.push(axis),
            }
        } else {
            trial_sets.extend(check_value(&fsrc, flag_base, &key, &value)?);
        }
    }

    Ok(trial_sets)
}

/// `[[reference]]` rows: the paper's numbers by axis or config keys.
pub(super) fn references(
    src: &Source,
    doc: &DeTable,
    axes: &[Axis],
) -> anyhow::Result<Vec<Map<String, Json>>> {
    let mut references = Vec::new();
    if let Some(r) = doc.get("reference") {
        let DeValue::Array(rows) = r.get_ref() else {
            return Err(src.err(
                &r.span(),
                "reference",
                "expected an array of tables",
                "write each row as a [[reference]] section",
            ));
        };
        for row in rows.iter() {
            let DeValue::Table(t) = row.get_ref() else {
                return Err(src.err(
                    &row.span(),
                    "reference",
                    "expected a table",
                    "write each row as a [[reference]] section",
                ));
            };
            let mut m = Map::new();
            for (k, v) in entries(t) {
                let key = k.get_ref().as_ref();
                if REFERENCE_METRICS.contains(&key) {
                    let Some(f) = as_f64(v.get_ref()) else {
                        return Err(src.err(
                            &v.span(),
                            &format!("reference.{key}"),
                            &format!("expected a number, found {}", type_name(v.get_ref())),
                            &format!("write `{key} = 3.0871`"),
                        ));
                    };
                    m.insert(key.to_string(), Json::from(f));
                } else if key == "label" || key == "note" {
                    let s = get_str(src, t, key, "reference")?.unwrap_or_default();
                    m.insert(key.to_string(), Json::String(s));
                } else if key_kind(key).is_some() || axes.iter().any(|a| a.name == key) {
                    m.insert(key.to_string(), de_to_json(v.get_ref()));
                } else {
                    return Err(src.err(
                        &k.span(),
                        &format!("reference.{key}"),
                        "unknown key",
                        &format!(
                            "use axis or config keys, label, note, or a metric ({})",
                            REFERENCE_METRICS.join(", ")
                        ),
                    ));
                }
            }
            references.push(m);
        }
    }
    Ok(references)
}
