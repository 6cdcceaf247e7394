//! Ledger URLs: the one parser of `--db` / `SWEEP_DB` values (`sqlite://PATH`, `sqlite:PATH`, a
//! bare file path, `postgres://` or `postgresql://`).

use std::path::{Path, PathBuf};

/// Which database a ledger URL names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LedgerUrl<'a> {
    /// A SQLite file: the path inside the URL, without `sqlite:` / `sqlite://` and `?options`.
    /// Empty or `:memory:` for an in-memory database (which the ledger refuses).
    Sqlite(&'a str),
    /// A PostgreSQL server (the whole URL).
    Postgres(&'a str),
}

impl<'a> LedgerUrl<'a> {
    pub fn parse(url: &'a str) -> Self {
        if is_postgres(url) {
            return LedgerUrl::Postgres(url);
        }
        let rest = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .unwrap_or(url);
        LedgerUrl::Sqlite(rest.split('?').next().unwrap_or(rest))
    }

    /// The SQLite file, if this names one (not PostgreSQL, not in-memory).
    pub fn sqlite_file(&self) -> Option<&'a Path> {
        match *self {
            LedgerUrl::Sqlite(p) if !p.is_empty() && p != ":memory:" => Some(Path::new(p)),
            _ => None,
        }
    }
}

/// `postgres://` or `postgresql://`.
pub fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// The SQLite file a ledger URL names (`None` for PostgreSQL and in-memory databases).
pub fn sqlite_file(url: &str) -> Option<PathBuf> {
    LedgerUrl::parse(url).sqlite_file().map(Path::to_path_buf)
}

/// The URL with its password replaced by `***` (for messages).
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (auth, tail) = match rest.split_once('@') {
        Some(x) => x,
        None => return url.to_string(),
    };
    match auth.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{tail}"),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_forms() {
        assert_eq!(
            LedgerUrl::parse("sqlite://a/b.db"),
            LedgerUrl::Sqlite("a/b.db")
        );
        assert_eq!(
            LedgerUrl::parse("sqlite:a.db?mode=rwc"),
            LedgerUrl::Sqlite("a.db")
        );
        assert_eq!(
            LedgerUrl::parse("results/sweep.db"),
            LedgerUrl::Sqlite("results/sweep.db")
        );
        assert_eq!(
            LedgerUrl::parse("postgresql://h/db"),
            LedgerUrl::Postgres("postgresql://h/db")
        );
        assert_eq!(sqlite_file("sqlite::memory:"), None);
        assert_eq!(sqlite_file("sqlite://"), None);
        assert_eq!(sqlite_file("postgres://h/db"), None);
        assert_eq!(
            sqlite_file("sqlite:///tmp/x.db"),
            Some(PathBuf::from("/tmp/x.db"))
        );
        assert!(is_postgres("postgres://u@h/db") && !is_postgres("sqlite://p"));
    }
}
