//! Keeps docs/ARCHITECTURE.md true: reads the layer table there, the `crate::` imports of every
//! file under src/, and fails on an import cycle between modules, on a module the table does not
//! place, and on more imports from a lower layer to a higher one than the table allows.

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

/// The top-level module a file belongs to (`src/exec/local.rs` -> `exec`).
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

/// The code of a file without comments and without its `#[cfg(test)] mod tests` (tests may reach
/// anywhere, as they do in `tests/`; test modules in their own `tests.rs` are skipped too).
fn code_of(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) if !l[..i].contains('"') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `crate::a::...` paths and the heads of `crate::{a, b::c}` groups.
fn imported(code: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let head = item.trim().split("::").next().unwrap_or("").trim();
                if modules.contains(head) {
                    out.insert(head.to_string());
                }
            }
            continue;
        }
        let head: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if modules.contains(&head) {
            out.insert(head);
        }
    }
    out
}

fn edges() -> BTreeMap<(String, String), BTreeSet<String>> {
    let src = Path::new(ROOT).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let modules: BTreeSet<String> = files
        .iter()
        .map(|f| module_of(&src, f))
        .filter(|m| m != "lib" && m != "main")
        .collect();
    let mut out: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for f in &files {
        // A module's tests (`#[cfg(test)] mod tests;` in tests.rs) may reach anywhere.
        if f.file_name().is_some_and(|n| n == "tests.rs") {
            continue;
        }
        let from = module_of(&src, f);
        let code = code_of(&std::fs::read_to_string(f).unwrap());
        for to in imported(&code, &modules) {
            if to != from && from != "lib" {
                let rel = f.strip_prefix(&src).unwrap().display().to_string();
                out.entry((from.clone(), to)).or_default().insert(rel);
            }
        }
    }
    out
}

/// Module-level cycles (strongly connected components of two or more modules).
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

#[test]
fn src_has_no_import_cycle_and_follows_the_layers_of_architecture_md() {
    let (layer, allowed) = layers();
    let edges = edges();
    let cycles = cycles(&edges);
    assert!(
        cycles.is_empty(),
        "import cycles between modules: {cycles:?}"
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
fn no_source_file_needs_more_than_800_lines() {
    let mut files = Vec::new();
    rust_files(&Path::new(ROOT).join("src"), &mut files);
    let long: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let n = std::fs::read_to_string(f).unwrap().lines().count();
            (n > 800).then(|| format!("{} ({n} lines)", f.display()))
        })
        .collect();
    assert!(long.is_empty(), "files over 800 lines: {long:?}");
}
