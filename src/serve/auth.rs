//! The gate of every request: the token (when the server has one), the Host check of a loopback
//! bind, and the security headers of every response.

use axum::extract::{Request, State};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

use super::AppState;

/// The cookie a `?token=` visit sets, so the page's own requests carry the token.
pub const COOKIE: &str = "sweep_token";

/// Equal length and bytes, in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Where a request's token came from.
#[derive(Debug, PartialEq)]
enum Presented {
    Header,
    Cookie,
    Query,
    None,
}

/// Whether the request carries `token`: `Authorization: Bearer T`, the cookie, or `?token=T`.
fn presented(req: &Request, token: &str) -> Presented {
    let t = token.as_bytes();
    let headers = req.headers();
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if bearer.is_some_and(|b| constant_time_eq(b.trim().as_bytes(), t)) {
        return Presented::Header;
    }
    if cookie_value(headers).is_some_and(|c| constant_time_eq(c.as_bytes(), t)) {
        return Presented::Cookie;
    }
    let query = req.uri().query().unwrap_or("");
    let in_query =
        form_pairs(query).any(|(k, v)| k == "token" && constant_time_eq(v.as_bytes(), t));
    if in_query {
        return Presented::Query;
    }
    Presented::None
}

fn cookie_value(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
}

/// `a=b&c=d` pairs, percent-decoded.
fn form_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    query.split('&').filter_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        Some((percent_decode(k), percent_decode(v)))
    })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |j: usize| b.get(j).and_then(|c| (*c as char).to_digit(16));
        match (b[i], hex(i + 1), hex(i + 2)) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether the request's Host names this machine's loopback (`localhost`, `127.x`, `[::1]`).
fn loopback_host(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn refuse(status: StatusCode, msg: &str) -> Response {
    let mut r = (status, format!("{msg}\n")).into_response();
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"sweep serve\""),
        );
    }
    r
}

/// The middleware: checks the request, then adds the security headers to the response.
pub async fn guard(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let mut how = Presented::None;
    if let Some(token) = &state.token {
        how = presented(&req, token);
        if how == Presented::None {
            return with_headers(refuse(
                StatusCode::UNAUTHORIZED,
                "401 Unauthorized: this server needs its token. Send `Authorization: Bearer TOKEN`, or open the page once with ?token=TOKEN.",
            ));
        }
    } else if state.loopback_only && !loopback_host(req.headers()) {
        return with_headers(refuse(
            StatusCode::FORBIDDEN,
            "403 Forbidden: this server answers requests for localhost / 127.0.0.1 only.",
        ));
    }
    let mut resp = next.run(req).await;
    if let (Presented::Query, Some(token)) = (how, &state.token) {
        let cookie = format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict");
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            resp.headers_mut().insert(header::SET_COOKIE, v);
        }
    }
    with_headers(resp)
}

/// No external resource may load, no other site may frame the page, nothing is cached, no
/// referrer (which could carry `?token=`) leaves.
fn with_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    let set = |h: &mut HeaderMap, k: header::HeaderName, v: &'static str| {
        h.insert(k, HeaderValue::from_static(v));
    };
    set(
        h,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    );
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::REFERRER_POLICY, "no-referrer");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(h, header::CACHE_CONTROL, "no-store");
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_compares_whole_values() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
    }

    #[test]
    fn query_tokens_are_percent_decoded() {
        let pairs: Vec<_> = form_pairs("a=1&token=a%2Bb+c&x").collect();
        assert_eq!(pairs[1], ("token".to_string(), "a+b c".to_string()));
    }

    #[test]
    fn loopback_hosts() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::HOST, HeaderValue::from_str(v).unwrap());
            loopback_host(&m)
        };
        assert!(h("127.0.0.1:8080") && h("localhost") && h("[::1]:80") && h("LOCALHOST:1"));
        assert!(!h("evil.example:8080") && !h("10.0.0.1") && !h("127.0.0.1.evil.example"));
    }
}
