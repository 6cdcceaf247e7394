//! `sweep serve` flags and their checks: the bind address (loopback unless a token guards the
//! server), the token, the ledger opened read-only, and the port, each refused with the fix.

use anyhow::Result;
use clap::Args;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::process::ExitCode;
use std::sync::Arc;

use super::AppState;
use crate::error::UsageError;
use crate::locations::{ArtifactsArgs, LedgerArgs};
use crate::store;

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub ledger: LedgerArgs,
    #[command(flatten)]
    pub artifacts: ArtifactsArgs,
    /// TCP port (0: any free port; the URL printed at start names it).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Address to bind. Anything but loopback (127.0.0.1, ::1, localhost) needs --token.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Every request must carry this token (`Authorization: Bearer TOKEN`, or `?token=TOKEN` once
    /// in a browser, which sets a cookie). Required for a non-loopback --host.
    #[arg(long, env = "SWEEP_SERVE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// `--host` as an address: an IP, or `localhost`.
pub fn parse_host(host: &str) -> Result<IpAddr> {
    if host.eq_ignore_ascii_case("localhost") {
        return Ok(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    host.trim_matches(|c| c == '[' || c == ']')
        .parse()
        .map_err(|_| {
            UsageError(format!(
                "--host {host}: not an IP address; fix: pass one such as 127.0.0.1 (this machine only) or 0.0.0.0 (all interfaces, with --token)"
            ))
            .into()
        })
}

/// The token, checked: none is fine on loopback; a non-loopback bind needs one; a token must be
/// at least 16 visible ASCII characters without `;`, `,`, `"` or `\` (it travels in a cookie).
pub fn check_token(ip: IpAddr, host: &str, token: Option<&str>) -> Result<Option<String>> {
    let Some(t) = token else {
        if ip.is_loopback() {
            return Ok(None);
        }
        return Err(UsageError(format!(
            "--host {host} serves the ledger beyond this machine and needs a token; fix: pass --token TOKEN (or set SWEEP_SERVE_TOKEN), e.g. --token $(openssl rand -hex 16), or bind --host 127.0.0.1"
        ))
        .into());
    };
    let ok_char = |c: char| c.is_ascii_graphic() && !matches!(c, ';' | ',' | '"' | '\\');
    if t.len() < 16 || !t.chars().all(ok_char) {
        return Err(UsageError(
            "--token/SWEEP_SERVE_TOKEN: use at least 16 visible ASCII characters without ; , \" or \\; fix: e.g. --token $(openssl rand -hex 16)".into(),
        )
        .into());
    }
    Ok(Some(t.to_string()))
}

/// The ledger, read-only, read once to prove it is readable.
fn open_ledger(url: &str) -> Result<Arc<dyn store::Reader>> {
    let shown = store::redact(url);
    let fail = |e: anyhow::Error| -> anyhow::Error {
        if e.downcast_ref::<UsageError>().is_some() {
            return e;
        }
        UsageError(format!(
            "cannot read the ledger `{shown}`: {e:#}; fix: pass --db with a readable sweep ledger (SQLite file or postgres:// URL)"
        ))
        .into()
    };
    let reader = store::open_read_only(url).map_err(fail)?;
    reader.sweeps().map_err(fail)?;
    Ok(Arc::from(reader))
}

/// Binds `addr`; a port in use is a usage error naming --port and the fix.
pub fn bind(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr).map_err(|e| {
        let why = match e.kind() {
            std::io::ErrorKind::AddrInUse => "the port is already in use (another `sweep serve`?)".to_string(),
            std::io::ErrorKind::PermissionDenied => "permission denied (ports below 1024 need privileges)".to_string(),
            _ => e.to_string(),
        };
        UsageError(format!(
            "--port {}: cannot listen on {addr}: {why}; fix: pass another --port (e.g. --port {}) or --port 0 for any free one",
            addr.port(),
            addr.port().wrapping_add(1).max(1024)
        ))
        .into()
    })
}

/// `sweep serve`.
pub fn run(args: ServeArgs) -> Result<ExitCode> {
    let ip = parse_host(&args.host)?;
    let token = check_token(ip, &args.host, args.token.as_deref())?;
    let url = args.ledger.url();
    let reader = open_ledger(&url)?;
    let listener = bind(SocketAddr::new(ip, args.port))?;
    let local = listener.local_addr()?;
    let root = args.artifacts.root();
    let state = Arc::new(AppState::new(
        reader,
        root.clone(),
        token.clone(),
        ip.is_loopback(),
    ));
    let shown = match local.ip() {
        IpAddr::V4(v) if v.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), local.port())
        }
        _ => local,
    };
    println!(
        "serving http://{shown}/ (ledger {}, read-only; artifacts {}){}",
        store::redact(&url),
        root.display(),
        if token.is_some() {
            "; every request needs the token"
        } else {
            ""
        }
    );
    std::io::stdout().flush()?;
    super::serve(listener, state)?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_tokens() {
        assert!(parse_host("localhost").unwrap().is_loopback());
        assert!(parse_host("[::1]").unwrap().is_loopback());
        assert!(parse_host("example.org").is_err());
        let any = parse_host("0.0.0.0").unwrap();
        let err = check_token(any, "0.0.0.0", None).unwrap_err();
        assert!(format!("{err}").contains("--token"));
        assert!(check_token(any, "0.0.0.0", Some("short")).is_err());
        assert!(check_token(any, "0.0.0.0", Some("0123456789abcdef;")).is_err());
        assert_eq!(
            check_token(any, "0.0.0.0", Some("0123456789abcdef")).unwrap(),
            Some("0123456789abcdef".to_string())
        );
        let lo = parse_host("127.0.0.1").unwrap();
        assert_eq!(check_token(lo, "127.0.0.1", None).unwrap(), None);
    }

    #[test]
    fn port_in_use_names_the_flag() {
        let first = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let err = bind(first.local_addr().unwrap()).unwrap_err();
        assert!(err.downcast_ref::<UsageError>().is_some());
        let msg = format!("{err}");
        assert!(
            msg.contains("--port") && msg.contains("already in use"),
            "{msg}"
        );
    }
}
