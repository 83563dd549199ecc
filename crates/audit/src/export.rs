//! Export for SIEMs: JSON lines or CSV with a fixed, documented field list.
//!
//! Fields, in this order (CSV header = these names; JSON keys = these names, every key
//! present, `null` when absent): `seq`, `time` (RFC 3339 UTC, from `ts_ms`), `ts_ms`,
//! `kind`, `origin`, `session`, `layer`, `verdict`, `rule`, `who`, `what`, `reason`,
//! `sha256`, `host`, `port`, `tool`, `claimed_verdict`, `claimed_ts_ms`, `claimed_layer`,
//! `extra` (a JSON object; in CSV its JSON text), `prev_hash`, `hash`.
//! New fields are only ever appended. Rows with `origin` = `agent-claim` are reports from
//! inside the sandbox; their `verdict` is always `claim`.

use crate::store::Row;
use serde_json::{json, Value};
use std::io::Write;

/// Export field names, in order.
pub const FIELDS: [&str; 22] = [
    "seq",
    "time",
    "ts_ms",
    "kind",
    "origin",
    "session",
    "layer",
    "verdict",
    "rule",
    "who",
    "what",
    "reason",
    "sha256",
    "host",
    "port",
    "tool",
    "claimed_verdict",
    "claimed_ts_ms",
    "claimed_layer",
    "extra",
    "prev_hash",
    "hash",
];

fn values(r: &Row) -> [Value; 22] {
    let extra: Value =
        serde_json::from_str(&r.extra).unwrap_or_else(|_| Value::String(r.extra.clone()));
    [
        json!(r.seq),
        json!(crate::time::fmt_utc(r.ts_ms)),
        json!(r.ts_ms),
        json!(r.kind),
        json!(r.origin),
        json!(r.session),
        json!(r.layer),
        json!(r.verdict),
        json!(r.rule),
        json!(r.who),
        json!(r.what),
        json!(r.reason),
        json!(r.sha256),
        json!(r.host),
        json!(r.port),
        json!(r.tool),
        json!(r.claimed_verdict),
        json!(r.claimed_ts_ms),
        json!(r.claimed_layer),
        extra,
        json!(r.prev_hash),
        json!(r.hash),
    ]
}

/// One row as a JSON object with the export fields in order.
pub fn to_json(r: &Row) -> Value {
    let mut m = serde_json::Map::new();
    for (k, v) in FIELDS.iter().zip(values(r)) {
        m.insert((*k).to_string(), v);
    }
    Value::Object(m)
}

/// One row as a JSON line with the keys in [`FIELDS`] order (whatever map ordering
/// serde_json was built with).
pub fn to_json_line(r: &Row) -> String {
    let mut s = String::from("{");
    for (i, (k, v)) in FIELDS.iter().zip(values(r)).enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push('"');
        s.push_str(k);
        s.push_str("\":");
        s.push_str(&v.to_string());
    }
    s.push('}');
    s
}

pub fn write_jsonl(out: &mut dyn Write, rows: &[Row]) -> std::io::Result<()> {
    for r in rows {
        writeln!(out, "{}", to_json_line(r))?;
    }
    Ok(())
}

fn csv_field(v: &Value) -> String {
    let s = match v {
        Value::Null => return String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// RFC 4180 CSV with a header line; values are not altered (no spreadsheet-formula escaping).
pub fn write_csv(out: &mut dyn Write, rows: &[Row]) -> std::io::Result<()> {
    writeln!(out, "{}", FIELDS.join(","))?;
    for r in rows {
        let line: Vec<String> = values(r).iter().map(csv_field).collect();
        write!(out, "{}\r\n", line.join(","))?;
    }
    Ok(())
}
