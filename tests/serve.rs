//! `sweep serve` end to end: the real binary on a free port, spoken to over loopback. Security
//! (token, traversal, escaping, read-only), bad input (unknown names, port in use, unreadable
//! ledger) and, in headless Chromium, a running trial's curve growing without a reload.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};
use sweep::store::synth::{
    block_size_fixture, create_ledger, insert_sweep, SynthSweep, SynthTrial,
};
use sweep::store::TrialState;

mod common;

const HOSTILE: &str = "<script>alert(1)</script>\"><img src=x onerror=alert(2)>";
const ESCAPED: &str =
    "&lt;script&gt;alert(1)&lt;/script&gt;&quot;&gt;&lt;img src=x onerror=alert(2)&gt;";
const TOKEN: &str = "0123456789abcdef-test";

/// The block-size fixture (hostile text in title, error and samples) plus a sweep `live` whose
/// one trial is running, with hostile text in its row label.
fn ledger(dir: &Path) -> PathBuf {
    let path = dir.join("sweep.db");
    let store = create_ledger(&path).unwrap();
    let (sweep, trials) = block_size_fixture(HOSTILE);
    insert_sweep(store.as_ref(), &sweep, &trials).unwrap();
    let live = SynthSweep {
        name: "live".into(),
        title: format!("Live{HOSTILE}"),
        profile: "quick".into(),
        spec: serde_json::json!({}),
        ..Default::default()
    };
    let running = SynthTrial {
        label: serde_json::json!({ "note": HOSTILE }),
        config: serde_json::json!({"model": "gpt2-tiny", "seed": 1, "note": HOSTILE}),
        state: TrialState::Running,
        metrics: (1..=10)
            .map(|s| (s, "train".to_string(), 5.0 - 0.1 * s as f64))
            .collect(),
        ..Default::default()
    };
    insert_sweep(store.as_ref(), &live, &[running]).unwrap();
    path
}

/// A running `sweep serve`, killed on drop.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    /// Starts `sweep serve --port 0 ARGS` and waits for the URL it prints.
    fn start(db: &Path, artifacts: &Path, args: &[&str]) -> Server {
        let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("sweep"))
            .arg("serve")
            .arg("--db")
            .arg(db)
            .arg("--artifacts")
            .arg(artifacts)
            .args(["--port", "0"])
            .args(args)
            .env_remove("SWEEP_SERVE_TOKEN")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let hostport = line
            .split("http://")
            .nth(1)
            .and_then(|r| r.split('/').next())
            .unwrap_or_else(|| {
                let mut err = String::new();
                let _ = child.stderr.take().unwrap().read_to_string(&mut err);
                panic!("no URL printed: {line:?} {err}")
            });
        Server {
            child,
            addr: hostport.parse().unwrap(),
        }
    }

    fn get(&self, path: &str) -> Response {
        request(self.addr, "GET", path, &[])
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug)]
struct Response {
    status: u16,
    head: String,
    body: String,
}

/// One HTTP/1.1 request with `Connection: close`; the path goes on the wire as written.
fn request(addr: SocketAddr, method: &str, path: &str, headers: &[&str]) -> Response {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers
        .iter()
        .any(|h| h.to_ascii_lowercase().starts_with("host:"))
    {
        req.push_str(&format!("Host: {addr}\r\n"));
    }
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("Content-Length: 0\r\n\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Response {
        status,
        head: head.to_ascii_lowercase(),
        body: body.to_string(),
    }
}

#[test]
fn non_loopback_bind_needs_the_token_on_every_request() {
    let dir = tempfile::tempdir().unwrap();
    let db = ledger(dir.path());
    // Refused without a token: exit 2, the fix named.
    let out = std::process::Command::new(assert_cmd::cargo::cargo_bin("sweep"))
        .args(["serve", "--host", "0.0.0.0", "--port", "0", "--db"])
        .arg(&db)
        .env_remove("SWEEP_SERVE_TOKEN")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--token") && err.contains("SWEEP_SERVE_TOKEN"),
        "{err}"
    );

    let srv = Server::start(&db, dir.path(), &["--host", "0.0.0.0", "--token", TOKEN]);
    for path in [
        "/",
        "/sweep/block_size",
        "/api/sweep/live/running",
        "/trial/1",
        "/nope",
    ] {
        let r = srv.get(path);
        assert_eq!(r.status, 401, "{path} without a token");
        assert!(r.head.contains("www-authenticate: bearer"), "{}", r.head);
        assert!(
            !r.body.contains("Block size"),
            "ledger text leaked in a 401"
        );
    }
    let wrong = request(
        srv.addr,
        "GET",
        "/",
        &["Authorization: Bearer 0123456789abcdef-tesT"],
    );
    assert_eq!(wrong.status, 401, "a token that does not match");
    let bearer = format!("Authorization: Bearer {TOKEN}");
    let ok = request(srv.addr, "GET", "/sweep/block_size", &[&bearer]);
    assert_eq!(ok.status, 200);
    assert!(ok.body.contains("Block size (Table 4)"));
    // A browser: ?token= once sets an HttpOnly cookie, which then suffices.
    let first = srv.get(&format!("/?token={TOKEN}"));
    assert_eq!(first.status, 200);
    assert!(
        first.head.contains("set-cookie: sweep_token=") && first.head.contains("httponly"),
        "{}",
        first.head
    );
    let cookie = format!("Cookie: sweep_token={TOKEN}");
    assert_eq!(request(srv.addr, "GET", "/trial/1", &[&cookie]).status, 200);
    assert_eq!(
        request(srv.addr, "GET", "/", &["Cookie: sweep_token=nope"]).status,
        401
    );
}

#[test]
fn loopback_bind_answers_loopback_hosts_only() {
    let dir = tempfile::tempdir().unwrap();
    let db = ledger(dir.path());
    let srv = Server::start(&db, dir.path(), &[]);
    assert_eq!(srv.get("/").status, 200);
    // A page of another site that rebinds its name to 127.0.0.1 sends its own Host.
    let r = request(srv.addr, "GET", "/", &["Host: evil.example"]);
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r
        .head
        .contains("content-security-policy: default-src 'none'"));
}

#[test]
fn nothing_outside_the_artifacts_root_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let db = ledger(dir.path());
    let root = dir.path().join("artifacts");
    std::fs::create_dir_all(root.join("trials/abc")).unwrap();
    std::fs::write(
        root.join("trials/abc/trial.log"),
        "step 1 loss 5.0\n<b>x</b>\n",
    )
    .unwrap();
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret.txt"), "TOP SECRET").unwrap();
    std::os::unix::fs::symlink(&outside, root.join("trials/out")).unwrap();
    std::os::unix::fs::symlink(outside.join("secret.txt"), root.join("s.txt")).unwrap();
    let srv = Server::start(&db, &root, &[]);

    let ok = srv.get("/artifacts/trials/abc/trial.log");
    assert_eq!(ok.status, 200);
    assert_eq!(ok.body, "step 1 loss 5.0\n<b>x</b>\n");
    assert!(ok.head.contains("content-type: text/plain"), "{}", ok.head);
    assert!(ok.head.contains("x-content-type-options: nosniff"));
    for path in [
        "/artifacts/../../etc/passwd",
        "/artifacts/trials/../../outside/secret.txt",
        "/artifacts/%2e%2e/outside/secret.txt",
        "/artifacts/trials/%2E%2E/%2E%2E/outside/secret.txt",
        "/artifacts/..%2F..%2Fetc%2Fpasswd",
        "/artifacts//etc/passwd",
        "/artifacts/%2Fetc%2Fpasswd",
        "/artifacts/trials/out/secret.txt",
        "/artifacts/s.txt",
        "/artifacts/trials/abc",
        "/artifacts/trials%5C..%5C..%5Coutside%5Csecret.txt",
    ] {
        let r = srv.get(path);
        assert_eq!(r.status, 404, "{path}: {}", r.body);
        assert!(
            !r.body.contains("TOP SECRET") && !r.body.contains("root:"),
            "{path} leaked a file"
        );
    }
    // Still serving.
    assert_eq!(srv.get("/artifacts/trials/abc/trial.log").status, 200);
}

#[test]
fn ledger_text_is_escaped_on_every_page() {
    let dir = tempfile::tempdir().unwrap();
    let db = ledger(dir.path());
    let srv = Server::start(&db, dir.path(), &[]);
    let failed_id = 6; // block_size=32, the fixture's failed trial
    let running_id = 7; // the live sweep's trial
    for (path, expect) in [
        ("/", 1),
        ("/sweep/block_size", 4),
        ("/sweep/live", 2),
        (&format!("/trial/{failed_id}") as &str, 1),
        (&format!("/trial/{running_id}"), 0),
    ] {
        let r = srv.get(path);
        assert_eq!(r.status, 200, "{path}");
        assert!(!r.body.contains("<script>alert"), "{path}: raw script");
        assert!(!r.body.contains("<img"), "{path}: raw img");
        let n = r.body.matches(ESCAPED).count();
        assert!(n >= expect, "{path}: {n} escaped copies, expected {expect}");
        // The only script is the dashboard's own, from this origin.
        let scripts = r.body.matches("<script").count();
        assert!(scripts <= 1, "{path}: {scripts} scripts");
        assert!(r
            .head
            .contains("content-security-policy: default-src 'none'; script-src 'self'"));
    }
    // In the trial's resolved config (JSON text, then HTML-escaped).
    let running = srv.get(&format!("/trial/{running_id}"));
    assert!(running.body.contains(
        "&lt;script&gt;alert(1)&lt;/script&gt;\\&quot;&gt;&lt;img src=x onerror=alert(2)&gt;"
    ));
    let failed = srv.get(&format!("/trial/{failed_id}"));
    assert!(failed
        .body
        .contains(&format!("out of memory at step 2{ESCAPED}")));
    // JSON is data (escaped by JSON rules, read with textContent by the page).
    let api = srv.get("/api/sweep/live/running");
    assert_eq!(api.status, 200);
    assert!(api.head.contains("content-type: application/json"));
    let v: serde_json::Value = serde_json::from_str(&api.body).unwrap();
    assert_eq!(
        v["trials"][0]["name"],
        format!("#{running_id} note={HOSTILE}")
    );
    assert_eq!(v["trials"][0]["points"], 10);
}

#[test]
fn the_server_cannot_write_the_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let db = ledger(dir.path());
    // Name, length, content hash and modification time of the ledger's files.
    let files = |d: &Path| -> Vec<(String, usize, u64, std::time::SystemTime)> {
        let mut v: Vec<_> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().contains("sweep.db"))
            .map(|p| {
                let m = std::fs::metadata(&p).unwrap();
                let bytes = std::fs::read(&p).unwrap();
                let mut h = std::collections::hash_map::DefaultHasher::new();
                std::hash::Hash::hash(&bytes, &mut h);
                let hash = std::hash::Hasher::finish(&h);
                (
                    p.display().to_string(),
                    bytes.len(),
                    hash,
                    m.modified().unwrap(),
                )
            })
            .collect();
        v.sort();
        v
    };
    // The fixture's writer closes its connections in the background (the last one checkpoints
    // the WAL): wait until the files are still and the WAL is folded in.
    let settled = || {
        for _ in 0..100 {
            let a = files(dir.path());
            std::thread::sleep(Duration::from_millis(200));
            let wal_empty = a.iter().all(|f| !f.0.ends_with("-wal") || f.1 == 0);
            if wal_empty && a == files(dir.path()) {
                return a;
            }
        }
        panic!("the fixture ledger never settled")
    };
    let before = settled();
    let srv = Server::start(&db, dir.path(), &[]);
    for path in [
        "/",
        "/sweep/block_size",
        "/sweep/live",
        "/trial/1",
        "/api/sweep/live/running",
    ] {
        assert_eq!(srv.get(path).status, 200, "{path}");
        for method in ["POST", "PUT", "DELETE", "PATCH"] {
            let r = request(srv.addr, method, path, &[]);
            assert_eq!(r.status, 405, "{method} {path}");
        }
    }
    drop(srv);
    // SQLite's readers of a WAL ledger open (and may create) its -shm index and an empty -wal;
    // what a write would change is the database file or the WAL's content.
    let after = files(dir.path());
    let db_file = |v: &[(String, usize, u64, std::time::SystemTime)]| {
        v.iter().find(|f| f.0.ends_with("sweep.db")).cloned()
    };
    assert_eq!(db_file(&after), db_file(&before), "the ledger file changed");
    for f in &after {
        assert!(
            !f.0.ends_with("-wal") || f.1 == 0,
            "a write was logged: {f:?}"
        );
    }
}

#[test]
fn bad_requests_get_clear_pages_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let db = ledger(dir.path());
    let srv = Server::start(&db, dir.path(), &[]);
    let r = srv.get("/sweep/nope");
    assert_eq!(r.status, 404);
    assert!(
        r.body
            .contains("unknown sweep `nope`; known sweeps: block_size, live"),
        "{}",
        r.body
    );
    assert_eq!(srv.get("/api/sweep/nope/running").status, 404);
    let r = srv.get("/trial/99999");
    assert_eq!(r.status, 404);
    assert!(r.body.contains("no trial 99999"));
    assert_eq!(srv.get("/trial/abc").status, 404);
    assert_eq!(srv.get("/no/such/page").status, 404);
    // A sweep name with characters that need encoding reaches the lookup intact.
    let r = srv.get("/sweep/%3Cb%3Ex%3C%2Fb%3E");
    assert_eq!(r.status, 404);
    assert!(
        r.body.contains("unknown sweep `&lt;b&gt;x&lt;/b&gt;`"),
        "{}",
        r.body
    );
    let page = srv.get("/");
    assert_eq!(page.status, 200);
    assert!(page.body.contains("href=\"/sweep/block_size\""));
    assert!(
        page.body.contains("1 running"),
        "progress of the live sweep"
    );
}

fn serve_cmd(args: &[&str]) -> std::process::Output {
    std::process::Command::new(assert_cmd::cargo::cargo_bin("sweep"))
        .arg("serve")
        .args(args)
        .env_remove("SWEEP_SERVE_TOKEN")
        .output()
        .unwrap()
}

#[test]
fn port_in_use_and_unreadable_ledgers_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let db = ledger(dir.path());
    let db = db.to_str().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = serve_cmd(&["--db", db, "--port", &port]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("--port {port}")) && err.contains("already in use"),
        "{err}"
    );

    let missing = dir.path().join("none.db");
    let out = serve_cmd(&["--db", missing.to_str().unwrap(), "--port", "0"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("no ledger database at"), "{err}");
    assert!(!missing.exists(), "a read-only server created a ledger");

    let junk = dir.path().join("junk.db");
    std::fs::write(
        &junk,
        "this is not a database, just some bytes ".repeat(200),
    )
    .unwrap();
    let out = serve_cmd(&["--db", junk.to_str().unwrap(), "--port", "0"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("cannot read the ledger") && err.contains("--db"),
        "{err}"
    );

    let out = serve_cmd(&["--db", db, "--host", "example.org", "--port", "0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--host example.org"));
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn chromium() -> PathBuf {
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        if let Ok(out) = std::process::Command::new("which").arg(name).output() {
            let p = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if out.status.success() && !p.is_empty() {
                return PathBuf::from(p);
            }
        }
    }
    panic!("chromium not found: this test needs it (apt-get install -y chromium)")
}

/// Headless Chromium on `url` with its own profile directory.
fn headless(browser: &Path, profile: &Path, url: &str, extra: &[&str]) -> std::process::Output {
    std::process::Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
        ])
        .arg("--disable-background-networking")
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .output()
        .expect("running chromium")
}

/// The number in `attr="N"` after the first `anchor` in `dom`.
fn attr_after(dom: &str, anchor: &str, attr: &str) -> Option<usize> {
    let rest = &dom[dom.find(anchor)?..];
    let v = rest.split(&format!("{attr}=\"")).nth(1)?;
    v.split('"').next()?.parse().ok()
}

/// A process group (a `sweep run` and its trials), killed on drop.
struct Group(Child);

impl Drop for Group {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the process group this test created.
        unsafe { libc::kill(-(self.0.id() as i32), libc::SIGKILL) };
        let _ = self.0.wait();
    }
}

/// A real trial trains while headless Chromium shows its sweep page: the page's own script
/// grows the trial's curve (more points than the page was rendered with) without a reload.
#[test]
#[ignore = "needs Chromium (.ci/run installs it)"]
fn live_curve_grows_in_headless_chromium() {
    let browser = chromium();
    let p = common::Project::new();
    let file = p.write(
        "exp/live.toml",
        r#"[sweep]
name = "live"
title = "Live <b>dashboard</b>"
[base]
model = "gpt2-tiny"
tokenizer = "bpe-512"
data = { sources = ["data/x.tsv"], categories = ["cs.CL"] }
block_size = 32
batch_size = 4
grad_accum = 1
learning_rate = 1e-3
weight_decay = 0.0
epochs = 50
max_steps = 20000
eval_every = 100
eval_tokens = 2000
"#,
    );
    let _run = {
        use std::os::unix::process::CommandExt;
        let mut c = p.std_cmd();
        let log = std::fs::File::create(p.path().join("run.log")).unwrap();
        c.arg("run")
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(log)
            .process_group(0);
        Group(c.spawn().unwrap())
    };
    let db = p.path().join("results/sweep.db");
    let run_log = || std::fs::read_to_string(p.path().join("run.log")).unwrap_or_default();
    // The file appears before its tables: wait until the sweep is recorded in it.
    wait_for("the sweep in the ledger", Duration::from_secs(120), || {
        assert!(
            !run_log().contains("error"),
            "sweep run failed: {}",
            run_log()
        );
        db.exists()
            && sweep::store::open_read_only(db.to_str().unwrap())
                .ok()
                .and_then(|r| r.sweep_by_name("live").ok().flatten())
                .is_some()
    });
    let srv = Server::start(&db, &p.path().join("results"), &[]);
    wait_for(
        "train rows of the running trial",
        Duration::from_secs(300),
        || {
            let r = srv.get("/api/sweep/live/running");
            serde_json::from_str::<serde_json::Value>(&r.body)
                .ok()
                .and_then(|v| v["trials"][0]["points"].as_u64())
                .is_some_and(|n| n >= 2)
        },
    );
    let profile = p.path().join("chrome-profile");
    let url = format!("http://{}/sweep/live", srv.addr);
    let chrome = |extra: &[&str]| headless(&browser, &profile, &url, extra);
    // Virtual time stands still while the page's long poll waits for new rows, so 12 s of page
    // time covers several real updates.
    let out = chrome(&["--virtual-time-budget=12000", "--dump-dom"]);
    let dom = String::from_utf8_lossy(&out.stdout);
    let card = "class=\"live-trial\"";
    let initial = attr_after(&dom, card, "data-initial-points").expect("a live card in the DOM");
    let now = attr_after(&dom, card, "data-points").unwrap();
    let updates = attr_after(&dom, "id=\"live\"", "data-updates").unwrap_or(0);
    eprintln!("live card: {initial} points at render, {now} after {updates} updates");
    if let Ok(shot) = std::env::var("SWEEP_SERVE_SCREENSHOT") {
        chrome(&[
            "--virtual-time-budget=6000",
            "--window-size=1200,900",
            "--hide-scrollbars",
            &format!("--screenshot={shot}"),
        ]);
    }
    assert!(
        updates >= 1,
        "the page never updated itself: {}",
        &dom[..dom.len().min(3000)]
    );
    assert!(
        now > initial,
        "the curve did not grow: {initial} -> {now} points after {updates} updates"
    );
    assert!(dom.contains("<polyline class=\"train\" points=\""));
    assert!(
        !dom.contains("<b>dashboard</b>"),
        "the sweep title was not escaped"
    );
}

/// Every value of `attr="..."` in `html`, in order.
fn attr_values<'a>(html: &'a str, attr: &str) -> Vec<&'a str> {
    html.split(&format!(" {attr}=\""))
        .skip(1)
        .filter_map(|v| v.split('"').next())
        .collect()
}

/// The overlaid chart of the running trials' validation loss, as headless Chromium's page script
/// keeps it: one line per running trial on shared axes, each in its own colour, and a legend
/// naming each trial's axis values, including trials that started after the page was rendered.
/// The running trials are synthetic (a writer thread records them and their validation rows),
/// so the page sees several trials at once without training any.
#[test]
#[ignore = "needs Chromium (.ci/run installs it)"]
fn the_overlay_compares_running_trials_in_headless_chromium() {
    use sweep::store::{NewMetric, NewTrial};
    let browser = chromium();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sweep.db");
    let store = create_ledger(&db).unwrap();
    // Both splits' loss at a step; a trial with a larger learning rate is lower.
    let loss = |step: i64, lr: f64| 6.0 - lr * 100.0 - step as f64 / 100.0;
    let trial = |lr: f64| SynthTrial {
        label: serde_json::json!({ "learning_rate": lr }),
        config: serde_json::json!({ "model": "gpt2-tiny", "learning_rate": lr }),
        state: TrialState::Running,
        metrics: [10, 20]
            .iter()
            .flat_map(|&s| ["train", "valid"].map(|split| (s, split.to_string(), loss(s, lr))))
            .collect(),
        ..Default::default()
    };
    let sweep = SynthSweep {
        name: "ov".into(),
        title: "Overlay".into(),
        spec: serde_json::json!({}),
        ..Default::default()
    };
    let sweep_id = insert_sweep(store.as_ref(), &sweep, &[trial(0.001), trial(0.003)]).unwrap();
    let srv = Server::start(&db, dir.path(), &[]);
    // While the page is open, a new trial starts every 1.5 s and every running trial records a
    // train and a validation row every 0.5 s: some trials start after the page was rendered. A
    // trial is running only once it has two rows of each split, so every card the server renders
    // has `data-initial-points` >= 1 and every line has two points or more.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let rows = |step: i64, lr: f64| {
                ["train", "valid"].map(|split| NewMetric {
                    step,
                    epoch: 0.0,
                    split: split.into(),
                    loss: loss(step, lr),
                    ppl: loss(step, lr).exp(),
                    tokens_seen: step * 128,
                    lr: 1e-3,
                    tokens_per_s: 1000.0,
                })
            };
            let mut ids: Vec<(i64, f64)> = Vec::new();
            let mut step = 30;
            for tick in 0..80 {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                if tick % 3 == 0 && ids.len() < 8 {
                    let lr = 0.01 + ids.len() as f64 * 0.002;
                    let new = NewTrial {
                        hash: format!("ov-late-{}", ids.len()),
                        config: serde_json::json!({ "model": "gpt2-tiny", "learning_rate": lr }),
                        label: serde_json::json!({ "learning_rate": lr }),
                        is_baseline: false,
                    };
                    let id = store
                        .append_trial(sweep_id, 2 + ids.len() as i64, &new)
                        .unwrap()
                        .expect("appended");
                    store.insert_metrics(id, &rows(step - 5, lr)).unwrap();
                    store.insert_metrics(id, &rows(step, lr)).unwrap();
                    store.claim_trial(id, "w2", "cpu").unwrap();
                    ids.push((id, lr));
                }
                for &(id, lr) in &ids {
                    store.insert_metrics(id, &rows(step, lr)).unwrap();
                }
                step += 10;
                std::thread::sleep(Duration::from_millis(500));
            }
        })
    };
    let url = format!("http://{}/sweep/ov", srv.addr);
    let profile = dir.path().join("chrome-profile");
    let out = headless(
        &browser,
        &profile,
        &url,
        &["--virtual-time-budget=15000", "--dump-dom"],
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    let updates = attr_after(&dom, "id=\"live\"", "data-updates").unwrap_or(0);
    assert!(
        updates >= 1,
        "the page never updated itself: {}",
        &dom[..dom.len().min(3000)]
    );
    let start = dom
        .find("class=\"live-overlay\"")
        .expect("the overlay in the DOM");
    let fig = &dom[start..start + dom[start..].find("</figure>").expect("the figure's end")];
    assert!(
        !fig[..fig.find('>').unwrap()].contains("hidden"),
        "shown: {fig}"
    );
    let cards = attr_values(&dom, "data-trial");
    let lines: Vec<&str> = fig.split("<polyline").skip(1).collect();
    let legend: Vec<&str> = fig.split("<li").skip(1).collect();
    // One line and one legend entry per running trial, each line in its own colour.
    let card_count = dom.matches("class=\"live-trial\"").count();
    assert!(
        card_count >= 3,
        "trials started while the page was open: {card_count}"
    );
    assert_eq!(
        (lines.len(), legend.len()),
        (card_count, card_count),
        "{fig}"
    );
    let colours: std::collections::BTreeSet<&str> = lines
        .iter()
        .flat_map(|l| attr_values(l, "stroke"))
        .collect();
    assert_eq!(colours.len(), card_count, "one colour per trial: {fig}");
    assert!(lines
        .iter()
        .all(|l| attr_values(l, "points")[0].contains(' ')));
    // A card the script made (`data-initial-points="0"`) belongs to a trial that started after
    // the page was rendered; the script drew its line and named it in the legend.
    let late = dom
        .split("<div class=\"live-trial\"")
        .skip(1)
        .find(|c| c.contains("data-initial-points=\"0\""))
        .and_then(|c| attr_values(c, "data-trial").first().copied())
        .unwrap_or_else(|| panic!("no trial started after the page was rendered: {cards:?}"));
    let entry = legend
        .iter()
        .find(|l| attr_values(l, "data-trial").first() == Some(&late))
        .unwrap_or_else(|| panic!("no legend entry for trial {late}: {fig}"));
    assert!(
        entry.contains("learning_rate=0.01"),
        "the axis values: {entry}"
    );
    assert!(
        fig.contains(&format!("<polyline data-trial=\"{late}\"")),
        "{fig}"
    );
    for name in ["learning_rate=0.001", "learning_rate=0.003"] {
        assert!(fig.contains(name), "{name} in the legend: {fig}");
    }
}

/// The same server over a PostgreSQL ledger (through the same read-only `Reader`): pages render,
/// ledger text is escaped, writes are 405, and the server's session is read-only.
#[test]
#[ignore = "needs PostgreSQL: SWEEP_TEST_PG_URL (.ci/run starts it: scripts/ci-cluster-services.sh)"]
fn serves_a_postgres_ledger_read_only() {
    let base = std::env::var("SWEEP_TEST_PG_URL").expect(
        "SWEEP_TEST_PG_URL is not set: this test needs PostgreSQL (start it with \
         `. scripts/ci-cluster-services.sh`, as .ci/run does)",
    );
    let url = sweep::store::postgres::scratch_database(&base, "serve").unwrap();
    {
        let store = sweep::store::open(&url).unwrap();
        let (sweep, trials) = block_size_fixture(HOSTILE);
        insert_sweep(store.as_ref(), &sweep, &trials).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("sweep"))
        .args(["serve", "--port", "0", "--db", &url])
        .arg("--artifacts")
        .arg(dir.path())
        .env_remove("SWEEP_SERVE_TOKEN")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let srv = Server {
        addr: line
            .split("http://")
            .nth(1)
            .and_then(|r| r.split('/').next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no URL printed: {line:?}")),
        child,
    };
    assert!(
        !line.contains("sweep:sweep@"),
        "the password was printed: {line}"
    );
    let page = srv.get("/sweep/block_size");
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains(ESCAPED) && !page.body.contains("<script>alert"));
    assert_eq!(srv.get("/").status, 200);
    assert_eq!(
        request(srv.addr, "POST", "/sweep/block_size", &[]).status,
        405
    );
    let before = sweep::store::open_read_only(&url)
        .unwrap()
        .sweeps()
        .unwrap();
    assert_eq!(srv.get("/trial/1").status, 200);
    assert_eq!(
        sweep::store::open_read_only(&url)
            .unwrap()
            .sweeps()
            .unwrap(),
        before
    );
}
