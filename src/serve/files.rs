//! Files under the artifacts root (trial logs, configs), and nothing outside it: `..`, absolute
//! paths and symlinks that lead out are 404, whatever their encoding.

use axum::extract::{Path as UrlPath, State};
use axum::http::header::{self, HeaderValue};
use axum::response::{IntoResponse, Response};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use super::{AppError, AppState};

/// The largest file served whole; larger ones are cut to their last this many bytes.
pub const MAX_BYTES: u64 = 4 << 20;

/// `rel` (a decoded URL path) inside the canonical `root`, if it names a regular file there:
/// only plain components, and the canonical result (symlinks followed) still under `root`.
pub fn confined(root: &Path, rel: &str) -> Option<PathBuf> {
    if rel.is_empty() || rel.contains('\0') || rel.contains('\\') {
        return None;
    }
    let rel = Path::new(rel);
    if !rel.components().all(|c| matches!(c, Component::Normal(_))) {
        return None;
    }
    let real = std::fs::canonicalize(root.join(rel)).ok()?;
    (real.starts_with(root) && real.is_file()).then_some(real)
}

/// The last `max` bytes of a file as text (lossy), and whether it was cut.
pub fn tail(path: &Path, max: u64) -> std::io::Result<(String, bool)> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    let cut = len > max;
    if cut {
        f.seek(SeekFrom::Start(len - max))?;
    }
    let mut buf = Vec::new();
    f.take(max).read_to_end(&mut buf)?;
    Ok((String::from_utf8_lossy(&buf).into_owned(), cut))
}

/// `GET /artifacts/{*path}`: the file as plain text (never rendered as HTML by the browser).
pub async fn artifact(
    State(state): State<Arc<AppState>>,
    UrlPath(rel): UrlPath<String>,
) -> Result<Response, AppError> {
    let missing = || AppError::NotFound(format!("no file `{rel}` under the artifacts root"));
    let root = state.artifacts.clone().ok_or_else(missing)?;
    let rel2 = rel.clone();
    let path = confined(&root, &rel2).ok_or_else(missing)?;
    let (text, _) = state
        .blocking(move |_| {
            tail(&path, MAX_BYTES).map_err(|e| AppError::NotFound(format!("reading `{rel2}`: {e}")))
        })
        .await?;
    let mut r = text.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r.headers_mut().insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("inline"),
    );
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_paths_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::create_dir_all(root.join("trials/abc")).unwrap();
        std::fs::write(root.join("trials/abc/trial.log"), "hi").unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "s").unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("trials/out")).unwrap();
        std::os::unix::fs::symlink("abc/trial.log", root.join("trials/in.log")).unwrap();

        assert!(confined(&root, "trials/abc/trial.log").is_some());
        assert!(
            confined(&root, "trials/in.log").is_some(),
            "a symlink within"
        );
        for bad in [
            "",
            "trials",
            "../x",
            "trials/../../etc/passwd",
            "/etc/passwd",
            "trials/out/secret",
            "trials\\..\\x",
            "trials/abc/trial.log\0",
        ] {
            assert!(confined(&root, bad).is_none(), "{bad:?} was served");
        }
    }

    #[test]
    fn tail_keeps_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, "0123456789").unwrap();
        assert_eq!(tail(&p, 4).unwrap(), ("6789".to_string(), true));
        assert_eq!(tail(&p, 40).unwrap(), ("0123456789".to_string(), false));
    }
}
