//! The row format and its canonical serialisation: what each row's hash covers.
//!
//! ## Canonical content (format `warden-audit-v1`)
//!
//! A row's hash is `SHA-256(prev || content)`, stored as 64 lowercase hex digits, where
//! `prev` is the 32 raw bytes of the previous row's hash (32 zero bytes for the genesis row)
//! and `content` is:
//!
//! ```text
//! "warden-audit-v1" 0x00
//! then, for each column of COLUMNS in order (seq, kind, origin, ts_ms, session, layer,
//! verdict, who, what, rule, reason, sha256, host, port, tool, claimed_verdict,
//! claimed_ts_ms, claimed_layer, extra), its SQLite value:
//!   NULL     0x00
//!   INTEGER  0x01, then the value as 8 bytes, big-endian two's complement
//!   REAL     0x02, then the IEEE-754 bits as 8 bytes, big-endian   (warden never writes one)
//!   TEXT     0x03, then the UTF-8 length as 4 bytes big-endian, then the bytes
//!   BLOB     0x04, then the length as 4 bytes big-endian, then the bytes (never written)
//! ```
//!
//! Every column except `prev_hash` and `hash` themselves is covered, including `seq` (so a
//! reorder is an edit) and the storage class (so changing a column's type is an edit). The
//! verifier recomputes this from the values it reads back, never from a re-parsed form.
//! `extra` is a JSON object written with keys sorted at every depth (see [`canonical_json`]);
//! the hash covers the stored text, so the sort only makes the same decision give the same
//! text.

use sha2::{Digest, Sha256};

/// The columns covered by the hash, in hashing order.
pub const COLUMNS: [&str; 19] = [
    "seq",
    "kind",
    "origin",
    "ts_ms",
    "session",
    "layer",
    "verdict",
    "who",
    "what",
    "rule",
    "reason",
    "sha256",
    "host",
    "port",
    "tool",
    "claimed_verdict",
    "claimed_ts_ms",
    "claimed_layer",
    "extra",
];

/// Domain tag at the start of every canonical content.
pub const FORMAT: &str = "warden-audit-v1";

/// The genesis row's `prev_hash`.
pub const ZERO_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Row kinds.
pub mod kind {
    /// First row of a store.
    pub const GENESIS: &str = "genesis";
    /// A decision warden made outside the sandbox.
    pub const DECISION: &str = "decision";
    /// A report from inside the sandbox (a hook's decision): the agent's word only.
    pub const CLAIM: &str = "claim";
    pub const SESSION_START: &str = "session_start";
    pub const SESSION_END: &str = "session_end";
    /// The writer had to drop events (queue full or write error); `extra.count` says how many.
    pub const DROPPED: &str = "dropped";
    /// Claims over the per-session rate limit; `extra.count` says how many were refused.
    pub const LIMITED: &str = "limited";
    /// Rows were pruned; `extra.pruned_through_seq`/`pruned_through_hash` name the last one.
    pub const CHECKPOINT: &str = "checkpoint";
}

/// Row origins.
pub mod origin {
    /// Written by warden from what it observed or decided outside the sandbox.
    pub const WARDEN: &str = "warden";
    /// Reported from inside the sandbox; stored as the agent's claim.
    pub const AGENT_CLAIM: &str = "agent-claim";
}

/// Verdict stored for claims: a claim is never a warden verdict (its own is `claimed_verdict`).
pub const CLAIM_VERDICT: &str = "claim";

/// A row before it is chained (no seq, prev_hash or hash yet).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NewRow {
    pub kind: &'static str,
    pub origin: &'static str,
    pub ts_ms: i64,
    pub session: String,
    pub layer: String,
    pub verdict: String,
    pub who: String,
    pub what: String,
    pub rule: String,
    pub reason: String,
    pub sha256: Option<String>,
    pub host: Option<String>,
    pub port: Option<i64>,
    pub tool: Option<String>,
    pub claimed_verdict: Option<String>,
    pub claimed_ts_ms: Option<i64>,
    pub claimed_layer: Option<String>,
    /// Canonical JSON object text (`{}` when empty).
    pub extra: String,
}

/// Builds canonical content.
pub struct Canon {
    buf: Vec<u8>,
}

impl Default for Canon {
    fn default() -> Self {
        Self::new()
    }
}

impl Canon {
    pub fn new() -> Canon {
        let mut buf = Vec::with_capacity(512);
        buf.extend_from_slice(FORMAT.as_bytes());
        buf.push(0);
        Canon { buf }
    }
    pub fn null(&mut self) {
        self.buf.push(0);
    }
    pub fn int(&mut self, v: i64) {
        self.buf.push(1);
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub fn real(&mut self, v: f64) {
        self.buf.push(2);
        self.buf.extend_from_slice(&v.to_bits().to_be_bytes());
    }
    pub fn text(&mut self, v: &str) {
        self.bytes(3, v.as_bytes());
    }
    pub fn blob(&mut self, v: &[u8]) {
        self.bytes(4, v);
    }
    fn bytes(&mut self, tag: u8, v: &[u8]) {
        self.buf.push(tag);
        // Lengths over 4 GiB cannot be stored by SQLite (its limit is 1 GB by default).
        let len = u32::try_from(v.len()).unwrap_or(u32::MAX);
        self.buf.extend_from_slice(&len.to_be_bytes());
        self.buf.extend_from_slice(v);
    }
    pub fn opt_text(&mut self, v: Option<&str>) {
        match v {
            Some(s) => self.text(s),
            None => self.null(),
        }
    }
    pub fn opt_int(&mut self, v: Option<i64>) {
        match v {
            Some(i) => self.int(i),
            None => self.null(),
        }
    }
    /// One SQLite value as read back.
    pub fn value(&mut self, v: rusqlite::types::ValueRef<'_>) {
        use rusqlite::types::ValueRef;
        match v {
            ValueRef::Null => self.null(),
            ValueRef::Integer(i) => self.int(i),
            ValueRef::Real(r) => self.real(r),
            ValueRef::Text(t) => self.bytes(3, t),
            ValueRef::Blob(b) => self.blob(b),
        }
    }
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }
    /// `SHA-256(prev || content)` as lowercase hex; `prev` is the previous row's hex hash.
    pub fn hash(&self, prev_hex: &str) -> String {
        let mut h = Sha256::new();
        h.update(unhex32(prev_hex).unwrap_or([0u8; 32]));
        h.update(&self.buf);
        hex(&h.finalize())
    }
}

impl NewRow {
    /// Canonical content of this row at position `seq`.
    pub fn canonical(&self, seq: i64) -> Canon {
        let mut c = Canon::new();
        c.int(seq);
        c.text(self.kind);
        c.text(self.origin);
        c.int(self.ts_ms);
        c.text(&self.session);
        c.text(&self.layer);
        c.text(&self.verdict);
        c.text(&self.who);
        c.text(&self.what);
        c.text(&self.rule);
        c.text(&self.reason);
        c.opt_text(self.sha256.as_deref());
        c.opt_text(self.host.as_deref());
        c.opt_int(self.port);
        c.opt_text(self.tool.as_deref());
        c.opt_text(self.claimed_verdict.as_deref());
        c.opt_int(self.claimed_ts_ms);
        c.opt_text(self.claimed_layer.as_deref());
        c.text(&self.extra);
        c
    }

    /// The hash this row gets at `seq` after a row whose hash is `prev_hex`.
    pub fn hash(&self, seq: i64, prev_hex: &str) -> String {
        self.canonical(seq).hash(prev_hex)
    }
}

pub fn hex(b: &[u8]) -> String {
    const D: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        s.push(D[(x >> 4) as usize] as char);
        s.push(D[(x & 15) as usize] as char);
    }
    s
}

/// Decodes exactly 64 lowercase hex digits.
pub fn unhex32(s: &str) -> Option<[u8; 32]> {
    let b = s.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        let d = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        };
        *o = (d(b[2 * i])? << 4) | d(b[2 * i + 1])?;
    }
    Some(out)
}

/// JSON text with object keys sorted at every depth and no insignificant whitespace.
pub fn canonical_json(v: &serde_json::Value) -> String {
    let mut s = String::new();
    write_json(v, &mut s);
    s
}

fn write_json(v: &serde_json::Value, out: &mut String) {
    use serde_json::Value;
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String((*k).clone()).to_string());
                out.push(':');
                if let Some(x) = m.get(*k) {
                    write_json(x, out);
                }
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// The canonical JSON of a map (`{}` when empty).
pub fn canonical_map(m: &serde_json::Map<String, serde_json::Value>) -> String {
    let mut out = String::from("{");
    let mut keys: Vec<&String> = m.keys().collect();
    keys.sort();
    for (i, k) in keys.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&serde_json::Value::String((*k).clone()).to_string());
        out.push(':');
        if let Some(x) = m.get(*k) {
            write_json(x, &mut out);
        }
    }
    out.push('}');
    out
}

/// Cuts `s` to at most `max` bytes on a character boundary, saying how much was cut.
pub fn truncate(s: &mut String, max: usize) {
    if s.len() <= max {
        return;
    }
    let mut end = max;
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    let cut = s.len() - end;
    s.truncate(end);
    s.push_str(&format!("…[{cut} bytes cut]"));
}

/// Replaces NUL characters (SQLite C APIs stop at them) with U+FFFD.
pub fn no_nul(s: &mut String) {
    if s.contains('\0') {
        *s = s.replace('\0', "\u{fffd}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> NewRow {
        NewRow {
            kind: kind::DECISION,
            origin: origin::WARDEN,
            ts_ms: 1_700_000_000_000,
            session: "s1".into(),
            layer: "exec".into(),
            verdict: "deny".into(),
            who: "pid 1 (sh)".into(),
            what: "/usr/bin/curl".into(),
            rule: "exec.deny".into(),
            reason: "denied".into(),
            sha256: Some("ab".into()),
            port: Some(443),
            extra: "{}".into(),
            ..Default::default()
        }
    }

    #[test]
    fn canonical_bytes_are_exactly_specified() {
        let mut r = NewRow {
            kind: kind::GENESIS,
            origin: origin::WARDEN,
            extra: "{}".into(),
            ..Default::default()
        };
        r.ts_ms = 258;
        let c = r.canonical(1);
        let mut want = b"warden-audit-v1\0".to_vec();
        want.extend([1, 0, 0, 0, 0, 0, 0, 0, 1]); // seq 1
        want.extend([3, 0, 0, 0, 7]);
        want.extend(b"genesis");
        want.extend([3, 0, 0, 0, 6]);
        want.extend(b"warden");
        want.extend([1, 0, 0, 0, 0, 0, 0, 1, 2]); // ts 258
        for _ in 0..7 {
            want.extend([3, 0, 0, 0, 0]); // session..reason empty
        }
        want.extend([0, 0, 0, 0, 0, 0, 0]); // sha256..claimed_layer NULL
        want.extend([3, 0, 0, 0, 2]);
        want.extend(b"{}");
        assert_eq!(c.as_bytes(), &want[..]);
        // The hash is SHA-256(32 zero bytes || content).
        let mut h = Sha256::new();
        h.update([0u8; 32]);
        h.update(&want);
        assert_eq!(c.hash(ZERO_HASH), hex(&h.finalize()));
    }

    #[test]
    fn every_column_and_the_link_change_the_hash() {
        let base = row();
        let h = base.hash(5, ZERO_HASH);
        assert_eq!(h, base.clone().hash(5, ZERO_HASH), "deterministic");
        assert_ne!(h, base.hash(6, ZERO_HASH), "seq");
        assert_ne!(h, base.hash(5, &"1".repeat(64)), "prev");
        type Edit = Box<dyn Fn(&mut NewRow)>;
        let variants: Vec<Edit> = vec![
            Box::new(|r| r.kind = kind::CLAIM),
            Box::new(|r| r.origin = origin::AGENT_CLAIM),
            Box::new(|r| r.ts_ms += 1),
            Box::new(|r| r.session.push('x')),
            Box::new(|r| r.layer.push('x')),
            Box::new(|r| r.verdict = "allow".into()),
            Box::new(|r| r.who.push('x')),
            Box::new(|r| r.what.push('x')),
            Box::new(|r| r.rule.push('x')),
            Box::new(|r| r.reason.push('x')),
            Box::new(|r| r.sha256 = None),
            Box::new(|r| r.host = Some(String::new())),
            Box::new(|r| r.port = Some(444)),
            Box::new(|r| r.tool = Some("Bash".into())),
            Box::new(|r| r.claimed_verdict = Some("deny".into())),
            Box::new(|r| r.claimed_ts_ms = Some(0)),
            Box::new(|r| r.claimed_layer = Some("gate".into())),
            Box::new(|r| r.extra = "{\"a\":1}".into()),
        ];
        assert_eq!(variants.len(), COLUMNS.len() - 1);
        for (i, v) in variants.iter().enumerate() {
            let mut r = base.clone();
            v(&mut r);
            assert_ne!(r.hash(5, ZERO_HASH), h, "column {}", COLUMNS[i + 1]);
        }
    }

    #[test]
    fn field_boundaries_are_unambiguous() {
        // Moving a byte from one text column to the next must change the content.
        let mut a = row();
        a.who = "ab".into();
        a.what = "c".into();
        let mut b = row();
        b.who = "a".into();
        b.what = "bc".into();
        assert_ne!(a.canonical(1).as_bytes(), b.canonical(1).as_bytes());
        // NULL and empty text differ.
        let mut c = row();
        c.host = None;
        let mut d = row();
        d.host = Some(String::new());
        assert_ne!(c.canonical(1).as_bytes(), d.canonical(1).as_bytes());
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_depth() {
        let v: serde_json::Value =
            serde_json::from_str(r#"{"b":1,"a":{"d":[{"z":1,"y":2}],"c":"x"}}"#).unwrap();
        assert_eq!(
            canonical_json(&v),
            r#"{"a":{"c":"x","d":[{"y":2,"z":1}]},"b":1}"#
        );
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        let mut s = "ééé".to_string();
        truncate(&mut s, 3);
        assert!(
            s.starts_with('é')
                && s.ends_with("[4 bytes cut]")
                && s.len() == "é…[4 bytes cut]".len(),
            "{s}"
        );
        let mut t = "a\0b".to_string();
        no_nul(&mut t);
        assert_eq!(t, "a\u{fffd}b");
        assert_eq!(unhex32(&hex(&[7u8; 32])), Some([7u8; 32]));
        assert_eq!(unhex32("zz"), None);
    }
}
