//! The bridge inside the sandbox's network namespace: it accepts TCP connections on the
//! sandbox's loopback (where `HTTP_PROXY` points) and hands each accepted socket, as a file
//! descriptor over a unix socketpair, to the proxy running in `warden run` outside the
//! namespace. It copies no bytes and parses nothing; it runs in the sandbox's init (not
//! Landlocked) and needs no path to reach the supervisor.

use std::os::fd::{AsRawFd, OwnedFd};

/// Accepts forever; errors close only the connection concerned. Returns if the supervisor
/// side of `control` is gone.
pub fn serve(listener: std::net::TcpListener, control: OwnedFd) {
    for conn in listener.incoming() {
        let Ok(stream) = conn else { continue };
        if !send_fd(control.as_raw_fd(), stream.as_raw_fd()) {
            return;
        }
    }
}

pub fn send_fd(sock: i32, fd: i32) -> bool {
    let byte = [1u8];
    let mut iov = libc::iovec {
        iov_base: byte.as_ptr() as *mut libc::c_void,
        iov_len: 1,
    };
    // SAFETY: building a SCM_RIGHTS message for one fd.
    unsafe {
        let space = libc::CMSG_SPACE(4) as usize;
        let mut cbuf = vec![0u8; space];
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr() as *mut libc::c_void;
        msg.msg_controllen = space;
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_RIGHTS;
        (*c).cmsg_len = libc::CMSG_LEN(4) as usize;
        *(libc::CMSG_DATA(c) as *mut i32) = fd;
        libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL) >= 0
    }
}

/// Receives one fd sent by [`send_fd`]; None when the peer is gone.
pub fn recv_fd(sock: i32) -> Option<OwnedFd> {
    use std::os::fd::FromRawFd;
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr() as *mut libc::c_void,
        iov_len: 1,
    };
    // SAFETY: receiving one SCM_RIGHTS message.
    unsafe {
        let mut cbuf = [0u8; 64];
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr() as *mut libc::c_void;
        msg.msg_controllen = cbuf.len();
        loop {
            let n = libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC);
            if n < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            if n <= 0 {
                return None;
            }
            break;
        }
        let c = libc::CMSG_FIRSTHDR(&msg);
        if c.is_null() || (*c).cmsg_type != libc::SCM_RIGHTS {
            return None;
        }
        Some(OwnedFd::from_raw_fd(*(libc::CMSG_DATA(c) as *const i32)))
    }
}
