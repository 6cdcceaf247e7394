//! Keeps docs/ARCHITECTURE.md true: reads the layer table there and the imports of every file
//! under src/, and fails on an import cycle between modules or between files, on a module the
//! table does not place, and on more imports from a lower layer to a higher one than the table
//! allows.
//!
//! Written by hand rather than with a Rust parser crate (syn would add a full parse of every file
//! to the test build for what is a scan of `crate::`/`super::`/`self::` paths and `mod` names).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// `module -> layer` from the table rows `| N | `a`, `b` | job |` of docs/ARCHITECTURE.md, and
/// the allowed number of upward imports from its `upward imports allowed: N` line.
fn layers() -> (BTreeMap<String, usize>, usize) {
    let doc = std::fs::read_to_string(Path::new(ROOT).join("docs/ARCHITECTURE.md"))
        .expect("docs/ARCHITECTURE.md");
    let mut out = BTreeMap::new();
    let mut allowed = None;
    for line in doc.lines() {
        if let Some(n) = line.trim().strip_prefix("upward imports allowed:") {
            allowed = n.trim().trim_end_matches('.').parse().ok();
        }
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let Some(layer) = cells.get(1).and_then(|c| c.parse::<usize>().ok()) else {
            continue;
        };
        for m in cells[2].split(',') {
            let m = m.trim().trim_matches('`');
            if !m.is_empty() {
                out.insert(m.to_string(), layer);
            }
        }
    }
    (out, allowed.expect("an `upward imports allowed: N` line"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// Every file under src/ as (path relative to src/ with `/` separators, text).
fn sources() -> Vec<(String, String)> {
    let src = Path::new(ROOT).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    files
        .iter()
        .map(|f| {
            let rel = f
                .strip_prefix(&src)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            (rel, std::fs::read_to_string(f).unwrap())
        })
        .collect()
}

/// The module path of a file: `exec/local.rs` -> [exec, local], `exec/mod.rs` -> [exec],
/// `lib.rs` -> [].
fn module_path(rel: &str) -> Vec<String> {
    let mut segs: Vec<String> = rel
        .trim_end_matches(".rs")
        .split('/')
        .map(String::from)
        .collect();
    if matches!(segs.last().map(String::as_str), Some("mod" | "lib")) {
        segs.pop();
    }
    segs
}

/// Files that only hold tests (`#[cfg(test)] mod tests;` in tests.rs, `#[path = "x_tests.rs"]`):
/// tests may reach anywhere, as they do in `tests/`.
fn is_test_file(rel: &str) -> bool {
    rel.ends_with("tests.rs")
}

/// The code of a file without comments and without its trailing `#[cfg(test)] mod NAME { .. }`
/// (every such test module in src/ closes its file).
fn code_of(text: &str) -> String {
    let mut cut = text.len();
    let mut from = 0;
    while let Some(i) = text[from..].find("#[cfg(test)]\n") {
        let at = from + i;
        let next = text[at + "#[cfg(test)]\n".len()..]
            .lines()
            .next()
            .unwrap_or("");
        let next = next.trim();
        let next = next.strip_prefix("pub(crate) ").unwrap_or(next);
        if next.starts_with("mod ") && next.ends_with('{') {
            cut = at;
            break;
        }
        from = at + 1;
    }
    text[..cut]
        .lines()
        .map(|l| match l.find("//") {
            Some(i) if !l[..i].contains('"') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn skip_space(s: &[u8], mut i: usize) -> usize {
    while i < s.len() && s[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// Parses the rest of a path at `s[i..]` (after `crate::`, `super::` or `self::`), starting from
/// the module path `base`: segments joined by `::`, `super`/`self` steps, and `{a, b::c}` groups,
/// each leaf pushed to `out` as a module path from the crate root. Returns where it stopped.
fn path_tree(s: &[u8], mut i: usize, base: Vec<String>, out: &mut Vec<Vec<String>>) -> usize {
    let mut segs = base;
    loop {
        i = skip_space(s, i);
        if s.get(i) == Some(&b'{') {
            i += 1;
            loop {
                while i < s.len() && (s[i].is_ascii_whitespace() || s[i] == b',') {
                    i += 1;
                }
                if i >= s.len() || s[i] == b'}' {
                    return i + 1;
                }
                let next = path_tree(s, i, segs.clone(), out);
                if next == i {
                    return i;
                }
                i = next;
            }
        }
        let start = i;
        if s.get(i) == Some(&b'*') {
            i += 1;
        } else {
            while i < s.len() && is_ident(s[i]) {
                i += 1;
            }
        }
        let name = std::str::from_utf8(&s[start..i]).unwrap();
        match name {
            "" => {
                out.push(segs);
                return i;
            }
            "super" => {
                segs.pop();
            }
            "self" | "*" => {}
            _ => segs.push(name.to_string()),
        }
        let j = skip_space(s, i);
        if s[j..].starts_with(b"::") {
            i = j + 2;
        } else {
            out.push(segs);
            return i;
        }
    }
}

/// Where `word::` occurs in `code` as the head of a path (not after `::` or inside a name).
fn path_heads<'a>(code: &'a str, word: &'a str) -> impl Iterator<Item = usize> + 'a {
    let s = code.as_bytes();
    let pat = format!("{word}::");
    let len = pat.len();
    code.match_indices(word)
        .map(|(i, _)| i)
        .filter(move |&i| {
            code[i..].starts_with(&pat) && (i == 0 || !(is_ident(s[i - 1]) || s[i - 1] == b':'))
        })
        .map(move |i| i + len)
}

/// The `mod NAME;` declarations of a file's code.
fn declared_modules(code: &str) -> Vec<String> {
    code.lines()
        .filter_map(|l| {
            let l = l.trim();
            let l = l
                .strip_prefix("pub(crate) ")
                .or(l.strip_prefix("pub "))
                .unwrap_or(l);
            let name = l.strip_prefix("mod ")?.strip_suffix(';')?;
            Some(name.trim().to_string())
        })
        .collect()
}

/// The module paths a file names: `crate::`, `super::` and `self::` paths (groups expanded), and
/// bare `m::` paths through a module `m` it declares or, after `use super::*`, its siblings.
fn named_paths(
    rel: &str,
    code: &str,
    declared: &BTreeMap<Vec<String>, Vec<String>>,
) -> Vec<Vec<String>> {
    let me = module_path(rel);
    let parent = me[..me.len().saturating_sub(1)].to_vec();
    let mut out = Vec::new();
    for (word, base) in [
        ("crate", Vec::new()),
        ("super", parent.clone()),
        ("self", me.clone()),
    ] {
        for at in path_heads(code, word) {
            path_tree(code.as_bytes(), at, base.clone(), &mut out);
        }
    }
    let mut scope: Vec<(Vec<String>, &String)> = Vec::new();
    for m in declared.get(&me).into_iter().flatten() {
        scope.push((me.clone(), m));
    }
    if code.contains("use super::*;") {
        for m in declared.get(&parent).into_iter().flatten() {
            scope.push((parent.clone(), m));
        }
    }
    for (base, m) in scope {
        for at in path_heads(code, m) {
            let mut segs = base.clone();
            segs.push(m.clone());
            path_tree(code.as_bytes(), at, segs, &mut out);
        }
    }
    out
}

/// The file a module path lands in: the longest prefix of it that is a file of src/.
fn file_of<'a>(path: &[String], files: &'a BTreeMap<Vec<String>, String>) -> Option<&'a String> {
    (0..=path.len()).rev().find_map(|k| files.get(&path[..k]))
}

/// `(from file, to file) -> the paths that make the edge`, over src/ without main.rs and
/// lib.rs (which only declare the modules) and without test files.
fn file_edges(sources: &[(String, String)]) -> BTreeMap<(String, String), BTreeSet<String>> {
    let sources: Vec<(&String, String)> = sources
        .iter()
        .filter(|(rel, _)| rel != "main.rs" && !is_test_file(rel))
        .map(|(rel, text)| (rel, code_of(text)))
        .collect();
    let files: BTreeMap<Vec<String>, String> = sources
        .iter()
        .map(|(rel, _)| (module_path(rel), rel.to_string()))
        .collect();
    let declared: BTreeMap<Vec<String>, Vec<String>> = sources
        .iter()
        .map(|(rel, code)| (module_path(rel), declared_modules(code)))
        .collect();
    let mut out: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for (rel, code) in &sources {
        if *rel == "lib.rs" {
            continue;
        }
        for path in named_paths(rel, code, &declared) {
            match file_of(&path, &files) {
                Some(to) if to != *rel && to != "lib.rs" => {
                    out.entry((rel.to_string(), to.clone()))
                        .or_default()
                        .insert(path.join("::"));
                }
                _ => {}
            }
        }
    }
    out
}

/// The top-level module of a file (`exec/local.rs` -> `exec`, `util.rs` -> `util`).
fn module_of(rel: &str) -> String {
    module_path(rel).into_iter().next().unwrap_or_default()
}

/// `(from module, to module) -> the files that import`, from the file edges.
fn module_edges(
    files: &BTreeMap<(String, String), BTreeSet<String>>,
) -> BTreeMap<(String, String), BTreeSet<String>> {
    let mut out: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for (from, to) in files.keys() {
        let (a, b) = (module_of(from), module_of(to));
        if a != b {
            out.entry((a, b)).or_default().insert(from.clone());
        }
    }
    out
}

/// Whether one file is the face of the folder the other sits in (`store/mod.rs` and
/// `store/sqlite.rs`, `search/sampler.rs` and `search/sampler/parzen.rs`).
fn face_and_member(a: &str, b: &str) -> bool {
    let (a, b) = (module_path(a), module_path(b));
    let parent_of = |x: &[String], y: &[String]| y.len() == x.len() + 1 && y.starts_with(x);
    parent_of(&a, &b) || parent_of(&b, &a)
}

/// The file edges the file-level check looks at: all but those between a folder's face and its
/// own files (the face declares and re-exports them, they use its shared types: that is how a
/// Rust module folder is built, not a loop).
fn checked_file_edges(
    sources: &[(String, String)],
) -> BTreeMap<(String, String), BTreeSet<String>> {
    file_edges(sources)
        .into_iter()
        .filter(|((a, b), _)| !face_and_member(a, b))
        .collect()
}

/// Cycles (strongly connected components of two or more nodes).
fn cycles(edges: &BTreeMap<(String, String), BTreeSet<String>>) -> Vec<BTreeSet<String>> {
    let nodes: BTreeSet<&String> = edges.keys().flat_map(|(a, b)| [a, b]).collect();
    let reach = |from: &String| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.clone()];
        while let Some(n) = todo.pop() {
            for (a, b) in edges.keys() {
                if *a == n && seen.insert(b.clone()) {
                    todo.push(b.clone());
                }
            }
        }
        seen
    };
    let mut out: Vec<BTreeSet<String>> = Vec::new();
    for n in &nodes {
        let comp: BTreeSet<String> = reach(n)
            .into_iter()
            .filter(|m| reach(m).contains(*n))
            .collect();
        if comp.len() > 1 && !out.contains(&comp) {
            out.push(comp);
        }
    }
    out
}

/// Each cycle with the edges inside it and the paths that make them.
fn describe(
    cycles: &[BTreeSet<String>],
    edges: &BTreeMap<(String, String), BTreeSet<String>>,
) -> String {
    let mut out = String::new();
    for c in cycles {
        out += &format!("{c:?}:\n");
        for ((a, b), via) in edges {
            if c.contains(a) && c.contains(b) {
                out += &format!("  {a} -> {b} ({via:?})\n");
            }
        }
    }
    out
}

#[test]
fn src_has_no_import_cycle_and_follows_the_layers_of_architecture_md() {
    let (layer, allowed) = layers();
    let edges = module_edges(&file_edges(&sources()));
    let cycles = cycles(&edges);
    assert!(
        cycles.is_empty(),
        "import cycles between modules:\n{}",
        describe(&cycles, &edges)
    );
    let mut unplaced = BTreeSet::new();
    let mut upward = Vec::new();
    for ((from, to), files) in &edges {
        match (layer.get(from), layer.get(to)) {
            (Some(a), Some(b)) if a < b => upward.push(format!("{from} -> {to} ({files:?})")),
            (None, _) => {
                unplaced.insert(from.clone());
            }
            (_, None) => {
                unplaced.insert(to.clone());
            }
            _ => {}
        }
    }
    assert!(
        unplaced.is_empty(),
        "modules missing from the layer table of docs/ARCHITECTURE.md: {unplaced:?}"
    );
    println!("{} imports, {} upward:", edges.len(), upward.len());
    for u in &upward {
        println!("  {u}");
    }
    assert!(
        upward.len() <= allowed,
        "{} imports run from a lower layer to a higher one (docs/ARCHITECTURE.md allows \
         {allowed}):\n{}",
        upward.len(),
        upward.join("\n")
    );
}

#[test]
fn src_files_import_each_other_without_a_cycle() {
    let edges = checked_file_edges(&sources());
    println!("{} file imports", edges.len());
    let cycles = cycles(&edges);
    assert!(
        cycles.is_empty(),
        "import cycles between files (move the shared code down into a file both can use):\n{}",
        describe(&cycles, &edges)
    );
}

/// The file check on a made-up crate: it sees a loop through `super::` paths, groups, `self::`
/// and bare sibling paths after `use super::*`, and lets a folder's face and its files be.
#[test]
fn the_file_check_finds_loops_in_every_path_form() {
    let crate_of = |files: &[(&str, &str)]| -> Vec<(String, String)> {
        files
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    };
    let face = "pub mod a;\npub mod b;\npub mod c;\npub struct Shared;\nfn f() { a::g(); }\n";
    let found = |a: &str, b: &str| {
        let src = crate_of(&[
            ("lib.rs", "pub mod m;\n"),
            ("m/mod.rs", face),
            ("m/a.rs", a),
            ("m/b.rs", b),
            ("m/c.rs", "use super::Shared;\n"),
        ]);
        cycles(&checked_file_edges(&src))
    };
    let loop_ab: BTreeSet<String> = ["m/a.rs", "m/b.rs"].map(String::from).into();
    let forms = [
        ("use super::b::g;", "use super::a::h;"),
        (
            "use super::{b::{self, g}, Shared};",
            "use crate::m::{a, c};\nfn k() { a::h(); }",
        ),
        ("use super::*;\nfn k() { b::g(); }", "use crate::m::a::h;"),
        ("fn k() { super::b::g(); }", "use super::super::m::a;"),
        (
            "use crate::m::b::g;\n// use nothing\n#[cfg(test)]\nmod tests {\n}\n",
            "use crate::{m::a::h};",
        ),
    ];
    for (a, b) in forms {
        assert_eq!(found(a, b), vec![loop_ab.clone()], "{a:?} / {b:?}");
    }
    // One way only, a use inside comments or tests, and a face with its files: no loop.
    let clean = [
        ("use super::b::g;\nuse super::Shared;", "use super::c;"),
        ("use super::b::g;", "// use super::a::h;"),
        (
            "use super::b::g;",
            "fn g() {}\n#[cfg(test)]\nmod tests {\n    use crate::m::a;\n}\n",
        ),
    ];
    for (a, b) in clean {
        assert!(found(a, b).is_empty(), "{a:?} / {b:?}");
    }
}

#[test]
fn no_source_file_needs_more_than_800_lines() {
    let long: Vec<String> = sources()
        .iter()
        .filter_map(|(rel, text)| {
            let n = text.lines().count();
            (n > 800).then(|| format!("src/{rel} ({n} lines)"))
        })
        .collect();
    assert!(long.is_empty(), "files over 800 lines: {long:?}");
}
