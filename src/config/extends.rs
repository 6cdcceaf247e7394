//! `extends`: the files a sweep file builds on, read and merged key by key into one document
//! whose every key and value still knows the file, line and column it came from.
//!
//! `extends = "baseline.toml"` (or a list, applied in order) at the top of a sweep file names
//! files, relative to the file itself, whose tables are its starting point. The chain is read
//! depth first: lowest precedence first, each extended file's own chain, the extended file, and
//! last the file itself. A file reached twice (two files extending one baseline) is applied once,
//! at its first place; a file reached again while its own chain is read is a cycle.
//!
//! Provenance: the files' texts follow each other in one text ([`Chain::text`]) and each file's
//! parse has its spans moved to its place there, so a span anywhere in the merged document maps
//! back to its file (`Source::loc`). The steps after the merge check one document, as they did
//! before `extends` existed, and their errors name the right file:line:column.
//!
//! The merge is generic, so new keys and sections inherit without code here: tables merge key by
//! key at every depth, any other value is replaced by the later file's. Two exceptions:
//! `[[reference]]` rows are appended (the extended files' rows first), and a `[space]` parameter
//! (`{ log_uniform = [...] }`) is one value, replaced whole. An overridden key keeps its first
//! place (a search's space keeps its order), its value is the later file's. An extended file may
//! not hold `[sweep]` (a sweep's name, title and kind are its own) or axes (`[grid]`,
//! `[profile.P.grid]`: the axes are what each sweep file is about).
//!
//! Written here: the crates that layer configuration files (`figment`, `config`,
//! `serde_toml_merge`) merge into value types without TOML spans (figment keeps a value's file,
//! not its line and column), and every sweep-file error names both.

use super::source::{entries, parse_toml, type_name, usage, Source, SourceFile, SpannedKey};
use std::path::{Path, PathBuf};
use toml::de::{DeArray, DeTable, DeValue};
use toml::Spanned;

/// One file of a chain.
pub(super) struct ChainFile {
    /// As messages show it: the path given, or the extending file's directory joined with the
    /// `extends` value.
    pub(super) name: String,
    /// Absolute (what the ledger records).
    pub(super) path: PathBuf,
    /// The file whose `extends` named this one (`None` for the sweep file itself).
    pub(super) by: Option<String>,
    text: String,
}

/// A sweep file and the files it extends, lowest precedence first (the file itself is last).
pub(super) struct Chain {
    pub(super) files: Vec<ChainFile>,
    /// The files' texts one after another: the text every span of the merged document indexes.
    pub(super) text: String,
    /// Where each file's text starts in `text`, and its directory (relative paths in a file
    /// resolve against it).
    pub(super) sources: Vec<SourceFile>,
}

impl Chain {
    /// The files this sweep file extends (all but the last), absolute.
    pub(super) fn extended(&self) -> Vec<PathBuf> {
        let n = self.files.len() - 1;
        self.files[..n].iter().map(|f| f.path.clone()).collect()
    }

    /// The sweep file itself, absolute.
    pub(super) fn file(&self) -> PathBuf {
        self.files
            .last()
            .map(|f| f.path.clone())
            .unwrap_or_default()
    }

    /// The source that maps the merged document's spans back to the files.
    pub(super) fn source(&self) -> Source<'_> {
        let main = self
            .files
            .last()
            .map(|f| f.name.clone())
            .unwrap_or_default();
        Source::of_files(main, &self.text, &self.sources)
    }

    /// File `name` and who extends it, up to the sweep file; `None` for the sweep file itself.
    fn lineage(&self, name: &str) -> Option<Vec<&str>> {
        let by_of = |n: &str| self.files.iter().find(|f| f.name == n)?.by.as_deref();
        let mut out = vec![self.files.iter().find(|f| f.name == name)?.name.as_str()];
        while let Some(by) = by_of(out[out.len() - 1]) {
            out.push(by);
        }
        (out.len() > 1).then_some(out)
    }

    /// An error located in an extended file also says which file extends it, up to the sweep
    /// file the user ran.
    pub(super) fn name_the_chain(&self, e: anyhow::Error) -> anyhow::Error {
        let Some(u) = e.downcast_ref::<crate::error::UsageError>() else {
            return e;
        };
        let in_file = self.files.iter().rev().skip(1).find(|f| {
            u.0.strip_prefix(&f.name)
                .is_some_and(|rest| rest.starts_with(':'))
        });
        match in_file.and_then(|f| self.lineage(&f.name)) {
            Some(lineage) => with_lineage(&u.0, &lineage),
            None => e,
        }
    }
}

/// An error in an extended file, with the files that extend it up to the sweep file the user
/// ran: `... (in baseline.toml, extended by grad_accum.toml)`.
fn with_lineage(msg: &str, lineage: &[&str]) -> anyhow::Error {
    usage(format!("{msg} (in {})", lineage.join(", extended by ")))
}

/// Reads `path` (whose text is `text`) and every file it extends, depth first.
pub(super) fn read(path: &Path, text: &str) -> anyhow::Result<Chain> {
    let mut files = Vec::new();
    let mut reader = Reader {
        stack: Vec::new(),
        seen: Vec::new(),
    };
    let name = path.display().to_string();
    reader
        .visit(&name, path, None, text.to_string(), &mut files)
        .map_err(|e| reader.name_the_chain(e))?;
    let mut all = String::new();
    let mut sources = Vec::new();
    for f in &files {
        sources.push(SourceFile {
            name: f.name.clone(),
            start: all.len(),
            dir: f.path.parent().map(Path::to_path_buf).unwrap_or_default(),
        });
        all.push_str(&f.text);
        // A file that ends without a newline must not run into the next one's first line.
        all.push('\n');
    }
    Ok(Chain {
        files,
        text: all,
        sources,
    })
}

/// The same file however it is named (`a.toml`, `./a.toml`, a symlink).
fn identity(path: &Path) -> PathBuf {
    std::fs::canonicalize(path)
        .or_else(|_| std::path::absolute(path))
        .unwrap_or_else(|_| path.to_path_buf())
}

struct Reader {
    /// The files whose chains are being read (a file met again here is a cycle).
    stack: Vec<(PathBuf, String)>,
    /// Every file met so far (met again: applied once, at its first place).
    seen: Vec<PathBuf>,
}

impl Reader {
    /// An error in an extended file says which files extend it (the stack still holds the
    /// files being read when it happened).
    fn name_the_chain(&self, e: anyhow::Error) -> anyhow::Error {
        let names: Vec<&str> = self.stack.iter().rev().map(|(_, n)| n.as_str()).collect();
        match e.downcast_ref::<crate::error::UsageError>() {
            Some(u) if names.len() > 1 => with_lineage(&u.0, &names),
            _ => e,
        }
    }

    fn visit(
        &mut self,
        name: &str,
        path: &Path,
        by: Option<String>,
        text: String,
        files: &mut Vec<ChainFile>,
    ) -> anyhow::Result<()> {
        let id = identity(path);
        self.seen.push(id.clone());
        self.stack.push((id, name.to_string()));
        let src = Source::of_file(name.to_string(), &text);
        let doc = parse_toml(&src)?;
        for (target, span) in extends_of(&src, doc.get_ref())? {
            let target_path = path.parent().unwrap_or(Path::new("")).join(&target);
            let target_name = target_path.display().to_string();
            let target_id = identity(&target_path);
            if let Some(i) = self.stack.iter().position(|(p, _)| *p == target_id) {
                let cycle: Vec<&str> = self.stack[i..]
                    .iter()
                    .map(|(_, n)| n.as_str())
                    .chain([target_name.as_str()])
                    .collect();
                return Err(src.err(
                    &span,
                    "extends",
                    &format!("a cycle: {}", cycle.join(" extends ")),
                    "remove one `extends` of the cycle (a file cannot build on itself)",
                ));
            }
            if self.seen.contains(&target_id) {
                continue;
            }
            let target_text = std::fs::read_to_string(&target_path).map_err(|e| {
                src.err(
                    &span,
                    "extends",
                    &format!("cannot read {target_name}: {e}"),
                    &format!(
                        "check the path (relative to {name}'s own directory) or remove the \
                         `extends` entry"
                    ),
                )
            })?;
            self.visit(
                &target_name,
                &target_path,
                Some(name.to_string()),
                target_text,
                files,
            )?;
        }
        self.stack.pop();
        files.push(ChainFile {
            name: name.to_string(),
            path: std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()),
            by,
            text,
        });
        Ok(())
    }
}

/// The `extends` of a document: each file named, with the span of its name.
fn extends_of(
    src: &Source,
    doc: &DeTable,
) -> anyhow::Result<Vec<(String, std::ops::Range<usize>)>> {
    let Some(v) = doc.get("extends") else {
        return Ok(Vec::new());
    };
    let wrong = |span: std::ops::Range<usize>, found: &DeValue| {
        src.err(
            &span,
            "extends",
            &format!(
                "expected a file name or a list of file names, found {}",
                type_name(found)
            ),
            "write `extends = \"baseline.toml\"` or `extends = [\"a.toml\", \"b.toml\"]` (paths \
             relative to this file) above the first [section]",
        )
    };
    match v.get_ref() {
        DeValue::String(s) => Ok(vec![(s.to_string(), v.span())]),
        DeValue::Array(items) => items
            .iter()
            .map(|i| match i.get_ref() {
                DeValue::String(s) => Ok((s.to_string(), i.span())),
                other => Err(wrong(i.span(), other)),
            })
            .collect(),
        other => Err(wrong(v.span(), other)),
    }
}

/// The chain's documents merged into one, lowest precedence first; each extended file is checked
/// for what it may not hold.
pub(super) fn merge<'i>(chain: &'i Chain, src: &Source) -> anyhow::Result<DeTable<'i>> {
    let mut merged = DeTable::new();
    let last = chain.files.len() - 1;
    for (i, f) in chain.sources.iter().enumerate() {
        let end = chain
            .sources
            .get(i + 1)
            .map_or(chain.text.len(), |n| n.start);
        // Parsed once already by `read`, with the same text.
        let doc = parse_toml(&Source::of_file(f.name.clone(), &chain.text[f.start..end]))?;
        let doc = doc.into_inner();
        let mut doc = shift_table(doc, f.start);
        doc.remove("extends");
        if i < last {
            refuse_in_extended(src, &doc, &chain.files[last].name)?;
        }
        merge_table(&mut merged, doc, &mut Vec::new());
    }
    Ok(merged)
}

/// `[sweep]` and axes in an extended file, each at its own location.
fn refuse_in_extended(src: &Source, doc: &DeTable, extending: &str) -> anyhow::Result<()> {
    if let Some((k, _)) = doc.get_key_value("sweep") {
        return Err(src.err(
            &k.span(),
            "sweep",
            "an extended file has no [sweep]: a sweep's name, title and kind are never inherited",
            &format!(
                "remove [sweep] from this file (keep it in {extending}, which extends it), or \
                 run this file itself rather than extending it"
            ),
        ));
    }
    let axes_of = |t: &DeTable| -> Option<std::ops::Range<usize>> {
        t.get_key_value("grid").map(|(k, _)| k.span())
    };
    let mut found = axes_of(doc);
    if let Some(DeValue::Table(ps)) = doc.get("profile").map(|p| p.get_ref()) {
        for (_, p) in entries(ps) {
            if let DeValue::Table(pt) = p.get_ref() {
                found = found.or_else(|| axes_of(pt));
            }
        }
    }
    match found {
        Some(span) => Err(src.err(
            &span,
            "grid",
            "an extended file has no axes: they are what each sweep file is about",
            &format!("move the axis into {extending} (or each file that extends this one)"),
        )),
        None => Ok(()),
    }
}

/// How the value at `path` combines with the one it overrides.
enum Rule {
    /// Tables: key by key (the default).
    Merge,
    /// `[[reference]]`: the later file's rows after the earlier ones.
    Append,
    /// A `[space]` parameter: one distribution, replaced whole.
    Replace,
}

fn rule(path: &[String]) -> Rule {
    let p: Vec<&str> = path.iter().map(String::as_str).collect();
    match p.as_slice() {
        ["reference"] => Rule::Append,
        ["space", _] | ["profile", _, "space", _] => Rule::Replace,
        _ => Rule::Merge,
    }
}

fn merge_table<'i>(into: &mut DeTable<'i>, from: DeTable<'i>, path: &mut Vec<String>) {
    for (k, v) in from {
        path.push(k.get_ref().to_string());
        match into.get_mut(k.get_ref().as_ref()) {
            None => {
                into.insert(k, v);
            }
            Some(old) => {
                let span = v.span();
                let replaced = match (rule(path), old.get_mut(), v.into_inner()) {
                    (Rule::Merge, DeValue::Table(old), DeValue::Table(new)) => {
                        merge_table(old, new, path);
                        None
                    }
                    (Rule::Append, DeValue::Array(old), DeValue::Array(new)) => {
                        for row in new {
                            old.push(row);
                        }
                        None
                    }
                    (_, _, new) => Some(new),
                };
                // The key keeps its first place; the value and its span are the later file's.
                if let Some(new) = replaced {
                    *old = Spanned::new(span, new);
                }
            }
        }
        path.pop();
    }
}

/// Moves every span of a parsed file by `by`: the file's place in the chain's text.
fn shift_table(t: DeTable<'_>, by: usize) -> DeTable<'_> {
    if by == 0 {
        return t;
    }
    let mut out = DeTable::new();
    for (k, v) in t {
        out.insert(shift_key(k, by), shift(v, by));
    }
    out
}

fn shift_key(k: SpannedKey<'_>, by: usize) -> SpannedKey<'_> {
    let s = k.span();
    Spanned::new(s.start + by..s.end + by, k.into_inner())
}

fn shift(v: Spanned<DeValue<'_>>, by: usize) -> Spanned<DeValue<'_>> {
    let s = v.span();
    let value = match v.into_inner() {
        DeValue::Table(t) => DeValue::Table(shift_table(t, by)),
        DeValue::Array(a) => {
            let mut out = DeArray::new();
            for item in a {
                out.push(shift(item, by));
            }
            DeValue::Array(out)
        }
        other => other,
    };
    Spanned::new(s.start + by..s.end + by, value)
}
