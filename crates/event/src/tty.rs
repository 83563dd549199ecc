//! Whether a standard descriptor is a terminal, as the session's decisions see it.
//!
//! Every such decision (the agent's pty, the output filter's pipes, colour) asks here, not
//! `isatty` itself: a warm spare (`warden run --warm`, see `warden_session::warm`) is built
//! with `/dev/null` for its standard descriptors and is handed the user's own only when it
//! is claimed, so it answers as the run that will claim it ([`set_override`]).

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU8, Ordering};

/// Bit 3 set: overridden; bits 0-2: fds 0-2 are terminals.
static OVERRIDE: AtomicU8 = AtomicU8::new(0);

/// From now on, fds 0-2 answer `ttys` whatever they are (a spare, once at its start).
pub fn set_override(ttys: [bool; 3]) {
    let bits = ttys
        .iter()
        .enumerate()
        .fold(8u8, |b, (i, t)| if *t { b | 1 << i } else { b });
    OVERRIDE.store(bits, Ordering::Relaxed);
}

/// Whether fd 0, 1 or 2 is (or, for a spare, will be) a terminal; any other fd is not one.
pub fn is_terminal(fd: i32) -> bool {
    let o = OVERRIDE.load(Ordering::Relaxed);
    if o & 8 != 0 && (0..3).contains(&fd) {
        return o & (1 << fd) != 0;
    }
    match fd {
        0 => std::io::stdin().is_terminal(),
        1 => std::io::stdout().is_terminal(),
        2 => std::io::stderr().is_terminal(),
        _ => false,
    }
}

/// The three answers, as [`is_terminal`] gives them.
pub fn kinds() -> [bool; 3] {
    [0, 1, 2].map(is_terminal)
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_override_answers_for_the_standard_fds_only() {
        super::set_override([true, false, true]);
        assert_eq!(super::kinds(), [true, false, true]);
        assert!(!super::is_terminal(9999));
        super::OVERRIDE.store(0, std::sync::atomic::Ordering::Relaxed);
    }
}
