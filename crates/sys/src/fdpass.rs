//! Descriptors passed over unix sockets (`SCM_RIGHTS`), the one copy the crates share.
//!
//! [`send`] sends bytes with descriptors (`MSG_NOSIGNAL`, retried on `EINTR`). [`recv`]
//! takes at most `max_fds` descriptors, close-on-exec (`MSG_CMSG_CLOEXEC`); a message whose
//! control data the kernel cut (`MSG_CTRUNC`: the peer sent more descriptors than that) is
//! refused with [`Error::Truncated`], and every descriptor that came with a refused message
//! is closed: they are taken into [`OwnedFd`] as the control buffer is drained.

use crate::{sys, Error};
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// The most descriptors one message can carry on Linux (`SCM_MAX_FD`).
pub const MAX_FDS: usize = 253;

/// A received message.
#[derive(Debug)]
pub struct Message {
    /// Bytes of data received (0 with no descriptors: the peer is gone).
    pub len: usize,
    /// The descriptors that came with it, close-on-exec.
    pub fds: Vec<OwnedFd>,
    /// The sender's pid, translated to our pid namespace, when the receiving socket has
    /// `SO_PASSCRED` ([`crate::set_passcred`]).
    pub pid: Option<i32>,
}

impl Message {
    /// End of stream: no data and no descriptors.
    pub fn is_eof(&self) -> bool {
        self.len == 0 && self.fds.is_empty()
    }
}

/// How [`recv`] waits.
#[derive(Debug, Clone, Copy, Default)]
pub struct RecvOptions {
    /// `MSG_WAITALL`: wait for the whole buffer (stream sockets).
    pub wait_all: bool,
}

/// Sends `data` with `fds` (possibly none) in one `sendmsg`. Returns the bytes sent. A peer
/// that is gone is `EPIPE`, never `SIGPIPE`.
pub fn send(sock: impl AsFd, data: &[u8], fds: &[BorrowedFd<'_>]) -> Result<usize, Error> {
    let mut space = vec![MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(fds.len()))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(Error::Sys {
            call: "sendmsg",
            errno: rustix::io::Errno::NOBUFS,
        });
    }
    let iov = [IoSlice::new(data)];
    loop {
        match rustix::net::sendmsg(sock.as_fd(), &iov, &mut control, SendFlags::NOSIGNAL) {
            Err(rustix::io::Errno::INTR) => continue,
            r => return r.map_err(sys("sendmsg")),
        }
    }
}

/// Receives one message into `buf`, taking at most `max_fds` descriptors (capped at
/// [`MAX_FDS`]). More than that (whether or not the kernel had to cut the control message)
/// is [`Error::Truncated`], with all of them closed.
///
/// With `SO_PASSCRED` set, the sender must be in our pid namespace or one below it (the
/// kernel reports pid 0 for a sender we cannot see, which is not a valid pid).
pub fn recv(
    sock: impl AsFd,
    buf: &mut [u8],
    max_fds: usize,
    opts: RecvOptions,
) -> Result<Message, Error> {
    let max_fds = max_fds.min(MAX_FDS);
    let mut space = vec![
        MaybeUninit::<u8>::uninit();
        rustix::cmsg_space!(ScmRights(max_fds), ScmCredentials(1))
    ];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut flags = RecvFlags::CMSG_CLOEXEC;
    if opts.wait_all {
        flags |= RecvFlags::WAITALL;
    }
    let got = loop {
        let mut iov = [IoSliceMut::new(buf)];
        match rustix::net::recvmsg(sock.as_fd(), &mut iov, &mut control, flags) {
            Err(rustix::io::Errno::INTR) => continue,
            r => break r.map_err(sys("recvmsg"))?,
        }
    };
    let mut fds = Vec::new();
    let mut pid = None;
    for m in control.drain() {
        match m {
            RecvAncillaryMessage::ScmRights(it) => fds.extend(it),
            RecvAncillaryMessage::ScmCredentials(c) => pid = Some(c.pid.as_raw_nonzero().get()),
            _ => {}
        }
    }
    // The buffer has room for the credentials too, so more than `max_fds` can fit in it
    // without the kernel cutting anything: refuse those as well.
    if got.flags.contains(ReturnFlags::CTRUNC) || fds.len() > max_fds {
        drop(fds);
        return Err(Error::Truncated { max: max_fds });
    }
    Ok(Message {
        len: got.bytes,
        fds,
        pid,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;

    /// How many of our descriptors point at the same object as `fd` (by its /proc link).
    fn copies(fd: BorrowedFd<'_>) -> usize {
        let target = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap();
        std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .filter(|t| *t == target)
            .count()
    }

    #[test]
    fn round_trip_with_descriptors_and_credentials() {
        let (a, b) = crate::socketpair_seqpacket().unwrap();
        crate::set_passcred(b.as_fd()).unwrap();
        let (r, w) = crate::pipe_cloexec().unwrap();
        assert_eq!(send(&a, b"xy", &[r.as_fd(), w.as_fd()]).unwrap(), 2);
        let mut buf = [0u8; 8];
        let m = recv(&b, &mut buf, 4, RecvOptions::default()).unwrap();
        assert_eq!(&buf[..m.len], b"xy");
        assert_eq!(m.fds.len(), 2);
        assert_eq!(m.pid, Some(std::process::id() as i32));
        for fd in &m.fds {
            let fl = rustix::io::fcntl_getfd(fd).unwrap();
            assert!(fl.contains(rustix::io::FdFlags::CLOEXEC));
        }
        // The passed pipe is the same pipe.
        let mut wr = std::fs::File::from(m.fds.into_iter().nth(1).unwrap());
        wr.write_all(b"ok").unwrap();
        drop(wr);
        drop(w);
        let mut s = String::new();
        std::fs::File::from(r).read_to_string(&mut s).unwrap();
        assert_eq!(s, "ok");
    }

    #[test]
    fn no_descriptors_and_eof() {
        let (a, b) = crate::socketpair_seqpacket().unwrap();
        send(&a, b"z", &[]).unwrap();
        let mut buf = [0u8; 1];
        let m = recv(&b, &mut buf, 1, RecvOptions::default()).unwrap();
        assert_eq!((m.len, m.fds.len(), m.pid), (1, 0, None));
        drop(a);
        let m = recv(&b, &mut buf, 1, RecvOptions::default()).unwrap();
        assert!(m.is_eof());
    }

    /// 4 descriptors fit in the buffer (which has room for credentials) but exceed the
    /// limit; 40 make the kernel cut the control message (MSG_CTRUNC). Both are refused.
    #[test]
    fn truncated_control_message_is_refused_and_closes_what_arrived() {
        for n in [4, 40] {
            let (a, b) = crate::socketpair_seqpacket().unwrap();
            let pipes: Vec<_> = (0..n).map(|_| crate::pipe_cloexec().unwrap()).collect();
            let fds: Vec<BorrowedFd<'_>> = pipes.iter().map(|(r, _)| r.as_fd()).collect();
            send(&a, b"m", &fds).unwrap();
            let before: Vec<usize> = fds.iter().map(|f| copies(*f)).collect();
            let mut buf = [0u8; 1];
            let e = recv(&b, &mut buf, 1, RecvOptions::default()).unwrap_err();
            assert!(matches!(e, Error::Truncated { max: 1 }), "{e}");
            assert_eq!(e.errno(), None);
            let after: Vec<usize> = fds.iter().map(|f| copies(*f)).collect();
            assert_eq!(
                before, after,
                "a descriptor of the refused message was left open"
            );
            // The next message is read normally.
            send(&a, b"n", &[pipes[0].1.as_fd()]).unwrap();
            let m = recv(&b, &mut buf, 1, RecvOptions::default()).unwrap();
            assert_eq!((m.len, m.fds.len()), (1, 1));
        }
    }

    #[test]
    fn gone_peer_is_epipe_not_sigpipe() {
        let (a, b) = crate::socketpair_seqpacket().unwrap();
        drop(b);
        let e = send(&a, b"x", &[]).unwrap_err();
        assert_eq!(e.errno(), Some(rustix::io::Errno::PIPE));
    }

    #[test]
    fn wait_all_on_a_stream() {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let (r, _w) = crate::pipe_cloexec().unwrap();
        send(&a, b"abc", &[r.as_fd()]).unwrap();
        let mut buf = [0u8; 3];
        let m = recv(&b, &mut buf, 1, RecvOptions { wait_all: true }).unwrap();
        assert_eq!((m.len, m.fds.len(), &buf), (3, 1, b"abc"));
    }
}
