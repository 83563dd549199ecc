//! The SQLite store: schema, chained appends, verification, queries and pruning.

use crate::canon::{self, kind, origin, Canon, NewRow, COLUMNS, ZERO_HASH};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Schema version kept in `meta.schema`. Any change to [`SCHEMA`] needs a new version: a
/// store already at this one is opened without running it (see `AuditStore::init`).
pub const SCHEMA_VERSION: &str = "1";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT;
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    origin TEXT NOT NULL,
    ts_ms INTEGER NOT NULL,
    session TEXT NOT NULL,
    layer TEXT NOT NULL,
    verdict TEXT NOT NULL,
    who TEXT NOT NULL,
    what TEXT NOT NULL,
    rule TEXT NOT NULL,
    reason TEXT NOT NULL,
    sha256 TEXT,
    host TEXT,
    port INTEGER,
    tool TEXT,
    claimed_verdict TEXT,
    claimed_ts_ms INTEGER,
    claimed_layer TEXT,
    extra TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS events_session ON events(session, seq);
CREATE TABLE IF NOT EXISTS heads (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL,
    hash TEXT NOT NULL,
    updated_ms INTEGER NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    agent TEXT NOT NULL,
    profile TEXT NOT NULL,
    workspace TEXT NOT NULL,
    command TEXT NOT NULL,
    pid INTEGER,
    start_ms INTEGER NOT NULL,
    end_ms INTEGER,
    exit_status INTEGER,
    end_reason TEXT
) STRICT;
";

const INSERT: &str = "INSERT INTO events (seq, kind, origin, ts_ms, session, layer, verdict, \
    who, what, rule, reason, sha256, host, port, tool, claimed_verdict, claimed_ts_ms, \
    claimed_layer, extra, prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, \
    ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21)";

/// Errors from the store. Each names the store file.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit store {path}: {source}")]
    Sqlite {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("audit store {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("audit store {path}: {msg}")]
    Invalid { path: String, msg: String },
    #[error("no audit store at {0} (nothing has been recorded there yet)")]
    Missing(String),
    #[error("the audit writer has stopped (an earlier error is in the log)")]
    Stopped,
    /// The writer thread's error, shared with every caller waiting on that batch.
    #[error("audit store (writer): {0}")]
    Writer(std::sync::Arc<AuditError>),
}

/// An anchor (`SEQ:HASH`, `--expect`) that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    #[error("`{0}` is not SEQ:HASH")]
    NotSeqHash(String),
    #[error("`{0}` is not a row number")]
    Seq(String),
    #[error("`{0}` is not 64 lowercase hex digits")]
    Hash(String),
}

/// The chain's head: the last row's position and hash. Printed at session end and exported
/// for anchoring outside the host (`SEQ:HASH`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Head {
    pub seq: i64,
    pub hash: String,
}

impl std::fmt::Display for Head {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.seq, self.hash)
    }
}

impl std::str::FromStr for Head {
    type Err = HeadError;
    fn from_str(s: &str) -> Result<Head, HeadError> {
        let (a, b) = s
            .split_once(':')
            .ok_or_else(|| HeadError::NotSeqHash(s.to_string()))?;
        let seq = a.parse().map_err(|_| HeadError::Seq(a.to_string()))?;
        if canon::unhex32(b).is_none() {
            return Err(HeadError::Hash(b.to_string()));
        }
        Ok(Head {
            seq,
            hash: b.to_string(),
        })
    }
}

/// One session, as `warden run` starts it.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct SessionInfo {
    pub id: String,
    /// The agent's name (claude, codex, ...) or the program run.
    pub agent: String,
    pub profile: String,
    pub workspace: String,
    pub command: String,
    /// The supervising `warden run` process (used to tell running from lost sessions).
    pub pid: Option<i64>,
    pub start_ms: i64,
}

/// How a session ended.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct SessionEnd {
    pub id: String,
    pub end_ms: i64,
    pub exit_status: Option<i64>,
    /// `exited`, `signal 9`, `killed by warden`, `setup failed: ...`.
    pub reason: String,
}

/// What goes into one append transaction. (Rows are nearly every item, so they are not boxed.)
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Item {
    Row(NewRow),
    SessionStart(SessionInfo),
    SessionEnd(SessionEnd),
}

/// A stored row, as read back.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    pub seq: i64,
    pub kind: String,
    pub origin: String,
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
    pub extra: String,
    pub prev_hash: String,
    pub hash: String,
}

impl Row {
    pub fn is_claim(&self) -> bool {
        self.origin != origin::WARDEN
    }
}

/// Which rows a query returns.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub session: Option<String>,
    pub since_ms: Option<i64>,
    pub layer: Option<String>,
    pub verdict: Option<String>,
    /// Only rows after this seq (for `--follow`).
    pub after_seq: Option<i64>,
    pub limit: Option<i64>,
}

/// A session with its counts.
#[derive(Debug, Clone, Serialize)]
pub struct SessionRow {
    pub id: String,
    pub agent: String,
    pub profile: String,
    pub workspace: String,
    pub command: String,
    pub pid: Option<i64>,
    pub start_ms: i64,
    pub end_ms: Option<i64>,
    pub exit_status: Option<i64>,
    pub end_reason: Option<String>,
    /// `running`, `ended`, or `lost` (no end recorded and the supervisor is gone).
    pub state: String,
    /// Rows by verdict (`deny`, `allow`, ..., and `claim` for the agent's claims).
    pub counts: BTreeMap<String, u64>,
}

/// Retention limits (policy `[audit]`: `retention_days`, `max_mb`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    /// Rows older than this are pruned. `None`: kept forever.
    pub retention_days: Option<u32>,
    /// The store is pruned (oldest rows first) to about 80% of this when it grows past it.
    pub max_mb: Option<u64>,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            retention_days: Some(90),
            max_mb: Some(1024),
        }
    }
}

impl Retention {
    /// The defaults with the policy's `[audit]` values (`retention_days`, `max_mb`) over them.
    pub fn with_policy(retention_days: Option<u32>, max_mb: Option<u64>) -> Retention {
        let d = Retention::default();
        Retention {
            retention_days: retention_days.or(d.retention_days),
            max_mb: max_mb.or(d.max_mb),
        }
    }
}

/// What a prune did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PruneReport {
    pub rows: u64,
    pub through_seq: i64,
    pub checkpoint_seq: i64,
}

/// The result of checking the chain. JSON: `{"status": "intact"|"broken", ...fields}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Verification {
    Intact {
        rows: u64,
        first_seq: i64,
        head: Head,
        /// The checkpoint row the chain starts from, when older rows were pruned.
        checkpoint: Option<i64>,
        /// Anchors given to check that lie in the pruned range (not checkable).
        unchecked_anchors: Vec<Head>,
    },
    Broken {
        /// The first row at which the chain is broken.
        seq: i64,
        problem: String,
        rows_checked: u64,
    },
}

/// One audit store file.
pub struct AuditStore {
    conn: Connection,
    path: PathBuf,
}

fn sq(path: &Path) -> impl Fn(rusqlite::Error) -> AuditError + '_ {
    move |source| AuditError::Sqlite {
        path: path.display().to_string(),
        source,
    }
}

/// Frames the write-ahead log may hold before the writer checkpoints it
/// ([`AuditStore::checkpoint_if_long`]).
pub const WAL_KEEP_FRAMES: u64 = 64;

impl AuditStore {
    /// Opens (creating when missing, with its genesis row) the store at `path` for writing.
    /// The directory is created 0700 and the file 0600; a symlink at `path` is refused.
    pub fn open(path: &Path) -> Result<AuditStore, AuditError> {
        let io = |source| AuditError::Io {
            path: path.display().to_string(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io)?;
        }
        {
            use std::os::unix::fs::OpenOptionsExt;
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(path)
                .map_err(io)?;
            if !f.metadata().map_err(io)?.is_file() {
                return Err(AuditError::Invalid {
                    path: path.display().to_string(),
                    msg: "not a regular file".into(),
                });
            }
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(sq(path))?;
        let mut s = AuditStore {
            conn,
            path: path.to_path_buf(),
        };
        s.init()?;
        Ok(s)
    }

    /// Opens an existing store read-only (verify, log, export). Never creates one.
    pub fn open_read_only(path: &Path) -> Result<AuditStore, AuditError> {
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.is_file() => {}
            Ok(_) => {
                return Err(AuditError::Invalid {
                    path: path.display().to_string(),
                    msg: "not a regular file".into(),
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(AuditError::Missing(path.display().to_string()))
            }
            Err(source) => {
                return Err(AuditError::Io {
                    path: path.display().to_string(),
                    source,
                })
            }
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(sq(path))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(sq(path))?;
        let s = AuditStore {
            conn,
            path: path.to_path_buf(),
        };
        let version: Option<String> = s
            .conn
            .query_row("SELECT value FROM meta WHERE key = 'schema'", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| s.invalid(format!("not a warden audit store ({e})")))?;
        match version.as_deref() {
            Some(SCHEMA_VERSION) => Ok(s),
            Some(v) => Err(s.invalid(format!(
                "schema version {v}; this warden reads version {SCHEMA_VERSION}"
            ))),
            None => Err(s.invalid("not a warden audit store (no schema version)".into())),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn invalid(&self, msg: String) -> AuditError {
        AuditError::Invalid {
            path: self.path.display().to_string(),
            msg,
        }
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> AuditError + '_ {
        sq(&self.path)
    }

    fn init(&mut self) -> Result<(), AuditError> {
        let e = sq(&self.path);
        self.conn
            .busy_timeout(std::time::Duration::from_secs(10))
            .map_err(&e)?;
        let pages: i64 = self
            .conn
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .map_err(&e)?;
        if pages == 0 {
            self.conn
                .execute_batch("PRAGMA auto_vacuum = INCREMENTAL")
                .map_err(&e)?;
        }
        self.conn
            .query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))
            .map_err(&e)?;
        self.conn
            .execute_batch("PRAGMA synchronous = NORMAL; PRAGMA journal_size_limit = 0")
            .map_err(&e)?;
        // Closing leaves the WAL for the next writer's automatic checkpoint: a checkpoint,
        // fsync and two unlinks at every session's end cost ~3 ms on its critical path.
        self.conn
            .set_db_config(
                rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
                true,
            )
            .map_err(&e)?;
        // A store of this schema needs nothing more: no write lock, no schema statements
        // (every session opens the store). Anything else (new, older, newer, not a store)
        // goes through the checks below, under the write lock.
        let current: Option<String> = self
            .conn
            .query_row("SELECT value FROM meta WHERE key = 'schema'", [], |r| {
                r.get(0)
            })
            .optional()
            .unwrap_or(None);
        if current.as_deref() == Some(SCHEMA_VERSION) {
            return Ok(());
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&e)?;
        tx.execute_batch(SCHEMA).map_err(&e)?;
        let version: Option<String> = tx
            .query_row("SELECT value FROM meta WHERE key = 'schema'", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(&e)?;
        match version.as_deref() {
            Some(SCHEMA_VERSION) => {}
            Some(v) => {
                return Err(AuditError::Invalid {
                    path: self.path.display().to_string(),
                    msg: format!("schema version {v}; this warden writes version {SCHEMA_VERSION}"),
                })
            }
            None => {
                let store_id = random_id();
                let now = crate::time::now_ms();
                tx.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema', ?1), ('store_id', ?2), \
                     ('format', ?3), ('created_ms', ?4)",
                    params![SCHEMA_VERSION, store_id, canon::FORMAT, now.to_string()],
                )
                .map_err(&e)?;
                let mut extra = serde_json::Map::new();
                extra.insert("format".into(), canon::FORMAT.into());
                extra.insert("schema".into(), SCHEMA_VERSION.into());
                extra.insert("store_id".into(), store_id.into());
                let g = NewRow {
                    kind: kind::GENESIS,
                    origin: origin::WARDEN,
                    ts_ms: now,
                    layer: "audit".into(),
                    verdict: "observe".into(),
                    who: "warden".into(),
                    what: "audit store created".into(),
                    extra: canon::canonical_map(&extra),
                    ..Default::default()
                };
                let h = g.hash(1, ZERO_HASH);
                insert_row(&tx, 1, &g, ZERO_HASH, &h).map_err(&e)?;
                tx.execute(
                    "INSERT INTO heads (id, seq, hash, updated_ms) VALUES (1, 1, ?1, ?2)",
                    params![h, now],
                )
                .map_err(&e)?;
            }
        }
        tx.commit().map_err(&e)?;
        Ok(())
    }

    /// The head record (`heads` table).
    pub fn head(&self) -> Result<Option<Head>, AuditError> {
        self.conn
            .query_row("SELECT seq, hash FROM heads WHERE id = 1", [], |r| {
                Ok(Head {
                    seq: r.get(0)?,
                    hash: r.get(1)?,
                })
            })
            .optional()
            .map_err(self.err())
    }

    /// Appends items in one transaction, chaining each row onto the current head, and moves
    /// the head record in the same transaction. Safe against other processes appending to
    /// the same store (the transaction takes the write lock before reading the head).
    pub fn append(&mut self, items: &[Item]) -> Result<Head, AuditError> {
        let path = self.path.clone();
        let e = sq(&path);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&e)?;
        let (mut seq, mut prev) = current_head(&tx).map_err(&e)?;
        {
            let mut stmt = tx.prepare_cached(INSERT).map_err(&e)?;
            let mut push = |r: &NewRow| -> rusqlite::Result<()> {
                let s = seq + 1;
                let h = r.hash(s, &prev);
                bind_insert(&mut stmt, s, r, &prev, &h)?;
                seq = s;
                prev = h;
                Ok(())
            };
            for it in items {
                match it {
                    Item::Row(r) => push(r).map_err(&e)?,
                    Item::SessionStart(s) => {
                        tx.execute(
                            "INSERT OR REPLACE INTO sessions (id, agent, profile, workspace, \
                             command, pid, start_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                            params![
                                s.id,
                                s.agent,
                                s.profile,
                                s.workspace,
                                s.command,
                                s.pid,
                                s.start_ms
                            ],
                        )
                        .map_err(&e)?;
                        push(&session_start_row(s)).map_err(&e)?;
                    }
                    Item::SessionEnd(s) => {
                        tx.execute(
                            "UPDATE sessions SET end_ms = ?2, exit_status = ?3, end_reason = ?4 \
                             WHERE id = ?1",
                            params![s.id, s.end_ms, s.exit_status, s.reason],
                        )
                        .map_err(&e)?;
                        push(&session_end_row(s)).map_err(&e)?;
                    }
                }
            }
        }
        tx.execute(
            "INSERT OR REPLACE INTO heads (id, seq, hash, updated_ms) VALUES (1, ?1, ?2, ?3)",
            params![seq, prev, crate::time::now_ms()],
        )
        .map_err(&e)?;
        tx.commit().map_err(&e)?;
        Ok(Head { seq, hash: prev })
    }

    /// Checks the whole chain; `anchors` are heads recorded elsewhere (`SEQ:HASH`) that the
    /// chain must still contain.
    pub fn verify(&self, anchors: &[Head]) -> Result<Verification, AuditError> {
        // One read transaction: the rows and the head record come from the same snapshot
        // even while a writer appends (otherwise a head moved after the rows were read would
        // look like truncation).
        let tx = self.conn.unchecked_transaction().map_err(self.err())?;
        let v = self.verify_in_snapshot(anchors);
        let _ = tx.finish();
        v
    }

    fn verify_in_snapshot(&self, anchors: &[Head]) -> Result<Verification, AuditError> {
        let e = self.err();
        let cols = COLUMNS.join(", ");
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {cols}, prev_hash, hash FROM events ORDER BY seq"
            ))
            .map_err(&e)?;
        let mut rows = stmt.query([]).map_err(&e)?;
        let n = COLUMNS.len();
        let mut count = 0u64;
        let mut first: Option<(i64, String, String)> = None; // seq, kind, prev_hash
        let mut prev: Option<(i64, String)> = None;
        let mut last_checkpoint: Option<(i64, i64, String)> = None; // row, through, hash
        let mut broken: Option<(i64, String)> = None;
        let mut anchor_hits: Vec<bool> = vec![false; anchors.len()];
        while let Some(r) = rows.next().map_err(&e)? {
            let seq = match r.get_ref(0).map_err(&e)? {
                rusqlite::types::ValueRef::Integer(i) => i,
                _ => return Err(self.invalid("a row has a non-integer seq".into())),
            };
            let text = |i: usize| -> String {
                match r.get_ref(i) {
                    Ok(rusqlite::types::ValueRef::Text(t)) => {
                        String::from_utf8_lossy(t).into_owned()
                    }
                    _ => String::new(),
                }
            };
            let row_kind = text(1);
            let prev_hash = text(n);
            let hash = text(n + 1);
            count += 1;
            match &prev {
                None => first = Some((seq, row_kind.clone(), prev_hash.clone())),
                Some((pseq, phash)) => {
                    if seq != pseq + 1 {
                        let missing = if seq == pseq + 2 {
                            format!("row {} is missing", pseq + 1)
                        } else {
                            format!("rows {}..{} are missing", pseq + 1, seq - 1)
                        };
                        broken = Some((
                            seq,
                            format!("{missing} (deleted): row {seq} follows row {pseq}"),
                        ));
                        break;
                    }
                    if &prev_hash != phash {
                        broken = Some((
                            seq,
                            format!(
                                "does not link to row {pseq}: its prev_hash {} is not row {pseq}'s hash {} \
                                 (a row was inserted, replaced or reordered here)",
                                short(&prev_hash),
                                short(phash)
                            ),
                        ));
                        break;
                    }
                }
            }
            let mut c = Canon::new();
            for i in 0..n {
                c.value(r.get_ref(i).map_err(&e)?);
            }
            let link = prev
                .as_ref()
                .map_or(prev_hash.as_str(), |(_, h)| h.as_str());
            let computed = c.hash(link);
            if computed != hash {
                broken = Some((
                    seq,
                    format!(
                        "its content does not match its hash (the row was edited): stored {}, computed {}",
                        short(&hash),
                        short(&computed)
                    ),
                ));
                break;
            }
            if row_kind == kind::CHECKPOINT {
                let extra = text(n - 1);
                let v: serde_json::Value = serde_json::from_str(&extra).unwrap_or_default();
                match (
                    v.get("pruned_through_seq").and_then(|x| x.as_i64()),
                    v.get("pruned_through_hash").and_then(|x| x.as_str()),
                ) {
                    (Some(t), Some(h)) => last_checkpoint = Some((seq, t, h.to_string())),
                    _ => {
                        broken =
                            Some((seq, "checkpoint row without pruned_through_seq/hash".into()));
                        break;
                    }
                }
            }
            for (i, a) in anchors.iter().enumerate() {
                if a.seq == seq {
                    if a.hash != hash {
                        broken = Some((
                            seq,
                            format!(
                                "the anchored head {a} does not match: row {seq} now has hash {hash} \
                                 (the chain was rewritten from here or earlier)"
                            ),
                        ));
                        break;
                    }
                    anchor_hits[i] = true;
                }
            }
            if broken.is_some() {
                break;
            }
            prev = Some((seq, hash));
        }
        // The start: genesis, or a prune the latest checkpoint accounts for.
        let start_problem = match &first {
            None => Some((
                0,
                "the store has no rows at all (even the genesis row is gone)".to_string(),
            )),
            Some((1, k, ph)) => (k != kind::GENESIS || ph != ZERO_HASH).then(|| {
                (
                    1,
                    "row 1 is not a genesis row with an all-zero prev_hash".to_string(),
                )
            }),
            Some((f, _, ph)) => match &last_checkpoint {
                None if broken.is_none() => Some((
                    *f,
                    format!(
                        "the chain starts at row {f}, but no checkpoint records a prune: \
                         rows 1..{} were deleted from the start",
                        f - 1
                    ),
                )),
                None => None,
                Some((c, t, h)) => (*t != f - 1 || h != ph).then(|| {
                    (
                        *f,
                        format!(
                            "the chain starts at row {f} (prev_hash {}), but the latest checkpoint \
                             (row {c}) says rows through {t} were pruned, the last with hash {}",
                            short(ph),
                            short(h)
                        ),
                    )
                }),
            },
        };
        if let Some((seq, problem)) = start_problem {
            if broken.as_ref().is_none_or(|(b, _)| seq <= *b) {
                broken = Some((seq, problem));
            }
        }
        if broken.is_none() {
            // Truncation of the tail: the head record moves with every append.
            let (last_seq, last_hash) = prev.clone().unwrap_or_default();
            match self.head()? {
                None => {
                    broken = Some((
                        last_seq + 1,
                        format!(
                            "the head record is missing (the chain ends at row {last_seq}; rows after it \
                             may have been removed)"
                        ),
                    ))
                }
                Some(h) if h.seq > last_seq => {
                    broken = Some((
                        last_seq + 1,
                        format!(
                            "the chain ends at row {last_seq}, but the head record says row {} \
                             (hash {}): rows {}..{} were removed (truncated)",
                            h.seq,
                            short(&h.hash),
                            last_seq + 1,
                            h.seq
                        ),
                    ))
                }
                Some(h) if h.seq < last_seq || h.hash != last_hash => {
                    broken = Some((
                        h.seq.min(last_seq),
                        format!(
                            "the head record ({h}) does not match the chain's last row \
                             {last_seq}:{last_hash}"
                        ),
                    ))
                }
                Some(_) => {}
            }
        }
        if let Some((seq, problem)) = broken {
            return Ok(Verification::Broken {
                seq,
                problem,
                rows_checked: count,
            });
        }
        if let Some((seq, problem)) = self.sessions_unchained()? {
            return Ok(Verification::Broken {
                seq,
                problem,
                rows_checked: count,
            });
        }
        let (last_seq, last_hash) = prev.unwrap_or_default();
        let first_seq = first.map(|f| f.0).unwrap_or(0);
        let mut unchecked = Vec::new();
        for (i, a) in anchors.iter().enumerate() {
            if anchor_hits[i] {
                continue;
            }
            if a.seq < first_seq {
                unchecked.push(a.clone());
            } else {
                return Ok(Verification::Broken {
                    seq: a.seq,
                    problem: format!(
                        "the anchored head {a} is past the chain's end (row {last_seq}): \
                         the chain was truncated"
                    ),
                    rows_checked: count,
                });
            }
        }
        Ok(Verification::Intact {
            rows: count,
            first_seq,
            head: Head {
                seq: last_seq,
                hash: last_hash,
            },
            checkpoint: last_checkpoint.map(|c| c.0),
            unchecked_anchors: unchecked,
        })
    }

    /// The `sessions` table is an index for `warden sessions`, outside the chain: each of
    /// its rows must agree with the session's chained start row (agent, profile, workspace,
    /// command, start time), and a row whose start lies within the chain's time span must
    /// have one. Returns the first disagreement (the start row's seq, or 0).
    fn sessions_unchained(&self) -> Result<Option<(i64, String)>, AuditError> {
        let e = self.err();
        let oldest: Option<i64> = self
            .conn
            .query_row("SELECT min(ts_ms) FROM events", [], |r| r.get(0))
            .map_err(&e)?;
        let mut stmt = self
            .conn
            .prepare(
                "SELECT s.id, s.agent, s.profile, s.workspace, s.command, s.start_ms, \
                 e.seq, e.what, e.ts_ms, e.extra FROM sessions s LEFT JOIN events e \
                 ON e.session = s.id AND e.kind = ?1 ORDER BY s.start_ms, s.id",
            )
            .map_err(&e)?;
        let mut rows = stmt.query([kind::SESSION_START]).map_err(&e)?;
        while let Some(r) = rows.next().map_err(&e)? {
            let id: String = r.get(0).map_err(&e)?;
            let (agent, profile, workspace, command): (String, String, String, String) = (
                r.get(1).map_err(&e)?,
                r.get(2).map_err(&e)?,
                r.get(3).map_err(&e)?,
                r.get(4).map_err(&e)?,
            );
            let start_ms: i64 = r.get(5).map_err(&e)?;
            let Some(seq) = r.get::<_, Option<i64>>(6).map_err(&e)? else {
                if oldest.is_some_and(|o| start_ms >= o) {
                    return Ok(Some((
                        0,
                        format!(
                            "the sessions table lists session {id} (started {start_ms}), \
                             which has no start row in the chain (the table was edited)"
                        ),
                    )));
                }
                continue; // pruned with its rows
            };
            let what: String = r.get(7).map_err(&e)?;
            let ts: i64 = r.get(8).map_err(&e)?;
            let extra: String = r.get(9).map_err(&e)?;
            let x: serde_json::Value = serde_json::from_str(&extra).unwrap_or_default();
            // A field the start row does not carry (an older store) is not compared.
            let field = |k: &str| x.get(k).and_then(|v| v.as_str()).map(str::to_string);
            let differs = [
                ("command", command.as_str(), Some(what)),
                ("workspace", workspace.as_str(), field("workspace")),
                ("profile", profile.as_str(), field("profile")),
                ("agent", agent.as_str(), field("agent")),
            ]
            .into_iter()
            .filter_map(|(k, t, c)| c.map(|c| (k, t, c)))
            .find(|(_, table, chained)| table != chained)
            .map(|(k, t, c)| format!("{k} {t:?}, its chained start row (row {seq}) says {c:?}"))
            .or_else(|| {
                (ts != start_ms).then(|| {
                    format!("start {start_ms}, its chained start row (row {seq}) says {ts}")
                })
            });
            if let Some(d) = differs {
                return Ok(Some((
                    seq,
                    format!("the sessions table's row for {id} was edited: {d}"),
                )));
            }
        }
        Ok(None)
    }

    /// Rows matching `f`, in chain order.
    pub fn rows(&self, f: &Filter) -> Result<Vec<Row>, AuditError> {
        let mut sql = format!(
            "SELECT {}, prev_hash, hash FROM events WHERE 1=1",
            COLUMNS.join(", ")
        );
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        let mut add = |cond: &str, v: rusqlite::types::Value| {
            args.push(v);
            sql.push_str(&format!(" AND {cond} ?{}", args.len()));
        };
        if let Some(s) = &f.session {
            add("session =", s.clone().into());
        }
        if let Some(t) = f.since_ms {
            add("ts_ms >=", t.into());
        }
        if let Some(l) = &f.layer {
            add("layer =", l.clone().into());
        }
        if let Some(v) = &f.verdict {
            add("verdict =", v.clone().into());
        }
        if let Some(a) = f.after_seq {
            add("seq >", a.into());
        }
        sql.push_str(" ORDER BY seq");
        if let Some(l) = f.limit {
            sql.push_str(&format!(" LIMIT {l}"));
        }
        let e = self.err();
        let mut stmt = self.conn.prepare(&sql).map_err(&e)?;
        let it = stmt
            .query_map(rusqlite::params_from_iter(args), |r| {
                Ok(Row {
                    seq: r.get(0)?,
                    kind: r.get(1)?,
                    origin: r.get(2)?,
                    ts_ms: r.get(3)?,
                    session: r.get(4)?,
                    layer: r.get(5)?,
                    verdict: r.get(6)?,
                    who: r.get(7)?,
                    what: r.get(8)?,
                    rule: r.get(9)?,
                    reason: r.get(10)?,
                    sha256: r.get(11)?,
                    host: r.get(12)?,
                    port: r.get(13)?,
                    tool: r.get(14)?,
                    claimed_verdict: r.get(15)?,
                    claimed_ts_ms: r.get(16)?,
                    claimed_layer: r.get(17)?,
                    extra: r.get(18)?,
                    prev_hash: r.get(19)?,
                    hash: r.get(20)?,
                })
            })
            .map_err(&e)?;
        it.collect::<Result<Vec<_>, _>>().map_err(&e)
    }

    /// Sessions, newest first, with counts by verdict.
    pub fn sessions(&self) -> Result<Vec<SessionRow>, AuditError> {
        let e = self.err();
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, agent, profile, workspace, command, pid, start_ms, end_ms, \
                 exit_status, end_reason FROM sessions ORDER BY start_ms DESC, id",
            )
            .map_err(&e)?;
        let mut out: Vec<SessionRow> = stmt
            .query_map([], |r| {
                Ok(SessionRow {
                    id: r.get(0)?,
                    agent: r.get(1)?,
                    profile: r.get(2)?,
                    workspace: r.get(3)?,
                    command: r.get(4)?,
                    pid: r.get(5)?,
                    start_ms: r.get(6)?,
                    end_ms: r.get(7)?,
                    exit_status: r.get(8)?,
                    end_reason: r.get(9)?,
                    state: String::new(),
                    counts: BTreeMap::new(),
                })
            })
            .map_err(&e)?
            .collect::<Result<_, _>>()
            .map_err(&e)?;
        let mut counts = self
            .conn
            .prepare("SELECT verdict, count(*) FROM events WHERE session = ?1 GROUP BY verdict")
            .map_err(&e)?;
        for s in &mut out {
            s.state = if s.end_ms.is_some() {
                "ended"
            } else if s.pid.is_some_and(pid_alive) {
                "running"
            } else {
                "lost"
            }
            .to_string();
            let c = counts
                .query_map([&s.id], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
                })
                .map_err(&e)?;
            for x in c {
                let (v, n) = x.map_err(&e)?;
                s.counts.insert(v, n.max(0) as u64);
            }
        }
        Ok(out)
    }

    /// Counts of one session's rows by (layer, verdict, origin): the end-of-run summary.
    pub fn summary(&self, session: &str) -> Result<Vec<(String, String, String, u64)>, AuditError> {
        let e = self.err();
        let mut stmt = self
            .conn
            .prepare(
                "SELECT layer, verdict, origin, count(*) FROM events WHERE session = ?1 \
                 GROUP BY layer, verdict, origin ORDER BY layer, verdict, origin",
            )
            .map_err(&e)?;
        let it = stmt
            .query_map([session], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get::<_, i64>(3)?.max(0) as u64,
                ))
            })
            .map_err(&e)?;
        it.collect::<Result<Vec<_>, _>>().map_err(&e)
    }

    /// The end-of-run summary for one session, one or two lines for stderr: denials by
    /// layer, claims, drops, and where to read more.
    pub fn session_summary(&self, session: &str) -> Result<String, AuditError> {
        let mut denies: BTreeMap<String, u64> = BTreeMap::new();
        let (mut audit_denies, mut claims, mut total) = (0u64, 0u64, 0u64);
        for (layer, verdict, origin, n) in self.summary(session)? {
            total += n;
            if origin != origin::WARDEN {
                claims += n;
            } else if verdict == "deny" {
                *denies.entry(layer).or_default() += n;
            } else if verdict == "audit_deny" {
                audit_denies += n;
            }
        }
        let nd: u64 = denies.values().sum();
        let mut s = format!("warden: session {session}: {total} events, {nd} denied");
        if nd > 0 {
            let by: Vec<String> = denies.iter().map(|(l, n)| format!("{l} {n}")).collect();
            s.push_str(&format!(" ({})", by.join(", ")));
        }
        if audit_denies > 0 {
            s.push_str(&format!(", {audit_denies} would be denied (audit mode)"));
        }
        if claims > 0 {
            s.push_str(&format!(
                ", {claims} claims reported from inside the sandbox"
            ));
        }
        let short: String = session.chars().take(12).collect();
        s.push_str(&format!("\nwarden: details: warden log {short}"));
        Ok(s)
    }

    /// Prunes the oldest rows past `ret` (by age, then by size), keeping the chain verifiable:
    /// in the same transaction a checkpoint row is appended that records the last pruned
    /// row's seq and hash, and `verify` then starts the chain from it.
    pub fn prune(
        &mut self,
        ret: &Retention,
        now_ms: i64,
    ) -> Result<Option<PruneReport>, AuditError> {
        let path = self.path.clone();
        let e = sq(&path);
        let (page_size, pages, free): (i64, i64, i64) = (
            self.pragma_i64("page_size")?,
            self.pragma_i64("page_count")?,
            self.pragma_i64("freelist_count")?,
        );
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&e)?;
        // Runs at every session's start: the common case (nothing to prune) costs two
        // primary-key lookups and the page counts; a table scan only when something is due.
        let oldest: Option<(i64, i64)> = match tx.query_row(
            "SELECT seq, ts_ms FROM events ORDER BY seq LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        ) {
            Ok(v) => Some(v),
            Err(rusqlite::Error::QueryReturnedNoRows) => None,
            Err(x) => return Err(e(x)),
        };
        let Some((first, first_ts)) = oldest else {
            return Ok(None);
        };
        let (head_seq, head_hash) = current_head(&tx).map_err(&e)?;
        let mut through = first - 1;
        if let Some(days) = ret.retention_days {
            let cutoff = now_ms.saturating_sub(i64::from(days) * 86_400_000);
            if first_ts < cutoff {
                // Rows before the first row that is young enough (a row with an odd old time
                // in the middle never takes newer rows with it).
                let young: Option<i64> = tx
                    .query_row(
                        "SELECT min(seq) FROM events WHERE ts_ms >= ?1",
                        [cutoff],
                        |r| r.get(0),
                    )
                    .map_err(&e)?;
                through = through.max(young.map_or(head_seq, |y| y - 1));
            }
        }
        if let Some(mb) = ret.max_mb {
            let max = i64::try_from(mb)
                .unwrap_or(i64::MAX / 2)
                .saturating_mul(1 << 20);
            let used = (pages - free) * page_size;
            let rows: i64 = if used > max {
                tx.query_row("SELECT count(*) FROM events", [], |r| r.get(0))
                    .map_err(&e)?
            } else {
                0
            };
            if used > max && rows > 0 {
                let per_row = (used / rows).max(1);
                let n = (used - max * 8 / 10) / per_row + 1;
                through = through.max(first + n - 1);
            }
        }
        let through = through.min(head_seq);
        if through < first {
            return Ok(None);
        }
        let last_hash: String = tx
            .query_row("SELECT hash FROM events WHERE seq = ?1", [through], |r| {
                r.get(0)
            })
            .map_err(&e)?;
        let deleted = tx
            .execute("DELETE FROM events WHERE seq <= ?1", [through])
            .map_err(&e)?;
        if let Some(days) = ret.retention_days {
            let cutoff = now_ms.saturating_sub(i64::from(days) * 86_400_000);
            tx.execute(
                "DELETE FROM sessions WHERE end_ms IS NOT NULL AND end_ms < ?1",
                [cutoff],
            )
            .map_err(&e)?;
        }
        let mut extra = serde_json::Map::new();
        extra.insert("pruned_through_seq".into(), through.into());
        extra.insert("pruned_through_hash".into(), last_hash.clone().into());
        extra.insert("pruned_rows".into(), (deleted as u64).into());
        extra.insert("retention_days".into(), ret.retention_days.into());
        extra.insert("max_mb".into(), ret.max_mb.into());
        let cp = NewRow {
            kind: kind::CHECKPOINT,
            origin: origin::WARDEN,
            ts_ms: now_ms,
            layer: "audit".into(),
            verdict: "observe".into(),
            who: "warden".into(),
            what: format!("pruned rows {first}..{through}"),
            reason: "retention limits".into(),
            extra: canon::canonical_map(&extra),
            ..Default::default()
        };
        let seq = head_seq + 1;
        let h = cp.hash(seq, &head_hash);
        insert_row(&tx, seq, &cp, &head_hash, &h).map_err(&e)?;
        tx.execute(
            "INSERT OR REPLACE INTO heads (id, seq, hash, updated_ms) VALUES (1, ?1, ?2, ?3)",
            params![seq, h, now_ms],
        )
        .map_err(&e)?;
        tx.commit().map_err(&e)?;
        let _ = self.conn.execute_batch("PRAGMA incremental_vacuum");
        Ok(Some(PruneReport {
            rows: deleted as u64,
            through_seq: through,
            checkpoint_seq: seq,
        }))
    }

    /// Checkpoints the write-ahead log when it has grown past [`WAL_KEEP_FRAMES`] frames.
    /// Sessions close without a checkpoint (see `init`), and the first connection to open
    /// the store rebuilds the log's index by reading every frame written since the last
    /// one: at SQLite's default 1000-frame auto-checkpoint that was up to 4 MB of reads,
    /// ~1.4 ms of CPU, at every session's start. A passive checkpoint never waits for
    /// other sessions; this connection's next write then starts the log from its beginning
    /// (a later open cannot: recovery forgets what was checkpointed), so call it before
    /// writing. An open then reads at most this many frames plus one session's. Runs on
    /// the writer thread before its first batch, off the session's critical path.
    /// Returns whether a checkpoint ran.
    pub fn checkpoint_if_long(&mut self) -> Result<bool, AuditError> {
        let mut wal = self.path.clone().into_os_string();
        wal.push("-wal");
        let Ok(len) = std::fs::symlink_metadata(&wal).map(|m| m.len()) else {
            return Ok(false);
        };
        let page = self.pragma_i64("page_size")?.max(512) as u64;
        if len <= WAL_KEEP_FRAMES * (page + 24) {
            return Ok(false);
        }
        self.conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
            .map_err(self.err())?;
        Ok(true)
    }

    fn pragma_i64(&self, name: &str) -> Result<i64, AuditError> {
        self.conn
            .query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))
            .map_err(self.err())
    }

    /// The session whose id is `id` or starts with it; `None` gives the latest session.
    pub fn resolve_session(&self, id: Option<&str>) -> Result<Option<String>, AuditError> {
        let e = self.err();
        match id {
            None => self
                .conn
                .query_row(
                    "SELECT id FROM sessions ORDER BY start_ms DESC, id LIMIT 1",
                    [],
                    |r| r.get(0),
                )
                .optional()
                .map_err(&e),
            Some(p) => {
                // The sessions table first (small); rows of sessions it does not list (the
                // daemon's, or pruned entries) after.
                let mut ids: Vec<String> = Vec::new();
                for sql in [
                    "SELECT id FROM sessions WHERE substr(id, 1, length(?1)) = ?1 LIMIT 3",
                    "SELECT DISTINCT session FROM events WHERE session >= ?1 AND \
                     substr(session, 1, length(?1)) = ?1 LIMIT 3",
                ] {
                    let mut stmt = self.conn.prepare(sql).map_err(&e)?;
                    ids = stmt
                        .query_map([p], |r| r.get(0))
                        .map_err(&e)?
                        .collect::<Result<_, _>>()
                        .map_err(&e)?;
                    if !ids.is_empty() {
                        break;
                    }
                }
                if ids.iter().any(|i| i == p) {
                    return Ok(Some(p.to_string()));
                }
                match ids.len() {
                    0 => Ok(None),
                    1 => Ok(ids.into_iter().next()),
                    _ => Err(self.invalid(format!(
                        "session prefix `{p}` is ambiguous ({} ...)",
                        ids.join(", ")
                    ))),
                }
            }
        }
    }
}

fn short(h: &str) -> String {
    h.chars().take(16).collect::<String>() + if h.len() > 16 { "…" } else { "" }
}

fn current_head(tx: &Connection) -> rusqlite::Result<(i64, String)> {
    let h: Option<(i64, String)> = tx
        .query_row("SELECT seq, hash FROM heads WHERE id = 1", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    // The head record is authoritative; if it is gone (tampering), append after the last row
    // and let `verify` report the damage.
    match h {
        Some(h) => Ok(h),
        None => Ok(tx
            .query_row(
                "SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?
            .unwrap_or((0, ZERO_HASH.to_string()))),
    }
}

fn insert_row(
    tx: &Connection,
    seq: i64,
    r: &NewRow,
    prev: &str,
    hash: &str,
) -> rusqlite::Result<()> {
    let mut stmt = tx.prepare_cached(INSERT)?;
    bind_insert(&mut stmt, seq, r, prev, hash)
}

fn bind_insert(
    stmt: &mut rusqlite::CachedStatement<'_>,
    seq: i64,
    r: &NewRow,
    prev: &str,
    hash: &str,
) -> rusqlite::Result<()> {
    stmt.execute(params![
        seq,
        r.kind,
        r.origin,
        r.ts_ms,
        r.session,
        r.layer,
        r.verdict,
        r.who,
        r.what,
        r.rule,
        r.reason,
        r.sha256,
        r.host,
        r.port,
        r.tool,
        r.claimed_verdict,
        r.claimed_ts_ms,
        r.claimed_layer,
        r.extra,
        prev,
        hash
    ])?;
    Ok(())
}

fn session_start_row(s: &SessionInfo) -> NewRow {
    let mut extra = serde_json::Map::new();
    extra.insert("workspace".into(), s.workspace.clone().into());
    extra.insert("profile".into(), s.profile.clone().into());
    extra.insert("agent".into(), s.agent.clone().into());
    if let Some(p) = s.pid {
        extra.insert("pid".into(), p.into());
    }
    NewRow {
        kind: kind::SESSION_START,
        origin: origin::WARDEN,
        ts_ms: s.start_ms,
        session: s.id.clone(),
        layer: "session".into(),
        verdict: "observe".into(),
        who: format!("warden run ({})", s.profile),
        what: s.command.clone(),
        rule: format!("profile:{}", s.profile),
        reason: "session start".into(),
        extra: canon::canonical_map(&extra),
        ..Default::default()
    }
}

fn session_end_row(s: &SessionEnd) -> NewRow {
    let mut extra = serde_json::Map::new();
    if let Some(x) = s.exit_status {
        extra.insert("exit_status".into(), x.into());
    }
    NewRow {
        kind: kind::SESSION_END,
        origin: origin::WARDEN,
        ts_ms: s.end_ms,
        session: s.id.clone(),
        layer: "session".into(),
        verdict: "observe".into(),
        who: "warden run".into(),
        what: match s.exit_status {
            Some(x) => format!("exit {x}"),
            None => "no exit status".into(),
        },
        rule: String::new(),
        reason: s.reason.clone(),
        extra: canon::canonical_map(&extra),
        ..Default::default()
    }
}

fn pid_alive(pid: i64) -> bool {
    // Positive first: Pid::from_raw asserts a non-negative number.
    let Some(p) = i32::try_from(pid)
        .ok()
        .filter(|&p| p > 0)
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    // Signal 0 only checks for existence; EPERM means it exists but is not ours.
    match rustix::process::test_kill_process(p) {
        Ok(()) => true,
        Err(e) => e == rustix::io::Errno::PERM,
    }
}

fn random_id() -> String {
    let mut b = [0u8; 16];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut f, &mut b);
    }
    canon::hex(&b)
}

#[cfg(test)]
mod tests {
    use super::pid_alive;

    #[test]
    fn pid_alive_sees_ourselves_and_init_and_refuses_non_pids() {
        assert!(pid_alive(i64::from(std::process::id())));
        assert!(pid_alive(1), "init exists (EPERM counts as alive)");
        for p in [0, -1, i64::from(i32::MAX) + 1] {
            assert!(!pid_alive(p), "{p}");
        }
    }
}
