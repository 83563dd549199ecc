//! The audit store through the CLI: `warden audit verify` on real store files tampered with
//! by the `sqlite3` command-line tool (edit, delete, insert, reorder, truncate), an untouched
//! store verifying, claims marked as claims in `warden log`/`sessions`/`export`, and a claim
//! flood limited.

use super::common::text;
use super::common::warden;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use warden_audit::{AuditStore, AuditWriter, Head, SessionEnd, SessionInfo, WriterConfig};
use warden_event::{Decision, Layer, Verdict};

struct T {
    root: PathBuf,
}

impl T {
    fn new(name: &str) -> T {
        let root =
            std::env::temp_dir().join(format!("warden-audit-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        T { root }
    }
    fn db(&self) -> PathBuf {
        self.root.join("audit.db")
    }
    fn warden(&self, args: &[&str]) -> Output {
        warden(&self.root)
            .args(args)
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    }
    fn verify(&self) -> Output {
        let db = self.db();
        self.warden(&["audit", "verify", "--store", db.to_str().unwrap()])
    }
    fn sqlite(&self, sql: &str) {
        let o = Command::new("sqlite3")
            .arg(self.db())
            .arg(sql)
            .output()
            .expect("the sqlite3 command-line tool (apt install sqlite3)");
        assert!(
            o.status.success(),
            "sqlite3 {sql}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}
impl Drop for T {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn decision(session: &str, layer: Layer, what: &str, rule: &str, v: Verdict) -> Decision {
    let mut d = Decision::new(
        layer,
        "pid 42 (bash)",
        what,
        rule,
        v,
        format!("{what} by {rule}"),
    );
    d.session = session.into();
    d
}

/// A store with one ended session: a genesis row, the session start (row 2), 12 decisions
/// (rows 3..14: 10 identical denials of curl, then an allow and a proxy denial), two
/// claims (15, 16) and the session end (17). Returns the head.
fn populate(db: &Path) -> Head {
    let w = AuditWriter::open(db, WriterConfig::default()).unwrap();
    w.session_start(SessionInfo {
        id: "18c2f00d-4242".into(),
        agent: "claude".into(),
        profile: "claude".into(),
        workspace: "/home/u/proj".into(),
        command: "claude".into(),
        pid: Some(1),
        start_ms: warden_audit::time::now_ms(),
    })
    .unwrap();
    w.flush().unwrap();
    for _ in 0..10 {
        w.record(
            decision(
                "18c2f00d-4242",
                Layer::Exec,
                "/usr/bin/curl",
                "exec.deny",
                Verdict::Deny,
            )
            .with("sha256", "ab".repeat(32)),
        );
    }
    w.record(decision(
        "18c2f00d-4242",
        Layer::Exec,
        "/usr/bin/git",
        "builtin:trusted",
        Verdict::Allow,
    ));
    w.record(
        decision(
            "18c2f00d-4242",
            Layer::Proxy,
            "CONNECT evil.example:443",
            "network.default",
            Verdict::Deny,
        )
        .with("host", "evil.example")
        .with("port", 443),
    );
    w.flush().unwrap();
    // A well-formed fake decision (claiming to be warden's exec layer, allow, in the past,
    // for another session) and junk with a terminal escape.
    let mut fake = decision(
        "other-session",
        Layer::Exec,
        "rm -rf /",
        "exec.allow",
        Verdict::Allow,
    );
    fake.who = "warden".into();
    fake.reason = "approved\x1b]0;pwned\x07\x1b[2K".into();
    fake.ts_ms = 1;
    assert!(w.record_claim("18c2f00d-4242", Layer::Gate, fake.to_json().as_bytes()));
    w.flush().unwrap();
    assert!(w.record_claim(
        "18c2f00d-4242",
        Layer::Gate,
        b"\x1b[2J\x1b[31mDENY everything"
    ));
    w.flush().unwrap();
    w.session_end(SessionEnd {
        id: "18c2f00d-4242".into(),
        end_ms: warden_audit::time::now_ms(),
        exit_status: Some(0),
        reason: "exited".into(),
    })
    .unwrap();
    w.close().unwrap()
}

fn assert_broken(t: &T, row: i64, what: &str) {
    let o = t.verify();
    let out = text(&o);
    assert_eq!(o.status.code(), Some(6), "{out}");
    assert!(
        out.contains("BROKEN") && out.contains(&format!("row {row}:")),
        "{out}"
    );
    assert!(out.contains(what), "{out}");
}

#[test]
fn an_untouched_store_verifies_and_prints_its_head() {
    let t = T::new("untouched");
    let head = populate(&t.db());
    assert_eq!(head.seq, 17);
    let o = t.verify();
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(out.contains("OK") && out.contains("17 rows"), "{out}");
    assert!(out.contains(&head.to_string()), "{out}");
    let db = t.db();
    let o = t.warden(&["audit", "head", "--store", db.to_str().unwrap()]);
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), head.to_string());
    // The anchored head checks out; a different one does not.
    let o = t.warden(&[
        "audit",
        "verify",
        "--store",
        db.to_str().unwrap(),
        "--expect",
        &head.to_string(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let wrong = format!("5:{}", "0".repeat(64));
    let o = t.warden(&[
        "audit",
        "verify",
        "--store",
        db.to_str().unwrap(),
        "--expect",
        &wrong,
    ]);
    assert_eq!(o.status.code(), Some(6), "{}", text(&o));
    assert!(text(&o).contains("row 5:"), "{}", text(&o));
}

#[test]
fn tamper_edit_is_found_at_the_edited_row() {
    let t = T::new("edit");
    populate(&t.db());
    // Turn the fourth curl denial into an allow.
    t.sqlite("UPDATE events SET verdict = 'allow' WHERE seq = 6");
    assert_broken(&t, 6, "edited");
}

#[test]
fn tamper_delete_is_found_at_the_row_after() {
    let t = T::new("delete");
    populate(&t.db());
    t.sqlite("DELETE FROM events WHERE seq = 14");
    assert_broken(&t, 15, "row 14 is missing");
}

#[test]
fn tamper_insert_with_a_valid_hash_is_found_where_it_no_longer_links() {
    let t = T::new("insert");
    populate(&t.db());
    // The forger computes a correct hash for the new row 8 from row 7's hash, shifts rows
    // 8.. up by one, and inserts it: row 8 verifies by itself; the old row 8 (now 9) does
    // not link to it.
    let s = AuditStore::open_read_only(&t.db()).unwrap();
    let prev = s.rows(&Default::default()).unwrap()[6].hash.clone();
    drop(s);
    let forged = warden_audit::canon::NewRow {
        kind: "decision",
        origin: "warden",
        ts_ms: 1,
        session: "18c2f00d-4242".into(),
        layer: "exec".into(),
        verdict: "allow".into(),
        who: "pid 42 (bash)".into(),
        what: "/usr/bin/innocent".into(),
        rule: "exec.allow".into(),
        reason: "allowed".into(),
        extra: "{}".into(),
        ..Default::default()
    };
    let h = forged.hash(8, &prev);
    t.sqlite(&format!(
        "UPDATE events SET seq = seq + 1000000 WHERE seq >= 8; \
         UPDATE events SET seq = seq - 999999 WHERE seq >= 1000000; \
         INSERT INTO events (seq, kind, origin, ts_ms, session, layer, verdict, who, what, rule, reason, extra, prev_hash, hash) \
         VALUES (8, 'decision', 'warden', 1, '18c2f00d-4242', 'exec', 'allow', 'pid 42 (bash)', '/usr/bin/innocent', 'exec.allow', 'allowed', '{{}}', '{prev}', '{h}');"
    ));
    assert_broken(&t, 9, "does not link to row 8");
    // And an insert with a made-up hash is found at the inserted row itself.
    let t = T::new("insert-naive");
    populate(&t.db());
    t.sqlite(&format!(
        "INSERT INTO events (seq, kind, origin, ts_ms, session, layer, verdict, who, what, rule, reason, extra, prev_hash, hash) \
         SELECT 18, 'decision', 'warden', 1, '18c2f00d-4242', 'exec', 'allow', 'x', 'y', 'z', 'r', '{{}}', hash, '{}' FROM events WHERE seq = 17",
        "1".repeat(64)
    ));
    assert_broken(&t, 18, "edited");
}

#[test]
fn tamper_reorder_is_found_at_the_first_moved_row() {
    let t = T::new("reorder");
    populate(&t.db());
    // Swap the proxy denial (14) and the allow (13).
    t.sqlite(
        "UPDATE events SET seq = -1 WHERE seq = 13; UPDATE events SET seq = 13 WHERE seq = 14; \
         UPDATE events SET seq = 14 WHERE seq = -1;",
    );
    assert_broken(&t, 13, "does not link to row 12");
}

#[test]
fn tamper_truncate_is_found_through_the_head_record() {
    let t = T::new("truncate");
    populate(&t.db());
    // Cut the claims and the session end off the tail.
    t.sqlite("DELETE FROM events WHERE seq >= 15");
    assert_broken(&t, 15, "truncated");
    // Cutting the head record too is still found; rewriting it to match is not (that is
    // what anchoring the head off the host is for).
    t.sqlite("DELETE FROM heads");
    assert_broken(&t, 15, "head record is missing");
}

#[test]
fn log_marks_claims_groups_repeats_and_escapes_controls() {
    let t = T::new("log");
    populate(&t.db());
    let db = t.db();
    let o = t.warden(&["log", "--store", db.to_str().unwrap()]);
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(out.contains("session 18c2f00d-4242"), "{out}");
    assert!(out.contains("denied 10× (same rule)"), "{out}");
    assert_eq!(out.matches("/usr/bin/curl").count(), 1, "{out}");
    let claim_lines: Vec<&str> = out.lines().filter(|l| l.contains(" CLAIM  gate")).collect();
    assert_eq!(claim_lines.len(), 2, "{out}");
    assert!(
        claim_lines[0].contains("the agent says: allow") && claim_lines[0].contains("rm -rf /"),
        "{out}"
    );
    assert!(
        claim_lines
            .iter()
            .all(|l| l.contains("reported from inside the sandbox")),
        "{out}"
    );
    assert!(
        !out.contains('\x1b') && !out.contains('\x07'),
        "a claim's escape sequence reached the terminal: {out:?}"
    );
    assert!(claim_lines[0].contains("approved\\x1b]0;pwned"), "{out}");
    // `--verdict deny` lists warden's denials only: no claim, whatever it says.
    let o = t.warden(&[
        "log",
        "18c2",
        "--store",
        db.to_str().unwrap(),
        "--verdict",
        "deny",
        "--json",
    ]);
    let rows: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 11, "{}", text(&o));
    assert!(rows
        .iter()
        .all(|r| r["origin"] == "warden" && r["verdict"] == "deny"));
    let o = t.warden(&[
        "log",
        "--store",
        db.to_str().unwrap(),
        "--verdict",
        "claim",
        "--json",
    ]);
    let rows: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2);
    // The fake decision keeps none of its own authority: receive time, the real session,
    // the hook channel's layer, verdict `claim`; what it said is in claimed_*.
    let f = &rows[0];
    assert_eq!(f["origin"], "agent-claim");
    assert_eq!(f["session"], "18c2f00d-4242");
    assert_eq!(f["layer"], "gate");
    assert_eq!(f["claimed_layer"], "exec");
    assert_eq!(f["claimed_verdict"], "allow");
    assert_eq!(f["claimed_ts_ms"], 1);
    assert!(f["ts_ms"].as_i64().unwrap() > 1_700_000_000_000);
    assert_eq!(f["extra"]["claimed_session"], "other-session");
    assert_eq!(rows[1]["extra"]["malformed"], true);
    // Filters: layer and time.
    let o = t.warden(&[
        "log",
        "--store",
        db.to_str().unwrap(),
        "--layer",
        "proxy",
        "--json",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).lines().count(),
        1,
        "{}",
        text(&o)
    );
    let o = t.warden(&[
        "log",
        "--store",
        db.to_str().unwrap(),
        "--since",
        "2099-01-01",
        "--json",
    ]);
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 0);
    let o = t.warden(&[
        "log",
        "--store",
        db.to_str().unwrap(),
        "--since",
        "yesterday",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let o = t.warden(&["log", "nosuch", "--store", db.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

#[test]
fn sessions_and_export_carry_counts_and_stable_fields() {
    let t = T::new("sessions");
    populate(&t.db());
    let db = t.db();
    let o = t.warden(&["sessions", "--store", db.to_str().unwrap(), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let s = &v[0];
    assert_eq!(s["id"], "18c2f00d-4242");
    assert_eq!(s["agent"], "claude");
    assert_eq!(s["workspace"], "/home/u/proj");
    assert_eq!(s["state"], "ended");
    assert_eq!(s["exit_status"], 0);
    assert_eq!(s["counts"]["deny"], 11);
    assert_eq!(s["counts"]["allow"], 1);
    assert_eq!(s["counts"]["claim"], 2);
    let o = t.warden(&["sessions", "--store", db.to_str().unwrap()]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("11 deny, 1 allow, 2 claim"), "{out}");

    let o = t.warden(&[
        "audit",
        "export",
        "--store",
        db.to_str().unwrap(),
        "--format",
        "csv",
    ]);
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    let mut lines = out.lines();
    assert_eq!(
        lines.next().unwrap(),
        warden_audit::export::FIELDS.join(",")
    );
    assert_eq!(out.matches("\r\n").count(), 17, "{out}");
    let o = t.warden(&[
        "audit",
        "export",
        "--store",
        db.to_str().unwrap(),
        "--session",
        "18c2",
        "--since",
        "1d",
    ]);
    let rows: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 16, "{}", text(&o));
    for r in &rows {
        let mut keys: Vec<&str> = r.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        let mut want = warden_audit::export::FIELDS.to_vec();
        keys.sort();
        want.sort();
        assert_eq!(keys, want);
    }
    // Keys come in the documented order in the text itself.
    let first = String::from_utf8_lossy(&o.stdout)
        .lines()
        .next()
        .unwrap()
        .to_string();
    let pos: Vec<usize> = warden_audit::export::FIELDS
        .iter()
        .map(|f| first.find(&format!("\"{f}\":")).unwrap())
        .collect();
    assert!(pos.windows(2).all(|w| w[0] < w[1]), "{first}");
    assert_eq!(rows[12]["host"], "evil.example");
    assert_eq!(rows[12]["port"], 443);
}

#[test]
fn a_claim_flood_is_limited_and_shows_as_one_row() {
    let t = T::new("flood");
    let w = AuditWriter::open(&t.db(), WriterConfig::default()).unwrap();
    let fake = decision("s", Layer::Gate, "Bash ls", "gate.bash", Verdict::Allow).to_json();
    let accepted = (0..100_000)
        .filter(|_| w.record_claim("flood-session", Layer::Gate, fake.as_bytes()))
        .count();
    w.close().unwrap();
    let lim = warden_audit::ClaimLimits::default();
    assert!(
        accepted as f64 <= lim.burst + 10.0 * lim.per_sec,
        "{accepted} accepted"
    );
    let db = t.db();
    let o = t.warden(&["log", "flood-session", "--store", db.to_str().unwrap()]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains(&format!("refused {} claims", 100_000 - accepted)),
        "{out}"
    );
    assert!(out.contains(&format!("claimed {accepted}×")), "{out}");
    assert!(out.lines().count() < 10, "{out}");
    assert_eq!(t.verify().status.code(), Some(0));
}

#[test]
fn log_follow_prints_new_rows_and_ends_with_the_session() {
    let t = T::new("follow");
    let w = AuditWriter::open(&t.db(), WriterConfig::default()).unwrap();
    w.session_start(SessionInfo {
        id: "live-1".into(),
        agent: "bash".into(),
        profile: "generic".into(),
        workspace: "/w".into(),
        command: "bash".into(),
        pid: Some(std::process::id() as i64),
        start_ms: warden_audit::time::now_ms(),
    })
    .unwrap();
    w.flush().unwrap();
    let db = t.db();
    let mut child = warden(&t.root)
        .args(["log", "--follow", "--store", db.to_str().unwrap()])
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(700));
    w.record(decision(
        "live-1",
        Layer::Exec,
        "/usr/bin/wget",
        "exec.deny",
        Verdict::Deny,
    ));
    w.flush().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(700));
    assert!(
        child.try_wait().unwrap().is_none(),
        "follow ended before the session did"
    );
    w.session_end(SessionEnd {
        id: "live-1".into(),
        end_ms: warden_audit::time::now_ms(),
        exit_status: Some(3),
        reason: "exited".into(),
    })
    .unwrap();
    w.close().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("warden log --follow did not end with the session");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let o = child.wait_with_output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("running"), "{out}");
    assert!(out.contains("/usr/bin/wget"), "{out}");
    assert!(out.contains("exit 3"), "{out}");
}
