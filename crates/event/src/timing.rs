//! Start-up phase timing for profiling (`WARDEN_TIMING=1`): each `mark` prints the time since
//! the process started (or since the supervisor started, in a forked child) on stderr. Off,
//! a mark costs one relaxed atomic load. `WARDEN_TIMING=abs` prints `CLOCK_MONOTONIC` instead
//! (seconds), to line marks up with `perf record -k mono` samples.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

static STATE: AtomicU8 = AtomicU8::new(0); // 0 unknown, 1 off, 2 on, 3 on (absolute)
static START: OnceLock<Instant> = OnceLock::new();

/// Call first thing in `main`: fixes time zero (inherited by forked children).
pub fn start() {
    let v = std::env::var_os("WARDEN_TIMING");
    let state = match v.as_ref().and_then(|v| v.to_str()) {
        Some("1") => 2,
        Some("abs") => 3,
        _ => 1,
    };
    let on = state > 1;
    STATE.store(state, Ordering::Relaxed);
    if on {
        let _ = START.set(Instant::now());
    }
}

pub fn enabled() -> bool {
    STATE.load(Ordering::Relaxed) >= 2
}

/// Prints `warden-timing: <ms> <pid> <what>` when timing is on.
pub fn mark(what: &str) {
    if !enabled() {
        return;
    }
    if STATE.load(Ordering::Relaxed) == 3 {
        let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
        let line = format!(
            "warden-timing: {}.{:06} s {:>7} {what}\n",
            t.tv_sec,
            t.tv_nsec / 1000,
            std::process::id()
        );
        use std::io::Write;
        let _ = std::io::stderr().write_all(line.as_bytes());
        return;
    }
    if let Some(t0) = START.get() {
        let ms = t0.elapsed().as_secs_f64() * 1000.0;
        // One write(2): safe enough after fork (no allocation-free guarantee needed here,
        // profiling only).
        let line = format!(
            "warden-timing: {ms:8.2} ms {:>7} {what}\n",
            std::process::id()
        );
        use std::io::Write;
        let _ = std::io::stderr().write_all(line.as_bytes());
    }
}
