//! How the session speaks to the human on the supervisor's terminal (stderr, outside the
//! agent's pty). The CLI chooses the colour; the words are the session's.
//!
//! Every message goes through [`warden_event::text::printable`] before it is painted: what it
//! carries (paths, argv, host names, risk reasons) may be the agent's choice, and must not
//! reach the terminal as escape sequences. A message is one line; a `\n` in it shows as
//! `\x0a`.

use warden_event::text::printable;

/// The supervisor's terminal. `paint_warn` colours a warning (the CLI's, honouring
/// `--color` and `NO_COLOR`); the default leaves text plain.
#[derive(Clone, Copy, Debug)]
pub struct Ui {
    pub paint_warn: fn(&str) -> String,
}

fn plain(s: &str) -> String {
    s.to_string()
}

impl Default for Ui {
    fn default() -> Self {
        Ui { paint_warn: plain }
    }
}

impl Ui {
    /// `<prefix painted> <msg>` on a line of its own.
    pub fn warn(&self, prefix: &str, msg: &str) {
        eprintln!("{} {}", (self.paint_warn)(prefix), printable(msg));
    }

    /// [`Ui::warn`] for a message of several lines that warden composed: its line breaks
    /// stay (each line escaped), where `warn` shows them as `\x0a`.
    pub fn warn_lines(&self, prefix: &str, msg: &str) {
        eprintln!(
            "{} {}",
            (self.paint_warn)(prefix),
            warden_event::text::printable_lines(msg)
        );
    }

    /// A whole line painted as a warning.
    pub fn warn_line(&self, line: &str) {
        eprintln!("{}", (self.paint_warn)(&printable(line)));
    }

    /// A line that must stand out while the terminal may be in raw mode (the agent's pty
    /// relay is running): carriage returns around it.
    pub fn alert(&self, m: &str) {
        eprint!("\r\n{}\r\n", (self.paint_warn)(&printable(m)));
    }
}
