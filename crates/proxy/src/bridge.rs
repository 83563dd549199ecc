//! The bridge inside the sandbox's network namespace: it accepts TCP connections on the
//! sandbox's loopback and hands each accepted socket, as a file descriptor over a unix
//! socketpair, to `warden run` outside the namespace. It copies no bytes and parses nothing;
//! it runs in the sandbox's init (not Landlocked) and needs no path to reach the supervisor.
//!
//! Listeners: 127.0.0.1:3128 (the proxy, where `HTTP_PROXY` points) and, for every host
//! loopback port the policy allows (`127.0.0.1:4000`, `localhost:11434`), that port on
//! 127.0.0.1 and ::1 (the local model gateway: the supervisor connects to the host's port,
//! see [`crate::gateway`]). The supervisor tells them apart by the accepted socket's local
//! port.
//!
//! Connections refused on the sandbox's loopback (nothing listens there) are observed by a
//! raw socket that sees only TCP resets answering a SYN (RST|ACK with sequence 0, a classic
//! BPF filter in the kernel), and reported as a [`Msg::Refused`] so the supervisor can log
//! the port with a hint; the agent never sees this socket.
//!
//! Messages on the socketpair are 3 bytes: a type and a big-endian port.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

const MSG_FD: u8 = 1;
const MSG_REFUSED: u8 = 2;

/// A message from the bridge.
#[derive(Debug)]
pub enum Msg {
    /// An accepted connection.
    Conn(OwnedFd),
    /// A connection to this port of the sandbox's loopback was refused.
    Refused(u16),
}

/// What the bridge serves: listeners, and the refusal watcher when the namespace allows it.
pub struct Bound {
    listeners: Vec<std::net::TcpListener>,
    rst: Option<RstWatcher>,
}

/// Binds the proxy listener and the loopback-gateway ports (IPv6 where the namespace has it)
/// and opens the refusal watcher; called in the sandbox's init before the agent exists.
pub fn bind(proxy_port: u16, gateway_ports: &[u16]) -> Result<Bound, crate::ProxyError> {
    let v4 = |what: &'static str, port: u16| {
        let addr = std::net::SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, port));
        std::net::TcpListener::bind(addr).map_err(|err| crate::ProxyError::Bind { what, addr, err })
    };
    let mut v = vec![v4("proxy bridge", proxy_port)?];
    for &p in gateway_ports {
        v.push(v4("loopback gateway", p)?);
        if let Ok(l) = std::net::TcpListener::bind((std::net::Ipv6Addr::LOCALHOST, p)) {
            v.push(l);
        }
    }
    Ok(Bound {
        listeners: v,
        rst: RstWatcher::open(),
    })
}

/// Serves every listener (one thread each) and the refusal watcher; returns when the
/// supervisor side of `control` is gone.
pub fn serve_all(b: Bound, control: OwnedFd) {
    let control = std::sync::Arc::new(control);
    if let Some(w) = b.rst {
        let c = control.clone();
        std::thread::spawn(move || w.run(c.as_fd()));
    }
    let mut it = b.listeners.into_iter();
    let Some(first) = it.next() else { return };
    for l in it {
        let c = control.clone();
        std::thread::spawn(move || serve_fd(l, c.as_fd()));
    }
    serve_fd(first, control.as_fd());
}

/// Accepts forever; errors close only the connection concerned. Returns if the supervisor
/// side of `control` is gone.
pub fn serve(listener: std::net::TcpListener, control: OwnedFd) {
    serve_fd(listener, control.as_fd())
}

fn serve_fd(listener: std::net::TcpListener, control: BorrowedFd<'_>) {
    for conn in listener.incoming() {
        let Ok(stream) = conn else { continue };
        if !send(control, MSG_FD, 0, Some(stream.as_fd())) {
            return;
        }
    }
}

pub fn send_fd(sock: BorrowedFd<'_>, fd: BorrowedFd<'_>) -> bool {
    send(sock, MSG_FD, 0, Some(fd))
}

/// One 3-byte message, with at most one fd (`warden-sys` fd passing: `MSG_NOSIGNAL`, retried
/// on `EINTR`).
fn send(sock: BorrowedFd<'_>, kind: u8, port: u16, fd: Option<BorrowedFd<'_>>) -> bool {
    let p = port.to_be_bytes();
    let bytes = [kind, p[0], p[1]];
    let fds: &[BorrowedFd<'_>] = match &fd {
        Some(f) => std::slice::from_ref(f),
        None => &[],
    };
    warden_sys::fdpass::send(sock, &bytes, fds).is_ok_and(|n| n == bytes.len())
}

/// Receives one message sent by the bridge; None when the peer is gone, or on a protocol
/// error (a short message, more than one fd or a cut control message (`MSG_CTRUNC`), a type
/// without its fd or with one it should not have); an fd that came along is closed.
pub fn recv(sock: BorrowedFd<'_>) -> Option<Msg> {
    let mut bytes = [0u8; 3];
    let m = warden_sys::fdpass::recv(
        sock,
        &mut bytes,
        1,
        warden_sys::fdpass::RecvOptions { wait_all: true },
    )
    .ok()?;
    if m.len != bytes.len() {
        return None;
    }
    let fd = m.fds.into_iter().next();
    let port = u16::from_be_bytes([bytes[1], bytes[2]]);
    match (bytes[0], fd) {
        (MSG_FD, Some(fd)) => Some(Msg::Conn(fd)),
        (MSG_REFUSED, None) => Some(Msg::Refused(port)),
        // Anything else is a protocol error: stop (an fd that came along is closed).
        _ => None,
    }
}

/// Receives one fd sent by [`send_fd`]; None when the peer is gone.
pub fn recv_fd(sock: BorrowedFd<'_>) -> Option<OwnedFd> {
    loop {
        match recv(sock)? {
            Msg::Conn(fd) => return Some(fd),
            Msg::Refused(_) => continue,
        }
    }
}

/// A raw IPv4/IPv6 TCP socket in the sandbox's namespace that receives only resets
/// answering a SYN on loopback.
struct RstWatcher {
    v4: Option<OwnedFd>,
    v6: Option<OwnedFd>,
}

/// Classic BPF over a TCP header (raw IPPROTO_TCP sockets deliver from the TCP header on
/// IPv6 and from the IP header on IPv4; `off` is where the TCP header starts).
fn rst_filter(off: u32) -> Vec<libc::sock_filter> {
    let ld_b = |k: u32| libc::sock_filter {
        code: (libc::BPF_LD | libc::BPF_B | libc::BPF_ABS) as u16,
        jt: 0,
        jf: 0,
        k,
    };
    let ld_w = |k: u32| libc::sock_filter {
        code: (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16,
        jt: 0,
        jf: 0,
        k,
    };
    let jeq = |k: u32, jt: u8, jf: u8| libc::sock_filter {
        code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
        jt,
        jf,
        k,
    };
    let ret = |k: u32| libc::sock_filter {
        code: (libc::BPF_RET | libc::BPF_K) as u16,
        jt: 0,
        jf: 0,
        k,
    };
    vec![
        // flags byte (offset 13): exactly RST|ACK (0x14)
        ld_b(off + 13),
        jeq(0x14, 0, 3),
        // sequence number (offset 4) is 0: the answer to a SYN
        ld_w(off + 4),
        jeq(0, 0, 1),
        ret(64),
        ret(0),
    ]
}

impl RstWatcher {
    fn open() -> Option<RstWatcher> {
        let mk = |family: i32, off: u32| -> Option<OwnedFd> {
            // SAFETY: a raw socket and a filter program that outlives the setsockopt call.
            unsafe {
                let s = libc::socket(
                    family,
                    libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                    libc::IPPROTO_TCP,
                );
                if s < 0 {
                    return None;
                }
                let fd = OwnedFd::from_raw_fd(s);
                let prog_v = rst_filter(off);
                let prog = libc::sock_fprog {
                    len: prog_v.len() as u16,
                    filter: prog_v.as_ptr() as *mut libc::sock_filter,
                };
                if libc::setsockopt(
                    s,
                    libc::SOL_SOCKET,
                    libc::SO_ATTACH_FILTER,
                    &prog as *const _ as *const libc::c_void,
                    std::mem::size_of::<libc::sock_fprog>() as u32,
                ) != 0
                {
                    return None;
                }
                Some(fd)
            }
        };
        // IPv4 raw sockets see the IP header (20 bytes: the namespace sends no options).
        let w = RstWatcher {
            v4: mk(libc::AF_INET, 20),
            v6: mk(libc::AF_INET6, 0),
        };
        (w.v4.is_some() || w.v6.is_some()).then_some(w)
    }

    fn run(self, control: BorrowedFd<'_>) {
        let mut fds: Vec<libc::pollfd> = [&self.v4, &self.v6]
            .iter()
            .filter_map(|f| f.as_ref())
            .map(|f| libc::pollfd {
                fd: f.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let mut buf = [0u8; 128];
        // At most 20 notices a second reach the supervisor (the agent can make resets as fast
        // as it can connect; the socketpair also carries the proxy's connections).
        let mut window = std::time::Instant::now();
        let mut sent = 0u32;
        loop {
            // SAFETY: poll on our own fds.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
            if n < 0 {
                if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                return;
            }
            for p in fds.iter_mut() {
                if p.revents & libc::POLLIN == 0 {
                    continue;
                }
                p.revents = 0;
                // SAFETY: reading into a local buffer.
                let got = unsafe {
                    libc::recv(
                        p.fd,
                        buf.as_mut_ptr() as *mut libc::c_void,
                        buf.len(),
                        libc::MSG_DONTWAIT,
                    )
                };
                if got <= 0 {
                    continue;
                }
                let got = got as usize;
                // IPv4: skip the IP header (its length is in the first byte).
                let off = if self.v4.as_ref().is_some_and(|f| f.as_raw_fd() == p.fd) {
                    ((buf[0] & 0x0f) as usize) * 4
                } else {
                    0
                };
                if got < off + 2 {
                    continue;
                }
                if window.elapsed() >= std::time::Duration::from_secs(1) {
                    window = std::time::Instant::now();
                    sent = 0;
                }
                if sent >= 20 {
                    continue;
                }
                sent += 1;
                // The reset comes *from* the port nobody listens on.
                let port = u16::from_be_bytes([buf[off], buf[off + 1]]);
                if !send(control, MSG_REFUSED, port, None) {
                    return;
                }
            }
        }
    }
}
