//! `sweep fetch MODEL... [--revision R]`: fill the Hugging Face cache ahead of time (a machine
//! with network before a cluster's offline nodes, or just before a long sweep).

use crate::error::UsageError;
use crate::trial::{HubModel, ModelSpec, Preset};
use anyhow::Result;
use clap::Args;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct FetchArgs {
    /// Hub models: the presets (distilgpt2, gpt2, gpt2-medium, gpt2-large, gpt2-xl) or
    /// `org/name`, each optionally `@revision`.
    #[arg(required = true, value_name = "MODEL")]
    pub models: Vec<String>,
    /// The branch, tag or commit to fetch for every MODEL written without `@revision`.
    #[arg(long)]
    pub revision: Option<String>,
}

/// The Hub model a `sweep fetch` argument names.
fn hub_model(arg: &str, revision: Option<&str>) -> Result<HubModel, UsageError> {
    let spec = match revision {
        Some(r) if arg.contains('@') => {
            return Err(UsageError(format!(
                "`{arg}` names its revision and --revision {r} names another; fix: use one of \
                 them"
            )))
        }
        Some(r) => format!("{arg}@{r}").parse::<ModelSpec>()?,
        None => arg.parse::<ModelSpec>()?,
    };
    match spec {
        ModelSpec::Preset(p) if !p.on_hub() => Err(UsageError(format!(
            "`{arg}` is one of sweep's own small presets, not on the Hub: there is nothing to \
             fetch (it trains from scratch, or `init = \"pretrained\"` pretrains it locally)"
        ))),
        ModelSpec::Dir(_) => Err(UsageError(format!(
            "`{arg}` is not a Hub model; fix: name a preset ({}) or a repository `org/name`, \
             optionally `@revision`",
            Preset::names(true)
        ))),
        m => Ok(m.hub().expect("a Hub model")),
    }
}

pub fn run_fetch(args: FetchArgs) -> Result<ExitCode> {
    let models = args
        .models
        .iter()
        .map(|a| hub_model(a, args.revision.as_deref()))
        .collect::<Result<Vec<_>, _>>()?;
    for m in &models {
        let r = super::fetch(m)?;
        println!("{m}: {} -> {}", r.describe(), r.dir.display());
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_name_hub_models_only() {
        let m = hub_model("openai-community/gpt2", Some("v1")).unwrap();
        assert_eq!(
            (m.name.as_str(), m.revision()),
            ("openai-community/gpt2", "v1")
        );
        assert_eq!(hub_model("gpt2@abc", None).unwrap().revision(), "abc");
        assert_eq!(hub_model("distilgpt2", None).unwrap().revision(), "main");
        for (arg, rev, want) in [
            ("gpt2@abc", Some("v1"), "names its revision"),
            ("gpt2-tiny", None, "nothing to fetch"),
            ("gpt2-tiny@x", None, "small presets"),
            ("./some/dir", None, "not a Hub model"),
        ] {
            let e = hub_model(arg, rev).unwrap_err().to_string();
            assert!(e.contains(want), "{arg}: {e}");
        }
    }
}
