//! Which recorded sweep a reader's command means. `sweep run FILE --profile P` records the file's
//! sweep as `NAME@P`; `sweep results`, `report`, `status`, `best`, `export`, `cancel` and `worker
//! --sweep` take that name, `NAME --profile P`, or the sweep file itself (`FILE --profile P`).

use clap::Args;
use std::path::Path;

use super::source::usage;
use super::{extends, read_text, steps};

/// `--profile P` of the commands that read a recorded sweep (flattened beside their `sweep`).
#[derive(Args, Debug, Clone, Default)]
pub struct ProfileArg {
    /// The profile the sweep ran with: `block_size --profile quick` (or the file,
    /// `experiments/block_size.toml --profile quick`) means the sweep recorded as
    /// `block_size@quick`.
    #[arg(long, value_name = "P", requires = "sweep")]
    pub profile: Option<String>,
}

impl ProfileArg {
    /// The ledger name that the sweep argument `arg` means with this profile (see [`sweep_arg_name`]).
    pub fn sweep(&self, arg: &str) -> anyhow::Result<String> {
        sweep_arg_name(arg, self.profile.as_deref())
    }

    /// The same for an optional sweep argument (`sweep status [SWEEP]`).
    pub fn sweep_opt(&self, arg: Option<&str>) -> anyhow::Result<Option<String>> {
        arg.map(|a| self.sweep(a)).transpose()
    }
}

/// The ledger name of a sweep run with `profile`: `NAME`, or `NAME@P` so that the quick and full
/// runs of one file are kept apart.
pub fn ledger_name(name: &str, profile: Option<&str>) -> String {
    match profile {
        Some(p) => format!("{name}@{p}"),
        None => name.to_string(),
    }
}

/// The sweep file a sweep argument names, if it names one: anything with a path separator (sweep
/// names have none, so `exp/typo.toml` is reported as a missing file, not as an unknown sweep),
/// or an existing `*.toml` file.
pub fn sweep_file_arg(arg: &str) -> Option<&Path> {
    let path = Path::new(arg);
    let is_file = arg.contains('/')
        || arg.contains(std::path::MAIN_SEPARATOR)
        || (arg.ends_with(".toml") && path.is_file());
    is_file.then_some(path)
}

/// The ledger name a sweep argument means: a sweep file's recorded name ([`recorded_name`]), or a
/// name with `@P` added for `--profile P` (`NAME@P --profile P` is accepted; another profile
/// there is a usage error).
pub fn sweep_arg_name(arg: &str, profile: Option<&str>) -> anyhow::Result<String> {
    if let Some(file) = sweep_file_arg(arg) {
        return recorded_name(file, profile);
    }
    match (arg.rsplit_once('@'), profile) {
        (Some((name, p)), Some(q)) if p != q => Err(usage(format!(
            "sweep `{arg}` is the `{p}` run of `{name}` but --profile says `{q}`; fix: pass \
             `{name}@{q}`, or `{name} --profile {q}`"
        ))),
        (None, Some(p)) => Ok(ledger_name(arg, Some(p))),
        _ => Ok(arg.to_string()),
    }
}

/// The name `sweep run FILE --profile P` records the file's sweep under: its `[sweep] name`, with
/// `@P` when a profile is given (which must be one of the file's). Only `[sweep]` and the profile
/// names are read, so a reader needs neither the data nor a file that validates in full.
pub fn recorded_name(path: &Path, profile: Option<&str>) -> anyhow::Result<String> {
    let text = read_text(path)?;
    // The profiles may come from the files it extends.
    let chain = extends::read(path, &text)?;
    let src = chain.source();
    let doc = extends::merge(&chain, &src).map_err(|e| chain.name_the_chain(e))?;
    let meta = steps::meta(&src, &doc)?;
    steps::check_profile(&src, &doc, profile)?;
    Ok(ledger_name(&meta.name, profile))
}
