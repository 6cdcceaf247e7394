//! Where a sweep-file value came from and how it reads: TOML spans turned into `file:line:column`,
//! values as JSON, and where relative paths resolve.

use crate::error::UsageError;
use serde_json::Value as Json;
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml::de::{DeTable, DeValue};
use toml::Spanned;

pub(super) type SpannedKey<'i> = Spanned<std::borrow::Cow<'i, str>>;

pub(super) fn usage(msg: String) -> anyhow::Error {
    anyhow::Error::new(UsageError(msg))
}

/// One file of a sweep's text ([`Source::text`] holds the files of an `extends` chain one after
/// another): where its text starts there, and the directory its relative paths resolve against.
#[derive(Debug, Clone)]
pub(super) struct SourceFile {
    pub(super) name: String,
    pub(super) start: usize,
    pub(super) dir: PathBuf,
}

/// Where a value came from: the text it was parsed from, to turn byte spans into locations.
pub(super) struct Source<'a> {
    /// The sweep file (messages about no one key), or the full `--set key=value` flag.
    pub(super) name: String,
    pub(super) text: &'a str,
    pub(super) is_flag: bool,
    /// The files of `text`, in order (none for a flag).
    pub(super) files: Vec<SourceFile>,
}

impl<'a> Source<'a> {
    /// The text of one file.
    pub(super) fn of_file(name: String, text: &'a str) -> Self {
        let dir = Path::new(&name).parent().map(Path::to_path_buf);
        Self::of_files(
            name.clone(),
            text,
            &[SourceFile {
                name,
                start: 0,
                dir: dir.unwrap_or_default(),
            }],
        )
    }

    /// The texts of several files, one after another (an `extends` chain).
    pub(super) fn of_files(name: String, text: &'a str, files: &[SourceFile]) -> Self {
        Source {
            name,
            text,
            is_flag: false,
            files: files.to_vec(),
        }
    }

    /// The value of a `--set` flag.
    pub(super) fn of_flag(flag: String, text: &'a str) -> Self {
        Source {
            name: flag,
            text,
            is_flag: true,
            files: Vec::new(),
        }
    }

    /// The file a span lies in.
    fn file(&self, span: &Range<usize>) -> Option<&SourceFile> {
        self.files.iter().rev().find(|f| f.start <= span.start)
    }

    /// The directory of the file a value was written in (`None` for a flag).
    pub(super) fn dir(&self, span: &Range<usize>) -> Option<&Path> {
        self.file(span).map(|f| f.dir.as_path())
    }

    pub(super) fn loc(&self, span: &Range<usize>) -> String {
        if self.is_flag {
            return self.name.clone();
        }
        let (name, from) = self
            .file(span)
            .map_or((self.name.as_str(), 0), |f| (f.name.as_str(), f.start));
        let start = span.start.clamp(from, self.text.len());
        let before = &self.text[from..start];
        let line = before.matches('\n').count() + 1;
        let col = before
            .rsplit('\n')
            .next()
            .map(|s| s.chars().count())
            .unwrap_or(0)
            + 1;
        format!("{name}:{line}:{col}")
    }

    pub(super) fn err(
        &self,
        span: &Range<usize>,
        key: &str,
        msg: &str,
        fix: &str,
    ) -> anyhow::Error {
        usage(format!("{}: {key}: {msg}; fix: {fix}", self.loc(span)))
    }
}

/// A file's TOML, a syntax error located in it.
pub(super) fn parse_toml<'i>(src: &Source<'i>) -> anyhow::Result<Spanned<DeTable<'i>>> {
    DeTable::parse(src.text).map_err(|e| {
        let loc = e
            .span()
            .map(|s| src.loc(&s))
            .unwrap_or_else(|| src.name.clone());
        usage(format!(
            "{loc}: TOML syntax error: {}; fix: correct the TOML syntax",
            e.message().trim()
        ))
    })
}

pub(super) fn type_name(v: &DeValue) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a datetime",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

pub(super) fn as_i64(v: &DeValue) -> Option<i64> {
    match v {
        DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix()).ok(),
        _ => None,
    }
}

/// An integer of at least `min`, or the error naming `key` with an example.
pub(super) fn int_at_least(
    src: &Source,
    v: &Spanned<DeValue>,
    key: &str,
    min: i64,
    example: &str,
) -> anyhow::Result<i64> {
    match as_i64(v.get_ref()) {
        Some(i) if i >= min => Ok(i),
        Some(i) => Err(src.err(
            &v.span(),
            key,
            &format!("{i} is below {min}"),
            &format!("write e.g. `{example}`"),
        )),
        None => Err(src.err(
            &v.span(),
            key,
            &format!("expected an integer, found {}", type_name(v.get_ref())),
            &format!("write e.g. `{example}`"),
        )),
    }
}

pub(super) fn as_f64(v: &DeValue) -> Option<f64> {
    match v {
        DeValue::Integer(_) => as_i64(v).map(|i| i as f64),
        DeValue::Float(f) => f.as_str().parse::<f64>().ok(),
        _ => None,
    }
}

/// Entries of a table in the order they were written (the map may be sorted by key).
pub(super) fn entries<'t, 'i>(
    t: &'t DeTable<'i>,
) -> Vec<(
    &'t Spanned<std::borrow::Cow<'i, str>>,
    &'t Spanned<DeValue<'i>>,
)> {
    let mut e: Vec<_> = t.iter().collect();
    e.sort_by_key(|(k, _)| k.span().start);
    e
}

/// Where relative paths resolve: the directory of the file that wrote the value, then the
/// working directory (as Cargo and Hydra do); `--set` values against the working directory only.
pub(super) struct PathBase<'a> {
    /// Where a relative path is looked for after the directory of its own file.
    pub(super) dirs: &'a [PathBuf],
    /// Path keys that a `--set` replaces: the file's value is never read, so a missing file
    /// there is no error (e.g. `--set data.sources=[...]` on a machine without the default data).
    pub(super) replaced: &'a [String],
}

impl PathBase<'_> {
    fn candidates(&self, src: &Source, span: &Range<usize>, p: &Path) -> Vec<PathBuf> {
        src.dir(span)
            .into_iter()
            .chain(self.dirs.iter().map(PathBuf::as_path))
            .map(|d| d.join(p))
            .collect()
    }

    /// The first place `p` (written at `span`) passes `exists` (`p` itself when absolute);
    /// else the first candidate, for the message.
    pub(super) fn resolve(
        &self,
        src: &Source,
        span: &Range<usize>,
        p: &Path,
        exists: impl Fn(&Path) -> bool,
    ) -> (PathBuf, bool) {
        if p.is_absolute() {
            return (p.to_path_buf(), exists(p));
        }
        let candidates = self.candidates(src, span, p);
        match candidates.iter().find(|c| exists(c)) {
            Some(c) => (c.clone(), true),
            None => (
                candidates
                    .first()
                    .cloned()
                    .unwrap_or_else(|| p.to_path_buf()),
                false,
            ),
        }
    }

    /// Where a relative path was looked for, for messages.
    pub(super) fn tried(&self, src: &Source, span: &Range<usize>, p: &Path) -> String {
        let dirs: Vec<String> = self
            .candidates(src, span, p)
            .iter()
            .map(|d| d.display().to_string())
            .collect();
        dirs.join(" or ")
    }
}

/// How a sweep file in `dir` spells `path` (an absolute path of a resolved config) so that
/// [`PathBase::resolve`] finds it again from any copy of the checkout: relative to `dir`
/// (`../data/arxiv/cs.CL.tsv.xz`) when the path is inside `root`, the project that holds the
/// file ([`checkout_of`]); absolute when it is outside (data on a shared disk is at the same
/// place everywhere).
pub fn spelled_in(path: &Path, dir: &Path, root: &Path) -> PathBuf {
    let (path, dir, root) = (
        crate::util::absolute_clean(path),
        crate::util::absolute_clean(dir),
        crate::util::absolute_clean(root),
    );
    if !path.starts_with(&root) || !dir.starts_with(&root) {
        return path;
    }
    relative(&path, &dir)
}

/// `path` from `dir`, both absolute and clean: `..` for each component of `dir` past their common
/// prefix, then the rest of `path` (`.` when they are the same).
fn relative(path: &Path, dir: &Path) -> PathBuf {
    let (p, d): (Vec<_>, Vec<_>) = (path.components().collect(), dir.components().collect());
    let common = p.iter().zip(&d).take_while(|(a, b)| a == b).count();
    let mut out: PathBuf = d[common..].iter().map(|_| "..").collect();
    out.extend(&p[common..]);
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

/// The project a sweep file's directory belongs to: its git checkout (the nearest ancestor with a
/// `.git`), else the working directory when the directory is inside it, else the directory.
pub fn checkout_of(dir: &Path) -> PathBuf {
    let dir = crate::util::absolute_clean(dir);
    if let Some(git) = dir.ancestors().find(|d| d.join(".git").exists()) {
        return git.to_path_buf();
    }
    let cwd = crate::util::absolute_clean(Path::new("."));
    if dir.starts_with(&cwd) {
        cwd
    } else {
        dir
    }
}

pub(super) fn get_str(
    src: &Source,
    t: &DeTable,
    key: &str,
    section: &str,
) -> anyhow::Result<Option<String>> {
    match t.get(key) {
        None => Ok(None),
        Some(v) => match v.get_ref().as_str() {
            Some(s) => Ok(Some(s.to_string())),
            None => Err(src.err(
                &v.span(),
                &format!("{section}.{key}"),
                &format!("expected a string, found {}", type_name(v.get_ref())),
                &format!("write `{key} = \"...\"`"),
            )),
        },
    }
}

/// Parse `--set key=value`: the value is TOML (`1e-4`, `[1, 2]`, `"x"`) or else a bare string.
pub(super) fn parse_set(flag: &str) -> anyhow::Result<(String, String)> {
    let Some((k, v)) = flag.split_once('=') else {
        return Err(usage(format!(
            "--set {flag}: expected key=value; fix: write e.g. `--set learning_rate=1e-4`"
        )));
    };
    Ok((k.trim().to_string(), v.trim().to_string()))
}

pub(super) fn de_to_json(v: &DeValue) -> Json {
    match v {
        DeValue::String(s) => Json::String(s.to_string()),
        DeValue::Integer(_) => as_i64(v).map(Json::from).unwrap_or(Json::Null),
        DeValue::Float(_) => as_f64(v).map(Json::from).unwrap_or(Json::Null),
        DeValue::Boolean(b) => Json::Bool(*b),
        DeValue::Datetime(d) => Json::String(d.to_string()),
        DeValue::Array(a) => Json::Array(a.iter().map(|i| de_to_json(i.get_ref())).collect()),
        DeValue::Table(t) => Json::Object(
            entries(t)
                .into_iter()
                .map(|(k, v)| (k.get_ref().to_string(), de_to_json(v.get_ref())))
                .collect(),
        ),
    }
}
