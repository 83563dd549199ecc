//! A capped accept loop for unix sockets: at most `total` connections at once, and at most
//! `per_uid` from one peer uid (`SO_PEERCRED`), each served on its own thread. A connection
//! over a cap is answered by the `refuse` callback (with a short write timeout) and closed
//! without a thread, so a local user cannot exhaust the server's threads or memory.

use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The peer of a unix socket, as the kernel recorded it at `connect`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerCred {
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
}

/// `SO_PEERCRED` of a connected unix socket.
pub fn peer_cred(s: &UnixStream) -> std::io::Result<PeerCred> {
    let mut c = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt into a ucred of the right size.
    let r = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            &mut c as *mut _ as *mut libc::c_void,
            &mut len,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(PeerCred {
        pid: c.pid,
        uid: c.uid,
        gid: c.gid,
    })
}

#[derive(Debug, Clone, Copy)]
pub struct Caps {
    pub total: usize,
    pub per_uid: usize,
}

/// Live connection counts.
#[derive(Debug, Default)]
pub struct Counts {
    inner: Mutex<(usize, HashMap<u32, usize>)>,
}

impl Counts {
    pub fn total(&self) -> usize {
        self.inner.lock().map(|g| g.0).unwrap_or(0)
    }
}

/// Held by an admitted connection; frees its slot on drop.
pub struct Permit {
    counts: Arc<Counts>,
    uid: u32,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut g = self.counts.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.0 = g.0.saturating_sub(1);
        if let Some(n) = g.1.get_mut(&self.uid) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                g.1.remove(&self.uid);
            }
        }
    }
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Total(usize),
    PerUid(u32, usize),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Total(n) => write!(f, "the server has {n} connections open (its limit)"),
            Refused::PerUid(uid, n) => {
                write!(f, "uid {uid} has {n} connections open (the per-user limit)")
            }
        }
    }
}

pub fn admit(counts: &Arc<Counts>, caps: Caps, uid: u32) -> Result<Permit, Refused> {
    let mut g = counts.inner.lock().unwrap_or_else(|p| p.into_inner());
    if g.0 >= caps.total {
        return Err(Refused::Total(g.0));
    }
    let mine = g.1.get(&uid).copied().unwrap_or(0);
    if mine >= caps.per_uid {
        return Err(Refused::PerUid(uid, mine));
    }
    g.0 += 1;
    *g.1.entry(uid).or_insert(0) += 1;
    Ok(Permit {
        counts: counts.clone(),
        uid,
    })
}

/// Accepts until the listener fails for good. `handle` runs on a thread of its own for each
/// admitted connection; `refuse` answers the others (its writes time out after 200 ms).
pub fn serve<H, R>(listener: UnixListener, caps: Caps, counts: Arc<Counts>, handle: H, refuse: R)
where
    H: Fn(UnixStream, PeerCred, Permit) + Send + Sync + 'static,
    R: Fn(&mut UnixStream, Refused),
{
    let handle = Arc::new(handle);
    for c in listener.incoming() {
        let mut c = match c {
            Ok(c) => c,
            Err(e) => {
                match e.raw_os_error() {
                    // Out of descriptors or memory: back off, keep serving.
                    Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) => {
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    Some(libc::EBADF | libc::EINVAL | libc::ENOTSOCK) => return,
                    _ => {}
                }
                continue;
            }
        };
        let Ok(peer) = peer_cred(&c) else { continue };
        match admit(&counts, caps, peer.uid) {
            Ok(permit) => {
                let h = handle.clone();
                let spawned = std::thread::Builder::new()
                    .name("warden-conn".into())
                    .stack_size(1024 * 1024)
                    .spawn(move || h(c, peer, permit));
                if let Err(e) = spawned {
                    tracing_free_warn(&format!("cannot start a connection thread: {e}"));
                }
            }
            Err(why) => {
                let _ = c.set_write_timeout(Some(Duration::from_millis(200)));
                refuse(&mut c, why);
            }
        }
    }
}

fn tracing_free_warn(msg: &str) {
    eprintln!("warden: {msg}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_total_and_per_uid() {
        let counts = Arc::new(Counts::default());
        let caps = Caps {
            total: 3,
            per_uid: 2,
        };
        let a = admit(&counts, caps, 1000).unwrap();
        let _b = admit(&counts, caps, 1000).unwrap();
        assert_eq!(
            admit(&counts, caps, 1000).err(),
            Some(Refused::PerUid(1000, 2))
        );
        let _c = admit(&counts, caps, 0).unwrap();
        assert_eq!(admit(&counts, caps, 0).err(), Some(Refused::Total(3)));
        drop(a);
        assert!(admit(&counts, caps, 1000).is_ok());
    }
}
