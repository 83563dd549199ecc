//! Text that reaches a human's terminal: the one escaping function every supervisor message
//! uses for what the agent could have chosen (file names, argv, host names, reasons).
//!
//! A name with `ESC ] 52 ; c ; ...` would set the user's clipboard, `CR`/`ESC [ 1 A` would
//! draw over warden's own report, a bidi override would reorder it and a newline would forge
//! a `warden:` line of its own. [`printable`] writes every such character as a visible
//! escape (`\x1b`, `\u{202e}`), so what a terminal shows is what was there.

/// Whether `c` is shown escaped: control characters (C0 with `\t`, `\n` and `\r`, DEL, C1)
/// and the invisible format characters that reorder or hide text (bidi marks and overrides,
/// zero-width characters, line/paragraph separators, word joiners, BOM, soft hyphen).
fn unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{00ad}' | '\u{061c}' | '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}')
}

fn push_escaped(out: &mut String, c: char) {
    use std::fmt::Write;
    let _ = if (c as u32) < 0x100 {
        write!(out, "\\x{:02x}", c as u32)
    } else {
        write!(out, "\\u{{{:04x}}}", c as u32)
    };
}

/// `s` with every control and invisible format character written as `\xNN` /
/// `\u{NNNN}` (newlines too: one value, one line).
pub fn printable(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if unsafe_char(c) {
            push_escaped(&mut out, c);
        } else {
            out.push(c);
        }
    }
    out
}

/// [`printable`] for a message of several lines that warden composed: its `\n`s stay, every
/// other control character (`\r` included) is escaped. The last guard before stderr; the
/// agent's values inside it are escaped with [`printable`] already.
pub fn printable_lines(s: &str) -> String {
    s.split('\n').map(printable).collect::<Vec<_>>().join("\n")
}

/// A path for a human: its bytes as text (invalid UTF-8 as U+FFFD), through [`printable`].
pub fn printable_path(p: &std::path::Path) -> String {
    printable(&p.to_string_lossy())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_terminal_controls_newlines_and_bidi() {
        let s = printable("a\x1b]52;c;eA==\x07b\rc\nd\u{9b}e\u{202e}f\u{200b}g");
        assert_eq!(
            s,
            "a\\x1b]52;c;eA==\\x07b\\x0dc\\x0ad\\x9be\\u{202e}f\\u{200b}g"
        );
        assert_eq!(printable("plain ünïcode ✓"), "plain ünïcode ✓");
    }

    #[test]
    fn lines_keep_their_newlines_only() {
        assert_eq!(printable_lines("a\x1b[2K\nb\r\n"), "a\\x1b[2K\nb\\x0d\n");
    }
}
