//! The push decoder of untrusted streams (the hook pipe) on arbitrary bytes in arbitrary
//! chunks: it never panics, never holds more than a header plus one maximum frame, accounts
//! for every byte (frames + junk + still buffered = pushed), and frames encoded by
//! `encode` come back exactly.
#![no_main]
use libfuzzer_sys::fuzz_target;
use warden_proto::frame::{encode, Decoded, Decoder, HEADER_LEN, KIND_JSON};

const MAX: usize = 256;

fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        return;
    }
    // First byte: chunk size; the rest: the stream.
    let chunk = (data[0] as usize % 64) + 1;
    let stream = &data[1..];
    let mut d = Decoder::new(MAX);
    let mut framed = 0u64;
    let mut junk = 0u64;
    for c in stream.chunks(chunk) {
        d.push(c, &mut |e| match e {
            Decoded::Frame { payload, .. } => {
                assert!(payload.len() <= MAX);
                framed += (HEADER_LEN + payload.len()) as u64;
            }
            Decoded::Junk(n) => junk += n as u64,
            Decoded::Oversize(len) => assert!(len > MAX),
        });
        assert!(d.buffered() <= HEADER_LEN + MAX);
    }
    assert_eq!(framed + junk + d.buffered() as u64, stream.len() as u64);
    assert_eq!(junk, d.stats.junk_bytes);

    // Encoded frames come back exactly, in any chunking.
    let payload = &stream[..stream.len().min(MAX)];
    let mut wire = Vec::new();
    let f = encode(KIND_JSON, payload, MAX).unwrap();
    wire.extend_from_slice(&f);
    wire.extend_from_slice(&f);
    let mut d = Decoder::new(MAX);
    let mut got = Vec::new();
    for c in wire.chunks(chunk) {
        d.push(c, &mut |e| {
            if let Decoded::Frame { payload, .. } = e {
                got.push(payload.to_vec());
            }
        });
    }
    assert_eq!(got, vec![payload.to_vec(), payload.to_vec()]);
});
