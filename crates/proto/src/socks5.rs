//! The SOCKS5 handshake the proxy accepts from the agent (RFC 1928: CONNECT only, no
//! authentication), parsed from bytes with no I/O so it can be fuzzed.
//!
//! The agent writes these bytes, so every length is bounded by the protocol itself (a
//! greeting is at most 2 + 255 bytes, a request at most 4 + 1 + 255 + 2), a parser never
//! reads past what it was given, and anything it does not accept is a refusal with the reply
//! code the client gets, never a panic.

/// The longest greeting: version, method count, 255 methods.
pub const MAX_GREETING: usize = 2 + 255;
/// The longest request: version, command, reserved, address type, a 255-byte name, port.
pub const MAX_REQUEST: usize = 4 + 1 + 255 + 2;

/// Reply codes (RFC 1928 §6) sent for a refused request.
pub const REPLY_GENERAL_FAILURE: u8 = 1;
pub const REPLY_COMMAND_NOT_SUPPORTED: u8 = 7;
pub const REPLY_ADDRESS_TYPE_NOT_SUPPORTED: u8 = 8;

/// The method-selection reply: "no authentication".
pub const NO_AUTH: [u8; 2] = [5, 0];
/// The method-selection reply: "no acceptable methods".
pub const NO_ACCEPTABLE: [u8; 2] = [5, 0xff];

/// What a greeting (`VER NMETHODS METHODS...`) says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Greeting {
    /// Not all of it has arrived.
    NeedMore,
    /// Not SOCKS version 5: close without a reply.
    BadVersion,
    /// The client offers no "no authentication" method: reply [`NO_ACCEPTABLE`], close.
    NoAcceptableMethod,
    /// Accepted: reply [`NO_AUTH`]; the greeting took `used` bytes.
    NoAuth { used: usize },
}

/// Parses a greeting from the start of `buf`.
pub fn greeting(buf: &[u8]) -> Greeting {
    let (Some(&ver), Some(&n)) = (buf.first(), buf.get(1)) else {
        return Greeting::NeedMore;
    };
    if ver != 5 {
        return Greeting::BadVersion;
    }
    let used = 2 + n as usize;
    let Some(methods) = buf.get(2..used) else {
        return Greeting::NeedMore;
    };
    if methods.contains(&0) {
        Greeting::NoAuth { used }
    } else {
        Greeting::NoAcceptableMethod
    }
}

/// What a request (`VER CMD RSV ATYP DST.ADDR DST.PORT`) says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Not all of it has arrived.
    NeedMore,
    /// Refused: send [`reply`] with this code, close.
    Refused(u8),
    /// CONNECT to `host` (an IPv4 address, a bracketed IPv6 address, or a name as sent,
    /// invalid UTF-8 replaced) and `port`; the request took `used` bytes.
    Connect {
        host: String,
        port: u16,
        used: usize,
    },
}

/// Parses a request from the start of `buf`.
pub fn request(buf: &[u8]) -> Request {
    let Some(head) = buf.get(..4) else {
        return Request::NeedMore;
    };
    if head[0] != 5 {
        return Request::Refused(REPLY_GENERAL_FAILURE);
    }
    if head[1] != 1 {
        return Request::Refused(REPLY_COMMAND_NOT_SUPPORTED);
    }
    let (host, end) = match head[3] {
        1 => match buf.get(4..8) {
            Some(a) => (
                std::net::Ipv4Addr::new(a[0], a[1], a[2], a[3]).to_string(),
                8,
            ),
            None => return Request::NeedMore,
        },
        4 => match buf.get(4..20).and_then(|a| <[u8; 16]>::try_from(a).ok()) {
            Some(a) => (format!("[{}]", std::net::Ipv6Addr::from(a)), 20),
            None => return Request::NeedMore,
        },
        3 => {
            let Some(&len) = buf.get(4) else {
                return Request::NeedMore;
            };
            let end = 5 + len as usize;
            match buf.get(5..end) {
                Some(name) => (String::from_utf8_lossy(name).into_owned(), end),
                None => return Request::NeedMore,
            }
        }
        _ => return Request::Refused(REPLY_ADDRESS_TYPE_NOT_SUPPORTED),
    };
    match buf.get(end..end + 2) {
        Some(p) => Request::Connect {
            host,
            port: u16::from_be_bytes([p[0], p[1]]),
            used: end + 2,
        },
        None => Request::NeedMore,
    }
}

/// The reply to a request with `code` (bound address 0.0.0.0:0).
pub fn reply(code: u8) -> [u8; 10] {
    [5, code, 0, 1, 0, 0, 0, 0, 0, 0]
}

/// A CONNECT request for `host` (a name: address type 3) and `port`, as a client sends it;
/// `None` for a name longer than 255 bytes. For tests and fuzzing.
pub fn encode_connect(host: &str, port: u16) -> Option<Vec<u8>> {
    let len = u8::try_from(host.len()).ok()?;
    let mut v = vec![5, 1, 0, 3, len];
    v.extend_from_slice(host.as_bytes());
    v.extend_from_slice(&port.to_be_bytes());
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greetings() {
        assert_eq!(greeting(&[]), Greeting::NeedMore);
        assert_eq!(greeting(&[5]), Greeting::NeedMore);
        assert_eq!(greeting(&[5, 2, 0]), Greeting::NeedMore);
        assert_eq!(greeting(&[5, 2, 2, 0, 9]), Greeting::NoAuth { used: 4 });
        assert_eq!(greeting(&[5, 1, 2]), Greeting::NoAcceptableMethod);
        assert_eq!(greeting(&[5, 0]), Greeting::NoAcceptableMethod);
        assert_eq!(greeting(&[4, 1, 0]), Greeting::BadVersion);
    }

    #[test]
    fn requests() {
        let r = encode_connect("example.com", 443).unwrap();
        assert_eq!(
            request(&r),
            Request::Connect {
                host: "example.com".into(),
                port: 443,
                used: r.len()
            }
        );
        for cut in 0..r.len() {
            assert_eq!(request(&r[..cut]), Request::NeedMore, "cut at {cut}");
        }
        assert_eq!(
            request(&[5, 1, 0, 1, 127, 0, 0, 1, 0, 80]),
            Request::Connect {
                host: "127.0.0.1".into(),
                port: 80,
                used: 10
            }
        );
        let mut v6 = vec![5, 1, 0, 4];
        v6.extend_from_slice(&std::net::Ipv6Addr::LOCALHOST.octets());
        v6.extend_from_slice(&[0, 22]);
        assert_eq!(
            request(&v6),
            Request::Connect {
                host: "[::1]".into(),
                port: 22,
                used: 22
            }
        );
        // BIND and UDP ASSOCIATE, unknown address types, other versions: refused with a code.
        assert_eq!(request(&[5, 2, 0, 1]), Request::Refused(7));
        assert_eq!(request(&[5, 3, 0, 1]), Request::Refused(7));
        assert_eq!(request(&[5, 1, 0, 9]), Request::Refused(8));
        assert_eq!(request(&[4, 1, 0, 1]), Request::Refused(1));
        assert!(encode_connect(&"a".repeat(256), 1).is_none());
    }
}
