//! A Hugging Face Hub of the tests' own on 127.0.0.1 (no network here): the Hub's protocol for
//! a few repositories, as `huggingface_hub` and sweep speak it, with faults to order.
//!
//! - `GET /api/models/{org}/{name}/revision/{rev}`: `sha` and `siblings`.
//! - `HEAD`/`GET /{org}/{name}/resolve/{rev}/{file}`: `X-Repo-Commit` and `ETag`; a small file
//!   is answered directly, an LFS file (`.safetensors`) with a 302 to `/cdn/{sha256}` on another
//!   port (the Hub's CDN is another host: clients stop there and send it no token) and
//!   `X-Linked-Etag` (its SHA-256) and `X-Linked-Size`.
//! - `GET /cdn/{sha256}`: the bytes, with `Range` (206 + `Content-Range`).
//! - Errors as the Hub sends them: 401 + `X-Error-Code: RepoNotFound` for an unknown
//!   repository, 401 + `GatedRepo` for a gated one without its token, 404 + `RevisionNotFound`
//!   / `EntryNotFound`.
//!
//! Every request is logged (method, path, `Range`, whether it carried a token), so that tests
//! can count downloads. The weights are a tiny random GPT-2 with GPT-2's vocabulary, made with
//! sweep's own exporter.
#![allow(dead_code)]

use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What can go wrong with a repository's weights, on purpose.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// The weights' bytes differ from what their ETag says (same length).
    pub corrupt: bool,
    /// The first GET of the weights sends this many bytes, then drops the connection.
    pub cut_first_at: Option<usize>,
    /// A pause between 64 KiB chunks of the weights (a download that takes a while).
    pub chunk_delay: Option<Duration>,
}

#[derive(Debug, Clone)]
pub struct Repo {
    pub commit: String,
    /// (file name, bytes): `config.json`, `model.safetensors`, ...
    pub files: Vec<(String, Vec<u8>)>,
    /// The token a gated repository wants (`Authorization: Bearer ...`).
    pub gated_token: Option<String>,
    pub faults: Faults,
}

impl Repo {
    /// A repository of `files` at a commit derived from their content.
    pub fn new(files: Vec<(String, Vec<u8>)>) -> Self {
        let mut h = Sha256::new();
        for (n, b) in &files {
            h.update(n.as_bytes());
            h.update(b);
        }
        Self {
            commit: hex::encode(h.finalize())[..40].to_string(),
            files,
            gated_token: None,
            faults: Faults::default(),
        }
    }

    pub fn file(&self, name: &str) -> Option<&[u8]> {
        self.files
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, b)| b.as_slice())
    }
}

/// One logged request.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub range: Option<String>,
    pub token: Option<String>,
}

#[derive(Default)]
struct Inner {
    /// The "CDN": the same server on a second port.
    cdn_url: String,
    repos: HashMap<String, Repo>,
    log: Vec<Request>,
    cut_done: Vec<String>,
}

type Shared = Arc<Mutex<Inner>>;

/// The running test Hub; it stops with the test process.
pub struct TestHub {
    pub url: String,
    inner: Shared,
}

pub fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// The ETag of a small file (the Hub's is its git blob id: 40 hex digits).
fn small_etag(b: &[u8]) -> String {
    sha256_hex(b)[..40].to_string()
}

fn is_lfs(name: &str) -> bool {
    name.ends_with(".safetensors")
}

impl TestHub {
    pub fn start() -> Self {
        let inner: Shared = Arc::default();
        let bind = || {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.set_nonblocking(true).unwrap();
            let url = format!("http://{}", l.local_addr().unwrap());
            (l, url)
        };
        let (listener, url) = bind();
        let (cdn_listener, cdn_url) = bind();
        inner.lock().unwrap().cdn_url = cdn_url;
        let app = Router::new()
            .route("/api/models/{org}/{name}/revision/{rev}", get(api))
            .route("/{org}/{name}/resolve/{rev}/{*file}", get(resolve))
            .route("/cdn/{sha}", get(cdn))
            .with_state(inner.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let l = tokio::net::TcpListener::from_std(listener).unwrap();
                let c = tokio::net::TcpListener::from_std(cdn_listener).unwrap();
                let (a, b) = tokio::join!(axum::serve(l, app.clone()), axum::serve(c, app));
                a.unwrap();
                b.unwrap();
            });
        });
        Self { url, inner }
    }

    pub fn add(&self, name: &str, repo: Repo) {
        self.inner.lock().unwrap().repos.insert(name.into(), repo);
    }

    pub fn log(&self) -> Vec<Request> {
        self.inner.lock().unwrap().log.clone()
    }

    pub fn clear_log(&self) {
        self.inner.lock().unwrap().log.clear();
    }

    /// The GETs of a repository's weights' bytes (CDN requests).
    pub fn weight_gets(&self) -> Vec<Request> {
        self.log()
            .into_iter()
            .filter(|r| r.method == "GET" && r.path.starts_with("/cdn/"))
            .collect()
    }
}

fn record(s: &Shared, method: &Method, path: String, h: &HeaderMap) {
    let get = |k: &str| h.get(k).and_then(|v| v.to_str().ok()).map(str::to_string);
    s.lock().unwrap().log.push(Request {
        method: method.to_string(),
        path,
        range: get("range"),
        token: get("authorization").map(|a| a.trim_start_matches("Bearer ").to_string()),
    });
}

fn error(status: u16, code: &str, commit: Option<&str>) -> Response {
    let mut r = Response::builder()
        .status(status)
        .header("X-Error-Code", code)
        .header("X-Error-Message", format!("{code} (test hub)"));
    if let Some(c) = commit {
        r = r.header("X-Repo-Commit", c);
    }
    r.body(Body::from(format!("{{\"error\":\"{code}\"}}")))
        .unwrap()
}

/// The repository, or the code of the 401 the Hub answers (unknown: RepoNotFound; gated without
/// the token: GatedRepo, for files only).
fn find(s: &Shared, name: &str, h: &HeaderMap, files: bool) -> Result<Repo, &'static str> {
    let repo = s.lock().unwrap().repos.get(name).cloned();
    let Some(repo) = repo else {
        return Err("RepoNotFound");
    };
    let token = h
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(|a| a.trim_start_matches("Bearer "));
    if files && repo.gated_token.is_some() && token != repo.gated_token.as_deref() {
        return Err("GatedRepo");
    }
    Ok(repo)
}

async fn api(
    State(s): State<Shared>,
    method: Method,
    headers: HeaderMap,
    UrlPath((org, name, rev)): UrlPath<(String, String, String)>,
) -> Response {
    let repo_name = format!("{org}/{name}");
    record(
        &s,
        &method,
        format!("/api/models/{repo_name}/revision/{rev}"),
        &headers,
    );
    let repo = match find(&s, &repo_name, &headers, false) {
        Ok(r) => r,
        Err(code) => return error(401, code, None),
    };
    if rev != "main" && rev != repo.commit {
        return error(404, "RevisionNotFound", None);
    }
    let siblings: Vec<serde_json::Value> = repo
        .files
        .iter()
        .map(|(n, _)| serde_json::json!({ "rfilename": n }))
        .collect();
    let body = serde_json::json!({
        "id": repo_name,
        "sha": repo.commit,
        "siblings": siblings,
        "gated": if repo.gated_token.is_some() { serde_json::json!("manual") } else { serde_json::json!(false) },
    });
    Response::builder()
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

async fn resolve(
    State(s): State<Shared>,
    method: Method,
    headers: HeaderMap,
    UrlPath((org, name, rev, file)): UrlPath<(String, String, String, String)>,
) -> Response {
    let repo_name = format!("{org}/{name}");
    record(
        &s,
        &method,
        format!("/{repo_name}/resolve/{rev}/{file}"),
        &headers,
    );
    let repo = match find(&s, &repo_name, &headers, true) {
        Ok(r) => r,
        Err(code) => return error(401, code, None),
    };
    if rev != "main" && rev != repo.commit {
        return error(404, "RevisionNotFound", None);
    }
    let Some(bytes) = repo.file(&file) else {
        return error(404, "EntryNotFound", Some(&repo.commit));
    };
    let r = Response::builder().header("X-Repo-Commit", &repo.commit);
    if is_lfs(&file) {
        let sha = sha256_hex(bytes);
        let cdn = s.lock().unwrap().cdn_url.clone();
        return r
            .status(StatusCode::FOUND)
            .header("Location", format!("{cdn}/cdn/{sha}"))
            .header("ETag", format!("\"{}\"", small_etag(sha.as_bytes())))
            .header("X-Linked-Etag", format!("\"{sha}\""))
            .header("X-Linked-Size", bytes.len().to_string())
            .header("Content-Length", "0")
            .body(Body::empty())
            .unwrap();
    }
    let r = r
        .header("ETag", format!("\"{}\"", small_etag(bytes)))
        .header("Content-Length", bytes.len().to_string());
    let body = if method == Method::HEAD {
        Body::empty()
    } else {
        Body::from(bytes.to_vec())
    };
    r.body(body).unwrap()
}

async fn cdn(
    State(s): State<Shared>,
    method: Method,
    headers: HeaderMap,
    UrlPath(sha): UrlPath<String>,
) -> Response {
    record(&s, &method, format!("/cdn/{sha}"), &headers);
    let found = {
        let g = s.lock().unwrap();
        g.repos.values().find_map(|r| {
            r.files
                .iter()
                .find(|(_, b)| sha256_hex(b) == sha)
                .map(|(_, b)| (b.clone(), r.faults.clone()))
        })
    };
    let Some((mut bytes, faults)) = found else {
        return error(404, "EntryNotFound", None);
    };
    if faults.corrupt {
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
    }
    let total = bytes.len();
    let from = headers
        .get("range")
        .and_then(|v| v.to_str().ok())
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.split('-').next())
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(0);
    if from >= total {
        return Response::builder()
            .status(416)
            .header("Content-Range", format!("bytes */{total}"))
            .body(Body::empty())
            .unwrap();
    }
    let mut r = Response::builder()
        .header("Content-Length", (total - from).to_string())
        .header("Accept-Ranges", "bytes");
    if from > 0 {
        r = r.status(206).header(
            "Content-Range",
            format!("bytes {from}-{}/{total}", total - 1),
        );
    }
    if method == Method::HEAD {
        return r.body(Body::empty()).unwrap();
    }
    let body = bytes[from..].to_vec();
    let cut = faults.cut_first_at.filter(|_| {
        let mut g = s.lock().unwrap();
        let first = !g.cut_done.contains(&sha);
        g.cut_done.push(sha.clone());
        first
    });
    r.body(stream_body(body, cut, faults.chunk_delay)).unwrap()
}

/// The body in 64 KiB chunks, optionally slowed down, optionally broken off after `cut` bytes
/// (hyper then closes the connection short of its Content-Length).
fn stream_body(body: Vec<u8>, cut: Option<usize>, delay: Option<Duration>) -> Body {
    let limit = cut.unwrap_or(body.len()).min(body.len());
    let cut_short = cut.is_some_and(|c| c < body.len());
    let chunks: Vec<Vec<u8>> = body[..limit].chunks(64 << 10).map(<[u8]>::to_vec).collect();
    let stream = futures_util::stream::unfold(
        (chunks.into_iter(), cut_short, false),
        move |(mut it, cut_short, ended)| async move {
            if ended {
                return None;
            }
            if let Some(d) = delay {
                tokio::time::sleep(d).await;
            }
            match it.next() {
                Some(c) => Some((Ok(axum::body::Bytes::from(c)), (it, cut_short, false))),
                None if cut_short => Some((
                    Err(std::io::Error::other("cut on purpose")),
                    (it, cut_short, true),
                )),
                None => None,
            }
        },
    );
    Body::from_stream(stream)
}

/// A tiny random GPT-2 with GPT-2's vocabulary (50,257 tokens) in HF layout, as (file, bytes):
/// `config.json`, `model.safetensors`. `n_positions` bounds the block size it can train.
pub fn tiny_gpt2(seed: u64, n_positions: usize) -> Vec<(String, Vec<u8>)> {
    let cfg = sweep::model::GptConfig {
        vocab_size: 50257,
        n_positions,
        n_embd: 8,
        n_layer: 1,
        n_head: 2,
        dropout: 0.1,
        layer_norm_epsilon: 1e-5,
    };
    let dev = Default::default();
    let model = cfg.init::<burn::backend::Flex>(&dev, seed);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("m");
    sweep::checkpoint::export_hf(&model, &cfg, Some(50256), &dir, |_| Ok(())).unwrap();
    ["config.json", "model.safetensors"]
        .iter()
        .map(|f| (f.to_string(), std::fs::read(dir.join(f)).unwrap()))
        .collect()
}

/// The blobs of a repository in a Hugging Face cache, by name (`.incomplete` parts included).
pub fn blobs(cache: &Path, repo: &str) -> Vec<String> {
    let dir = cache
        .join(format!("models--{}", repo.replace('/', "--")))
        .join("blobs");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}
