use super::*;
use std::path::PathBuf;
use warden_event::{Decision, Layer, Verdict};

struct Tmp(PathBuf);
impl Tmp {
    fn new(name: &str) -> Tmp {
        let d = std::env::temp_dir().join(format!("warden-audit-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Tmp(d)
    }
    fn db(&self) -> PathBuf {
        self.0.join("audit.db")
    }
}
impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn deny(i: usize) -> Decision {
    let mut d = Decision::new(
        Layer::Exec,
        format!("pid {i}"),
        "/usr/bin/curl",
        "exec.deny",
        Verdict::Deny,
        "denied",
    );
    d.session = "s1".into();
    d.with("sha256", "ab".repeat(32))
}

fn intact(v: &Verification) -> (u64, Head) {
    match v {
        Verification::Intact { rows, head, .. } => (*rows, head.clone()),
        b => panic!("expected intact, got {b:?}"),
    }
}

fn broken(v: &Verification) -> (i64, String) {
    match v {
        Verification::Broken { seq, problem, .. } => (*seq, problem.clone()),
        i => panic!("expected broken, got {i:?}"),
    }
}

fn fill(path: &std::path::Path, n: usize) -> Head {
    let mut s = AuditStore::open(path).unwrap();
    let items: Vec<Item> = (0..n)
        .map(|i| Item::Row(row::decision_row(deny(i))))
        .collect();
    s.append(&items).unwrap()
}

#[test]
fn a_new_store_has_a_genesis_row_and_verifies() {
    let t = Tmp::new("genesis");
    let s = AuditStore::open(&t.db()).unwrap();
    let (rows, head) = intact(&s.verify(&[]).unwrap());
    assert_eq!((rows, head.seq), (1, 1));
    let r = s.rows(&Filter::default()).unwrap();
    assert_eq!(r[0].kind, "genesis");
    assert_eq!(r[0].prev_hash, canon::ZERO_HASH);
    // Reopening does not add a second genesis.
    drop(s);
    let s = AuditStore::open(&t.db()).unwrap();
    assert_eq!(s.rows(&Filter::default()).unwrap().len(), 1);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(t.db()).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn stored_hashes_match_the_canonical_recomputation() {
    let t = Tmp::new("recompute");
    let h = fill(&t.db(), 10);
    let s = AuditStore::open_read_only(&t.db()).unwrap();
    let (rows, head) = intact(&s.verify(std::slice::from_ref(&h)).unwrap());
    assert_eq!(rows, 11);
    assert_eq!(head, h);
    let r = s.rows(&Filter::default()).unwrap();
    for w in r.windows(2) {
        assert_eq!(w[1].prev_hash, w[0].hash);
    }
    // The row as read back hashes to its stored hash through the typed path as well.
    let x = &r[3];
    let nr = canon::NewRow {
        kind: canon::kind::DECISION,
        origin: canon::origin::WARDEN,
        ts_ms: x.ts_ms,
        session: x.session.clone(),
        layer: x.layer.clone(),
        verdict: x.verdict.clone(),
        who: x.who.clone(),
        what: x.what.clone(),
        rule: x.rule.clone(),
        reason: x.reason.clone(),
        sha256: x.sha256.clone(),
        host: x.host.clone(),
        port: x.port,
        tool: x.tool.clone(),
        claimed_verdict: x.claimed_verdict.clone(),
        claimed_ts_ms: x.claimed_ts_ms,
        claimed_layer: x.claimed_layer.clone(),
        extra: x.extra.clone(),
    };
    assert_eq!(nr.hash(x.seq, &x.prev_hash), x.hash);
}

fn tamper(path: &std::path::Path, sql: &str) {
    let c = rusqlite::Connection::open(path).unwrap();
    c.execute_batch(sql).unwrap();
}

#[test]
fn edits_deletions_reorders_and_truncation_are_found_at_their_row() {
    let cases: &[(&str, &str, i64, &str)] = &[
        (
            "edit",
            "UPDATE events SET verdict = 'allow' WHERE seq = 5",
            5,
            "edited",
        ),
        (
            "delete",
            "DELETE FROM events WHERE seq = 5",
            6,
            "row 5 is missing",
        ),
        (
            "reorder",
            "UPDATE events SET seq = -1 WHERE seq = 5; UPDATE events SET seq = 5 WHERE seq = 6; \
             UPDATE events SET seq = 6 WHERE seq = -1;",
            5,
            "does not link to row 4",
        ),
        (
            "truncate",
            "DELETE FROM events WHERE seq > 8",
            9,
            "truncated",
        ),
        (
            "head",
            "DELETE FROM events WHERE seq > 8; DELETE FROM heads",
            9,
            "head record is missing",
        ),
        (
            "start",
            "DELETE FROM events WHERE seq < 3",
            3,
            "deleted from the start",
        ),
    ];
    for (name, sql, at, what) in cases {
        let t = Tmp::new(&format!("tamper-{name}"));
        fill(&t.db(), 10);
        tamper(&t.db(), sql);
        let s = AuditStore::open_read_only(&t.db()).unwrap();
        let (seq, problem) = broken(&s.verify(&[]).unwrap());
        assert_eq!(seq, *at, "{name}: {problem}");
        assert!(problem.contains(what), "{name}: {problem}");
    }
}

#[test]
fn an_anchor_catches_a_rewritten_tail() {
    let t = Tmp::new("anchor");
    let h = fill(&t.db(), 5);
    // Truncate and fix up the head record: invisible without an anchor.
    tamper(
        &t.db(),
        "DELETE FROM events WHERE seq > 4; UPDATE heads SET seq = 4, hash = (SELECT hash FROM events WHERE seq = 4)",
    );
    let s = AuditStore::open_read_only(&t.db()).unwrap();
    intact(&s.verify(&[]).unwrap());
    let (seq, problem) = broken(&s.verify(&[h]).unwrap());
    assert_eq!(seq, 6);
    assert!(problem.contains("past the chain's end"), "{problem}");
}

#[test]
fn pruning_leaves_a_checkpoint_the_chain_verifies_from() {
    let t = Tmp::new("prune");
    fill(&t.db(), 20);
    let mut s = AuditStore::open(&t.db()).unwrap();
    // Age: everything is younger than a day, so nothing goes.
    let ret = Retention {
        retention_days: Some(1),
        max_mb: None,
    };
    assert_eq!(s.prune(&ret, time::now_ms()).unwrap(), None);
    // Two days later, all of it goes; the checkpoint remains.
    let later = time::now_ms() + 2 * 86_400_000;
    let p = s.prune(&ret, later).unwrap().unwrap();
    assert_eq!((p.rows, p.through_seq, p.checkpoint_seq), (21, 21, 22));
    let (rows, head) = intact(&s.verify(&[]).unwrap());
    assert_eq!((rows, head.seq), (1, 22));
    s.append(&[Item::Row(row::decision_row(deny(0)))]).unwrap();
    intact(&s.verify(&[]).unwrap());
    // Deleting more from the start than the checkpoint records is caught.
    drop(s);
    tamper(&t.db(), "DELETE FROM events WHERE seq = 22");
    let s = AuditStore::open_read_only(&t.db()).unwrap();
    let (seq, problem) = broken(&s.verify(&[]).unwrap());
    assert_eq!(seq, 23, "{problem}");
}

#[test]
fn pruning_by_size_keeps_the_newest_rows() {
    let t = Tmp::new("prune-size");
    let mut s = AuditStore::open(&t.db()).unwrap();
    let big: Vec<Item> = (0..3000)
        .map(|i| {
            let mut d = deny(i);
            d.reason = "x".repeat(1000);
            Item::Row(row::decision_row(d))
        })
        .collect();
    s.append(&big).unwrap();
    let ret = Retention {
        retention_days: None,
        max_mb: Some(1),
    };
    let p = s.prune(&ret, time::now_ms()).unwrap().unwrap();
    assert!(p.rows > 1000 && p.rows < 3001, "{p:?}");
    let (rows, head) = intact(&s.verify(&[]).unwrap());
    assert_eq!(head.seq, 3002);
    assert_eq!(rows as i64, 3002 - p.through_seq);
}

#[test]
fn the_writer_records_sessions_decisions_and_claims() {
    let t = Tmp::new("writer");
    let w = AuditWriter::open(&t.db(), WriterConfig::default()).unwrap();
    w.session_start(SessionInfo {
        id: "s1".into(),
        agent: "claude".into(),
        profile: "claude".into(),
        workspace: "/w".into(),
        command: "claude".into(),
        pid: Some(std::process::id() as i64),
        start_ms: time::now_ms(),
    })
    .unwrap();
    for i in 0..100 {
        w.record(deny(i));
    }
    let forged = deny(7).to_json();
    assert!(w.record_claim("s1", Layer::Gate, forged.as_bytes()));
    assert!(w.record_claim("s1", Layer::Gate, b"\x1b[31mjunk"));
    let sessions_running = {
        w.flush().unwrap();
        AuditStore::open_read_only(&t.db())
            .unwrap()
            .sessions()
            .unwrap()
    };
    assert_eq!(sessions_running[0].state, "running");
    w.session_end(SessionEnd {
        id: "s1".into(),
        end_ms: time::now_ms(),
        exit_status: Some(0),
        reason: "exited".into(),
    })
    .unwrap();
    // Asked with the close, right after the end row: answered once it is committed, on the
    // writer's connection, and the same as a reader's.
    let (from_writer, head) = w.close_with_summary(Some("s1"));
    let (from_writer, head) = (from_writer.unwrap().unwrap(), head.unwrap());
    let s = AuditStore::open_read_only(&t.db()).unwrap();
    assert_eq!(from_writer, s.session_summary("s1").unwrap());
    assert_eq!(intact(&s.verify(&[]).unwrap()).1, head);
    let ss = s.sessions().unwrap();
    assert_eq!(ss.len(), 1);
    assert_eq!(ss[0].state, "ended");
    assert_eq!(ss[0].counts.get("deny"), Some(&100));
    assert_eq!(ss[0].counts.get("claim"), Some(&2));
    let claims = s
        .rows(&Filter {
            verdict: Some("claim".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(claims.len(), 2);
    assert!(claims
        .iter()
        .all(|c| c.origin == "agent-claim" && c.is_claim()));
    assert_eq!(claims[0].claimed_verdict.as_deref(), Some("deny"));
    assert!(claims[1].what.starts_with("malformed"));
    // Nothing the agent sent is a deny row.
    let denies = s
        .rows(&Filter {
            verdict: Some("deny".into()),
            ..Default::default()
        })
        .unwrap();
    assert!(denies.iter().all(|d| d.origin == "warden"));
    let sum = s.session_summary("s1").unwrap();
    assert!(
        sum.contains("100 denied (exec 100)") && sum.contains("2 claims"),
        "{sum}"
    );
    assert!(sum.contains("warden log s1"), "{sum}");
    // After close, records are counted, not written, and nothing panics.
    w.record(deny(1));
    assert_eq!(w.pending_drops(), 1);
}

#[test]
fn a_claim_flood_is_limited_and_counted_once() {
    let t = Tmp::new("flood");
    let cfg = WriterConfig {
        claims: ClaimLimits {
            per_sec: 10.0,
            burst: 50.0,
            ..Default::default()
        },
        ..Default::default()
    };
    let w = AuditWriter::open(&t.db(), cfg).unwrap();
    let mut accepted = 0;
    for i in 0..20_000 {
        if w.record_claim(
            "s1",
            Layer::Gate,
            format!("{{\"who\":\"x\",\"n\":{i}}}").as_bytes(),
        ) {
            accepted += 1;
        }
    }
    assert!((50..60).contains(&accepted), "{accepted}");
    w.close().unwrap();
    let s = AuditStore::open_read_only(&t.db()).unwrap();
    let limited = s
        .rows(&Filter::default())
        .unwrap()
        .into_iter()
        .filter(|r| r.kind == "limited")
        .collect::<Vec<_>>();
    assert_eq!(limited.len(), 1);
    assert_eq!(limited[0].session, "s1");
    let v: serde_json::Value = serde_json::from_str(&limited[0].extra).unwrap();
    assert_eq!(v["count"].as_u64().unwrap() + accepted, 20_000);
}

/// Attack review 104: an agent looping on an allowed action (a proxy connection) wrote
/// ~1,800 rows/s until pruning removed its own earlier denials. Past the session's bound,
/// allowed decisions are counted into one row per layer; every denial keeps its row.
#[test]
fn allowed_decisions_past_the_bound_are_counted_and_denials_kept() {
    let t = Tmp::new("allowcap");
    let cfg = WriterConfig {
        allow_rows_per_session: 5,
        ..Default::default()
    };
    let w = AuditWriter::open(&t.db(), cfg).unwrap();
    w.session_start(SessionInfo {
        id: "s1".into(),
        ..Default::default()
    })
    .unwrap();
    let mk = |v: Verdict, i: u32| {
        let mut d = Decision::new(Layer::Proxy, "agent", format!("h{i}"), "r", v, "x");
        d.session = "s1".into();
        d
    };
    for i in 0..100 {
        w.record(mk(Verdict::Allow, i));
        if i % 25 == 0 {
            w.record(mk(Verdict::Deny, i));
        }
    }
    w.session_end(SessionEnd {
        id: "s1".into(),
        end_ms: 1,
        exit_status: Some(0),
        reason: "exited".into(),
    })
    .unwrap();
    w.close().unwrap();
    let s = AuditStore::open_read_only(&t.db()).unwrap();
    let rows = s.rows(&Filter::default()).unwrap();
    let of = |verdict: &str| {
        rows.iter()
            .filter(|r| r.kind == "decision" && r.verdict == verdict)
            .count()
    };
    assert_eq!((of("allow"), of("deny")), (5, 4));
    let limited: Vec<_> = rows.iter().filter(|r| r.kind == "limited").collect();
    assert_eq!(limited.len(), 1, "{limited:?}");
    assert_eq!(limited[0].session, "s1");
    let v: serde_json::Value = serde_json::from_str(&limited[0].extra).unwrap();
    assert_eq!(v["count"].as_u64(), Some(95));
    intact(&s.verify(&[]).unwrap());
}

#[test]
fn overflow_is_counted_and_recorded_as_one_event() {
    let t = Tmp::new("overflow");
    let store = AuditStore::open(&t.db()).unwrap();
    // Hold the store's write lock so the writer cannot drain, with a tiny queue.
    let blocker = rusqlite::Connection::open(t.db()).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let w = AuditWriter::spawn(
        store,
        WriterConfig {
            capacity: 8,
            batch_max: 4,
            ..Default::default()
        },
    );
    let start = std::time::Instant::now();
    for i in 0..1000 {
        w.record(deny(i));
    }
    assert!(
        start.elapsed() < std::time::Duration::from_millis(500),
        "record blocked"
    );
    assert!(w.pending_drops() >= 900);
    blocker.execute_batch("COMMIT").unwrap();
    drop(blocker);
    w.close().unwrap();
    let s = AuditStore::open_read_only(&t.db()).unwrap();
    intact(&s.verify(&[]).unwrap());
    let rows = s.rows(&Filter::default()).unwrap();
    let decisions = rows.iter().filter(|r| r.kind == "decision").count() as u64;
    let dropped: u64 = rows
        .iter()
        .filter(|r| r.kind == "dropped")
        .map(|r| {
            serde_json::from_str::<serde_json::Value>(&r.extra).unwrap()["count"]
                .as_u64()
                .unwrap()
        })
        .sum();
    assert_eq!(
        decisions + dropped,
        1000,
        "every event is either stored or counted"
    );
}

#[test]
fn two_writers_on_one_store_keep_one_chain() {
    let t = Tmp::new("two");
    let a = AuditWriter::open(&t.db(), WriterConfig::default()).unwrap();
    let b = AuditWriter::open(&t.db(), WriterConfig::default()).unwrap();
    for i in 0..2000 {
        a.record(deny(i));
        b.record(deny(i));
    }
    a.close().unwrap();
    b.close().unwrap();
    let s = AuditStore::open_read_only(&t.db()).unwrap();
    assert_eq!(intact(&s.verify(&[]).unwrap()).0, 4001);
}

#[test]
fn the_tracing_layer_records_emitted_decisions() {
    use tracing_subscriber::prelude::*;
    let t = Tmp::new("tracing");
    let w = AuditWriter::open(&t.db(), WriterConfig::default()).unwrap();
    // The boxed form `warden_event::init_tracing_with` takes.
    let layer: warden_event::ExtraLayer = Box::new(w.tracing_layer());
    let sub = tracing_subscriber::registry().with(Some(layer));
    tracing::subscriber::with_default(sub, || deny(1).emit());
    w.close().unwrap();
    let s = AuditStore::open_read_only(&t.db()).unwrap();
    let r = s
        .rows(&Filter {
            layer: Some("exec".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].sha256.as_deref(), Some("ab".repeat(32).as_str()));
}

#[test]
fn bad_input_never_panics_the_writer() {
    let t = Tmp::new("bad");
    let w = AuditWriter::open(&t.db(), WriterConfig::default()).unwrap();
    let mut d = deny(0);
    d.who = "a\0b".into();
    d.what = "x".repeat(1 << 20);
    d.ts_ms = u128::MAX;
    d.extra.insert("port".into(), serde_json::json!(u64::MAX));
    d.extra
        .insert("big".into(), serde_json::json!("y".repeat(1 << 20)));
    w.record(d);
    for junk in [&b""[..], b"\0", &[0xff; 70_000], b"{\"ts_ms\":1e400}"] {
        w.record_claim("s", Layer::Gate, junk);
    }
    w.close().unwrap();
    let s = AuditStore::open_read_only(&t.db()).unwrap();
    intact(&s.verify(&[]).unwrap());
    let r = s.rows(&Filter::default()).unwrap();
    assert_eq!(r.len(), 6);
    assert!(r[1].what.len() < 17 * 1024);
    assert_eq!(r[1].ts_ms, i64::MAX);
    assert!(r[1].extra.contains("_truncated"));
}

#[test]
fn missing_and_foreign_files_are_precise_errors() {
    let t = Tmp::new("missing");
    assert!(matches!(
        AuditStore::open_read_only(&t.db()),
        Err(AuditError::Missing(_))
    ));
    std::fs::write(t.db(), b"not sqlite at all, just text").unwrap();
    let e = AuditStore::open_read_only(&t.db())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("audit.db"), "{e}");
    std::os::unix::fs::symlink("/etc/passwd", t.0.join("link.db")).unwrap();
    assert!(AuditStore::open(&t.0.join("link.db")).is_err());
}

#[test]
fn verify_while_a_writer_appends_sees_one_snapshot() {
    let t = Tmp::new("concurrent-verify");
    let w = AuditWriter::open(
        &t.db(),
        WriterConfig {
            batch_max: 4,
            ..Default::default()
        },
    )
    .unwrap();
    for i in 0..200 {
        w.record(deny(i));
    }
    w.flush().unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (w2, stop2) = (w.clone(), stop.clone());
    let producer = std::thread::spawn(move || {
        let mut i = 0;
        // Bounded: on a loaded machine each verify is slower, and an unbounded producer
        // grew one run's WAL to 25 GB.
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) && i < 20_000 {
            w2.record(deny(i));
            i += 1;
            if i % 4 == 0 {
                std::thread::sleep(std::time::Duration::from_micros(500));
            }
        }
    });
    let s = AuditStore::open_read_only(&t.db()).unwrap();
    // Verify repeatedly for a second and a half (without one snapshot per verify, a commit
    // between reading the rows and the head record shows as truncation within a few runs).
    let until = std::time::Instant::now() + std::time::Duration::from_millis(1500);
    let mut runs = 0;
    while std::time::Instant::now() < until || runs < 3 {
        intact(&s.verify(&[]).unwrap());
        runs += 1;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    producer.join().unwrap();
    w.close().unwrap();
    intact(&s.verify(&[]).unwrap());
}

#[test]
fn the_writer_prunes_on_its_own_thread_at_open() {
    let t = Tmp::new("writer-prune");
    {
        let mut s = AuditStore::open(&t.db()).unwrap();
        let big: Vec<Item> = (0..3000)
            .map(|i| {
                let mut d = deny(i);
                d.reason = "x".repeat(1000);
                Item::Row(row::decision_row(d))
            })
            .collect();
        s.append(&big).unwrap();
    }
    let w = AuditWriter::open(
        &t.db(),
        WriterConfig {
            retention: Retention::with_policy(None, Some(1)),
            ..Default::default()
        },
    )
    .unwrap();
    w.record(deny(1));
    w.close().unwrap();
    let s = AuditStore::open_read_only(&t.db()).unwrap();
    match s.verify(&[]).unwrap() {
        Verification::Intact {
            checkpoint: Some(c),
            head,
            ..
        } => assert_eq!((c, head.seq), (3002, 3003)),
        v => panic!("{v:?}"),
    }
}

#[test]
fn relay_claims_reads_the_hook_pipe_as_claims() {
    let t = Tmp::new("relay");
    let w = AuditWriter::open(&t.db(), WriterConfig::default()).unwrap();
    let mut input = Vec::new();
    input.extend_from_slice(deny(1).to_json().as_bytes());
    input.extend_from_slice(b"\n\n   \nnot json at all\n");
    input.extend_from_slice(&vec![b'{'; 200_000]);
    input.extend_from_slice(b"\n");
    input.extend_from_slice(br#"{"who":"after the long line","verdict":"deny"}"#);
    // No final newline: still a claim.
    let (ok, refused) = w.relay_claims(&input[..], "s9", Layer::Gate);
    assert_eq!((ok, refused), (4, 0));
    w.close().unwrap();
    let s = AuditStore::open_read_only(&t.db()).unwrap();
    let r = s
        .rows(&Filter {
            session: Some("s9".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(r.len(), 4);
    assert!(r
        .iter()
        .all(|x| x.origin == "agent-claim" && x.verdict == "claim"));
    assert_eq!(r[0].claimed_verdict.as_deref(), Some("deny"));
    assert!(r[1].what.starts_with("malformed"));
    assert!(
        r[2].what.contains("malformed") && r[2].reason.contains("longer than"),
        "{:?}",
        r[2]
    );
    assert_eq!(r[3].who, "after the long line");
}

/// The `sessions` table (what `warden sessions` lists) sits outside the chain; `verify`
/// checks it against each session's chained start row, so an edited or invented row is
/// found (before, `verify` said intact while `warden sessions` showed a forged workspace).
#[test]
fn an_edited_or_invented_sessions_row_is_found() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "edit",
            "UPDATE sessions SET command = 'cargo test', workspace = '/nowhere'",
            "was edited",
        ),
        (
            "invent",
            "INSERT INTO sessions (id, agent, profile, workspace, command, start_ms) \
             VALUES ('s9', 'claude', 'claude', '/w', 'claude', (SELECT max(ts_ms) FROM events))",
            "no start row",
        ),
    ];
    for (name, sql, what) in cases {
        let t = Tmp::new(&format!("sessions-{name}"));
        let w = AuditWriter::open(&t.db(), WriterConfig::default()).unwrap();
        w.session_start(SessionInfo {
            id: "s1".into(),
            agent: "claude".into(),
            profile: "claude".into(),
            workspace: "/w".into(),
            command: "claude".into(),
            pid: None,
            start_ms: time::now_ms(),
        })
        .unwrap();
        w.record(deny(1));
        w.close().unwrap();
        let s = AuditStore::open_read_only(&t.db()).unwrap();
        intact(&s.verify(&[]).unwrap());
        tamper(&t.db(), sql);
        let (_, problem) = broken(&s.verify(&[]).unwrap());
        assert!(problem.contains(what), "{name}: {problem}");
    }
}

#[test]
fn the_write_ahead_log_stays_short_across_sessions() {
    // Sessions close without a checkpoint; each writer checkpoints once the log is long,
    // so what the next open has to read stays bounded however many sessions ran.
    let t = Tmp::new("wal");
    let wal = t.0.join("audit.db-wal");
    let (mut ran, mut longest) = (0, 0);
    for s in 0..80 {
        let mut st = AuditStore::open(&t.db()).unwrap();
        // As the writer thread does: checkpoint first, then the session's rows.
        ran += st.checkpoint_if_long().unwrap() as usize;
        for i in 0..5 {
            st.append(&[Item::Row(row::decision_row(deny(s * 5 + i)))])
                .unwrap();
        }
        drop(st);
        longest = longest.max(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0));
    }
    assert!(ran > 0, "no checkpoint ran");
    // The bound plus one session's frames (5 commits of a few pages each).
    let bound = (crate::store::WAL_KEEP_FRAMES + 40) * (4096 + 24) + 32;
    assert!(
        longest <= bound,
        "the log reached {longest} bytes (bound {bound})"
    );
    let (rows, _) = intact(
        &AuditStore::open_read_only(&t.db())
            .unwrap()
            .verify(&[])
            .unwrap(),
    );
    assert_eq!(rows, 1 + 80 * 5);
}
