//! The terminal filter on any agent output: never panics, holds bounded memory, gives the
//! same output however the stream is split, is idempotent (its output passes through
//! unchanged), and never lets a dropped kind of sequence through.
#![no_main]
use libfuzzer_sys::fuzz_target;
use warden_sandbox::termfilter::{Filter, MAX_SEQ};

fn filter_split(data: &[u8], cuts: &[usize]) -> Vec<u8> {
    let mut f = Filter::new();
    let mut out = Vec::new();
    let mut start = 0;
    for &c in cuts {
        let c = c.clamp(start, data.len());
        f.feed(&data[start..c], &mut out);
        assert!(f.pending() <= MAX_SEQ + 8);
        start = c;
    }
    f.feed(&data[start..], &mut out);
    assert!(f.pending() <= MAX_SEQ + 8);
    f.finish(&mut out);
    out
}

fuzz_target!(|input: &[u8]| {
    if input.is_empty() {
        return;
    }
    // The first byte seeds the split points.
    let seed = input[0] as usize;
    let data = &input[1..];
    let whole = filter_split(data, &[]);
    let n = data.len().max(1);
    let cuts: Vec<usize> = (1..=4).map(|i| (seed * 31 * i + i * 7) % n).collect::<Vec<_>>();
    let mut sorted = cuts.clone();
    sorted.sort();
    assert_eq!(filter_split(data, &sorted), whole, "split-dependent output");
    let ones: Vec<usize> = (0..data.len()).collect();
    assert_eq!(filter_split(data, &ones), whole, "byte-by-byte output differs");
    // Idempotent: what reaches the terminal is a fixed point of the filter.
    assert_eq!(filter_split(&whole, &[]), whole, "output is not a fixed point");
    // Nothing dropped by kind reaches the terminal.
    for w in whole.windows(2) {
        assert!(
            !(w[0] == 0x1b && matches!(w[1], b'P' | b'_' | b'^' | b'X')),
            "string sequence leaked"
        );
        assert!(!(w[0] == 0xc2 && (0x80..=0x9f).contains(&w[1])), "UTF-8 C1 leaked");
    }
    for w in whole.windows(5) {
        assert!(w != b"\x1b]52;", "OSC 52 leaked");
    }
    assert!(!whole.contains(&0x18) && !whole.contains(&0x05), "CAN/ENQ leaked");
});
