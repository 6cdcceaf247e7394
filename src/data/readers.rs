//! Readers for arXiv metadata dumps: arXiv Archive TSV (plain, .xz, .zip) and Kaggle JSON lines.

use crate::error::UsageError;
use anyhow::{Context, Result};
use serde::Deserialize;
use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

/// One paper, as read (text not yet normalised).
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub id: String,
    pub title: String,
    pub abstract_: String,
    /// Submission date `YYYY-MM-DD`.
    pub created: String,
}

/// A row we could not use, with where it is.
#[derive(Debug, Clone, PartialEq)]
pub struct Malformed {
    pub row: u64,
    pub line: u64,
    pub reason: String,
}

/// What one input file gave.
#[derive(Debug, Default)]
pub struct SourceRead {
    pub records: Vec<Record>,
    pub rows: u64,
    pub out_of_category: u64,
    pub malformed: Vec<Malformed>,
    pub format: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Format {
    Tsv,
    TsvXz,
    TsvZip,
    JsonLines,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Tsv => "tsv",
            Format::TsvXz => "tsv.xz",
            Format::TsvZip => "tsv.zip",
            Format::JsonLines => "jsonl",
        }
    }
}

pub fn detect(path: &Path) -> Result<Format> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    Ok(if name.ends_with(".tsv") {
        Format::Tsv
    } else if name.ends_with(".tsv.xz") {
        Format::TsvXz
    } else if name.ends_with(".tsv.zip") || name.ends_with(".zip") {
        Format::TsvZip
    } else if name.ends_with(".json") || name.ends_with(".jsonl") {
        Format::JsonLines
    } else {
        return Err(UsageError(format!(
            "{}: unknown input format; expected an arXiv Archive .tsv, .tsv.xz or .tsv.zip, or Kaggle .json/.jsonl lines",
            path.display()
        ))
        .into());
    })
}

/// Does a paper's category list (comma- or space-separated) hit the wanted set? Empty set = all.
fn wanted(categories: &str, want: &HashSet<String>) -> bool {
    want.is_empty()
        || categories
            .split(|c: char| c == ',' || c.is_whitespace())
            .any(|c| want.contains(c))
}

fn valid_date(d: &str) -> bool {
    let b = d.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
}

/// Read one input file, keeping only papers in `want` (cross-lists count).
pub fn read_source(path: &Path, want: &HashSet<String>) -> Result<SourceRead> {
    let format = detect(path)?;
    if !path.exists() {
        return Err(UsageError(format!("{}: input file not found", path.display())).into());
    }
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut out = SourceRead {
        format: format.name(),
        ..Default::default()
    };
    match format {
        Format::Tsv => read_tsv(BufReader::new(file), path, want, &mut out)?,
        Format::TsvXz => read_tsv(
            BufReader::new(liblzma::read::XzDecoder::new_multi_decoder(BufReader::new(
                file,
            ))),
            path,
            want,
            &mut out,
        )?,
        Format::TsvZip => {
            let mut zip = zip::ZipArchive::new(BufReader::new(file)).map_err(|e| {
                UsageError(format!(
                    "{}: not a readable zip archive ({e})",
                    path.display()
                ))
            })?;
            let mut members = 0;
            for i in 0..zip.len() {
                let member = zip.by_index(i).map_err(|e| {
                    UsageError(format!("{}: corrupt zip member #{i} ({e})", path.display()))
                })?;
                if !member.is_file() || !member.name().to_lowercase().ends_with(".tsv") {
                    continue;
                }
                members += 1;
                let label = path.join(member.name());
                read_tsv(BufReader::new(member), &label, want, &mut out)?;
            }
            if members == 0 {
                return Err(UsageError(format!(
                    "{}: the zip archive holds no .tsv file",
                    path.display()
                ))
                .into());
            }
        }
        Format::JsonLines => read_jsonl(BufReader::new(file), path, want, &mut out)?,
    }
    Ok(out)
}

/// Turn a mid-stream read failure (corrupt xz/zip data) into a message naming the file.
fn io_error(path: &Path, e: impl std::fmt::Display) -> anyhow::Error {
    UsageError(format!(
        "{}: cannot read the data ({e}); is the file truncated or corrupt?",
        path.display()
    ))
    .into()
}

fn read_tsv(r: impl Read, path: &Path, want: &HashSet<String>, out: &mut SourceRead) -> Result<()> {
    let mut rdr = csv::ReaderBuilder::new()
        .delimiter(b'\t')
        .flexible(true)
        .has_headers(true)
        .from_reader(r);
    let header = rdr.byte_headers().map_err(|e| match e.kind() {
        csv::ErrorKind::Io(io) => io_error(path, io),
        _ => UsageError(format!(
            "{}: cannot read the header row ({e})",
            path.display()
        ))
        .into(),
    })?;
    let header: Vec<String> = header
        .iter()
        .map(|h| String::from_utf8_lossy(h).trim().to_string())
        .collect();
    let col = |name: &str| header.iter().position(|h| h == name);
    let (id_c, title_c, abs_c, created_c, cat_c) = (
        col("arxiv_id"),
        col("title"),
        col("abstract"),
        col("created"),
        col("categories"),
    );
    let missing: Vec<&str> = [
        ("arxiv_id", id_c),
        ("title", title_c),
        ("abstract", abs_c),
        ("created", created_c),
        ("categories", cat_c),
    ]
    .iter()
    .filter(|(_, c)| c.is_none())
    .map(|(n, _)| *n)
    .collect();
    if !missing.is_empty() {
        return Err(UsageError(format!(
            "{}: header has no column {}; expected an arXiv Archive TSV with columns arxiv_id, title, abstract, created, categories (found: {})",
            path.display(),
            missing.join(", "),
            header.join(", ")
        ))
        .into());
    }
    let (id_c, title_c, abs_c, created_c, cat_c) = (
        id_c.unwrap_or(0),
        title_c.unwrap_or(0),
        abs_c.unwrap_or(0),
        created_c.unwrap_or(0),
        cat_c.unwrap_or(0),
    );
    let mut rec = csv::ByteRecord::new();
    loop {
        let row = out.rows + 1;
        match rdr.read_byte_record(&mut rec) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                if let csv::ErrorKind::Io(io) = e.kind() {
                    return Err(io_error(path, io));
                }
                out.rows += 1;
                let line = e.position().map(|p| p.line()).unwrap_or(0);
                out.malformed.push(Malformed {
                    row,
                    line,
                    reason: e.to_string(),
                });
                continue;
            }
        }
        out.rows += 1;
        let line = rec.position().map(|p| p.line()).unwrap_or(0);
        let bad = |reason: String| Malformed { row, line, reason };
        if rec.len() != header.len() {
            out.malformed.push(bad(format!(
                "{} fields, header has {}",
                rec.len(),
                header.len()
            )));
            continue;
        }
        let field = |i: usize| std::str::from_utf8(&rec[i]);
        let (Ok(id), Ok(title), Ok(abs), Ok(created), Ok(cats)) = (
            field(id_c),
            field(title_c),
            field(abs_c),
            field(created_c),
            field(cat_c),
        ) else {
            out.malformed.push(bad("invalid UTF-8".into()));
            continue;
        };
        if !wanted(cats, want) {
            out.out_of_category += 1;
            continue;
        }
        let (id, created) = (id.trim(), created.trim());
        if id.is_empty() {
            out.malformed.push(bad("empty arxiv_id".into()));
            continue;
        }
        // Some dumps carry a time after the date; the date is what orders the split.
        let date = created.get(..10).unwrap_or(created);
        if !valid_date(date) {
            out.malformed
                .push(bad(format!("created {created:?} is not a YYYY-MM-DD date")));
            continue;
        }
        out.records.push(Record {
            id: id.to_string(),
            title: title.to_string(),
            abstract_: abs.to_string(),
            created: date.to_string(),
        });
    }
    Ok(())
}

#[derive(Deserialize)]
struct KaggleVersion {
    created: String,
}

#[derive(Deserialize)]
struct KagglePaper {
    id: String,
    title: String,
    #[serde(rename = "abstract")]
    abstract_: String,
    categories: String,
    #[serde(default)]
    versions: Vec<KaggleVersion>,
    #[serde(default)]
    update_date: Option<String>,
}

/// `versions[0].created` is RFC 2822 ("Mon, 2 Apr 2007 19:18:42 GMT"); `update_date` is the fallback.
fn kaggle_date(p: &KagglePaper) -> Option<String> {
    if let Some(v) = p.versions.first() {
        if let Ok(d) = chrono::DateTime::parse_from_rfc2822(v.created.trim()) {
            return Some(d.with_timezone(&chrono::Utc).format("%Y-%m-%d").to_string());
        }
    }
    p.update_date
        .as_deref()
        .map(str::trim)
        .filter(|d| valid_date(d))
        .map(str::to_string)
}

fn read_jsonl(
    r: impl BufRead,
    path: &Path,
    want: &HashSet<String>,
    out: &mut SourceRead,
) -> Result<()> {
    for (i, line) in r.split(b'\n').enumerate() {
        let line = line.map_err(|e| io_error(path, e))?;
        let lineno = i as u64 + 1;
        if line.iter().all(|b| b.is_ascii_whitespace()) {
            continue;
        }
        if out.rows == 0 && line.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
            return Err(UsageError(format!(
                "{}: this is a JSON array; expected JSON lines (one paper object per line, as in arxiv-metadata-oai-snapshot.json)",
                path.display()
            ))
            .into());
        }
        out.rows += 1;
        let bad = |reason: String| Malformed {
            row: out.rows,
            line: lineno,
            reason,
        };
        let p: KagglePaper = match serde_json::from_slice(&line) {
            Ok(p) => p,
            Err(e) => {
                let m = bad(format!("not a paper object ({e})"));
                out.malformed.push(m);
                continue;
            }
        };
        if !wanted(&p.categories, want) {
            out.out_of_category += 1;
            continue;
        }
        let Some(created) = kaggle_date(&p) else {
            let m = bad("no usable date in versions[0].created or update_date".into());
            out.malformed.push(m);
            continue;
        };
        if p.id.trim().is_empty() {
            let m = bad("empty id".into());
            out.malformed.push(m);
            continue;
        }
        out.records.push(Record {
            id: p.id.trim().to_string(),
            title: p.title,
            abstract_: p.abstract_,
            created,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn cats(c: &[&str]) -> HashSet<String> {
        c.iter().map(|s| s.to_string()).collect()
    }

    const HEADER: &str = "\tabstract\tacm_class\tarxiv_id\tauthor_text\tcategories\tcomments\tcreated\tdoi\tnum_authors\tnum_categories\tprimary_cat\ttitle\tupdated\tcategories_list\n";

    fn row(idx: u32, id: &str, title: &str, abs: &str, cats: &str, created: &str) -> String {
        format!(
            "{idx}\t{abs}\t\t{id}\tA. Author\t{cats}\t\t{created}\t\t1\t1\tcs.CL\t{title}\t\t[]\n"
        )
    }

    #[test]
    fn tsv_with_quoted_newlines_and_filters() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.tsv");
        let mut text = HEADER.to_string();
        text += &row(
            1,
            "1234.5678",
            "\"A title\nover two lines\"",
            "\"An \"\"abstract\"\"\n with\ttab\"",
            "cs.CL,cs.AI",
            "2018-01-02",
        );
        text += &row(
            2,
            "math/0101001",
            "Off topic",
            "Nope",
            "math.CO",
            "2001-01-01",
        );
        text += "3\tshort row\n";
        text += &row(
            4,
            "1801.00001",
            "Cross list",
            "Abs",
            "stat.ML,cs.LG",
            "2018-01-03",
        );
        text += &row(5, "1801.00002", "Bad date", "Abs", "cs.LG", "January");
        std::fs::write(&p, text).unwrap();
        let r = read_source(&p, &cats(&["cs.CL", "cs.LG"])).unwrap();
        assert_eq!(r.rows, 5);
        assert_eq!(r.out_of_category, 1);
        assert_eq!(r.records.len(), 2);
        assert_eq!(r.records[0].title, "A title\nover two lines");
        assert_eq!(r.records[0].abstract_, "An \"abstract\"\n with\ttab");
        assert_eq!(r.records[1].id, "1801.00001");
        assert_eq!(r.malformed.len(), 2);
        assert_eq!((r.malformed[0].row, r.malformed[0].line), (3, 6));
        assert_eq!(r.malformed[1].row, 5);
    }

    #[test]
    fn xz_and_zip_give_the_same_records_as_tsv() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!("{HEADER}{}", row(1, "1", "T", "A", "cs.CL", "2018-01-02"));
        let plain = dir.path().join("a.tsv");
        std::fs::write(&plain, &text).unwrap();
        let xz = dir.path().join("a.tsv.xz");
        let mut enc = liblzma::write::XzEncoder::new(std::fs::File::create(&xz).unwrap(), 6);
        enc.write_all(text.as_bytes()).unwrap();
        enc.finish().unwrap();
        let zp = dir.path().join("2018.tsv.zip");
        let mut z = zip::ZipWriter::new(std::fs::File::create(&zp).unwrap());
        z.start_file("2018.tsv", zip::write::SimpleFileOptions::default())
            .unwrap();
        z.write_all(text.as_bytes()).unwrap();
        z.finish().unwrap();
        let want = cats(&["cs.CL"]);
        let a = read_source(&plain, &want).unwrap().records;
        assert_eq!(a.len(), 1);
        assert_eq!(read_source(&xz, &want).unwrap().records, a);
        assert_eq!(read_source(&zp, &want).unwrap().records, a);
    }

    #[test]
    fn kaggle_json_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("snap.json");
        let lines = [
            r#"{"id":"0704.0001","title":"  Calculation of\n  prompt photons","abstract":"  A fully differential calculation.\n","categories":"hep-ph cs.LG","versions":[{"version":"v1","created":"Mon, 2 Apr 2007 19:18:42 GMT"}],"update_date":"2008-11-13"}"#,
            r#"{"id":"0704.0002","title":"Other","abstract":"x","categories":"math.CO","versions":[],"update_date":"2008-12-13"}"#,
            r#"{"id":"0704.0003","title":"No versions","abstract":"y","categories":"cs.CL","update_date":"2009-01-01"}"#,
            r#"{"id":"0704.0004", broken"#,
        ];
        std::fs::write(&p, lines.join("\n")).unwrap();
        let r = read_source(&p, &cats(&["cs.CL", "cs.LG"])).unwrap();
        assert_eq!(r.rows, 4);
        assert_eq!(r.out_of_category, 1);
        assert_eq!(r.records.len(), 2);
        assert_eq!(r.records[0].created, "2007-04-02");
        assert_eq!(r.records[1].created, "2009-01-01");
        assert_eq!(r.malformed.len(), 1);
        assert_eq!(r.malformed[0].line, 4);
    }

    #[test]
    fn bad_inputs_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let want = cats(&["cs.CL"]);
        let e = read_source(&dir.path().join("nope.tsv"), &want).unwrap_err();
        assert!(
            e.to_string().contains("nope.tsv") && e.to_string().contains("not found"),
            "{e}"
        );
        let csvf = dir.path().join("x.csv");
        std::fs::write(&csvf, "a,b").unwrap();
        let e = read_source(&csvf, &want).unwrap_err();
        assert!(e.to_string().contains("unknown input format"), "{e}");
        let xz = dir.path().join("bad.tsv.xz");
        std::fs::write(&xz, b"definitely not xz data").unwrap();
        let e = read_source(&xz, &want).unwrap_err();
        assert!(e.to_string().contains("bad.tsv.xz"), "{e}");
        let z = dir.path().join("bad.tsv.zip");
        std::fs::write(&z, b"PK not a zip").unwrap();
        let e = read_source(&z, &want).unwrap_err();
        assert!(e.to_string().contains("bad.tsv.zip"), "{e}");
        let h = dir.path().join("h.tsv");
        std::fs::write(&h, "id\tname\n1\tx\n").unwrap();
        let e = read_source(&h, &want).unwrap_err();
        assert!(e.to_string().contains("arxiv_id, title, abstract"), "{e}");
    }
}
