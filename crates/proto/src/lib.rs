//! # warden-proto
//!
//! Owns the wire discipline of every channel that crosses a trust boundary in warden: the
//! root daemon's unix socket (any local user may connect) and the hook-event pipe (the agent
//! holds the write end), and the typed messages of the daemon socket and of a session's
//! control socket. The framing guarantees that a peer cannot make the reading side grow
//! without bound or wait forever:
//!
//! - [`frame`]: length-prefixed frames (an 8-byte header: magic `WF`, version, kind, `u32`
//!   big-endian length) with a maximum size checked *before* any payload byte is read; a
//!   blocking reader with a per-connection deadline and an optional shared memory budget; and
//!   a push decoder for untrusted streams that resynchronises on the magic and counts junk.
//! - [`accept`]: an accept loop for unix sockets with a cap on concurrent connections, in
//!   total and per peer uid (from `SO_PEERCRED`), one thread per admitted connection.
//! - [`rate`]: a token bucket and a per-session budget for relays.
//! - [`socks5`]: the SOCKS5 handshake the proxy accepts from the agent, parsed without I/O.
//! - [`msg`]: the requests and replies of the daemon socket and the session control socket,
//!   as serde enums tagged by `op`; decoding a peer's request never panics and tells a bad
//!   frame, an unknown op and a malformed field apart ([`msg::ErrorCode`]).

// No unwrap on input-dependent paths in library code; tests may (clippy.toml).
#![warn(clippy::unwrap_used)]

pub mod accept;
pub mod frame;
pub mod msg;
pub mod rate;
pub mod socks5;

pub use frame::{Decoded, Decoder, Frame, FrameError, Limits};
