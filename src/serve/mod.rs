//! `sweep serve`: the live dashboard, a read-only HTTP server over the ledger.
//!
//! The ledger is opened with [`crate::store::open_read_only`] and only ever read through the
//! [`Reader`] trait: the server has no write path. Pages are the report's own maud templates
//! (`report::html`) over the report's data functions, plus the running trials' loss curves,
//! which a same-origin script (`live.js`) keeps current by long-polling a JSON endpoint.
//!
//! * `cli` — the flags, their checks (loopback unless `--token`) and the bind.
//! * `auth` — the token check and the security headers of every response.
//! * `files` — files under the artifacts root, confined to it.
//! * `live` — the running trials' snapshot (pure) and the long poll.
//! * `pages` — the HTML pages.

pub mod cli;

mod auth;
mod files;
mod live;
mod pages;

use anyhow::Result;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::UsageError;
use crate::store::Reader;

/// How long a rendered sweep page or running-trials snapshot is reused: many clients polling one
/// sweep cost one ledger read and one render per period, not one per request.
pub const CACHE_TTL: Duration = Duration::from_millis(1000);

/// Values computed on the blocking pool and reused for [`CACHE_TTL`], by key. Concurrent misses
/// of one key wait for one computation; a failed computation leaves no entry behind.
pub struct TtlCache<T> {
    map: Mutex<HashMap<String, Slot<T>>>,
}

type Slot<T> = Arc<tokio::sync::Mutex<Option<(Instant, Arc<T>)>>>;

impl<T: Send + Sync + 'static> TtlCache<T> {
    fn new() -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
        }
    }

    async fn get(
        &self,
        state: &Arc<AppState>,
        key: &str,
        make: impl FnOnce(&AppState) -> Result<T, AppError> + Send + 'static,
    ) -> Result<Arc<T>, AppError> {
        let slot = {
            let mut map = self.map.lock().map_err(|_| AppError::internal("cache"))?;
            map.entry(key.to_string()).or_default().clone()
        };
        let mut guard = slot.lock().await;
        if let Some((at, v)) = guard.as_ref() {
            if at.elapsed() < CACHE_TTL {
                return Ok(v.clone());
            }
        }
        match state.blocking(make).await {
            Ok(v) => {
                let v = Arc::new(v);
                *guard = Some((Instant::now(), v.clone()));
                Ok(v)
            }
            Err(e) => {
                if let Ok(mut map) = self.map.lock() {
                    map.remove(key);
                }
                Err(e)
            }
        }
    }
}

/// What every handler shares.
pub struct AppState {
    /// The ledger, read-only.
    pub reader: Arc<dyn Reader>,
    /// The artifacts root, canonical (`None` when it does not exist: no file is served).
    pub artifacts: Option<PathBuf>,
    /// The artifacts root as given, to resolve recorded trial directories for display.
    pub artifacts_given: PathBuf,
    /// Required on every request when set.
    pub token: Option<String>,
    /// Loopback bind without a token: requests must name a loopback host (DNS rebinding).
    pub loopback_only: bool,
    /// Rendered sweep pages.
    pages: TtlCache<String>,
    /// Running-trial snapshots: (version, JSON).
    live: TtlCache<(String, String)>,
}

impl AppState {
    pub fn new(
        reader: Arc<dyn Reader>,
        artifacts_given: PathBuf,
        token: Option<String>,
        loopback_only: bool,
    ) -> Self {
        Self {
            reader,
            artifacts: std::fs::canonicalize(&artifacts_given).ok(),
            artifacts_given,
            token,
            loopback_only,
            pages: TtlCache::new(),
            live: TtlCache::new(),
        }
    }

    /// Runs `f` on tokio's blocking pool: the [`Reader`] blocks on its own runtime.
    async fn blocking<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&AppState) -> Result<T, AppError> + Send + 'static,
    ) -> Result<T, AppError> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || f(&me))
            .await
            .map_err(|e| AppError::internal(&format!("a request's task failed: {e}")))?
    }
}

/// A request's failure, as a page with its HTTP status.
#[derive(Debug)]
pub enum AppError {
    NotFound(String),
    Internal(String),
}

impl AppError {
    fn internal(what: &str) -> Self {
        AppError::Internal(what.to_string())
    }
}

impl From<anyhow::Error> for AppError {
    /// A usage error of the ledger layer (an unknown sweep) is the client's: 404.
    fn from(e: anyhow::Error) -> Self {
        if e.downcast_ref::<UsageError>().is_some() {
            AppError::NotFound(format!("{e:#}"))
        } else {
            AppError::Internal(format!("reading the ledger: {e:#}"))
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, msg) = match self {
            AppError::NotFound(m) => (StatusCode::NOT_FOUND, m),
            AppError::Internal(m) => (StatusCode::INTERNAL_SERVER_ERROR, m),
        };
        (status, Html(pages::error_page(status, &msg).into_string())).into_response()
    }
}

/// Every route of the dashboard; GET only (any other method is 405).
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(pages::index))
        .route("/sweep/{name}", get(pages::sweep))
        .route("/trial/{id}", get(pages::trial))
        .route("/api/sweep/{name}/running", get(live::running))
        .route("/artifacts/{*path}", get(files::artifact))
        .route("/static/live.js", get(live::script))
        .fallback(pages::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::guard,
        ))
        .with_state(state)
}

/// Serves `router` on `listener` until the process is stopped.
pub fn serve(listener: std::net::TcpListener, state: Arc<AppState>) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(16)
        .thread_name("sweep-serve")
        .enable_all()
        .build()?;
    rt.block_on(async move {
        listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        axum::serve(listener, router(state)).await?;
        Ok(())
    })
}

/// `name` as one URL path segment (everything but unreserved characters percent-encoded).
pub fn path_segment(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
