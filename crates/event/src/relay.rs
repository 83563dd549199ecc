//! The hook-event relay of `warden run`: decisions reported from inside the sandbox arrive
//! on a pipe whose write end the agent holds, so everything on it is untrusted input.
//!
//! The reader holds at most one 64 KiB read buffer plus one frame ([`MAX_FRAME`]); it accepts
//! only gate decisions, re-stamps them with the run's session and marks them as reported
//! from inside; it admits at most [`Limits::rate_per_s`] per second (burst
//! [`Limits::burst`]) and [`Limits::max_events`] / [`Limits::max_bytes`] per session. Junk,
//! oversized frames, malformed JSON and events over the limits are counted, never queued,
//! and reported once, as one decision, when the pipe closes. The pipe keeps being drained
//! after the budget is spent, so hooks never block on it.

use crate::{Decision, Layer, Verdict};
use std::io::Read;
use std::os::fd::OwnedFd;
use std::time::Duration;
use warden_proto::frame::Decoded;
use warden_proto::rate::{Budget, TokenBucket};

/// Largest frame payload on the hook pipe: a frame and its header fit in `PIPE_BUF`
/// (4096 bytes on Linux), so one `write` is atomic between concurrent hook processes.
pub const MAX_FRAME: usize = 4096 - warden_proto::frame::HEADER_LEN;

#[derive(Debug, Clone)]
pub struct Limits {
    pub rate_per_s: u32,
    pub burst: u32,
    pub max_events: u64,
    pub max_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            rate_per_s: 50,
            burst: 500,
            max_events: 50_000,
            max_bytes: 32 * 1024 * 1024,
        }
    }
}

/// What the relay saw in one session.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    pub accepted: u64,
    pub bad: u64,
    pub over_rate: u64,
    pub over_budget: u64,
    pub oversize: u64,
    pub junk_bytes: u64,
    pub bytes_read: u64,
}

impl Stats {
    pub fn dropped(&self) -> u64 {
        self.bad + self.over_rate + self.over_budget + self.oversize
    }
}

/// Shortens a decision (as JSON) to fit one frame: long string fields are cut, with a note.
pub fn fit(line: &str) -> std::borrow::Cow<'_, str> {
    if line.len() <= MAX_FRAME {
        return line.into();
    }
    let Ok(mut d) = serde_json::from_str::<Decision>(line) else {
        return String::from("{}").into();
    };
    let cut = |s: &mut String, max: usize| {
        if s.len() > max {
            let mut end = max;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            s.truncate(end);
            s.push_str("…[cut]");
        }
    };
    d.extra.retain(|_, v| v.to_string().len() <= 256);
    d.extra.insert("truncated".into(), true.into());
    for max in [1024usize, 512, 128] {
        cut(&mut d.what, max);
        cut(&mut d.reason, max);
        cut(&mut d.who, max / 2);
        cut(&mut d.rule, max / 2);
        cut(&mut d.session, 128);
        let s = d.to_json();
        if s.len() <= MAX_FRAME {
            return s.into();
        }
    }
    d.extra.clear();
    d.extra.insert("truncated".into(), true.into());
    d.to_json().into()
}

/// Relays frames from `r` until end of stream; returns the counts (already reported).
pub fn relay<R: Read>(mut r: R, limits: &Limits, session: &str) -> Stats {
    let mut dec = warden_proto::Decoder::new(MAX_FRAME);
    let mut bucket = TokenBucket::new(limits.rate_per_s, limits.burst);
    let mut budget = Budget::new(limits.max_events, limits.max_bytes);
    let mut st = Stats::default();
    let mut buf = vec![0u8; 64 * 1024];
    let mut warned = false;
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        st.bytes_read += n as u64;
        dec.push(&buf[..n], &mut |ev| match ev {
            Decoded::Frame { payload, .. } => {
                let d = match serde_json::from_slice::<Decision>(payload) {
                    Ok(d) if d.layer == Layer::Gate => d,
                    _ => {
                        st.bad += 1;
                        return;
                    }
                };
                if !bucket.take() {
                    st.over_rate += 1;
                    return;
                }
                if !budget.spend(payload.len()) {
                    st.over_budget += 1;
                    return;
                }
                let mut d = d;
                d.session = session.to_string();
                d.extra.insert(
                    "reported_by".into(),
                    "warden hook inside the sandbox".into(),
                );
                d.emit();
                st.accepted += 1;
            }
            Decoded::Junk(_) | Decoded::Oversize(_) => {}
        });
        if !warned && (dec.stats.junk_bytes > 0 || st.dropped() > 0) {
            warned = true;
            tracing::warn!("hook events from inside the sandbox are being dropped (junk, oversized or over the rate limit); the counts go to the session log when the session ends");
        }
    }
    st.oversize = dec.stats.oversize;
    st.junk_bytes = dec.stats.junk_bytes + dec.pending() as u64;
    if st.dropped() > 0 || st.junk_bytes > 0 {
        Decision::new(
            Layer::Sandbox,
            "warden run",
            "hook events from inside the sandbox",
            "hook_relay.limits",
            Verdict::Deny,
            format!(
                "dropped {} hook events ({} malformed, {} oversized, {} over the rate of {}/s, {} over the session budget) and {} junk bytes; {} were relayed",
                st.dropped(),
                st.bad,
                st.oversize,
                st.over_rate,
                limits.rate_per_s,
                st.over_budget,
                st.junk_bytes,
                st.accepted
            ),
        )
        .with("accepted", st.accepted)
        .with("dropped", st.dropped())
        .with("malformed", st.bad)
        .with("oversize", st.oversize)
        .with("over_rate", st.over_rate)
        .with("over_budget", st.over_budget)
        .with("junk_bytes", st.junk_bytes)
        .with("bytes_read", st.bytes_read)
        .emit();
    }
    st
}

/// A relay running on its own thread.
pub struct Handle {
    done: std::sync::mpsc::Receiver<Stats>,
}

/// Starts the relay on the read end of the hook pipe.
pub fn spawn(fd: OwnedFd) -> Handle {
    let (tx, rx) = std::sync::mpsc::channel();
    let session = std::env::var("WARDEN_SESSION_ID").unwrap_or_default();
    std::thread::spawn(move || {
        let st = relay(std::fs::File::from(fd), &Limits::default(), &session);
        let _ = tx.send(st);
    });
    Handle { done: rx }
}

impl Handle {
    /// Waits (at most `timeout`) for the pipe to close and the summary to be written; the
    /// sandbox is gone by then, so only an escaped writer could keep it open.
    pub fn finish(self, timeout: Duration) -> Option<Stats> {
        self.done.recv_timeout(timeout).ok()
    }
}

/// The hook-report socket's server (see `warden_policy::session::HOOK_SOCK`): reads every
/// open connection as its bytes arrive (poll; at most [`FORWARD_CONNECTIONS`] at once, the
/// oldest closed past that) and copies each well-formed frame, whole, into the hook pipe,
/// where the relay judges it like any other report, so a connection that never finishes a
/// frame holds back no other report. Agent CLIs do not pass inherited fds on to their
/// hooks, so this is how their reports reach the session. Per connection: at most
/// [`FORWARD_FRAMES`] frames and [`FORWARD_DEADLINE`] in all; anything malformed ends the
/// connection. When the session ends the backlog is read to its end without waiting
/// ([`DRAIN_CONNECTIONS`]): a report written while the sandbox ran is never dropped.
pub struct Forwarder {
    /// A duplicate of the listening socket: shutting it down wakes the thread's poll at
    /// once (without it the thread still sees `stop` within one poll interval).
    waker: Option<OwnedFd>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

pub const FORWARD_FRAMES: usize = 64;
/// A frame asking the supervisor a question that blocks the hook (a gate `ask` answered by
/// a human through warden's approvals); answered with one [`KIND_ANSWER`] frame on the same
/// connection. Reports are `warden_proto::frame::KIND_JSON`.
pub const KIND_ASK: u8 = 2;
pub const KIND_ANSWER: u8 = 3;
/// Questions waiting at once; past this one is answered at once by the asker's refusal
/// (an empty answer, which the hook reads as a deny).
pub const MAX_ASKS: usize = 8;
/// Answers a [`KIND_ASK`] payload (blocking, on a thread of its own); gets the connection
/// to notice a hook that gave up.
pub type Asker =
    std::sync::Arc<dyn Fn(&[u8], &std::os::unix::net::UnixStream) -> Vec<u8> + Send + Sync>;
pub const FORWARD_DEADLINE: Duration = Duration::from_secs(3);

/// Connections the forwarder holds open at once; past this the oldest is closed.
pub const FORWARD_CONNECTIONS: usize = 256;

/// One connection being read: its bytes so far (at most one frame and its header).
struct Conn {
    s: std::os::unix::net::UnixStream,
    buf: Vec<u8>,
    frames: usize,
    since: std::time::Instant,
}

/// What reading a connection left to do.
enum Next {
    Keep,
    Close,
    /// A [`KIND_ASK`] frame: the connection is the question's.
    Ask(Vec<u8>),
}

/// Reads what `c` has buffered (never blocks) and forwards each whole frame into `pipe`.
fn pump(c: &mut Conn, pipe: &mut std::fs::File) -> Next {
    use std::io::{Read, Write};
    use warden_proto::frame::HEADER_LEN;
    let mut chunk = [0u8; 4096];
    loop {
        // Whole frames first.
        while c.buf.len() >= HEADER_LEN {
            let mut h = [0u8; HEADER_LEN];
            h.copy_from_slice(&c.buf[..HEADER_LEN]);
            let Ok((kind, len)) = warden_proto::frame::parse_header(&h, MAX_FRAME) else {
                return Next::Close;
            };
            if c.buf.len() < HEADER_LEN + len {
                break;
            }
            let payload = c.buf[HEADER_LEN..HEADER_LEN + len].to_vec();
            c.buf.drain(..HEADER_LEN + len);
            c.frames += 1;
            if kind == KIND_ASK {
                return Next::Ask(payload);
            }
            // At most PIPE_BUF bytes in one write: atomic between writers.
            if let Ok(b) = warden_proto::frame::encode(kind, &payload, MAX_FRAME) {
                if pipe.write_all(&b).is_err() {
                    return Next::Close;
                }
            }
            if c.frames >= FORWARD_FRAMES {
                return Next::Close;
            }
        }
        if c.buf.len() >= 2 && c.buf[..2] != warden_proto::frame::MAGIC {
            return Next::Close;
        }
        let want = (HEADER_LEN + MAX_FRAME)
            .saturating_sub(c.buf.len())
            .min(chunk.len());
        match c.s.read(&mut chunk[..want.max(1)]) {
            Ok(0) => return Next::Close,
            Ok(n) => c.buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Next::Keep,
            Err(_) => return Next::Close,
        }
    }
}

/// Starts forwarding from `listener` (listening, owned) into `pipe` (a write end of the hook
/// pipe; closed when the forwarder stops). Connections are read as their bytes arrive
/// (poll), so one that never finishes a frame holds back nobody else's.
pub fn forward(listener: OwnedFd, pipe: OwnedFd, asker: Option<Asker>) -> Forwarder {
    use rustix::event::{PollFd, PollFlags, Timespec};
    use std::sync::atomic::{AtomicBool, Ordering};
    let listener = std::os::unix::net::UnixListener::from(listener);
    let waker = listener.try_clone().ok().map(OwnedFd::from);
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let thread = std::thread::spawn(move || {
        let asking = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut pipe = std::fs::File::from(pipe);
        let _ = listener.set_nonblocking(true);
        let mut conns: Vec<Conn> = Vec::new();
        let ask = |mut s: std::os::unix::net::UnixStream, payload: Vec<u8>| {
            // The connection is the question's: answered on a thread (a human may take
            // minutes), bounded in number.
            let Some(asker) = asker.clone() else { return };
            let _ = s.set_nonblocking(false);
            if asking.fetch_add(1, Ordering::SeqCst) >= MAX_ASKS {
                asking.fetch_sub(1, Ordering::SeqCst);
                let _ = warden_proto::frame::write_frame(&mut s, KIND_ANSWER, b"", 0);
                return;
            }
            let in_flight = asking.clone();
            let spawned = std::thread::Builder::new()
                .name("gate-ask".into())
                .spawn(move || {
                    let answer = asker(&payload, &s);
                    let _ =
                        warden_proto::frame::write_frame(&mut s, KIND_ANSWER, &answer, MAX_FRAME);
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                });
            if spawned.is_err() {
                // The closure (and the connection) is gone: the hook reads EOF and denies.
                asking.fetch_sub(1, Ordering::SeqCst);
            }
        };
        loop {
            if stop2.load(Ordering::SeqCst) {
                // The sandbox is gone, so whatever its hooks sent is already buffered: read
                // it, and the rest of the backlog, without waiting instead of dropping it.
                for mut c in std::mem::take(&mut conns) {
                    let _ = pump(&mut c, &mut pipe);
                }
                drain(&listener, &mut pipe);
                return;
            }
            // Which connections have bytes (or a hang-up) to read.
            let ready: Vec<bool> = {
                let mut fds: Vec<PollFd<'_>> = std::iter::once(&listener)
                    .map(|l| PollFd::new(l, PollFlags::IN))
                    .chain(conns.iter().map(|c| PollFd::new(&c.s, PollFlags::IN)))
                    .collect();
                let tick = Timespec {
                    tv_sec: 0,
                    tv_nsec: 100_000_000,
                };
                match rustix::event::poll(&mut fds, Some(&tick)) {
                    Err(e) if e != rustix::io::Errno::INTR => {
                        std::thread::sleep(Duration::from_millis(50))
                    }
                    _ => {}
                }
                fds.iter().map(|p| !p.revents().is_empty()).collect()
            };
            // Connections with bytes (or a hang-up) to read; expired ones are closed.
            for (idx, mut c) in std::mem::take(&mut conns).into_iter().enumerate() {
                let ready = ready.get(idx + 1).copied().unwrap_or(false);
                let next = if ready {
                    pump(&mut c, &mut pipe)
                } else {
                    Next::Keep
                };
                match next {
                    Next::Keep if c.since.elapsed() <= FORWARD_DEADLINE => conns.push(c),
                    Next::Keep | Next::Close => {}
                    Next::Ask(p) => ask(c.s, p),
                }
            }
            // New connections: read at once what they sent.
            for _ in 0..FORWARD_CONNECTIONS {
                let s = match listener.accept() {
                    Ok((s, _)) => s,
                    Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                    Err(_) => break,
                };
                if s.set_nonblocking(true).is_err() {
                    continue;
                }
                let mut c = Conn {
                    s,
                    buf: Vec::new(),
                    frames: 0,
                    since: std::time::Instant::now(),
                };
                match pump(&mut c, &mut pipe) {
                    Next::Keep => {
                        if conns.len() >= FORWARD_CONNECTIONS {
                            // The oldest, which has had the longest to send its frame.
                            let oldest = conns
                                .iter()
                                .enumerate()
                                .min_by_key(|(_, c)| c.since)
                                .map(|(i, _)| i)
                                .unwrap_or(0);
                            conns.swap_remove(oldest);
                        }
                        conns.push(c);
                    }
                    Next::Close => {}
                    Next::Ask(p) => ask(c.s, p),
                }
            }
        }
    });
    Forwarder {
        waker,
        stop,
        thread,
    }
}

/// Most connections read once the sandbox is gone (the backlog is bounded by the kernel's
/// `somaxconn`; this bounds the work whatever it is).
pub const DRAIN_CONNECTIONS: usize = 4096;

/// At the end of the session: forwards the reports buffered on every connection still
/// waiting in the backlog, without blocking. A peer kept alive only as a file descriptor in
/// flight (SCM_RIGHTS inside another queued connection) cannot stall it: nothing of the
/// sandbox runs any more, so nothing more will arrive. Questions (asks) get no answer (the
/// hook reads EOF and denies). Connections past [`DRAIN_CONNECTIONS`] are counted and
/// reported as one decision, never dropped silently.
fn drain(listener: &std::os::unix::net::UnixListener, pipe: &mut std::fs::File) {
    let mut n = 0usize;
    let mut left = 0u64;
    while let Ok((s, _)) = listener.accept() {
        n += 1;
        if n > DRAIN_CONNECTIONS {
            left += 1;
            continue;
        }
        if s.set_nonblocking(true).is_err() {
            continue;
        }
        let mut c = Conn {
            s,
            buf: Vec::new(),
            frames: 0,
            since: std::time::Instant::now(),
        };
        let _ = pump(&mut c, pipe);
    }
    if left > 0 {
        Decision::new(
            Layer::Sandbox,
            "warden run",
            "hook events from inside the sandbox",
            "hook_relay.limits",
            Verdict::Deny,
            format!("{left} connections to the hook-report socket were still waiting when the session ended, past the {DRAIN_CONNECTIONS} read then; their reports were dropped"),
        )
        .with("unread_connections", left)
        .emit();
    }
}

impl Forwarder {
    /// Tells the thread to stop accepting (the sandbox is gone), drain and close its pipe
    /// end, without waiting for it ([`Forwarder::finish`] does).
    pub fn signal(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        // Shutting down the socket (through our duplicate) wakes the thread's poll.
        if let Some(w) = self.waker.take() {
            let _ = rustix::net::shutdown(&w, rustix::net::Shutdown::Both);
        }
    }

    /// Stops accepting (the sandbox is gone), then closes the forwarder's pipe end.
    pub fn finish(mut self) {
        self.signal();
        let _ = self.thread.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(what: &str) -> String {
        Decision::new(Layer::Gate, "agent", what, "gate.x", Verdict::Allow, "ok").to_json()
    }

    fn frame(s: &str) -> Vec<u8> {
        warden_proto::frame::encode(1, s.as_bytes(), 1 << 30).unwrap()
    }

    #[test]
    fn fit_shortens_long_decisions() {
        let long = gate(&"x".repeat(100_000));
        let f = fit(&long);
        assert!(f.len() <= MAX_FRAME);
        let d: Decision = serde_json::from_str(&f).unwrap();
        assert!(d.what.ends_with("[cut]"));
        assert_eq!(d.extra["truncated"], true);
        let short = gate("ls");
        assert_eq!(fit(&short), short.as_str());
    }

    #[test]
    fn relay_counts_everything_it_drops() {
        let mut wire = Vec::new();
        for i in 0..10 {
            wire.extend(frame(&gate(&format!("cmd {i}"))));
        }
        wire.extend(b"junk junk\n".repeat(1000));
        wire.extend(frame(&"y".repeat(MAX_FRAME + 1))); // oversized
        wire.extend(frame("{not json"));
        let d = Decision::new(Layer::Exec, "a", "b", "c", Verdict::Allow, "d").to_json();
        wire.extend(frame(&d)); // not a gate decision
        for i in 0..20 {
            wire.extend(frame(&gate(&format!("late {i}"))));
        }
        let lim = Limits {
            rate_per_s: 1,
            burst: 25,
            max_events: 1_000,
            max_bytes: 1 << 20,
        };
        let st = relay(&wire[..], &lim, "s");
        assert_eq!(st.accepted, 25);
        assert_eq!(st.over_rate, 5);
        assert_eq!(st.bad, 2);
        assert_eq!(st.oversize, 1);
        assert!(st.junk_bytes >= 10_000);
        let lim = Limits {
            max_events: 3,
            ..lim
        };
        let st = relay(&wire[..], &lim, "s");
        assert_eq!((st.accepted, st.over_budget, st.over_rate), (3, 22, 5));
    }
}
