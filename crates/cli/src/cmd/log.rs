//! `warden log` and `warden sessions`: what sessions did, read from the audit store.

use super::audit::{open, store_path};
use super::fail;
use crate::cli::{LogArgs, SessionsArgs};
use crate::cmd::misc::{bold, dim, green, magenta, red, yellow};
use crate::exit;
use std::io::Write;
use warden_audit::time::{fmt_short, fmt_utc, now_ms, parse_since};
use warden_audit::{Filter, Row, SessionRow};

/// Escapes what could rewrite a terminal or reorder text (control characters, bidi and
/// other invisible format characters). Agent claims go through here before reaching a screen.
pub use warden_event::text::printable;

fn verdict_label(r: &Row) -> String {
    if r.is_claim() {
        return magenta("CLAIM ");
    }
    match r.verdict.as_str() {
        "deny" => red("DENY  "),
        "audit_deny" => yellow("AUDIT "),
        "ask" => yellow("ASK   "),
        "allow" => green("allow "),
        _ => dim("info  "),
    }
}

/// Rows that print as one line when repeated back to back.
fn group_key(r: &Row) -> (String, String, String, String, String, Option<String>) {
    (
        r.origin.clone(),
        r.layer.clone(),
        r.verdict.clone(),
        r.rule.clone(),
        r.what.clone(),
        r.claimed_verdict.clone(),
    )
}

fn time_of(ms: i64) -> String {
    fmt_utc(ms)[11..19].to_string()
}

fn line(r: &Row, count: usize, last_ms: i64) -> String {
    let mut s = format!(
        "{} {} {:<8} {}",
        dim(&time_of(r.ts_ms)),
        verdict_label(r),
        printable(&r.layer),
        printable(&r.what)
    );
    if r.is_claim() {
        let said = r.claimed_verdict.as_deref().unwrap_or("nothing");
        s.push_str(&magenta(&format!(
            "  (reported from inside the sandbox; the agent says: {})",
            printable(said)
        )));
    }
    if !r.rule.is_empty() {
        s.push_str(&format!("  [{}]", printable(&r.rule)));
    }
    if count > 1 {
        let verb = if r.is_claim() {
            "claimed".to_string()
        } else {
            match r.verdict.as_str() {
                "deny" => "denied".into(),
                "allow" => "allowed".into(),
                "audit_deny" => "would deny".into(),
                v => v.to_string(),
            }
        };
        s.push_str(&bold(&format!(
            "  {verb} {count}× (same rule), until {}",
            time_of(last_ms)
        )));
    } else {
        if !r.who.is_empty() {
            s.push_str(&format!("  {}", dim(&printable(&r.who))));
        }
        if !r.reason.is_empty() && r.reason != r.what {
            s.push_str(&format!(": {}", printable(&r.reason)));
        }
    }
    s
}

/// Prints rows, grouping back-to-back repeats.
fn print_rows(out: &mut dyn Write, rows: &[Row]) -> std::io::Result<()> {
    let mut i = 0;
    while i < rows.len() {
        let k = group_key(&rows[i]);
        let mut j = i + 1;
        while j < rows.len() && group_key(&rows[j]) == k {
            j += 1;
        }
        writeln!(out, "{}", line(&rows[i], j - i, rows[j - 1].ts_ms))?;
        i = j;
    }
    Ok(())
}

pub fn log(a: LogArgs) -> anyhow::Result<i32> {
    let Some(s) = open(&a.store)? else {
        eprintln!(
            "warden: no audit store at {} yet: no session has been recorded",
            store_path(&a.store).display()
        );
        return Ok(exit::OK);
    };
    let session = s
        .resolve_session(a.session.as_deref())
        .map_err(|e| fail(exit::USAGE, e))?;
    let session = match (session, &a.session) {
        (Some(x), _) => Some(x),
        (None, Some(p)) => {
            return Err(fail(
                exit::USAGE,
                format!("no session `{p}` in {}", s.path().display()),
            ))
        }
        (None, None) => None,
    };
    let mut f = Filter {
        session: session.clone(),
        layer: a.layer.clone(),
        verdict: a.verdict.clone(),
        ..Default::default()
    };
    if let Some(t) = &a.since {
        f.since_ms =
            Some(parse_since(t, now_ms()).map_err(|e| fail(exit::USAGE, format!("--since: {e}")))?);
    }
    let info = match &session {
        Some(id) => s
            .sessions()
            .map_err(|e| fail(exit::INTERNAL, e))?
            .into_iter()
            .find(|x| &x.id == id),
        None => None,
    };
    let mut out = std::io::stdout().lock();
    match show(&s, &a, f, session, info, &mut out) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(exit::OK),
        Err(e) => Err(fail(exit::INTERNAL, format!("stdout: {e}"))),
        Ok(()) => Ok(exit::OK),
    }
}

fn show(
    s: &warden_audit::AuditStore,
    a: &LogArgs,
    mut f: Filter,
    session: Option<String>,
    info: Option<SessionRow>,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let other = |e: warden_audit::AuditError| std::io::Error::other(e.to_string());
    if !a.json {
        if let Some(i) = &info {
            writeln!(
                out,
                "{} {}  {} in {}  started {} UTC{}",
                bold("session"),
                i.id,
                printable(&i.agent),
                printable(&i.workspace),
                fmt_short(i.start_ms),
                match (i.end_ms, i.exit_status) {
                    (Some(e), Some(x)) => format!(", ended {} (exit {x})", fmt_short(e)),
                    (Some(e), None) => format!(", ended {}", fmt_short(e)),
                    _ => format!(", {}", i.state),
                }
            )?;
        }
    }
    let mut last_seq = 0;
    let mut claims = 0usize;
    loop {
        let rows = s.rows(&f).map_err(other)?;
        if let Some(r) = rows.last() {
            last_seq = r.seq;
        }
        claims += rows.iter().filter(|r| r.is_claim()).count();
        if a.json {
            for r in &rows {
                writeln!(out, "{}", warden_audit::export::to_json_line(r))?;
            }
        } else {
            print_rows(out, &rows)?;
        }
        out.flush()?;
        let ended = rows.iter().any(|r| r.kind == "session_end");
        if !a.follow || (session.is_some() && ended) {
            break;
        }
        f.after_seq = Some(last_seq);
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    if !a.json && claims > 0 {
        writeln!(
            out,
            "{}",
            dim(&format!(
                "{claims} CLAIM rows were reported from inside the sandbox: the agent's word, not decisions warden made."
            ))
        )
        ?;
    }
    Ok(())
}

fn counts_text(r: &SessionRow) -> String {
    let n = |k: &str| r.counts.get(k).copied().unwrap_or(0);
    let mut parts = vec![
        format!("{} deny", n("deny")),
        format!("{} allow", n("allow")),
    ];
    for (k, label) in [
        ("audit_deny", "audit-deny"),
        ("ask", "ask"),
        ("claim", "claim"),
    ] {
        if n(k) > 0 {
            parts.push(format!("{} {label}", n(k)));
        }
    }
    parts.join(", ")
}

pub fn sessions(a: SessionsArgs) -> anyhow::Result<i32> {
    let rows = match open(&a.store)? {
        Some(s) => s.sessions().map_err(|e| fail(exit::INTERNAL, e))?,
        None => Vec::new(),
    };
    let mut out = std::io::stdout().lock();
    let w = |e: std::io::Error| fail(exit::INTERNAL, format!("stdout: {e}"));
    if a.json {
        let v: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                let mut v = serde_json::to_value(r).unwrap_or_default();
                v["start"] = fmt_utc(r.start_ms).into();
                v["end"] = r.end_ms.map(fmt_utc).into();
                v
            })
            .collect();
        writeln!(out, "{}", serde_json::Value::Array(v)).map_err(w)?;
        return Ok(exit::OK);
    }
    if rows.is_empty() {
        writeln!(
            out,
            "no sessions recorded in {}",
            store_path(&a.store).display()
        )
        .map_err(w)?;
        return Ok(exit::OK);
    }
    for r in &rows {
        let state = match r.state.as_str() {
            "running" => green("running"),
            "lost" => yellow("lost"),
            s => s.to_string(),
        };
        let end = match (r.end_ms, r.exit_status) {
            (Some(e), Some(x)) => format!("→ {} exit {x}", fmt_short(e)),
            (Some(e), None) => format!("→ {}", fmt_short(e)),
            _ => String::new(),
        };
        writeln!(
            out,
            "{}  {:<7}  {}  {}  {} UTC {}\n    {}",
            bold(&r.id),
            state,
            printable(&r.agent),
            printable(&r.workspace),
            fmt_short(r.start_ms),
            end,
            counts_text(r)
        )
        .map_err(w)?;
    }
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    #[test]
    fn printable_escapes_terminal_controls_and_bidi() {
        let s = super::printable("a\x1b[2Jb\rc\u{202e}d");
        assert!(
            !s.contains('\x1b') && !s.contains('\r') && !s.contains('\u{202e}'),
            "{s}"
        );
        assert!(s.contains("\\x1b"));
    }
}
