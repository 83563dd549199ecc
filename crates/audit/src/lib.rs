//! # warden-audit
//!
//! Owns warden's audit store: the record a human trusts to see what an agent did.
//!
//! - **The store** ([`AuditStore`]): one SQLite file per user (default
//!   `~/.local/state/warden/audit.db`, see [`default_store_path`]; the daemon uses the same
//!   schema at [`SYSTEM_STORE`]). Every decision is a row in `events`; each row's `hash` is
//!   `SHA-256(prev_hash || canonical content)` (defined exactly in [`canon`]), starting from a
//!   genesis row, so an edit, deletion, insertion or reorder breaks the chain at a row
//!   [`AuditStore::verify`] names. A `heads` row, moved in the same transaction as every
//!   append, catches rows cut from the end; the head (`SEQ:HASH`) is also what to copy off
//!   the host to anchor the chain, since whoever can write the file can rewrite the chain
//!   and the head together. `sessions` is an index of sessions (not itself chained; its
//!   facts are also in the chained `session_start`/`session_end` rows).
//! - **Claims**: reports from inside the sandbox (hook decisions) are stored with
//!   `origin = 'agent-claim'`, `verdict = 'claim'`, the receive time, and their own verdict,
//!   time and layer only as `claimed_*`; they are size-capped and rate-limited per session
//!   (see [`row::claim_row`], [`ClaimLimits`]).
//! - **The writer** ([`AuditWriter`]): a thread that owns the connection, takes events through
//!   a bounded channel, and batches them into transactions. Recording never blocks; overflow
//!   is counted and written as one `dropped` row.
//! - **Retention** ([`Retention`], policy `[audit]` `retention_days`/`max_mb`): pruning drops
//!   the oldest rows and appends a `checkpoint` row naming the last pruned row's seq and hash,
//!   which `verify` then starts from.
//! - **Export** ([`export`]) with fixed, documented fields.
//! - **Errors**: [`AuditError`] (a writer failure reaches every waiting caller as
//!   [`AuditError::Writer`]), [`HeadError`] for `--expect` anchors, `time::TimeError`.

// No unwrap on input-dependent paths in library code; tests may (clippy.toml).
#![warn(clippy::unwrap_used)]
#![forbid(unsafe_code)]

pub mod canon;
pub mod export;
pub mod row;
mod store;
pub mod time;
mod writer;

pub use row::ClaimLimits;
pub use store::{
    AuditError, AuditStore, Filter, Head, HeadError, Item, PruneReport, Retention, Row, SessionEnd,
    SessionInfo, SessionRow, Verification,
};
pub use writer::{AuditWriter, WriterConfig};

use std::path::{Path, PathBuf};

/// The system store (daemon events), same schema.
pub const SYSTEM_STORE: &str = "/var/lib/warden/audit.db";

/// Environment variable that overrides the per-user store path.
pub const STORE_ENV: &str = "WARDEN_AUDIT_DB";

/// The per-user store: `$WARDEN_AUDIT_DB` if set, else `$XDG_STATE_HOME/warden/audit.db`
/// (when absolute), else `HOME/.local/state/warden/audit.db`.
pub fn default_store_path(home: &Path) -> PathBuf {
    if let Some(p) = std::env::var_os(STORE_ENV).filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    if let Some(x) = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
    {
        return x.join("warden/audit.db");
    }
    home.join(".local/state/warden/audit.db")
}

/// A `tracing_subscriber` layer feeding [`warden_event::Decision::emit`]ted decisions to an
/// [`AuditWriter`] (see [`AuditWriter::tracing_layer`]).
pub struct TracingLayer {
    writer: AuditWriter,
}

struct JsonField(Option<String>);

impl tracing::field::Visit for JsonField {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "decision" {
            self.0 = Some(format!("{value:?}"));
        }
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "decision" {
            self.0 = Some(value.to_string());
        }
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for TracingLayer {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if event.metadata().target() != warden_event::DECISION_TARGET {
            return;
        }
        let mut v = JsonField(None);
        event.record(&mut v);
        if let Some(d) =
            v.0.and_then(|j| serde_json::from_str::<warden_event::Decision>(&j).ok())
        {
            self.writer.record(d);
        }
    }
}

#[cfg(test)]
mod tests;
