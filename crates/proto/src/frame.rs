//! Length-prefixed frames.
//!
//! Wire format: `b'W' b'F' VERSION kind len:u32be payload[len]`. A reader checks the length
//! against its own maximum before reading the payload, so an oversized frame costs 8 bytes
//! of memory, never `len`. Payload memory grows with the bytes that actually arrive (a peer
//! announcing 16 MiB and sending 10 bytes holds 10 bytes), and the whole frame must arrive
//! before the connection's deadline.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const MAGIC: [u8; 2] = *b"WF";
pub const VERSION: u8 = 1;
pub const HEADER_LEN: usize = 8;
/// Payload kind: one JSON document.
pub const KIND_JSON: u8 = 1;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("not a warden frame (bad magic {0:02x?}); is the peer an older warden? restart `warden daemon` and the client from the same version")]
    BadMagic([u8; 2]),
    #[error("unsupported frame version {0} (this side speaks {VERSION})")]
    BadVersion(u8),
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    Oversize { len: usize, max: usize },
    #[error("connection closed mid-frame ({got} of {want} bytes)")]
    Truncated { got: usize, want: usize },
    #[error("deadline of {0:?} exceeded before the frame was complete")]
    Deadline(Duration),
    #[error("too much request data in flight across connections; try again")]
    Busy,
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Per-channel limits.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest payload accepted, in bytes.
    pub max_frame: usize,
    /// Time allowed for a whole frame (header and payload) to arrive.
    pub deadline: Option<Duration>,
    /// Memory shared by every connection of a server: payload bytes reserved while read.
    pub budget: Option<Arc<MemBudget>>,
}

impl Limits {
    pub fn new(max_frame: usize) -> Limits {
        Limits {
            max_frame,
            deadline: None,
            budget: None,
        }
    }
    pub fn deadline(mut self, d: Duration) -> Limits {
        self.deadline = Some(d);
        self
    }
    pub fn budget(mut self, b: Arc<MemBudget>) -> Limits {
        self.budget = Some(b);
        self
    }
}

/// A byte budget shared by the connections of one server.
#[derive(Debug)]
pub struct MemBudget {
    used: AtomicUsize,
    max: usize,
}

impl MemBudget {
    pub fn new(max: usize) -> Arc<MemBudget> {
        Arc::new(MemBudget {
            used: AtomicUsize::new(0),
            max,
        })
    }
    pub fn used(&self) -> usize {
        self.used.load(Ordering::SeqCst)
    }
    fn reserve(self: &Arc<Self>, n: usize) -> Option<Reservation> {
        let mut cur = self.used.load(Ordering::SeqCst);
        loop {
            let next = cur.checked_add(n).filter(|&x| x <= self.max)?;
            match self
                .used
                .compare_exchange(cur, next, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => {
                    return Some(Reservation {
                        budget: self.clone(),
                        n,
                    })
                }
                Err(c) => cur = c,
            }
        }
    }
}

/// Bytes held against a [`MemBudget`]; released on drop.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<MemBudget>,
    n: usize,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.n, Ordering::SeqCst);
    }
}

/// One received frame (its memory stays reserved while it lives).
#[derive(Debug)]
pub struct Frame {
    pub kind: u8,
    pub payload: Vec<u8>,
    _held: Option<Reservation>,
}

/// Encodes one frame; refuses payloads over `max`.
pub fn encode(kind: u8, payload: &[u8], max: usize) -> Result<Vec<u8>, FrameError> {
    if payload.len() > max || payload.len() > u32::MAX as usize {
        return Err(FrameError::Oversize {
            len: payload.len(),
            max,
        });
    }
    let mut v = Vec::with_capacity(HEADER_LEN + payload.len());
    v.extend_from_slice(&MAGIC);
    v.push(VERSION);
    v.push(kind);
    v.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    v.extend_from_slice(payload);
    Ok(v)
}

/// Writes one frame with a single `write_all` of header and payload together (on a pipe,
/// frames up to `PIPE_BUF` minus the header are therefore atomic between writers).
pub fn write_frame<W: Write>(
    w: &mut W,
    kind: u8,
    payload: &[u8],
    max: usize,
) -> Result<(), FrameError> {
    let buf = encode(kind, payload, max)?;
    w.write_all(&buf)?;
    w.flush()?;
    Ok(())
}

/// Parses a header: (kind, payload length).
pub fn parse_header(h: &[u8; HEADER_LEN], max: usize) -> Result<(u8, usize), FrameError> {
    if h[..2] != MAGIC {
        return Err(FrameError::BadMagic([h[0], h[1]]));
    }
    if h[2] != VERSION {
        return Err(FrameError::BadVersion(h[2]));
    }
    let len = u32::from_be_bytes([h[4], h[5], h[6], h[7]]) as usize;
    if len > max {
        return Err(FrameError::Oversize { len, max });
    }
    Ok((h[3], len))
}

/// A stream whose reads can be given a timeout (sockets).
pub trait Timed {
    fn set_read_timeout_opt(&self, t: Option<Duration>) -> std::io::Result<()>;
}

impl Timed for std::os::unix::net::UnixStream {
    fn set_read_timeout_opt(&self, t: Option<Duration>) -> std::io::Result<()> {
        self.set_read_timeout(t)
    }
}

impl Timed for std::net::TcpStream {
    fn set_read_timeout_opt(&self, t: Option<Duration>) -> std::io::Result<()> {
        self.set_read_timeout(t)
    }
}

fn read_some<S: Read + Timed>(
    s: &mut S,
    buf: &mut [u8],
    deadline: Option<(Instant, Duration)>,
) -> Result<usize, FrameError> {
    loop {
        if let Some((at, total)) = deadline {
            let left = at.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(FrameError::Deadline(total));
            }
            s.set_read_timeout_opt(Some(left))?;
        }
        match s.read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) && deadline.is_some() =>
            {
                // The loop re-checks the deadline (a spurious wake-up reads again).
                continue;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Reads one frame within `limits`. `Ok(None)`: the peer closed cleanly before a frame began.
pub fn read_frame<S: Read + Timed>(
    s: &mut S,
    limits: &Limits,
) -> Result<Option<Frame>, FrameError> {
    let deadline = limits.deadline.map(|d| (Instant::now() + d, d));
    let mut h = [0u8; HEADER_LEN];
    let mut got = 0;
    while got < HEADER_LEN {
        let n = read_some(s, &mut h[got..], deadline)?;
        if n == 0 {
            if got == 0 {
                return Ok(None);
            }
            return Err(FrameError::Truncated {
                got,
                want: HEADER_LEN,
            });
        }
        got += n;
        // Fail fast on a foreign protocol without waiting for 8 bytes.
        if got >= 2 && h[..2] != MAGIC {
            return Err(FrameError::BadMagic([h[0], h[1]]));
        }
    }
    let (kind, len) = parse_header(&h, limits.max_frame)?;
    let held = match &limits.budget {
        Some(b) => Some(b.reserve(len).ok_or(FrameError::Busy)?),
        None => None,
    };
    // Grow with what arrives, not with what was announced.
    let mut payload = Vec::with_capacity(len.min(64 * 1024));
    let mut chunk = [0u8; 16 * 1024];
    while payload.len() < len {
        let want = (len - payload.len()).min(chunk.len());
        let n = read_some(s, &mut chunk[..want], deadline)?;
        if n == 0 {
            return Err(FrameError::Truncated {
                got: payload.len(),
                want: len,
            });
        }
        payload.extend_from_slice(&chunk[..n]);
    }
    if deadline.is_some() {
        s.set_read_timeout_opt(None)?;
    }
    Ok(Some(Frame {
        kind,
        payload,
        _held: held,
    }))
}

/// What a [`Decoder`] found in the bytes pushed to it.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A complete frame.
    Frame { kind: u8, payload: &'a [u8] },
    /// Bytes that were not part of any frame (skipped while looking for the magic).
    Junk(usize),
    /// A header announcing more than the maximum; its bytes are treated as junk.
    Oversize(usize),
}

/// Counters of a [`Decoder`].
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DecodeStats {
    pub frames: u64,
    pub junk_bytes: u64,
    pub oversize: u64,
}

/// A push decoder for a stream written by an untrusted peer (the hook pipe): it never holds
/// more than one header plus `max_frame` bytes, and after junk or an oversized header it
/// resynchronises on the next magic instead of trusting the announced length.
#[derive(Debug)]
pub struct Decoder {
    max: usize,
    head: [u8; HEADER_LEN],
    head_len: usize,
    /// Announced length and kind of the frame being read.
    body: Option<(u8, usize)>,
    buf: Vec<u8>,
    pub stats: DecodeStats,
}

impl Decoder {
    pub fn new(max_frame: usize) -> Decoder {
        Decoder {
            max: max_frame,
            head: [0; HEADER_LEN],
            head_len: 0,
            body: None,
            buf: Vec::new(),
            stats: DecodeStats::default(),
        }
    }

    /// Bytes held between calls (at most a header and one maximum frame).
    pub fn buffered(&self) -> usize {
        match self.body {
            // The header of the frame being read was consumed but is still unaccounted.
            Some(_) => HEADER_LEN + self.buf.len(),
            None => self.head_len,
        }
    }

    fn prefix_ok(&self) -> bool {
        let h = &self.head[..self.head_len];
        (h.is_empty() || h[0] == MAGIC[0])
            && (h.len() < 2 || h[1] == MAGIC[1])
            && (h.len() < 3 || h[2] == VERSION)
    }

    /// Drops the first header byte as junk and re-checks the rest.
    fn shift(&mut self, out: &mut dyn FnMut(Decoded<'_>)) {
        let mut junk = 0usize;
        loop {
            self.head.copy_within(1..self.head_len, 0);
            self.head_len -= 1;
            junk += 1;
            if self.prefix_ok() {
                break;
            }
        }
        self.stats.junk_bytes += junk as u64;
        out(Decoded::Junk(junk));
    }

    /// Feeds bytes; calls `out` for every frame, run of junk and oversized header.
    pub fn push(&mut self, mut data: &[u8], out: &mut dyn FnMut(Decoded<'_>)) {
        while !data.is_empty() {
            if let Some((kind, len)) = self.body {
                let take = (len - self.buf.len()).min(data.len());
                self.buf.extend_from_slice(&data[..take]);
                data = &data[take..];
                if self.buf.len() == len {
                    self.stats.frames += 1;
                    out(Decoded::Frame {
                        kind,
                        payload: &self.buf,
                    });
                    self.buf.clear();
                    if self.buf.capacity() > 64 * 1024 {
                        self.buf.shrink_to(64 * 1024);
                    }
                    self.body = None;
                }
                continue;
            }
            if self.head_len == 0 {
                // Fast skip to the next possible frame start.
                let skip = data
                    .iter()
                    .position(|&b| b == MAGIC[0])
                    .unwrap_or(data.len());
                if skip > 0 {
                    self.stats.junk_bytes += skip as u64;
                    out(Decoded::Junk(skip));
                    data = &data[skip..];
                    continue;
                }
            }
            self.head[self.head_len] = data[0];
            self.head_len += 1;
            data = &data[1..];
            if !self.prefix_ok() {
                self.shift(out);
                continue;
            }
            if self.head_len == HEADER_LEN {
                let len =
                    u32::from_be_bytes([self.head[4], self.head[5], self.head[6], self.head[7]])
                        as usize;
                if len > self.max {
                    self.stats.oversize += 1;
                    out(Decoded::Oversize(len));
                    // Not trusted: resynchronise after the magic.
                    self.shift(out);
                    continue;
                }
                let kind = self.head[3];
                self.head_len = 0;
                if len == 0 {
                    self.stats.frames += 1;
                    out(Decoded::Frame { kind, payload: &[] });
                } else {
                    self.body = Some((kind, len));
                }
            }
        }
    }

    /// Bytes of an unfinished frame at end of stream (to be counted as dropped).
    pub fn pending(&self) -> usize {
        self.buffered()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    fn collect(d: &mut Decoder, data: &[u8]) -> (Vec<Vec<u8>>, usize, usize) {
        let mut frames = Vec::new();
        let (mut junk, mut over) = (0, 0);
        d.push(data, &mut |e| match e {
            Decoded::Frame { payload, .. } => frames.push(payload.to_vec()),
            Decoded::Junk(n) => junk += n,
            Decoded::Oversize(_) => over += 1,
        });
        (frames, junk, over)
    }

    #[test]
    fn roundtrip_in_any_chunking() {
        let mut wire = Vec::new();
        let payloads: Vec<Vec<u8>> = (0..50).map(|i| vec![b'x'; i * 7]).collect();
        for p in &payloads {
            wire.extend(encode(KIND_JSON, p, 1024).unwrap());
        }
        for chunk in [1, 2, 3, 7, 8, 9, 100, 10_000] {
            let mut d = Decoder::new(1024);
            let mut got = Vec::new();
            for c in wire.chunks(chunk) {
                let (f, j, o) = collect(&mut d, c);
                assert_eq!((j, o), (0, 0));
                got.extend(f);
            }
            assert_eq!(got, payloads, "chunk {chunk}");
            assert_eq!(d.buffered(), 0);
        }
    }

    #[test]
    fn junk_and_oversize_resync_with_bounded_memory() {
        let mut wire = b"garbage WF\x02 W more junk\n".to_vec();
        // Announces 4 GiB: refused from the header alone.
        wire.extend_from_slice(&[b'W', b'F', VERSION, 1, 0xff, 0xff, 0xff, 0xff]);
        wire.extend(vec![b'a'; 100_000]);
        wire.extend(encode(KIND_JSON, b"{\"ok\":1}", 64).unwrap());
        let mut d = Decoder::new(64);
        let mut frames = Vec::new();
        let mut max_buf = 0;
        for c in wire.chunks(333) {
            let (f, _, _) = collect(&mut d, c);
            frames.extend(f);
            max_buf = max_buf.max(d.buffered());
        }
        assert_eq!(frames, vec![b"{\"ok\":1}".to_vec()]);
        assert_eq!(d.stats.oversize, 1);
        assert!(d.stats.junk_bytes >= 100_000);
        assert!(max_buf <= HEADER_LEN + 64, "{max_buf}");
    }

    #[test]
    fn every_pushed_byte_is_accounted_for() {
        // Found by the fuzzer: a frame's header, once consumed, must still count as held.
        let f = encode(KIND_JSON, b"0123456789", 64).unwrap();
        let mut d = Decoder::new(64);
        let (frames, junk, _) = collect(&mut d, &f[..12]);
        assert!(frames.is_empty() && junk == 0);
        assert_eq!(d.buffered(), 12);
        let (frames, _, _) = collect(&mut d, &f[12..]);
        assert_eq!(frames.len(), 1);
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn encode_refuses_oversize() {
        assert!(matches!(
            encode(KIND_JSON, &[0; 65], 64),
            Err(FrameError::Oversize { len: 65, max: 64 })
        ));
    }

    #[test]
    fn blocking_reader_rejects_oversize_without_reading_payload() {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        a.write_all(&[b'W', b'F', VERSION, 1, 0, 0x10, 0, 0])
            .unwrap(); // 1 MiB announced
        let e = read_frame(&mut b, &Limits::new(1024)).unwrap_err();
        assert!(
            matches!(
                e,
                FrameError::Oversize {
                    len: 1_048_576,
                    max: 1024
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn blocking_reader_truncated_and_clean_eof() {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        let f = encode(KIND_JSON, b"hello world", 1024).unwrap();
        a.write_all(&f[..f.len() - 3]).unwrap();
        drop(a);
        let e = read_frame(&mut b, &Limits::new(1024)).unwrap_err();
        assert!(
            matches!(e, FrameError::Truncated { got: 8, want: 11 }),
            "{e}"
        );
        let (a, mut b) = UnixStream::pair().unwrap();
        drop(a);
        assert!(read_frame(&mut b, &Limits::new(1024)).unwrap().is_none());
        let (mut a, mut b) = UnixStream::pair().unwrap();
        a.write_all(b"WF").unwrap();
        drop(a);
        assert!(matches!(
            read_frame(&mut b, &Limits::new(1024)),
            Err(FrameError::Truncated { got: 2, want: 8 })
        ));
    }

    #[test]
    fn blocking_reader_foreign_protocol_fails_fast() {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        a.write_all(b"{\"op\":\"status\"}\n").unwrap();
        let e = read_frame(&mut b, &Limits::new(1024).deadline(Duration::from_secs(5)));
        assert!(matches!(e, Err(FrameError::BadMagic(_))));
    }

    #[test]
    fn slow_loris_hits_the_deadline() {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        let f = encode(KIND_JSON, &[b'x'; 100], 1024).unwrap();
        let t = std::thread::spawn(move || {
            // One byte every 50 ms: the whole frame would take 5.4 s.
            for byte in f {
                if a.write_all(&[byte]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        let start = Instant::now();
        let e = read_frame(
            &mut b,
            &Limits::new(1024).deadline(Duration::from_millis(400)),
        )
        .unwrap_err();
        let took = start.elapsed();
        assert!(matches!(e, FrameError::Deadline(_)), "{e}");
        assert!(
            took >= Duration::from_millis(400) && took < Duration::from_millis(1500),
            "{took:?}"
        );
        drop(b);
        let _ = t.join();
    }

    #[test]
    fn shared_budget_refuses_when_full_and_releases() {
        let budget = MemBudget::new(100);
        let lim = Limits::new(1000).budget(budget.clone());
        let (mut a, mut b) = UnixStream::pair().unwrap();
        write_frame(&mut a, KIND_JSON, &[1; 80], 1000).unwrap();
        write_frame(&mut a, KIND_JSON, &[1; 80], 1000).unwrap();
        let first = read_frame(&mut b, &lim).unwrap().unwrap();
        assert_eq!(budget.used(), 80);
        assert!(matches!(read_frame(&mut b, &lim), Err(FrameError::Busy)));
        drop(first);
        assert_eq!(budget.used(), 0);
    }
}
