//! The SOCKS5 handshake parser on any client bytes: never panics, never claims more bytes
//! than it was given, decides the same on every prefix that holds the whole message (a
//! shorter prefix only ever needs more), and reads back a request it encoded.
#![no_main]
use libfuzzer_sys::fuzz_target;
use warden_proto::socks5::{self, Greeting, Request};

fuzz_target!(|data: &[u8]| {
    let g = socks5::greeting(data);
    if let Greeting::NoAuth { used } = g {
        assert!(used <= data.len() && used <= socks5::MAX_GREETING);
        assert_eq!(socks5::greeting(&data[..used]), g);
        for cut in 0..used {
            let p = socks5::greeting(&data[..cut]);
            assert!(matches!(p, Greeting::NeedMore | Greeting::BadVersion), "{p:?}");
        }
    }
    let r = socks5::request(data);
    match &r {
        Request::Connect { host, port, used } => {
            assert!(*used <= data.len() && *used <= socks5::MAX_REQUEST);
            assert_eq!(socks5::request(&data[..*used]), r);
            for cut in 0..*used {
                assert!(matches!(
                    socks5::request(&data[..cut]),
                    Request::NeedMore | Request::Refused(_)
                ));
            }
            if data[3] == 3 && std::str::from_utf8(&data[5..*used - 2]).is_ok() {
                let again = socks5::encode_connect(host, *port).expect("a parsed name fits");
                let back = socks5::request(&again);
                assert_eq!(
                    back,
                    Request::Connect { host: host.clone(), port: *port, used: again.len() }
                );
            }
        }
        Request::Refused(code) => assert!(matches!(code, 1 | 7 | 8)),
        Request::NeedMore => assert!(data.len() < socks5::MAX_REQUEST),
    }
});
