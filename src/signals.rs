//! Stop requests from signals (SIGINT, SIGTERM, SIGUSR1): the one handler of every long-running
//! command (`sweep run`, `sweep worker`, `sweep trial run`, `sweep train`).
//!
//! The handler counts *requests*, not signals: signals within a second of the request's first one
//! are the same request, because one stop reaches a process several ways (a terminal's Ctrl-C goes
//! to the whole process group and `sweep run` forwards it; `timeout` signals its child and then
//! its process group; Slurm's `--signal=B:USR1` reaches the batch shell and `exec`ed trial). The
//! first request asks for a clean stop (checkpoint, then exit 130); a later one escalates:
//! [`OnSecond::Exit`] ends the process at once (a trial, which then resumes from its last
//! checkpoint), [`OnSecond::Count`] leaves it to the caller (a parent that kills its children).

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What a second stop request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnSecond {
    /// `_exit(130)` in the handler.
    Exit,
    /// Only counted; see [`requests`].
    Count,
}

static REQUESTS: AtomicUsize = AtomicUsize::new(0);
static REQUEST_MS: AtomicU64 = AtomicU64::new(0);
static LAST_SIGNAL: AtomicI32 = AtomicI32::new(0);
static EXIT_ON_SECOND: AtomicBool = AtomicBool::new(false);

/// Signals closer than this to a request's first signal belong to that request.
const SAME_REQUEST_MS: u64 = 1000;

fn monotonic_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime is async-signal-safe and writes only into `ts`.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

extern "C" fn on_signal(sig: libc::c_int) {
    let now = monotonic_ms().max(1);
    let first = REQUEST_MS.load(Ordering::SeqCst);
    if first != 0 && now.saturating_sub(first) <= SAME_REQUEST_MS {
        return;
    }
    REQUEST_MS.store(now, Ordering::SeqCst);
    LAST_SIGNAL.store(sig, Ordering::SeqCst);
    let n = REQUESTS.fetch_add(1, Ordering::SeqCst) + 1;
    if n >= 2 && EXIT_ON_SECOND.load(Ordering::SeqCst) {
        // SAFETY: _exit is async-signal-safe.
        unsafe { libc::_exit(130) };
    }
}

/// Installs the handler for SIGINT, SIGTERM and SIGUSR1 (Slurm's warning before a time limit or
/// preemption, `--signal=B:USR1@120`).
pub fn install(on_second: OnSecond) {
    EXIT_ON_SECOND.store(on_second == OnSecond::Exit, Ordering::SeqCst);
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGUSR1] {
        // SAFETY: the handler only touches atomics (and _exit).
        unsafe {
            libc::signal(
                sig,
                on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
            );
        }
    }
}

/// Stop requests so far.
pub fn requests() -> usize {
    REQUESTS.load(Ordering::SeqCst)
}

/// The signal that made the latest request, by name (`SIGINT` is a Ctrl-C).
pub fn last_signal_name() -> &'static str {
    match LAST_SIGNAL.load(Ordering::SeqCst) {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        libc::SIGUSR1 => "SIGUSR1",
        _ => "a signal",
    }
}

/// Installs the handler and returns a flag that is raised by the first stop request (the
/// trainer's cancel flag: it checkpoints and stops).
pub fn cancel_flag(on_second: OnSecond) -> Arc<AtomicBool> {
    install(on_second);
    let flag = Arc::new(AtomicBool::new(false));
    let raised = flag.clone();
    std::thread::spawn(move || loop {
        if requests() > 0 {
            raised.store(true, Ordering::SeqCst);
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    });
    flag
}

/// Sends `sig` to a process (our own child).
pub fn send(pid: u32, sig: libc::c_int) {
    // SAFETY: plain kill(2).
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Signals of one stop (a process-group Ctrl-C plus a forwarded one, or `timeout`'s two
    /// SIGTERMs) count once; a signal after the window is a second request.
    #[test]
    fn signals_within_a_second_are_one_request() {
        install(OnSecond::Count);
        let before = requests();
        // SAFETY: raising a handled signal in our own process.
        unsafe {
            libc::raise(libc::SIGUSR1);
            libc::raise(libc::SIGTERM);
        }
        assert_eq!(requests(), before + 1);
        assert_eq!(last_signal_name(), "SIGUSR1");
        std::thread::sleep(Duration::from_millis(SAME_REQUEST_MS + 100));
        // SAFETY: as above.
        unsafe { libc::raise(libc::SIGTERM) };
        assert_eq!(requests(), before + 2);
        assert_eq!(last_signal_name(), "SIGTERM");
    }
}
