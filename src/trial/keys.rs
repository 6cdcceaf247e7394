//! The keys of a trial and the rule of each one's value: the only definition of what a valid
//! `TrialConfig` value is. Sweep files (`config`, with file:line:column), `sweep train --set`
//! and configs read back from the ledger are all checked by these rules.
//!
//! Which keys exist is read off the `TrialConfig` type itself (through its `Deserialize` impl),
//! so a new field is a new key; a unit test fails until it also has a rule here.

use super::spec::{Init, ModelSpec, Precision, TokenizerSpec};
use super::{DataSpec, TrialConfig};
use serde_json::Value as Json;

/// What kind of value a key takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Model,
    Init,
    Tokenizer,
    Precision,
    PosInt,
    NonNegInt,
    PosFloat,
    NonNegFloat,
    /// A probability in [0, 1).
    Dropout,
    /// Input files (resolved against the sweep file by `config`).
    Paths,
    Strings,
    /// Three non-negative numbers, train and valid+test parts positive.
    Split,
    /// `data = { ... }`: a table of `data.*` keys.
    DataTable,
}

/// A key's kind and an example value (for the fix in error messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyRule {
    pub kind: KeyKind,
    pub example: &'static str,
}

/// The rule of a key (`data.sources` style for the data table's keys); `None` for unknown keys.
pub fn key_rule(key: &str) -> Option<KeyRule> {
    use KeyKind::*;
    let (kind, example) = match key {
        "model" => (Model, "\"distilgpt2\""),
        "init" => (Init, "\"pretrained\" or \"scratch\""),
        "n_layer" => (PosInt, "6"),
        "n_embd" => (PosInt, "768"),
        "n_head" => (PosInt, "12"),
        "tokenizer" => (Tokenizer, "\"gpt2\" or \"bpe-4096\""),
        "precision" => (Precision, "\"f32\", \"bf16\" or \"f16\""),
        "data" => (DataTable, "{ sources = [\"data/arxiv/cs.CL.tsv.xz\"] }"),
        "data.sources" => (Paths, "[\"data/arxiv/cs.CL.tsv.xz\"]"),
        "data.categories" => (Strings, "[\"cs.CL\"]"),
        "data.split" => (Split, "[9.0, 0.5, 0.5]"),
        "block_size" => (PosInt, "512"),
        "batch_size" => (PosInt, "8"),
        "grad_accum" => (PosInt, "1"),
        "learning_rate" => (PosFloat, "5e-5"),
        "weight_decay" => (NonNegFloat, "0.0"),
        "epochs" => (PosInt, "5"),
        "warmup_steps" => (NonNegInt, "0"),
        "seed" => (NonNegInt, "42"),
        "dropout" => (Dropout, "0.1"),
        "max_train_tokens" => (PosInt, "200000"),
        "skip_train_tokens" => (NonNegInt, "500000"),
        "max_steps" => (PosInt, "1000"),
        "eval_every" => (PosInt, "100"),
        "eval_tokens" => (PosInt, "50000"),
        "eval_block_size" => (PosInt, "512"),
        _ => return None,
    };
    keys()
        .iter()
        .any(|k| k == key)
        .then_some(KeyRule { kind, example })
}

/// Every key of a trial, in `TrialConfig`'s field order; `data` then its `data.*` keys.
pub fn keys() -> Vec<String> {
    let mut out = Vec::new();
    for field in serde_aux::serde_introspection::serde_introspect::<TrialConfig>() {
        out.push(field.to_string());
        if *field == "data" {
            for sub in serde_aux::serde_introspection::serde_introspect::<DataSpec>() {
                out.push(format!("data.{sub}"));
            }
        }
    }
    out
}

fn type_name(v: &Json) -> &'static str {
    match v {
        Json::String(_) => "a string",
        Json::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Json::Number(_) => "a float",
        Json::Bool(_) => "a boolean",
        Json::Array(_) => "an array",
        Json::Object(_) => "a table",
        Json::Null => "nothing",
    }
}

/// Checks one value against its key's rule and returns it in canonical form (a precision alias
/// becomes its name). The error is the message without location or fix; `KeyRule::example` is
/// the fix. `Paths` are only checked for shape here: files are `config`'s business.
pub fn check_value(key: &str, value: &Json) -> Result<Json, String> {
    let Some(rule) = key_rule(key) else {
        return Err("unknown key".into());
    };
    let found = type_name(value);
    let wrong = |expected: &str| format!("expected {expected}, found {found}");
    let string = || value.as_str().ok_or_else(|| wrong("a string"));
    let parsed = |r: Result<String, crate::error::UsageError>| r.map(Json::String).map_err(|e| e.0);
    match rule.kind {
        KeyKind::Model => parsed(string()?.parse::<ModelSpec>().map(|m| m.to_string())),
        KeyKind::Init => parsed(string()?.parse::<Init>().map(|i| i.as_str().to_string())),
        KeyKind::Tokenizer => parsed(string()?.parse::<TokenizerSpec>().map(|t| t.to_string())),
        KeyKind::Precision => parsed(Precision::parse(string()?).map(|p| p.as_str().to_string())),
        KeyKind::PosInt | KeyKind::NonNegInt => {
            let Some(i) = value.as_i64() else {
                return Err(wrong("an integer"));
            };
            if rule.kind == KeyKind::PosInt && i <= 0 {
                return Err(format!("must be positive, found {i}"));
            }
            if i < 0 {
                return Err(format!("must not be negative, found {i}"));
            }
            Ok(Json::from(i))
        }
        KeyKind::PosFloat | KeyKind::NonNegFloat | KeyKind::Dropout => {
            let Some(f) = value.as_f64() else {
                return Err(wrong("a number"));
            };
            match rule.kind {
                _ if !f.is_finite() => Err("must be finite".into()),
                KeyKind::PosFloat if f <= 0.0 => Err(format!("must be positive, found {f}")),
                KeyKind::NonNegFloat if f < 0.0 => Err(format!("must not be negative, found {f}")),
                KeyKind::Dropout if !(0.0..1.0).contains(&f) => {
                    Err(format!("must be in [0, 1), found {f}"))
                }
                _ => Ok(Json::from(f)),
            }
        }
        KeyKind::Paths | KeyKind::Strings => {
            let Some(items) = value.as_array() else {
                return Err(wrong("an array of strings"));
            };
            if items.is_empty() {
                return Err("must not be empty".into());
            }
            if let Some(bad) = items
                .iter()
                .find(|i| i.as_str().is_none_or(|s| s.trim().is_empty()))
            {
                return Err(format!(
                    "expected a non-empty string, found {}",
                    type_name(bad)
                ));
            }
            Ok(value.clone())
        }
        KeyKind::Split => {
            let nums: Option<Vec<f64>> = value
                .as_array()
                .map(|a| a.iter().map(Json::as_f64).collect())
                .unwrap_or(None);
            match nums {
                Some(n) if n.len() == 3 && n.iter().all(|x| *x >= 0.0 && x.is_finite()) => {
                    if n[0] <= 0.0 || n[1] + n[2] <= 0.0 {
                        return Err("train and valid+test parts must be positive".into());
                    }
                    Ok(Json::from(n))
                }
                _ if !value.is_array() => Err(wrong("an array of three numbers")),
                _ => Err("expected three non-negative numbers".into()),
            }
        }
        KeyKind::DataTable => {
            let Some(t) = value.as_object() else {
                return Err(wrong("a table"));
            };
            for (k, v) in t {
                check_value(&format!("data.{k}"), v)?;
            }
            Ok(value.clone())
        }
    }
}

/// Every set key of a serialised config, checked by its rule (`key: message` on failure).
pub(super) fn check_all(config: &Json) -> Result<(), String> {
    let Some(fields) = config.as_object() else {
        return Err("a trial config is a table".into());
    };
    for (key, value) in fields {
        if value.is_null() {
            continue;
        }
        check_value(key, value).map_err(|e| format!("{key}: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_of_the_trial_config_has_a_rule_and_nothing_else_does() {
        let keys = keys();
        assert!(keys.len() >= 25, "{keys:?}");
        for k in &keys {
            assert!(key_rule(k).is_some(), "`{k}` has no rule in trial/keys.rs");
        }
        assert!(key_rule("epoch").is_none());
        assert!(key_rule("data.nope").is_none());
    }

    #[test]
    fn values_are_checked_and_made_canonical() {
        assert_eq!(
            check_value("precision", &Json::from("fp16")).unwrap(),
            Json::from("f16")
        );
        assert_eq!(
            check_value("batch_size", &Json::from("8")).unwrap_err(),
            "expected an integer, found a string"
        );
        assert!(check_value("dropout", &Json::from(1.0)).is_err());
        assert!(check_value("tokenizer", &Json::from("bpe-259")).is_err());
        assert!(check_value("tokenizer", &Json::from("bpe-260")).is_ok());
        assert!(check_value("init", &Json::from("warm")).is_err());
        assert!(check_value("data.split", &serde_json::json!([9, 0, 0])).is_err());
    }
}
