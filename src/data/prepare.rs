//! The paper's preprocessing: filter, deduplicate, clean, sort by date, split, and write a prepared directory.

use super::readers::{self, Malformed, Record};
use super::{blocks, Counts, Manifest, SourceInfo, SplitInfo, SPLITS};
use crate::error::UsageError;
use crate::tokenizer::{Tokenizer, EOT, SEP, SOT};
use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};

pub const FORMAT: &str = "sweep-prepared/1";

#[derive(Debug, Clone)]
pub struct Options {
    pub inputs: Vec<PathBuf>,
    /// Empty = keep every category.
    pub categories: Vec<String>,
    pub split: [f64; 3],
    pub strict: bool,
    /// Print progress lines on stderr.
    pub verbose: bool,
}

/// The cleaned, sorted, split corpus before it is written.
pub struct Corpus {
    pub splits: [Vec<Record>; 3],
    pub counts: Counts,
    pub sources: Vec<SourceInfo>,
    pub malformed_examples: Vec<String>,
}

pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// Category list in canonical form: sorted, deduplicated; `all`/`*` (or nothing) = no filter.
pub fn canonical_categories(cats: &[String]) -> Vec<String> {
    let mut c: Vec<String> = cats
        .iter()
        .flat_map(|c| c.split(',').map(|s| s.trim().to_string()))
        .filter(|c| !c.is_empty())
        .collect();
    if c.iter().any(|c| c == "all" || c == "*") {
        return Vec::new();
    }
    c.sort();
    c.dedup();
    c
}

pub fn check_split(split: &[f64; 3]) -> Result<()> {
    if split.iter().any(|r| !r.is_finite() || *r < 0.0) || split[0] <= 0.0 {
        return Err(UsageError(format!(
            "--split {split:?}: expected three non-negative ratios train,valid,test with train > 0, e.g. 9,0.5,0.5"
        ))
        .into());
    }
    Ok(())
}

/// Identity of a prepared corpus: the sources' content and the filters (not paths, not times).
pub fn spec_hash(source_sha: &[String], categories: &[String], split: &[f64; 3]) -> String {
    let key = serde_json::json!({
        "format": FORMAT,
        "sources": source_sha,
        "categories": canonical_categories(categories),
        "split": split,
    });
    hex::encode(Sha256::digest(key.to_string().as_bytes()))
}

/// Split sizes: valid and test are rounded to the nearest paper, train takes the rest
/// (11,636 cs.CL papers at 9:0.5:0.5 -> 10,472 / 582 / 582).
pub fn split_sizes(n: usize, ratio: &[f64; 3]) -> [usize; 3] {
    let total: f64 = ratio.iter().sum();
    let valid = (n as f64 * ratio[1] / total).round() as usize;
    let test = (n as f64 * ratio[2] / total).round() as usize;
    let valid = valid.min(n);
    let test = test.min(n - valid);
    [n - valid - test, valid, test]
}

fn collapse(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for w in s.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(w);
    }
    out
}

/// The paper's example format, one line.
pub fn format_example(title: &str, abstract_: &str) -> String {
    format!("{SOT} {title} {SEP} {abstract_} {EOT}")
}

/// Read, filter, deduplicate, clean, sort and split.
pub fn build(opts: &Options) -> Result<Corpus> {
    check_split(&opts.split)?;
    if opts.inputs.is_empty() {
        return Err(UsageError("no --input files given".into()).into());
    }
    let want: HashSet<String> = canonical_categories(&opts.categories).into_iter().collect();
    let mut counts = Counts::default();
    let mut sources = Vec::new();
    let mut malformed_examples = Vec::new();
    let mut seen: HashMap<String, ()> = HashMap::new();
    let mut records: Vec<Record> = Vec::new();
    for path in &opts.inputs {
        readers::detect(path)?;
        if !path.is_file() {
            return Err(UsageError(format!("{}: input file not found", path.display())).into());
        }
        // Hash on a second core while the first decompresses and parses.
        let (read, sha) = std::thread::scope(|s| {
            let h = s.spawn(|| sha256_file(path));
            let r = readers::read_source(path, &want);
            (r, h.join())
        });
        let read = read?;
        let sha = sha.map_err(|_| anyhow::anyhow!("hashing {} panicked", path.display()))??;
        if opts.strict {
            if let Some(Malformed { row, line, reason }) = read.malformed.first() {
                return Err(UsageError(format!(
                    "{}: row {row} (line {line}) is malformed: {reason} (--strict; drop --strict to skip such rows)",
                    path.display()
                ))
                .into());
            }
        }
        for m in read.malformed.iter().take(3) {
            malformed_examples.push(format!(
                "{}: row {} (line {}): {}",
                path.display(),
                m.row,
                m.line,
                m.reason
            ));
        }
        let mut dups = 0u64;
        let before = records.len();
        for r in read.records {
            if seen.insert(r.id.clone(), ()).is_some() {
                dups += 1;
            } else {
                records.push(r);
            }
        }
        counts.rows += read.rows;
        counts.malformed += read.malformed.len() as u64;
        counts.out_of_category += read.out_of_category;
        counts.duplicates += dups;
        if opts.verbose {
            eprintln!(
                "read {}: {} rows, {} in categories ({} new, {} duplicates), {} malformed",
                path.display(),
                read.rows,
                records.len() - before + dups as usize,
                records.len() - before,
                dups,
                read.malformed.len()
            );
        }
        sources.push(SourceInfo {
            path: path.display().to_string(),
            format: read.format.to_string(),
            sha256: sha,
            bytes: std::fs::metadata(path).map(|m| m.len()).unwrap_or(0),
            rows: read.rows,
            malformed: read.malformed.len() as u64,
            out_of_category: read.out_of_category,
        });
    }
    let mut kept = Vec::with_capacity(records.len());
    for r in records {
        let title = collapse(&r.title);
        let abs = collapse(&r.abstract_);
        if title.is_empty() {
            counts.empty_title += 1;
        } else if abs.is_empty() {
            counts.empty_abstract += 1;
        } else {
            kept.push(Record {
                title,
                abstract_: abs,
                ..r
            });
        }
    }
    let inputs = opts
        .inputs
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    if kept.is_empty() {
        let cats = if want.is_empty() {
            "any".to_string()
        } else {
            canonical_categories(&opts.categories).join(" ")
        };
        return Err(UsageError(format!(
            "no papers left after filtering {inputs}: {} rows read, {} malformed, {} outside categories [{cats}], {} duplicates, {} empty title, {} empty abstract; check --categories",
            counts.rows, counts.malformed, counts.out_of_category, counts.duplicates, counts.empty_title, counts.empty_abstract
        ))
        .into());
    }
    kept.sort_by(|a, b| a.created.cmp(&b.created).then_with(|| a.id.cmp(&b.id)));
    counts.kept = kept.len() as u64;
    let sizes = split_sizes(kept.len(), &opts.split);
    for (i, name) in SPLITS.iter().enumerate() {
        if sizes[i] == 0 && opts.split[i] > 0.0 {
            return Err(UsageError(format!(
                "only {} papers left after filtering {inputs}: the {name} split of --split {:?} would be empty; add data or change the ratio",
                kept.len(),
                opts.split
            ))
            .into());
        }
    }
    let mut it = kept.into_iter();
    let train: Vec<Record> = it.by_ref().take(sizes[0]).collect();
    let valid: Vec<Record> = it.by_ref().take(sizes[1]).collect();
    let test: Vec<Record> = it.collect();
    Ok(Corpus {
        splits: [train, valid, test],
        counts,
        sources,
        malformed_examples,
    })
}

/// Write `corpus` to `out` (train/valid/test.txt + manifest.json) through a temporary directory
/// renamed into place, counting tokens with `tok` (and leaving its token files in `cache_root`).
pub fn write(
    corpus: &Corpus,
    opts: &Options,
    out: &Path,
    tok: &Tokenizer,
    cache_root: &Path,
) -> Result<Manifest> {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .ok_or_else(|| UsageError(format!("--out {}: not a directory name", out.display())))?;
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if out.is_file() {
        return Err(UsageError(format!(
            "--out {}: is a file, expected a directory",
            out.display()
        ))
        .into());
    }
    if out.is_dir()
        && !out.join("manifest.json").is_file()
        && std::fs::read_dir(out)?.next().is_some()
    {
        return Err(UsageError(format!(
            "--out {}: directory exists, is not empty and holds no manifest.json; refusing to overwrite it",
            out.display()
        ))
        .into());
    }
    if parent.exists() && !parent.is_dir() {
        return Err(UsageError(format!(
            "--out {}: {} is a file, not a directory",
            out.display(),
            parent.display()
        ))
        .into());
    }
    std::fs::create_dir_all(&parent).map_err(|e| {
        UsageError(format!(
            "--out {}: cannot create {} ({e})",
            out.display(),
            parent.display()
        ))
    })?;
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}.tmp-"))
        .tempdir_in(&parent)
        .map_err(|e| {
            UsageError(format!(
                "--out {}: cannot write in {} ({e})",
                out.display(),
                parent.display()
            ))
        })?;

    let mut splits = Vec::new();
    for (i, split) in SPLITS.iter().enumerate() {
        let recs = &corpus.splits[i];
        let lines: Vec<String> = recs
            .iter()
            .map(|r| format_example(&r.title, &r.abstract_))
            .collect();
        let mut text = String::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
        for l in &lines {
            text.push_str(l);
            text.push('\n');
        }
        let file = format!("{split}.txt");
        let path = tmp.path().join(&file);
        std::fs::write(&path, &text).with_context(|| format!("writing {}", path.display()))?;
        let sha = hex::encode(Sha256::digest(text.as_bytes()));
        let t0 = std::time::Instant::now();
        let tokens = blocks::ensure_tokens(cache_root, &text, &sha, tok)?.count;
        if opts.verbose {
            eprintln!(
                "tokenized {split}: {} examples, {tokens} tokens in {:.2} s",
                recs.len(),
                t0.elapsed().as_secs_f64()
            );
        }
        splits.push(SplitInfo {
            name: split.to_string(),
            file,
            count: recs.len() as u64,
            first_date: recs.first().map(|r| r.created.clone()),
            last_date: recs.last().map(|r| r.created.clone()),
            tokens: tokens as u64,
            sha256: sha,
        });
    }
    let source_sha: Vec<String> = corpus.sources.iter().map(|s| s.sha256.clone()).collect();
    let manifest = Manifest {
        format: FORMAT.to_string(),
        hash: spec_hash(&source_sha, &opts.categories, &opts.split),
        sources: corpus.sources.clone(),
        categories: canonical_categories(&opts.categories),
        split_ratio: opts.split,
        counts: corpus.counts.clone(),
        splits,
        tokenizer: tok.id().to_string(),
        created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    };
    let mpath = tmp.path().join("manifest.json");
    std::fs::write(&mpath, serde_json::to_vec_pretty(&manifest)?)
        .with_context(|| format!("writing {}", mpath.display()))?;

    // tempfile creates 0700 directories; the result is ordinary shared data.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755))?;
    }
    // Swap into place: an earlier prepared directory is moved aside first, then removed.
    let tmp_path = tmp.keep();
    let old = if out.exists() {
        let old = parent.join(format!(".{name}.old-{}", std::process::id()));
        std::fs::rename(out, &old)
            .with_context(|| format!("moving the old {} aside", out.display()))?;
        Some(old)
    } else {
        None
    };
    if let Err(e) = std::fs::rename(&tmp_path, out) {
        let _ = std::fs::remove_dir_all(&tmp_path);
        if let Some(old) = &old {
            let _ = std::fs::rename(old, out);
        }
        return Err(anyhow::anyhow!(
            "renaming the prepared data into {}: {e}",
            out.display()
        ));
    }
    if let Some(old) = old {
        let _ = std::fs::remove_dir_all(old);
    }
    Ok(manifest)
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The paper's Table 1 for a prepared corpus.
pub fn table1(m: &Manifest) -> String {
    let total: u64 = m.splits.iter().map(|s| s.count).sum();
    let tokens: u64 = m.splits.iter().map(|s| s.tokens).sum();
    let mut rows: Vec<[String; 5]> = vec![[
        "Split".into(),
        "Count".into(),
        "Percentage (%)".into(),
        format!("BPE Tokens Count ({})", m.tokenizer),
        "Date range".into(),
    ]];
    let range = |a: &Option<String>, b: &Option<String>| match (a, b) {
        (Some(a), Some(b)) => format!("{a} .. {b}"),
        _ => "-".into(),
    };
    for s in &m.splits {
        rows.push([
            s.name.clone(),
            thousands(s.count),
            format!("{:.1}", 100.0 * s.count as f64 / total.max(1) as f64),
            thousands(s.tokens),
            range(&s.first_date, &s.last_date),
        ]);
    }
    let first = m.splits.iter().find_map(|s| s.first_date.clone());
    let last = m.splits.iter().rev().find_map(|s| s.last_date.clone());
    rows.push([
        "Total".into(),
        thousands(total),
        "100.0".into(),
        thousands(tokens),
        range(&first, &last),
    ]);
    let widths: Vec<usize> = (0..5)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for (i, r) in rows.iter().enumerate() {
        let cells: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(c, v)| {
                if c == 0 || c == 4 {
                    format!("{v:<w$}", w = widths[c])
                } else {
                    format!("{v:>w$}", w = widths[c])
                }
            })
            .collect();
        out.push_str(&format!("| {} |\n", cells.join(" | ")));
        if i == 0 {
            let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
            out.push_str(&format!("|-{}-|\n", rule.join("-|-")));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_rule_gives_the_paper_counts_on_cs_cl() {
        assert_eq!(split_sizes(11_636, &[9.0, 0.5, 0.5]), [10_472, 582, 582]);
        assert_eq!(split_sizes(20, &[9.0, 0.5, 0.5]), [18, 1, 1]);
        assert_eq!(split_sizes(10, &[8.0, 1.0, 1.0]), [8, 1, 1]);
        assert_eq!(split_sizes(7, &[1.0, 0.0, 0.0]), [7, 0, 0]);
    }

    #[test]
    fn whitespace_collapses_and_categories_canonicalise() {
        assert_eq!(collapse("  a\n\tb   c \r\n"), "a b c");
        assert_eq!(
            canonical_categories(&["cs.LG,cs.AI".into(), "cs.AI".into()]),
            vec!["cs.AI".to_string(), "cs.LG".to_string()]
        );
        assert!(canonical_categories(&["all".into()]).is_empty());
        assert_eq!(thousands(10472), "10,472");
        assert_eq!(thousands(582), "582");
    }
}
