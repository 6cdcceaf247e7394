//! `sweep bench-serve`: a bounded load of concurrent keep-alive clients on a running `sweep serve`
//! (issue 17): each client alternates the sweep page and its running-trials JSON; prints
//! requests/s and latency percentiles (bench/serve_load.sh sets it beside a training trial).

use anyhow::{bail, Context, Result};
use clap::Args;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[derive(Debug, Args)]
pub struct BenchServeArgs {
    /// The server, `HOST:PORT` (as `sweep serve` prints it).
    #[arg(long)]
    pub addr: String,
    /// The sweep whose page and JSON the clients fetch.
    #[arg(long)]
    pub sweep: String,
    /// Concurrent clients (one keep-alive connection each).
    #[arg(long, default_value_t = 50)]
    pub clients: usize,
    /// How long the load lasts (at most, with --until-idle).
    #[arg(long, default_value_t = 20.0)]
    pub seconds: f64,
    /// Requests per second per client (0: as fast as answers come, a closed loop).
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Wait for a running trial in the sweep, then load until none runs (or --seconds pass).
    #[arg(long)]
    pub until_idle: bool,
    /// Sent as `Authorization: Bearer TOKEN` when the server has one.
    #[arg(long, env = "SWEEP_SERVE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// One keep-alive connection.
struct Conn {
    stream: BufReader<TcpStream>,
    host: String,
    auth: String,
    /// Trials in the last running-trials JSON read (`"id":` occurrences).
    last_running: usize,
}

impl Conn {
    async fn open(addr: &str, token: Option<&str>) -> Result<Self> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream: BufReader::new(stream),
            host: addr.to_string(),
            auth: token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n")),
            last_running: 0,
        })
    }

    /// GET `path`; the status and body length (the body is read and dropped).
    async fn get(&mut self, path: &str) -> Result<(u16, usize)> {
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\n{}\r\n",
            self.host, self.auth
        );
        self.stream.get_mut().write_all(req.as_bytes()).await?;
        let mut line = String::new();
        self.stream.read_line(&mut line).await?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("bad status line {line:?}"))?;
        let mut len = None;
        loop {
            line.clear();
            if self.stream.read_line(&mut line).await? == 0 {
                bail!("connection closed in the headers");
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse::<usize>().ok();
                }
            }
        }
        let len = len.context("a response without Content-Length")?;
        let mut body = vec![0u8; len];
        self.stream.read_exact(&mut body).await?;
        if path.contains("/running") {
            self.last_running = body.windows(5).filter(|w| w == b"\"id\":").count();
        }
        Ok((status, len))
    }
}

/// What one client measured.
#[derive(Default)]
struct Tally {
    latencies: Vec<Duration>,
    errors: usize,
    bytes: usize,
}

async fn client(args: &BenchServeArgs, until: Instant, stop: &AtomicBool) -> Tally {
    let mut t = Tally::default();
    let seg = crate::serve::path_segment(&args.sweep);
    let paths = [format!("/sweep/{seg}"), format!("/api/sweep/{seg}/running")];
    let mut conn = None;
    let mut i = 0usize;
    let period = (args.rate > 0.0).then(|| Duration::from_secs_f64(1.0 / args.rate));
    let mut next = Instant::now();
    while Instant::now() < until && !stop.load(Ordering::Relaxed) {
        if let Some(p) = period {
            tokio::time::sleep_until(next.into()).await;
            next += p;
        }
        if conn.is_none() {
            conn = Conn::open(&args.addr, args.token.as_deref()).await.ok();
            if conn.is_none() {
                t.errors += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        let start = Instant::now();
        match c.get(&paths[i % 2]).await {
            Ok((200, n)) => {
                t.latencies.push(start.elapsed());
                t.bytes += n;
            }
            Ok(_) => t.errors += 1,
            Err(_) => {
                t.errors += 1;
                conn = None;
            }
        }
        i += 1;
    }
    t
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

/// How many trials of the sweep run now, from its JSON.
async fn running(conn: &mut Conn, path: &str) -> Result<usize> {
    let req = conn.get(path).await?;
    if req.0 != 200 {
        bail!("{path}: HTTP {}", req.0);
    }
    Ok(conn.last_running)
}

/// Waits until a trial of the sweep runs (up to `limit`); the sweep may not be recorded yet.
async fn wait_running(args: &BenchServeArgs, path: &str, limit: Duration) -> Result<()> {
    let t0 = Instant::now();
    loop {
        if let Ok(mut conn) = Conn::open(&args.addr, args.token.as_deref()).await {
            if running(&mut conn, path).await.is_ok_and(|n| n > 0) {
                return Ok(());
            }
        }
        if t0.elapsed() > limit {
            bail!("no trial of `{}` started within {limit:?}", args.sweep);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Raises `stop` once no trial of the sweep runs.
async fn watch_idle(args: Arc<BenchServeArgs>, path: String, stop: Arc<AtomicBool>) -> Result<()> {
    let mut conn = Conn::open(&args.addr, args.token.as_deref()).await?;
    while !stop.load(Ordering::Relaxed) {
        if running(&mut conn, &path).await? == 0 {
            stop.store(true, Ordering::Relaxed);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(())
}

/// User + system CPU time of this process so far.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage writes only into the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// `sweep bench-serve`.
pub fn run(args: BenchServeArgs) -> Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let api = format!(
        "/api/sweep/{}/running",
        crate::serve::path_segment(&args.sweep)
    );
    if args.until_idle {
        rt.block_on(wait_running(&args, &api, Duration::from_secs(600)))?;
    }
    let start = Instant::now();
    let until = start + Duration::from_secs_f64(args.seconds);
    let stop = Arc::new(AtomicBool::new(false));
    let tallies = rt.block_on(async {
        let args = Arc::new(args);
        if args.until_idle {
            tokio::spawn(watch_idle(args.clone(), api, stop.clone()));
        }
        let tasks: Vec<_> = (0..args.clients)
            .map(|_| {
                let a = args.clone();
                let stop = stop.clone();
                tokio::spawn(async move { client(&a, until, &stop).await })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await?);
        }
        anyhow::Ok((out, args.clients))
    })?;
    let (tallies, clients) = tallies;
    let secs = start.elapsed().as_secs_f64();
    let mut lat: Vec<Duration> = tallies.iter().flat_map(|t| t.latencies.clone()).collect();
    lat.sort();
    let errors: usize = tallies.iter().map(|t| t.errors).sum();
    let bytes: usize = tallies.iter().map(|t| t.bytes).sum();
    println!(
        "load: client CPU {:.1}s  clients {clients}  seconds {secs:.1}  requests {}  errors {errors}  requests/s {:.1}  MiB/s {:.2}  latency ms p50 {:.2} p99 {:.2} max {:.2}",
        cpu_seconds(),
        lat.len(),
        lat.len() as f64 / secs,
        bytes as f64 / secs / (1 << 20) as f64,
        percentile(&lat, 0.50),
        percentile(&lat, 0.99),
        percentile(&lat, 1.0),
    );
    Ok(ExitCode::SUCCESS)
}
