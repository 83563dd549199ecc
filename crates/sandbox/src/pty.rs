//! The agent's terminal: a fresh pty whose master the supervisor relays to the user's
//! terminal. The agent is the session leader of its own pty, so `TIOCSTI` (also blocked by
//! seccomp) could at most inject into the agent's own input, never into the user's shell.
//! The agent's output passes through [`crate::termfilter`] on its way to the user's
//! terminal: escape sequences that act on the terminal or host (clipboard writes, reports,
//! queries, file transfers) are dropped.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};

/// Puts the user's terminal in raw mode; restores it on drop.
pub struct RawMode {
    orig: libc::termios,
}

impl RawMode {
    pub fn enter() -> Option<RawMode> {
        // SAFETY: termios calls on fd 0 with a zeroed struct.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(0, &mut t) != 0 {
                return None;
            }
            let orig = t;
            libc::cfmakeraw(&mut t);
            if libc::tcsetattr(0, libc::TCSANOW, &t) != 0 {
                return None;
            }
            Some(RawMode { orig })
        }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: restoring the saved attributes.
        unsafe { libc::tcsetattr(0, libc::TCSANOW, &self.orig) };
    }
}

fn copy(from: RawFd, to: RawFd) {
    let mut buf = [0u8; 16384];
    loop {
        // SAFETY: read into a stack buffer.
        let n = unsafe { libc::read(from, buf.as_mut_ptr() as *mut libc::c_void, buf.len()) };
        if n < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        }
        if n <= 0 {
            return;
        }
        crate::sys::write_all(to, &buf[..n as usize]);
    }
}

/// Copies the agent's output to the user's terminal through the escape-sequence filter;
/// returns what was dropped.
pub fn copy_filtered(from: RawFd, to: RawFd) -> crate::termfilter::Dropped {
    let mut f = crate::termfilter::Filter::new();
    let mut buf = [0u8; 16384];
    let mut out = Vec::with_capacity(buf.len() + 64);
    loop {
        // SAFETY: read into a stack buffer.
        let n = unsafe { libc::read(from, buf.as_mut_ptr() as *mut libc::c_void, buf.len()) };
        if n < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        }
        if n <= 0 {
            out.clear();
            f.finish(&mut out);
            crate::sys::write_all(to, &out);
            return f.dropped;
        }
        out.clear();
        f.feed(&buf[..n as usize], &mut out);
        crate::sys::write_all(to, &out);
    }
}

/// The key that starts a command to warden on the `warden run` terminal: Ctrl-].
pub const ESCAPE: u8 = 0x1d;

/// Called with the key typed after [`ESCAPE`] (never seen by the agent).
pub type EscapeHandler = Box<dyn Fn(u8) + Send>;

/// The user's input → the pty, except warden's key sequence: Ctrl-] then a key goes to
/// `on_escape` instead of the agent; Ctrl-] Ctrl-] sends one Ctrl-]. The sequence is read
/// from the user's terminal (fd 0) only: the agent writes to its pty's output, which never
/// comes back here, and cannot inject into the user's terminal (TIOCSTI is denied and it is
/// in its own session), so it cannot type the sequence.
fn copy_input(from: RawFd, to: RawFd, on_escape: Option<EscapeHandler>) {
    let Some(on_escape) = on_escape else {
        return copy(from, to);
    };
    let mut buf = [0u8; 16384];
    let mut out = Vec::with_capacity(buf.len());
    let mut pending = false;
    loop {
        // SAFETY: read into a stack buffer.
        let n = unsafe { libc::read(from, buf.as_mut_ptr() as *mut libc::c_void, buf.len()) };
        if n < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        }
        if n <= 0 {
            return;
        }
        out.clear();
        for &b in &buf[..n as usize] {
            if pending {
                pending = false;
                if b == ESCAPE {
                    out.push(ESCAPE);
                } else {
                    crate::sys::write_all(to, &out);
                    out.clear();
                    on_escape(b);
                }
            } else if b == ESCAPE {
                pending = true;
                on_escape(0);
            } else {
                out.push(b);
            }
        }
        crate::sys::write_all(to, &out);
    }
}

/// Copies the user's input to the pty and the pty's (filtered) output to the user's
/// terminal. Returns the output thread; it ends when the agent side is closed, after noting
/// on stderr how many sequences were dropped.
pub fn relay(master: &OwnedFd) -> std::thread::JoinHandle<()> {
    relay_with(master, None)
}

/// [`relay`], with warden's key sequence on the input side (see [`ESCAPE`]).
pub fn relay_with(
    master: &OwnedFd,
    on_escape: Option<EscapeHandler>,
) -> std::thread::JoinHandle<()> {
    let m = master.as_raw_fd();
    std::thread::spawn(move || copy_input(0, m, on_escape));
    std::thread::spawn(move || {
        let d = copy_filtered(m, 1);
        note_dropped(&d);
    })
}

/// Tells the user (stderr) what the filter dropped, if anything.
pub fn note_dropped(d: &crate::termfilter::Dropped) {
    if d.total() > 0 {
        eprint!(
            "\r\nwarden: dropped {} terminal escape sequence(s) from the agent's output that act on the terminal or host ({} OSC 52 clipboard writes, {} other OSC, {} window reports/operations, {} DCS/APC/PM/SOS strings, {} control bytes)\r\n",
            d.total(),
            d.osc52_clipboard,
            d.osc_other,
            d.csi_window_ops,
            d.dcs_apc_pm_sos,
            d.controls
        );
    }
}

/// Copies the user's window size to the pty (on SIGWINCH).
pub fn sync_winsize(master: &OwnedFd) {
    // SAFETY: ioctl with a winsize struct.
    unsafe {
        let mut ws: libc::winsize = std::mem::zeroed();
        if libc::ioctl(0, libc::TIOCGWINSZ, &mut ws) == 0 {
            libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws);
        }
    }
}
