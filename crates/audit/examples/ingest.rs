//! Sustained ingest: how many decisions per second the audit writer stores, against the same
//! loop with the store replaced by a thread that receives and discards (the baseline).
//!
//! `cargo run --release -p warden-audit --example ingest [-- N [STORE]]` (default N 500000,
//! STORE a temporary file). Every decision must be stored (none dropped) for the figure to
//! count: the producer sends at full speed, and the figure is decisions committed per second
//! of wall time from the first send to the final commit.

use std::time::Instant;
use warden_audit::{AuditStore, AuditWriter, Verification, WriterConfig};
use warden_event::{Decision, Layer, Verdict};

fn decision(i: u64) -> Decision {
    let mut d = Decision::new(
        Layer::Exec,
        format!("pid {} (bash)", 1000 + i % 50),
        "/usr/bin/curl",
        "exec.deny",
        match i % 10 {
            0 => Verdict::Deny,
            _ => Verdict::Allow,
        },
        "curl is denied by exec.deny",
    )
    .with(
        "sha256",
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    )
    .with("latency_us", i % 300);
    d.session = "bench-session".into();
    d
}

/// CPU seconds this process has used (all threads).
fn cpu() -> f64 {
    // SAFETY: getrusage fills the struct.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a valid, writable rusage for getrusage to fill.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(u.ru_utime) + tv(u.ru_stime)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(500_000);
    let dir = std::env::temp_dir().join(format!("warden-ingest-{}", std::process::id()));
    let path = args
        .get(2)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| dir.join("audit.db"));
    let _ = std::fs::remove_file(&path);
    // Decisions are built before timing: both loops measure only the hand-over and what
    // follows it.
    let make = || (0..n).map(decision).collect::<Vec<_>>();

    // Baseline: the same loop into a bounded channel of the same capacity, drained by a
    // thread that discards each decision.
    let ds = make();
    let (tx, rx) = std::sync::mpsc::sync_channel::<Box<Decision>>(n as usize);
    let consumer = std::thread::spawn(move || {
        let mut c = 0u64;
        while let Ok(d) = rx.recv() {
            c += d.who.len() as u64;
        }
        c
    });
    let c0 = cpu();
    let t0 = Instant::now();
    for d in ds {
        let _ = tx.send(Box::new(d));
    }
    let base_send = t0.elapsed();
    drop(tx);
    let _ = consumer.join();
    let base = t0.elapsed();
    let base_cpu = cpu() - c0;

    // The store. The queue holds all N so nothing is dropped: the figure is the writer's
    // sustained rate (first record to last commit).
    let ds = make();
    let cfg = WriterConfig {
        capacity: n as usize,
        // Every decision a row: the figure is the store's write rate.
        allow_rows_per_session: u64::MAX,
        ..Default::default()
    };
    let w = AuditWriter::open(&path, cfg).expect("open store");
    let c0 = cpu();
    let t0 = Instant::now();
    for d in ds {
        w.record(d);
    }
    let send = t0.elapsed();
    let head = w.close().expect("close");
    let total = t0.elapsed();
    let store_cpu = cpu() - c0;
    let s = AuditStore::open_read_only(&path).expect("reopen");
    let stored = s
        .rows(&Default::default())
        .expect("rows")
        .iter()
        .filter(|r| r.kind == "decision")
        .count() as u64;
    let tv = Instant::now();
    let verified = match s.verify(&[]).expect("verify") {
        Verification::Intact { rows, .. } => format!(
            "intact, {rows} rows in {:.2}s ({:.0} rows/s)",
            tv.elapsed().as_secs_f64(),
            rows as f64 / tv.elapsed().as_secs_f64()
        ),
        b => format!("{b:?}"),
    };
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average: {}", load.trim());
    println!(
        "baseline, channel only: {n} decisions handed over in {:.3}s ({:.0}/s), drained in {:.3}s ({:.0}/s)",
        base_send.as_secs_f64(),
        n as f64 / base_send.as_secs_f64(),
        base.as_secs_f64(),
        n as f64 / base.as_secs_f64()
    );
    println!(
        "audit store: {n} decisions handed over in {:.3}s ({:.0}/s), {stored} stored and committed in {:.3}s = {:.0} decisions/s sustained",
        send.as_secs_f64(),
        n as f64 / send.as_secs_f64(),
        total.as_secs_f64(),
        stored as f64 / total.as_secs_f64()
    );
    println!(
        "CPU time (all threads): baseline {:.2} µs/decision, audit store {:.2} µs/decision = {:.0} decisions per CPU-second",
        base_cpu * 1e6 / n as f64,
        store_cpu * 1e6 / n as f64,
        n as f64 / store_cpu
    );
    println!(
        "store: {:.0} bytes/row; head {head}; verify: {verified}",
        size as f64 / stored.max(1) as f64
    );
    let _ = std::fs::remove_dir_all(&dir);
}
