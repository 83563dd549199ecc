//! The writer: a thread that owns the store connection and takes events through a bounded
//! channel, so recording a decision never blocks the layer that made it.

use crate::canon::{canonical_map, kind, origin, NewRow};
use crate::row::{claim_row, decision_row, ClaimLimits};
use crate::store::{AuditError, AuditStore, Head, Item, Retention, SessionEnd, SessionInfo};
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use warden_event::queue::{self, RecvTimeoutError, TrySendError};
use warden_event::{Decision, Layer};

/// Writer settings.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// Events the channel holds before [`AuditWriter::record`] starts dropping (and counting).
    pub capacity: usize,
    /// Most rows per transaction.
    pub batch_max: usize,
    pub claims: ClaimLimits,
    pub retention: Retention,
    /// How often pending drop/limit counts become rows while events keep coming.
    pub report_every: Duration,
    /// How long session start/end, flush and close wait for space in a full queue.
    pub control_timeout: Duration,
    /// Allowed decisions a session gets one row each; past it they are counted per layer
    /// into `limited` rows (every `report_every` and at the session's end). Denials, asks
    /// and observations always get their own rows. The agent decides how many allowed
    /// actions it takes (an allowed proxy connection in a loop wrote ~1,800 rows/s): without
    /// the bound it filled the store to `max_mb`, and the next start's pruning removed the
    /// oldest rows, its own denials and earlier sessions' among them (attack review 104).
    pub allow_rows_per_session: u64,
}

/// [`WriterConfig::allow_rows_per_session`] by default (~20 MB of rows).
pub const ALLOW_ROWS_PER_SESSION: u64 = 50_000;

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            capacity: 64 * 1024,
            batch_max: 8192,
            claims: ClaimLimits::default(),
            retention: Retention::default(),
            report_every: Duration::from_secs(10),
            control_timeout: Duration::from_secs(10),
            allow_rows_per_session: ALLOW_ROWS_PER_SESSION,
        }
    }
}

enum Msg {
    Decision(Box<Decision>),
    Row(Box<NewRow>),
    Start(Box<SessionInfo>),
    End(Box<SessionEnd>),
    Flush(SyncSender<Result<Head, Arc<AuditError>>>),
    Close(SyncSender<Result<Head, Arc<AuditError>>>),
    Summarize(String, SyncSender<Result<String, Arc<AuditError>>>),
    Prune(Retention),
}

struct Bucket {
    tokens: f64,
    last: Instant,
    refused: u64,
}

struct Shared {
    dropped: AtomicU64,
    buckets: Mutex<HashMap<String, Bucket>>,
    limits: ClaimLimits,
}

/// A handle on the writer thread. Clones share the thread; [`AuditWriter::close`] ends it.
#[derive(Clone)]
pub struct AuditWriter {
    tx: queue::Sender<Msg>,
    shared: Arc<Shared>,
    thread: Arc<Mutex<Option<std::thread::JoinHandle<()>>>>,
    control_timeout: Duration,
}

/// Most sessions whose claim buckets are tracked at once (sessions are warden's ids).
const MAX_BUCKETS: usize = 4096;

impl AuditWriter {
    /// Opens (or creates) the store at `path`, starts the writer thread, and has it prune
    /// the store to `cfg.retention` first.
    pub fn open(path: &Path, cfg: WriterConfig) -> Result<AuditWriter, AuditError> {
        let store = AuditStore::open(path)?;
        let w = Self::spawn(store, cfg.clone());
        // Pruning runs on the writer thread before its first batch, so a large prune never
        // delays the caller (events queue meanwhile).
        let _ = w.tx.try_send(Msg::Prune(cfg.retention));
        Ok(w)
    }

    /// Starts the writer thread on an open store.
    pub fn spawn(store: AuditStore, cfg: WriterConfig) -> AuditWriter {
        let (tx, rx) = queue::bounded(cfg.capacity.max(1));
        let shared = Arc::new(Shared {
            dropped: AtomicU64::new(0),
            buckets: Mutex::new(HashMap::new()),
            limits: cfg.claims.clone(),
        });
        let s2 = shared.clone();
        let batch_max = cfg.batch_max.max(1);
        let every = cfg.report_every;
        let allow_cap = cfg.allow_rows_per_session;
        let t = std::thread::Builder::new()
            .name("warden-audit".into())
            .spawn(move || run(store, rx, s2, batch_max, every, allow_cap))
            .ok();
        if t.is_none() {
            tracing::warn!(
                "audit: cannot start the writer thread; events will be counted as dropped"
            );
        }
        AuditWriter {
            tx,
            shared,
            thread: Arc::new(Mutex::new(t)),
            control_timeout: cfg.control_timeout,
        }
    }

    fn send(&self, m: Msg) {
        match self.tx.try_send(m) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Records a decision warden made. Never blocks: when the queue is full the event is
    /// counted, and the count is written as one `dropped` row.
    pub fn record(&self, d: Decision) {
        self.send(Msg::Decision(Box::new(d)));
    }

    /// Records a report from inside the sandbox (one line from the hook pipe) as the agent's
    /// claim for `session`, arriving on `channel`. Never blocks; over the session's rate
    /// limit the claim is refused and counted (one `limited` row per report period).
    /// Returns whether it was accepted.
    pub fn record_claim(&self, session: &str, channel: Layer, raw: &[u8]) -> bool {
        if !self.take_token(session) {
            return false;
        }
        let row = claim_row(
            session,
            channel,
            raw,
            crate::time::now_ms(),
            &self.shared.limits,
        );
        self.send(Msg::Row(Box::new(row)));
        true
    }

    fn take_token(&self, session: &str) -> bool {
        let lim = &self.shared.limits;
        let mut b = self
            .shared
            .buckets
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if !b.contains_key(session) && b.len() >= MAX_BUCKETS {
            // Forget idle full buckets; keep those with refusals to report.
            b.retain(|_, x| x.refused > 0);
            if b.len() >= MAX_BUCKETS {
                return false;
            }
        }
        let now = Instant::now();
        let e = b.entry(session.to_string()).or_insert(Bucket {
            tokens: lim.burst,
            last: now,
            refused: 0,
        });
        let dt = now.duration_since(e.last).as_secs_f64();
        e.tokens = (e.tokens + dt * lim.per_sec).min(lim.burst);
        e.last = now;
        if e.tokens >= 1.0 {
            e.tokens -= 1.0;
            true
        } else {
            e.refused += 1;
            false
        }
    }

    /// Reads reports from inside the sandbox, one per line (the hook pipe), until EOF, and
    /// records each as a claim for `session` on `channel` (see [`Self::record_claim`]). A
    /// line longer than the claim line limit is recorded as one malformed claim (its
    /// prefix) and the rest of it is skipped. Returns (lines accepted, lines refused by the
    /// rate limit). Run it on its own thread.
    pub fn relay_claims(&self, r: impl std::io::Read, session: &str, channel: Layer) -> (u64, u64) {
        use std::io::BufRead;
        let max = self.shared.limits.line_max as u64;
        let mut rd = std::io::BufReader::new(r);
        let mut line = Vec::new();
        let (mut ok, mut refused) = (0u64, 0u64);
        loop {
            line.clear();
            match std::io::Read::take(&mut rd, max + 1).read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let complete = line.ends_with(b"\n");
            if line.iter().all(u8::is_ascii_whitespace) && complete {
                continue;
            }
            if self.record_claim(session, channel, &line) {
                ok += 1;
            } else {
                refused += 1;
            }
            if !complete && line.len() as u64 > max {
                // Skip the rest of an over-long line, in bounded reads.
                loop {
                    let mut skip = Vec::new();
                    match std::io::Read::take(&mut rd, 64 * 1024).read_until(b'\n', &mut skip) {
                        Ok(0) | Err(_) => return (ok, refused),
                        Ok(_) if skip.ends_with(b"\n") => break,
                        Ok(_) => {}
                    }
                }
            }
        }
        (ok, refused)
    }

    /// Records a session's start (and adds it to the sessions table). Waits up to the
    /// control timeout for queue space; not for enforcement paths.
    pub fn session_start(&self, s: SessionInfo) -> Result<(), AuditError> {
        self.send_control(Msg::Start(Box::new(s)))
    }

    /// Records a session's end.
    pub fn session_end(&self, s: SessionEnd) -> Result<(), AuditError> {
        self.send_control(Msg::End(Box::new(s)))
    }

    fn send_control(&self, mut m: Msg) -> Result<(), AuditError> {
        let deadline = Instant::now() + self.control_timeout;
        loop {
            match self.tx.try_send(m) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Disconnected(_)) => return Err(AuditError::Stopped),
                Err(TrySendError::Full(back)) => {
                    if Instant::now() >= deadline {
                        self.shared.dropped.fetch_add(1, Ordering::Relaxed);
                        return Err(AuditError::Stopped);
                    }
                    m = back;
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        }
    }

    /// Waits until everything recorded so far is committed (pending drop and limit counts
    /// included) and returns the chain head.
    pub fn flush(&self) -> Result<Head, AuditError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.send_control(Msg::Flush(tx))?;
        self.wait(rx)
    }

    /// The one-line summary of `session` ([`AuditStore::session_summary`]) once everything
    /// recorded so far is committed, read on the writer's own connection (no second open of
    /// the store at a session's end).
    pub fn summary(&self, session: &str) -> Result<String, AuditError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.send_control(Msg::Summarize(session.to_string(), tx))?;
        match rx.recv() {
            Ok(Ok(s)) => Ok(s),
            Ok(Err(e)) => Err(AuditError::Writer(e)),
            Err(_) => Err(AuditError::Stopped),
        }
    }

    /// [`AuditWriter::summary`] of `session` (if asked) and [`AuditWriter::close`] in one
    /// round trip: both requests are queued before either answer is awaited, so the writer
    /// commits once and answers both (the summary after the commit, as `summary` does).
    pub fn close_with_summary(
        &self,
        session: Option<&str>,
    ) -> (Option<Result<String, AuditError>>, Result<Head, AuditError>) {
        let summary = session.map(|s| {
            let (tx, rx) = mpsc::sync_channel(1);
            self.send_control(Msg::Summarize(s.to_string(), tx))
                .map(|()| rx)
        });
        let closed = self.close();
        let summary = summary.map(|r| match r?.recv() {
            Ok(Ok(s)) => Ok(s),
            Ok(Err(e)) => Err(AuditError::Writer(e)),
            Err(_) => Err(AuditError::Stopped),
        });
        (summary, closed)
    }

    /// Flushes, stops the writer thread and returns the final head. Other clones' later
    /// records are counted as dropped.
    pub fn close(&self) -> Result<Head, AuditError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.send_control(Msg::Close(tx))?;
        let r = self.wait(rx);
        if let Some(t) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = t.join();
        }
        r
    }

    /// Waits for the writer's answer. Not bounded by a timeout: the writer answers once
    /// everything queued before the request is committed (at most `capacity` rows, each
    /// transaction bounded by SQLite's busy timeout), or hangs up if it has stopped.
    fn wait(&self, rx: Receiver<Result<Head, Arc<AuditError>>>) -> Result<Head, AuditError> {
        match rx.recv() {
            Ok(Ok(h)) => Ok(h),
            Ok(Err(e)) => Err(AuditError::Writer(e)),
            Err(_) => Err(AuditError::Stopped),
        }
    }

    /// Events dropped and not yet written as a `dropped` row.
    pub fn pending_drops(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// A `tracing` layer that records every decision emitted through
    /// [`warden_event::Decision::emit`] (target [`warden_event::DECISION_TARGET`]).
    pub fn tracing_layer(&self) -> crate::TracingLayer {
        crate::TracingLayer {
            writer: self.clone(),
        }
    }
}

fn counts_rows(shared: &Shared) -> Vec<Item> {
    let mut out = Vec::new();
    let now = crate::time::now_ms();
    let dropped = shared.dropped.swap(0, Ordering::Relaxed);
    if dropped > 0 {
        out.push(Item::Row(count_row(
            kind::DROPPED,
            String::new(),
            dropped,
            format!("dropped {dropped} events"),
            "the audit writer's queue was full or a write failed",
            now,
        )));
    }
    let mut b = shared.buckets.lock().unwrap_or_else(|p| p.into_inner());
    for (session, x) in b.iter_mut() {
        if x.refused > 0 {
            let n = std::mem::take(&mut x.refused);
            out.push(Item::Row(count_row(
                kind::LIMITED,
                session.clone(),
                n,
                format!("refused {n} claims from inside the sandbox"),
                &format!(
                    "over the claim rate limit ({}/s, burst {})",
                    shared.limits.per_sec, shared.limits.burst
                ),
                now,
            )));
        }
    }
    out
}

fn count_row(
    k: &'static str,
    session: String,
    n: u64,
    what: String,
    reason: &str,
    now: i64,
) -> NewRow {
    let mut extra = serde_json::Map::new();
    extra.insert("count".into(), n.into());
    NewRow {
        kind: k,
        origin: origin::WARDEN,
        ts_ms: now,
        session,
        layer: "audit".into(),
        verdict: "observe".into(),
        who: "warden".into(),
        what,
        rule: "audit.limits".into(),
        reason: reason.to_string(),
        extra: canonical_map(&extra),
        ..Default::default()
    }
}

/// Allowed decisions past a session's [`WriterConfig::allow_rows_per_session`], counted per
/// (session, layer) until written as `limited` rows.
#[derive(Default)]
struct Folded {
    /// Allowed decisions seen per session (sessions whose end was written are dropped).
    seen: HashMap<String, u64>,
    counts: HashMap<(String, String), u64>,
}

impl Folded {
    /// Whether `d` gets a row of its own.
    fn keep(&mut self, d: &Decision, cap: u64) -> bool {
        if d.verdict != warden_event::Verdict::Allow {
            return true;
        }
        if self.seen.len() >= MAX_BUCKETS && !self.seen.contains_key(&d.session) {
            // Bounded like the claim buckets: an unknown session beyond them is counted
            // from its first allowed decision.
            *self
                .counts
                .entry((
                    d.session.clone(),
                    crate::row::layer_str(d.layer).to_string(),
                ))
                .or_default() += 1;
            return false;
        }
        let n = self.seen.entry(d.session.clone()).or_default();
        *n += 1;
        if *n <= cap {
            return true;
        }
        *self
            .counts
            .entry((
                d.session.clone(),
                crate::row::layer_str(d.layer).to_string(),
            ))
            .or_default() += 1;
        false
    }

    fn rows(&mut self, cap: u64, now: i64) -> Vec<Item> {
        let mut out: Vec<Item> = Vec::new();
        let mut counts: Vec<_> = self.counts.drain().collect();
        counts.sort();
        for ((session, layer), n) in counts {
            out.push(Item::Row(count_row(
                kind::LIMITED,
                session,
                n,
                format!("{n} allowed {layer} decisions counted, not written one by one"),
                &format!("over the session's {cap} rows for allowed decisions"),
                now,
            )));
        }
        out
    }
}

fn run(
    mut store: AuditStore,
    rx: queue::Receiver<Msg>,
    shared: Arc<Shared>,
    batch_max: usize,
    every: Duration,
    allow_cap: u64,
) {
    let mut folded = Folded::default();
    let mut batch: Vec<Item> = Vec::with_capacity(batch_max);
    let mut replies: Vec<SyncSender<Result<Head, Arc<AuditError>>>> = Vec::new();
    type SummaryReply = SyncSender<Result<String, Arc<AuditError>>>;
    let mut summaries: Vec<(String, SummaryReply)> = Vec::new();
    let mut last_report = Instant::now();
    let mut closing = false;
    let mut disconnected = false;
    while !closing && !disconnected {
        let mut report_now = false;
        let mut prune: Option<Retention> = None;
        let mut take = |m: Msg, batch: &mut Vec<Item>| match m {
            Msg::Decision(d) => {
                if folded.keep(&d, allow_cap) {
                    batch.push(Item::Row(decision_row(*d)))
                }
            }
            Msg::Row(r) => batch.push(Item::Row(*r)),
            Msg::Start(s) => batch.push(Item::SessionStart(*s)),
            Msg::End(s) => {
                report_now = true;
                batch.push(Item::SessionEnd(*s))
            }
            Msg::Flush(r) => {
                report_now = true;
                replies.push(r)
            }
            Msg::Close(r) => {
                report_now = true;
                closing = true;
                replies.push(r)
            }
            Msg::Summarize(session, r) => {
                report_now = true;
                summaries.push((session, r))
            }
            Msg::Prune(ret) => prune = Some(ret),
        };
        match rx.recv_timeout(every.min(Duration::from_secs(1))) {
            Ok(m) => take(m, &mut batch),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => disconnected = true,
        }
        while batch.len() < batch_max {
            match rx.try_recv() {
                Ok(m) => take(m, &mut batch),
                Err(_) => break,
            }
        }
        if let Some(ret) = prune {
            if let Err(e) = store.prune(&ret, crate::time::now_ms()) {
                tracing::warn!("audit: pruning failed: {e}");
            }
            if let Err(e) = store.checkpoint_if_long() {
                tracing::warn!("audit: checkpoint failed: {e}");
            }
        }
        if report_now || disconnected || last_report.elapsed() >= every {
            // Counts go before a session's end row, so they are inside the session.
            let mut counts = counts_rows(&shared);
            counts.extend(folded.rows(allow_cap, crate::time::now_ms()));
            for i in &batch {
                if let Item::SessionEnd(e) = i {
                    folded.seen.remove(&e.id);
                }
            }
            if !counts.is_empty() {
                let at = batch
                    .iter()
                    .position(|i| matches!(i, Item::SessionEnd(_)))
                    .unwrap_or(batch.len());
                batch.splice(at..at, counts);
            }
            last_report = Instant::now();
        }
        let result = if batch.is_empty() && replies.is_empty() && summaries.is_empty() {
            continue;
        } else if batch.is_empty() {
            store.head().and_then(|h| h.ok_or(AuditError::Stopped))
        } else {
            write(&mut store, &batch)
        }
        .map_err(Arc::new);
        if let Err(e) = &result {
            tracing::warn!("audit: {} events not written: {e}", batch.len());
            shared
                .dropped
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
        }
        batch.clear();
        for r in replies.drain(..) {
            let _ = r.send(result.clone());
        }
        // After the batch they followed is committed: on the writer's own connection.
        for (session, r) in summaries.drain(..) {
            let _ = r.send(store.session_summary(&session).map_err(Arc::new));
        }
    }
}

/// One transaction, retried once (the other writer may hold the lock past the busy timeout).
fn write(store: &mut AuditStore, batch: &[Item]) -> Result<Head, AuditError> {
    match store.append(batch) {
        Ok(h) => Ok(h),
        Err(_) => {
            std::thread::sleep(Duration::from_millis(50));
            store.append(batch)
        }
    }
}
