//! `warden audit verify|export|head`: the audit store's chain check, SIEM export and head.

use super::{fail, home_dir};
use crate::cli::{AuditCmd, ExportFormat, StoreArg};
use crate::cmd::misc::{green, red};
use crate::exit;
use std::path::PathBuf;
use warden_audit::{AuditError, AuditStore, Filter, Head, Verification};

pub fn store_path(a: &StoreArg) -> PathBuf {
    a.store
        .clone()
        .unwrap_or_else(|| warden_audit::default_store_path(&home_dir()))
}

/// Opens the store read-only; `Ok(None)` when it does not exist yet.
pub fn open(a: &StoreArg) -> anyhow::Result<Option<AuditStore>> {
    match AuditStore::open_read_only(&store_path(a)) {
        Ok(s) => Ok(Some(s)),
        Err(AuditError::Missing(_)) => Ok(None),
        Err(e) => Err(fail(exit::INTERNAL, e)),
    }
}

pub fn audit(c: AuditCmd) -> anyhow::Result<i32> {
    match c {
        AuditCmd::Verify {
            store,
            expect,
            json,
        } => verify(&store, &expect, json),
        AuditCmd::Export {
            store,
            format,
            since,
            session,
        } => export(&store, format, since, session),
        AuditCmd::Head { store, json } => {
            let Some(s) = open(&store)? else {
                return Err(fail(
                    exit::DENIED,
                    format!("no audit store at {}", store_path(&store).display()),
                ));
            };
            let h = s
                .head()
                .map_err(|e| fail(exit::INTERNAL, e))?
                .ok_or_else(|| {
                    fail(
                        exit::DENIED,
                        "the store has no head record (run `warden audit verify`)",
                    )
                })?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"store": s.path(), "seq": h.seq, "hash": h.hash, "head": h.to_string()})
                );
            } else {
                println!("{h}");
            }
            Ok(exit::OK)
        }
    }
}

fn verify(store: &StoreArg, expect: &[String], json: bool) -> anyhow::Result<i32> {
    let path = store_path(store);
    let anchors = expect
        .iter()
        .map(|e| e.parse::<Head>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(exit::USAGE, format!("--expect: {e}")))?;
    let s = match AuditStore::open_read_only(&path) {
        Ok(s) => s,
        // A store that is missing or unreadable does not verify.
        Err(e) => return Err(fail(exit::DENIED, e)),
    };
    let v = s.verify(&anchors).map_err(|e| fail(exit::DENIED, e))?;
    if json {
        println!(
            "{}",
            serde_json::json!({"store": path, "ok": matches!(v, Verification::Intact { .. }), "result": v})
        );
    }
    match v {
        Verification::Intact {
            rows,
            first_seq,
            head,
            checkpoint,
            unchecked_anchors,
        } => {
            if !json {
                println!(
                    "{} {}: {rows} rows (seq {first_seq}..{}), head {head}",
                    green("OK"),
                    path.display(),
                    head.seq
                );
                if let Some(c) = checkpoint {
                    println!(
                        "  older rows were pruned; the chain starts from the checkpoint at row {c}"
                    );
                }
                for a in unchecked_anchors {
                    println!("  anchor {a} lies in the pruned range and was not checked");
                }
            }
            Ok(exit::OK)
        }
        Verification::Broken {
            seq,
            problem,
            rows_checked,
        } => {
            if !json {
                println!("{} {}: row {seq}: {problem}", red("BROKEN"), path.display());
                println!(
                    "  {rows_checked} rows read; rows from {seq} on cannot be trusted. \
                     Compare with an exported copy or an anchored head (`warden audit head`)."
                );
            }
            Ok(exit::DENIED)
        }
    }
}

fn export(
    store: &StoreArg,
    format: ExportFormat,
    since: Option<String>,
    session: Option<String>,
) -> anyhow::Result<i32> {
    let Some(s) = open(store)? else {
        eprintln!(
            "warden: no audit store at {} yet",
            store_path(store).display()
        );
        return Ok(exit::OK);
    };
    let mut f = Filter::default();
    if let Some(t) = since {
        f.since_ms = Some(
            warden_audit::time::parse_since(&t, warden_audit::time::now_ms())
                .map_err(|e| fail(exit::USAGE, format!("--since: {e}")))?,
        );
    }
    if let Some(p) = session {
        f.session = Some(
            s.resolve_session(Some(&p))
                .map_err(|e| fail(exit::USAGE, e))?
                .ok_or_else(|| fail(exit::USAGE, format!("no session `{p}` in the store")))?,
        );
    }
    let rows = s.rows(&f).map_err(|e| fail(exit::INTERNAL, e))?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let r = match format {
        ExportFormat::Jsonl => warden_audit::export::write_jsonl(&mut out, &rows),
        ExportFormat::Csv => warden_audit::export::write_csv(&mut out, &rows),
    };
    match r.and_then(|_| std::io::Write::flush(&mut out)) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(fail(exit::INTERNAL, format!("writing the export: {e}")))
        }
        _ => Ok(exit::OK),
    }
}
