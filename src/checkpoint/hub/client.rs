//! The Hub's HTTP protocol as `huggingface_hub` speaks it: which commit a revision is
//! (`GET /api/models/REPO/revision/REV`), what a file is (`HEAD /REPO/resolve/COMMIT/FILE`: its
//! ETag, `X-Linked-Etag`/`X-Linked-Size` for LFS files, whose `Location` is the CDN), and its
//! bytes from an offset (`GET` with `Range`). Transient failures (timeouts, resets, 408, 429,
//! 5xx) are retried with exponential back-off and jitter; errors keep the Hub's `X-Error-Code`
//! so that callers can say what went wrong (a missing repository, a gated one, a revision).

use std::time::Duration;
use ureq::http::{HeaderMap, Response, StatusCode};
use ureq::{Agent, Body};

/// Tries of a request that fails transiently: the first and this many retries.
pub const RETRIES: u32 = 5;

/// Why a request got no usable answer.
#[derive(Debug, Clone)]
pub enum HubError {
    /// No HTTP answer (DNS, refused, timed out, reset), after the retries of transient ones.
    /// `unreachable`: no such host, or nothing listening (a machine without a network answers
    /// so at once, every time: not retried).
    Network {
        url: String,
        error: String,
        unreachable: bool,
    },
    /// An HTTP error, with the Hub's own code (`RepoNotFound`, `GatedRepo`, `RevisionNotFound`,
    /// `EntryNotFound`) and message when it sent them.
    Status {
        url: String,
        status: u16,
        code: Option<String>,
        message: Option<String>,
    },
    /// An answer that is not the Hub's protocol (no ETag, no commit).
    Protocol { url: String, what: String },
}

impl HubError {
    /// Worth another try: the network or the server may be better in a moment.
    pub fn transient(&self) -> bool {
        match self {
            HubError::Network { unreachable, .. } => !unreachable,
            HubError::Status { status, .. } => matches!(status, 408 | 429 | 500..=599),
            HubError::Protocol { .. } => false,
        }
    }

    /// The Hub's error code, when it sent one.
    pub fn code(&self) -> Option<&str> {
        match self {
            HubError::Status { code, .. } => code.as_deref(),
            _ => None,
        }
    }
}

impl std::fmt::Display for HubError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HubError::Network { url, error, .. } => write!(f, "{error} ({url})"),
            HubError::Status {
                url,
                status,
                message,
                ..
            } => {
                write!(f, "HTTP {status} from {url}")?;
                match message {
                    Some(m) => write!(f, ": {m}"),
                    None => Ok(()),
                }
            }
            HubError::Protocol { url, what } => write!(f, "{what} ({url})"),
        }
    }
}

/// What the Hub says about one file of a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMeta {
    /// The SHA-256 of an LFS file's content, the git blob id of a small file.
    pub etag: String,
    pub size: u64,
    /// Where its bytes are: the CDN's address for an LFS file, else the resolve URL.
    pub url: String,
}

/// A client of one Hub endpoint with one token.
pub struct Client {
    agent: Agent,
    pub endpoint: String,
    token: Option<String>,
}

impl Client {
    pub fn new(endpoint: &str, token: Option<String>) -> Self {
        let agent: Agent = Agent::config_builder()
            // Statuses are answers to read (X-Error-Code), not errors.
            .http_status_as_error(false)
            .user_agent(concat!("sweep/", env!("CARGO_PKG_VERSION")))
            .timeout_connect(Some(Duration::from_secs(10)))
            .timeout_recv_response(Some(Duration::from_secs(30)))
            // A stalled transfer (no byte for a minute) is retried from where it stopped.
            .timeout_per_read(Some(Duration::from_secs(60)))
            .build()
            .into();
        Self {
            agent,
            endpoint: endpoint.trim_end_matches('/').to_string(),
            token,
        }
    }

    /// The commit `revision` of `repo` points to, and the repository's files when listed.
    pub fn repo_info(&self, repo: &str, revision: &str) -> Result<RepoInfo, HubError> {
        let url = format!(
            "{}/api/models/{repo}/revision/{}",
            self.endpoint,
            encode(revision)
        );
        let mut resp = retrying(|| self.send(self.agent.get(&url), &url))?;
        let body = resp
            .body_mut()
            .read_to_string()
            .map_err(|e| network(&url, &e))?;
        let v: serde_json::Value = serde_json::from_str(&body).map_err(|e| HubError::Protocol {
            url: url.clone(),
            what: format!("the answer is not JSON: {e}"),
        })?;
        let sha = v.get("sha").and_then(|s| s.as_str()).unwrap_or_default();
        if !super::cache::is_commit(sha) {
            return Err(HubError::Protocol {
                url,
                what: "the answer has no commit `sha`".into(),
            });
        }
        let siblings = v.get("siblings").and_then(|s| s.as_array()).map(|a| {
            a.iter()
                .filter_map(|f| f.get("rfilename")?.as_str().map(str::to_string))
                .collect()
        });
        Ok(RepoInfo {
            sha: sha.to_string(),
            siblings,
        })
    }

    /// `HEAD` of a file at a commit: its ETag, size and where its bytes are. Redirects that stay
    /// on the Hub (a renamed repository) are followed; one to another host (the CDN of an LFS
    /// file, a signed URL) is where the download goes, and carries the metadata itself, as in
    /// `huggingface_hub.get_hf_file_metadata`.
    pub fn file_meta(&self, repo: &str, commit: &str, file: &str) -> Result<FileMeta, HubError> {
        let mut url = format!("{}/{repo}/resolve/{commit}/{file}", self.endpoint);
        for _ in 0..10 {
            let head = || {
                let req = self.agent.head(&url).config().max_redirects(0).build();
                self.send(req, &url)
            };
            let resp = retrying(head)?;
            let location =
                header(resp.headers(), "location").map(|loc| match loc.starts_with('/') {
                    true => format!("{}{loc}", origin(&url)),
                    false => loc,
                });
            match location {
                Some(target)
                    if resp.status().is_redirection() && same_origin(&target, &self.endpoint) =>
                {
                    url = target;
                }
                _ => return meta_of(&resp, &url, location),
            }
        }
        Err(HubError::Protocol {
            url,
            what: "too many redirects".into(),
        })
    }

    /// `GET` of `url` from byte `from` on (a `Range` request when `from > 0`). The token goes
    /// only to the Hub's own host, never to the CDN (whose URLs are signed).
    pub fn get_from(&self, url: &str, from: u64) -> Result<Response<Body>, HubError> {
        let mut req = self.agent.get(url);
        if from > 0 {
            req = req.header("Range", format!("bytes={from}-"));
        }
        let resp = self.send(req, url)?;
        Ok(resp)
    }

    /// Sends with the token (to the Hub's host only); an error status becomes [`HubError`].
    fn send(
        &self,
        mut req: ureq::RequestBuilder<ureq::typestate::WithoutBody>,
        url: &str,
    ) -> Result<Response<Body>, HubError> {
        if let Some(t) = self
            .token
            .as_deref()
            .filter(|_| same_origin(url, &self.endpoint))
        {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        let resp = req.call().map_err(|e| network(url, &e))?;
        let status = resp.status();
        if status.is_success()
            || status.is_redirection()
            || status == StatusCode::RANGE_NOT_SATISFIABLE
        {
            return Ok(resp);
        }
        Err(HubError::Status {
            url: url.to_string(),
            status: status.as_u16(),
            code: header(resp.headers(), "x-error-code"),
            message: header(resp.headers(), "x-error-message"),
        })
    }
}

/// What `/api/models/REPO/revision/REV` says.
#[derive(Debug, Clone)]
pub struct RepoInfo {
    pub sha: String,
    pub siblings: Option<Vec<String>>,
}

/// A `HEAD` answer's file metadata (`huggingface_hub`: `X-Linked-Etag` before `ETag`,
/// `X-Linked-Size` before `Content-Length`).
fn meta_of(
    resp: &Response<Body>,
    url: &str,
    location: Option<String>,
) -> Result<FileMeta, HubError> {
    let h = resp.headers();
    let protocol = |what: &str| HubError::Protocol {
        url: url.to_string(),
        what: what.to_string(),
    };
    if header(h, "x-repo-commit").is_none() {
        return Err(protocol(
            "the answer has no X-Repo-Commit header: this is not the Hugging Face Hub (a proxy or \
             firewall page?)",
        ));
    }
    let etag = header(h, "x-linked-etag")
        .or_else(|| header(h, "etag"))
        .map(|e| normalize_etag(&e))
        .filter(|e| !e.is_empty())
        .ok_or_else(|| protocol("the answer has no ETag"))?;
    let redirected = resp.status().is_redirection();
    let size = header(h, "x-linked-size")
        .or_else(|| (!redirected).then(|| header(h, "content-length")).flatten())
        .and_then(|s| s.trim().parse::<u64>().ok())
        .ok_or_else(|| protocol("the answer has no size (X-Linked-Size or Content-Length)"))?;
    let url = match location {
        Some(loc) if redirected => loc,
        _ => url.to_string(),
    };
    Ok(FileMeta { etag, size, url })
}

/// `W/"abc"` and `"abc"` -> `abc` (`huggingface_hub._normalize_etag`).
pub fn normalize_etag(e: &str) -> String {
    e.trim()
        .trim_start_matches("W/")
        .trim_matches('"')
        .to_string()
}

pub fn header(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name)?.to_str().ok().map(str::to_string)
}

/// `scheme://host[:port]` of a URL.
fn origin(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    match url[after_scheme..].find('/') {
        Some(i) => &url[..after_scheme + i],
        None => url,
    }
}

fn same_origin(a: &str, b: &str) -> bool {
    origin(a).eq_ignore_ascii_case(origin(b))
}

/// Percent-encodes a revision for a URL path (`quote(revision, safe="")`: `refs/pr/1` ->
/// `refs%2Fpr%2F1`).
fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn network(url: &str, e: &ureq::Error) -> HubError {
    let unreachable = match e {
        ureq::Error::HostNotFound => true,
        ureq::Error::Io(io) => io.kind() == std::io::ErrorKind::ConnectionRefused,
        _ => false,
    };
    HubError::Network {
        url: url.to_string(),
        error: e.to_string(),
        unreachable,
    }
}

/// The wait before retry `n` (1, 2, ...): 1 s doubling up to 30 s, plus up to 0.5 s of jitter
/// so that processes that failed together do not retry together.
pub fn backoff(n: u32) -> Duration {
    let base = Duration::from_secs(1 << n.saturating_sub(1).min(5)).min(Duration::from_secs(30));
    base + Duration::from_millis(rand::random_range(0..500))
}

/// Runs `f` until it succeeds, fails for good, or has been retried [`RETRIES`] times.
fn retrying<T>(mut f: impl FnMut() -> Result<T, HubError>) -> Result<T, HubError> {
    let mut n = 0;
    loop {
        match f() {
            Err(e) if e.transient() && n < RETRIES => {
                n += 1;
                eprintln!("hub: {e}; retrying in a moment ({n} of {RETRIES})",);
                std::thread::sleep(backoff(n));
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_etags() {
        assert_eq!(encode("main"), "main");
        assert_eq!(encode("refs/pr/1"), "refs%2Fpr%2F1");
        assert_eq!(encode("v1.0 x"), "v1.0%20x");
        assert_eq!(normalize_etag("W/\"abc\""), "abc");
        assert_eq!(normalize_etag("\"abc\""), "abc");
        assert_eq!(origin("http://127.0.0.1:8080/a/b"), "http://127.0.0.1:8080");
        assert_eq!(origin("https://huggingface.co"), "https://huggingface.co");
        assert!(same_origin(
            "https://huggingface.co/x",
            "https://huggingface.co"
        ));
        assert!(!same_origin(
            "https://cdn.example/x",
            "https://huggingface.co"
        ));
    }

    #[test]
    fn what_is_retried() {
        let status = |status| HubError::Status {
            url: String::new(),
            status,
            code: None,
            message: None,
        };
        assert!(status(503).transient() && status(429).transient());
        assert!(!status(404).transient() && !status(401).transient());
        let net = |unreachable| HubError::Network {
            url: String::new(),
            error: "e".into(),
            unreachable,
        };
        assert!(net(false).transient());
        assert!(!net(true).transient());
        assert!(backoff(1) >= Duration::from_secs(1) && backoff(1) < Duration::from_secs(2));
        assert!(backoff(9) <= Duration::from_millis(30_500));
    }
}
