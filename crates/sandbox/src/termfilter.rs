//! A streaming filter for the agent's terminal output: escape sequences that act on the
//! user's terminal or host beyond drawing are dropped before they reach the real terminal.
//!
//! Kept: text, C0 controls used for layout (BS, HT, LF, VT, FF, CR, BEL, SO, SI), CSI
//! sequences (colours/SGR, cursor movement, erase, scroll regions, modes, device-status and
//! attribute queries that TUIs need) except window operations (`CSI … t`: title reports,
//! resizing, iconifying) and media copy (`CSI … i`); plain escapes (`ESC 7`, `ESC ( B`, ...);
//! OSC 0/1/2 title *sets* (at most [`MAX_TITLE`] bytes; with every report dropped a title
//! cannot be read back), OSC 8 hyperlinks, OSC 133 prompt marks, colour queries
//! (`OSC 4/10/11/12 ; ?`) and colour resets (OSC 104/110/111/112).
//!
//! Dropped: every other OSC — OSC 52 clipboard, OSC 1337 (iTerm2 `File=` transfers and the
//! rest), OSC 5113 (kitty file transfer), OSC 7/9/777 notifications, palette changes, font
//! changes —; every DCS (DECRQSS and other queries, sixel, tmux passthrough), APC (kitty
//! graphics and file transfer), PM and SOS string; 8-bit C1 controls, raw or encoded as
//! UTF-8 (U+0080–U+009F, which some terminals execute); ENQ (answerback) and CAN/SUB,
//! which also breaks the ZMODEM autostart header (`**\x18B0`) that makes some terminals
//! receive files.
//!
//! The filter is a state machine fed any split of the stream; it holds at most
//! [`MAX_SEQ`] bytes of one pending sequence (longer sequences are dropped whole), so memory
//! is bounded whatever the agent writes. The real terminal only ever receives complete,
//! allowed sequences and text, so it is always back in its ground state after each one.

/// The longest escape sequence held while deciding (OSC 8 URIs included); longer ones are
/// dropped whole.
pub const MAX_SEQ: usize = 4096;
/// The longest title (OSC 0/1/2 payload) passed on.
pub const MAX_TITLE: usize = 256;
const MAX_CSI: usize = 64;

const ESC: u8 = 0x1b;
const BEL: u8 = 0x07;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Ground,
    /// After ESC.
    Esc,
    /// ESC followed by intermediates (0x20–0x2F), waiting for the final byte.
    EscInter,
    Csi,
    /// A CSI being dropped (too long or malformed): skip to its final byte.
    CsiDrop,
    Osc,
    /// ESC seen inside an OSC: `\` terminates it.
    OscEsc,
    /// A DCS/APC/PM/SOS string (or an over-long OSC) being dropped until ST.
    StrDrop,
    StrDropEsc,
}

/// What was dropped, by kind (for the end-of-session note).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Dropped {
    pub osc52_clipboard: u64,
    pub osc_other: u64,
    pub csi_window_ops: u64,
    pub dcs_apc_pm_sos: u64,
    pub controls: u64,
}

impl Dropped {
    pub fn total(&self) -> u64 {
        self.osc52_clipboard
            + self.osc_other
            + self.csi_window_ops
            + self.dcs_apc_pm_sos
            + self.controls
    }
}

pub struct Filter {
    st: State,
    buf: Vec<u8>,
    /// UTF-8 continuation bytes still expected in ground state.
    utf8_left: u8,
    /// A 0xC2 lead byte held back: with 0x80–0x9F after it, it encodes a C1 control.
    held_c2: bool,
    pub dropped: Dropped,
}

impl Default for Filter {
    fn default() -> Self {
        Self::new()
    }
}

impl Filter {
    pub fn new() -> Filter {
        Filter {
            st: State::Ground,
            buf: Vec::with_capacity(64),
            utf8_left: 0,
            held_c2: false,
            dropped: Dropped::default(),
        }
    }

    /// Bytes held for an undecided sequence (never more than [`MAX_SEQ`]).
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Filters `input`, appending what may reach the terminal to `out`.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        for &b in input {
            self.byte(b, out);
        }
    }

    /// At the end of the stream: emits a 0xC2 still held back (alone it is no control). A
    /// pending escape sequence is dropped.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if std::mem::take(&mut self.held_c2) {
            out.push(0xc2);
        }
        self.reset();
    }

    fn start_esc(&mut self) {
        self.buf.clear();
        self.buf.push(ESC);
        self.st = State::Esc;
        self.utf8_left = 0;
    }

    fn byte(&mut self, b: u8, out: &mut Vec<u8>) {
        if self.held_c2 {
            self.held_c2 = false;
            if (0x80..=0x9f).contains(&b) {
                self.dropped.controls += 1;
                self.utf8_left = 0;
                return;
            }
            out.push(0xc2);
        }
        match self.st {
            State::Ground => self.ground(b, out),
            State::Esc => match b {
                b'[' => {
                    self.buf.push(b);
                    self.st = State::Csi;
                }
                b']' => {
                    self.buf.push(b);
                    self.st = State::Osc;
                }
                b'P' | b'_' | b'^' | b'X' => {
                    self.dropped.dcs_apc_pm_sos += 1;
                    self.buf.clear();
                    self.st = State::StrDrop;
                }
                0x20..=0x2f => {
                    self.buf.push(b);
                    self.st = State::EscInter;
                }
                0x30..=0x7e => {
                    out.push(ESC);
                    out.push(b);
                    self.reset();
                }
                ESC => self.start_esc(),
                0x18 | 0x1a => {
                    // CAN/SUB cancel the escape.
                    self.dropped.controls += 1;
                    self.reset();
                }
                _ => {
                    // A control or 8-bit byte: the escape is abandoned; handle the byte.
                    self.reset();
                    self.ground(b, out);
                }
            },
            State::EscInter => match b {
                0x20..=0x2f if self.buf.len() < 8 => self.buf.push(b),
                0x30..=0x7e => {
                    self.buf.push(b);
                    out.extend_from_slice(&self.buf);
                    self.reset();
                }
                ESC => self.start_esc(),
                _ => {
                    self.dropped.controls += 1;
                    self.reset();
                }
            },
            State::Csi => match b {
                0x20..=0x3f => {
                    if self.buf.len() >= MAX_CSI {
                        self.dropped.csi_window_ops += 1;
                        self.buf.clear();
                        self.st = State::CsiDrop;
                    } else {
                        self.buf.push(b);
                    }
                }
                0x40..=0x7e => {
                    self.buf.push(b);
                    self.finish_csi(out);
                }
                ESC => self.start_esc(),
                0x18 | 0x1a => self.reset(),
                // C0 controls inside a CSI are executed by terminals; do the same.
                0x00..=0x1f => self.ground_control(b, out),
                _ => self.reset(),
            },
            State::CsiDrop => match b {
                0x40..=0x7e => self.reset(),
                ESC => self.start_esc(),
                0x18 | 0x1a => self.reset(),
                _ => {}
            },
            State::Osc => match b {
                BEL => self.finish_osc(out, false),
                ESC => self.st = State::OscEsc,
                0x18 | 0x1a => {
                    self.dropped.osc_other += 1;
                    self.reset();
                }
                // Any other control byte inside an OSC (ENQ, NUL, ...) would reach the
                // terminal inside a kept sequence: the whole OSC is dropped (found by the fuzzer).
                0x00..=0x1f | 0x7f => {
                    self.count_osc();
                    self.buf.clear();
                    self.st = State::StrDrop;
                }
                _ => {
                    if self.buf.len() >= MAX_SEQ {
                        self.count_osc();
                        self.buf.clear();
                        self.st = State::StrDrop;
                    } else {
                        self.buf.push(b);
                    }
                }
            },
            State::OscEsc => {
                if b == b'\\' {
                    self.finish_osc(out, true);
                } else {
                    // Any other escape ends the OSC unterminated: drop it, start anew.
                    self.count_osc();
                    self.start_esc();
                    self.byte(b, out);
                }
            }
            // BEL ends a dropped string too (it ends OSC; ending a DCS early is safe, since
            // whatever follows is filtered from the ground state).
            State::StrDrop => match b {
                ESC => self.st = State::StrDropEsc,
                0x18 | 0x1a | BEL => self.reset(),
                _ => {}
            },
            State::StrDropEsc => {
                if b == b'\\' {
                    self.reset();
                } else if b == ESC {
                    self.st = State::StrDropEsc;
                } else {
                    self.start_esc();
                    self.byte(b, out);
                }
            }
        }
    }

    fn reset(&mut self) {
        self.buf.clear();
        self.st = State::Ground;
        self.utf8_left = 0;
    }

    fn ground(&mut self, b: u8, out: &mut Vec<u8>) {
        match b {
            ESC => self.start_esc(),
            0x00..=0x1f | 0x7f => {
                self.utf8_left = 0;
                self.ground_control(b, out);
            }
            0x80..=0xbf => {
                if self.utf8_left > 0 {
                    self.utf8_left -= 1;
                    out.push(b);
                } else if b <= 0x9f {
                    // A raw C1 control (8-bit CSI, OSC, DCS, ...): never passed.
                    self.dropped.controls += 1;
                } else {
                    out.push(b);
                }
            }
            0xc2 => {
                self.utf8_left = 1;
                self.held_c2 = true;
            }
            0xc3..=0xdf => {
                self.utf8_left = 1;
                out.push(b);
            }
            0xe0..=0xef => {
                self.utf8_left = 2;
                out.push(b);
            }
            0xf0..=0xf4 => {
                self.utf8_left = 3;
                out.push(b);
            }
            _ => {
                self.utf8_left = 0;
                out.push(b);
            }
        }
    }

    fn ground_control(&mut self, b: u8, out: &mut Vec<u8>) {
        match b {
            // ENQ (answerback), CAN, SUB (also ZMODEM's ZDLE), NUL: dropped.
            0x05 | 0x18 | 0x1a | 0x00 => self.dropped.controls += 1,
            _ => out.push(b),
        }
    }

    fn finish_csi(&mut self, out: &mut Vec<u8>) {
        let last = *self.buf.last().unwrap_or(&0);
        let has_inter = self.buf[2..self.buf.len() - 1]
            .iter()
            .any(|c| (0x20..=0x2f).contains(c));
        // Window operations (title reports, resize, iconify) and media copy.
        let drop = matches!(last, b't' | b'i') && !has_inter;
        if drop {
            self.dropped.csi_window_ops += 1;
        } else {
            out.extend_from_slice(&self.buf);
        }
        self.reset();
    }

    /// The numeric OSC code of the pending sequence, if it has one.
    fn osc_code(&self) -> Option<u32> {
        let body = self.buf.get(2..)?;
        let end = body.iter().position(|&c| c == b';').unwrap_or(body.len());
        let num = &body[..end];
        if num.is_empty() || num.len() > 5 || !num.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(num).ok()?.parse().ok()
    }

    fn count_osc(&mut self) {
        if self.osc_code() == Some(52) {
            self.dropped.osc52_clipboard += 1;
        } else {
            self.dropped.osc_other += 1;
        }
    }

    fn finish_osc(&mut self, out: &mut Vec<u8>, st: bool) {
        let code = self.osc_code();
        let body = &self.buf[2..];
        let payload = body
            .iter()
            .position(|&c| c == b';')
            .map_or(&body[body.len()..], |i| &body[i + 1..]);
        // Text in an allowed string: valid UTF-8 without C0 or C1 controls (a terminal that
        // took a C1 ST/OSC inside it would end the string early and run the rest).
        let clean = std::str::from_utf8(payload).is_ok_and(|t| !t.chars().any(|c| c.is_control()));
        let ok = match code {
            Some(0..=2) => payload.len() <= MAX_TITLE && clean,
            Some(8) | Some(133) => clean,
            // Colour queries only (a reply, no change): `OSC 4;N;?`, `OSC 10;?`.
            // The index is digits: anything else (a raw or UTF-8 C1 byte) would reach the
            // terminal inside a kept string (found by the fuzzer).
            Some(4) => {
                let parts: Vec<&[u8]> = payload.split(|&c| c == b';').collect();
                parts.len() >= 2
                    && parts.chunks(2).all(|p| {
                        p.len() == 2
                            && !p[0].is_empty()
                            && p[0].iter().all(u8::is_ascii_digit)
                            && p[1] == b"?"
                    })
            }
            Some(10..=12) => payload == b"?",
            Some(104) | Some(110..=112) => payload.iter().all(|c| c.is_ascii_digit() || *c == b';'),
            _ => false,
        };
        if ok {
            out.extend_from_slice(&self.buf);
            if st {
                out.extend_from_slice(b"\x1b\\");
            } else {
                out.push(BEL);
            }
        } else {
            self.count_osc();
        }
        self.reset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(chunks: &[&[u8]]) -> (Vec<u8>, Filter) {
        let mut f = Filter::new();
        let mut out = Vec::new();
        for c in chunks {
            f.feed(c, &mut out);
        }
        f.finish(&mut out);
        (out, f)
    }

    /// Every split into two and into single bytes gives the same output as one feed.
    fn all_splits(input: &[u8]) -> Vec<u8> {
        let (whole, _) = run(&[input]);
        for i in 0..=input.len() {
            let (a, b) = input.split_at(i);
            assert_eq!(run(&[a, b]).0, whole, "split at {i} of {input:?}");
        }
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(run(&bytes).0, whole, "byte by byte: {input:?}");
        whole
    }

    #[test]
    fn keeps_text_colours_and_cursor_movement() {
        let s = b"plain \x1b[1;31mred\x1b[0m \x1b[2J\x1b[10;5H\x1b[?1049h\x1b[?25l\x1b7\x1b8\x1b(B\r\n\tx\x08";
        assert_eq!(all_splits(s), s.to_vec());
        let utf8 = "héllo — ✓ 🎉 \u{61b}".as_bytes();
        assert_eq!(all_splits(utf8), utf8.to_vec());
        // Device status / attribute queries TUIs rely on.
        assert_eq!(all_splits(b"\x1b[6n\x1b[c\x1b[>q"), b"\x1b[6n\x1b[c\x1b[>q");
    }

    #[test]
    fn drops_osc52_clipboard_whatever_the_split() {
        for term in [&b"\x07"[..], b"\x1b\\"] {
            let mut s = b"a\x1b]52;c;ZWNobyBwd25lZA==".to_vec();
            s.extend_from_slice(term);
            s.extend_from_slice(b"b");
            assert_eq!(all_splits(&s), b"ab");
            let (_, f) = run(&[&s]);
            assert_eq!(f.dropped.osc52_clipboard, 1);
        }
    }

    #[test]
    fn drops_reports_queries_and_transfers() {
        let cases: &[&[u8]] = &[
            b"\x1b[21t",                                   // title report
            b"\x1b[20t",                                   // icon label report
            b"\x1b[8;100;200t",                            // resize window
            b"\x1b[2t",                                    // iconify
            b"\x1b[5i",                                    // media copy on
            b"\x1bP$qm\x1b\\",                             // DECRQSS
            b"\x1bP+q544e\x1b\\",                          // XTGETTCAP
            b"\x1bPq#0;2;0;0;0#0~~@@vv@@~~$\x1b\\",        // sixel
            b"\x1b]1337;File=name=eA==;inline=0:QUJD\x07", // iTerm2 file transfer
            b"\x1b]5113;ac=send\x1b\\",                    // kitty file transfer
            b"\x1b_Gf=100,a=T;AAAA\x1b\\",                 // kitty graphics
            b"\x1b^privacy\x1b\\",                         // PM
            b"\x1bXsos\x1b\\",                             // SOS
            b"\x1b]7;file://host/etc\x07",                 // cwd
            b"\x1b]9;notify\x07",                          // notification
            b"\x1b]4;1;rgb:ff/00/00\x07",                  // palette change
            b"\x1b]11;rgb:00/00/00\x07",                   // background change
            b"\x1b]50;font\x07",                           // font
            b"\x9b31m",                                    // 8-bit CSI: the C1 byte is dropped
            b"\x05",                                       // ENQ
            b"\xc2\x9b31m",                                // CSI as UTF-8 U+009B
        ];
        for c in cases {
            let mut s = b"<".to_vec();
            s.extend_from_slice(c);
            s.extend_from_slice(b">");
            let out = all_splits(&s);
            assert!(
                !out.contains(&ESC)
                    && !out.contains(&0x9b)
                    && !out.contains(&0x05)
                    && !out.contains(&0xc2),
                "{c:?} leaked: {out:?}"
            );
            assert!(
                out.starts_with(b"<") && out.ends_with(b">"),
                "{c:?}: {out:?}"
            );
        }
    }

    #[test]
    fn zmodem_autostart_is_broken() {
        let out = all_splits(b"rz\r**\x18B00000000000000\r\x8a\x11");
        assert!(!out.windows(3).any(|w| w == b"**\x18"), "{out:?}");
    }

    #[test]
    fn keeps_titles_hyperlinks_and_colour_queries() {
        let keep: &[&[u8]] = &[
            b"\x1b]0;my title\x07",
            b"\x1b]2;build: ok\x1b\\",
            b"\x1b]8;;https://example.com/\x1b\\link\x1b]8;;\x1b\\",
            b"\x1b]11;?\x07",
            b"\x1b]4;1;?\x07",
            b"\x1b]133;A\x07",
            b"\x1b]104\x07",
        ];
        for k in keep {
            assert_eq!(all_splits(k), k.to_vec(), "{k:?}");
        }
    }

    #[test]
    fn long_sequences_are_dropped_with_bounded_memory() {
        let mut s = b"\x1b]0;".to_vec();
        s.extend(std::iter::repeat_n(b'x', MAX_SEQ * 4));
        s.extend_from_slice(b"\x07after");
        let mut f = Filter::new();
        let mut out = Vec::new();
        for c in s.chunks(100) {
            f.feed(c, &mut out);
            assert!(f.pending() <= MAX_SEQ);
        }
        assert_eq!(out, b"after");
        // A very long CSI too.
        let mut c = b"\x1b[".to_vec();
        c.extend(std::iter::repeat_n(b'1', 1000));
        c.extend_from_slice(b"mok");
        assert_eq!(all_splits(&c), b"ok");
        // An over-long title (within MAX_SEQ) is dropped.
        let mut t = b"\x1b]2;".to_vec();
        t.extend(std::iter::repeat_n(b'y', MAX_TITLE + 1));
        t.push(BEL);
        assert_eq!(all_splits(&t), b"");
    }

    #[test]
    fn allowed_strings_carry_no_c1_controls() {
        // A title holding U+009C (ST) then U+009D (OSC) 52: dropped whole.
        let s = "\x1b]0;a\u{9c}\u{9d}52;c;ZXZpbA==\x07".as_bytes();
        assert_eq!(all_splits(s), b"");
        // Invalid UTF-8 with a raw C1 byte in a hyperlink: dropped.
        assert_eq!(all_splits(b"\x1b]8;;http://x/\x9d\x07t"), b"t");
        // A colour query whose index is a C1 control (raw or UTF-8): dropped.
        assert_eq!(all_splits(b"\x1b]4;\xc2\x9c;?\x07u"), b"u");
        assert_eq!(all_splits(b"\x1b]4;\x9c\x1b]52;?\x07v"), b"v");
        assert_eq!(all_splits(b"\x1b]4;1;?;x;?\x07w"), b"w");
        // Non-ASCII text is fine.
        let ok = "\x1b]2;caf\u{e9} \u{2713}\x07".as_bytes();
        assert_eq!(all_splits(ok), ok.to_vec());
    }

    #[test]
    fn an_interrupted_sequence_does_not_swallow_the_next() {
        // OSC 52 cut by a new escape: dropped; the CSI after it kept.
        assert_eq!(all_splits(b"\x1b]52;c;AAAA\x1b[1mX"), b"\x1b[1mX");
        // DCS cut by CSI: the DCS dropped, the CSI kept.
        assert_eq!(all_splits(b"\x1bP$q\x1b[0mY"), b"\x1b[0mY");
        // An allowed OSC cut by ESC is dropped too (never half-passed).
        assert_eq!(all_splits(b"\x1b]0;t\x1b[mZ"), b"\x1b[mZ");
        // Controls inside a CSI are executed.
        assert_eq!(all_splits(b"\x1b[1\r;2H"), b"\r\x1b[1;2H");
    }
}
