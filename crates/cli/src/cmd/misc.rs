//! Colour, completions and the man page.

use crate::cli::{Cli, Color};
use clap::CommandFactory;
use std::sync::atomic::{AtomicU8, Ordering};

static COLOR: AtomicU8 = AtomicU8::new(0); // 0 auto, 1 always, 2 never

pub fn set_color(c: Color) {
    let v = match c {
        Color::Auto => 0,
        Color::Always => 1,
        Color::Never => 2,
    };
    COLOR.store(v, Ordering::Relaxed);
}

fn enabled(stderr: bool) -> bool {
    match COLOR.load(Ordering::Relaxed) {
        1 => true,
        2 => false,
        _ => {
            std::env::var_os("NO_COLOR").is_none()
                && warden_event::tty::is_terminal(if stderr { 2 } else { 1 })
        }
    }
}

fn paint(code: &str, s: &str, stderr: bool) -> String {
    if enabled(stderr) {
        format!("\x1b[{code}m{s}\x1b[0m")
    } else {
        s.to_string()
    }
}

pub fn paint_err(s: &str) -> String {
    paint("1;31", s, true)
}
pub fn red(s: &str) -> String {
    paint("31", s, false)
}
pub fn green(s: &str) -> String {
    paint("32", s, false)
}
pub fn yellow(s: &str) -> String {
    paint("33", s, false)
}
pub fn magenta(s: &str) -> String {
    paint("35", s, false)
}
pub fn dim(s: &str) -> String {
    paint("2", s, false)
}
pub fn bold(s: &str) -> String {
    paint("1", s, false)
}
pub fn warn_stderr(s: &str) -> String {
    paint("1;33", s, true)
}

pub fn completions(shell: clap_complete::Shell) -> anyhow::Result<i32> {
    let mut cmd = Cli::command();
    clap_complete::generate(shell, &mut cmd, "warden", &mut std::io::stdout());
    Ok(0)
}

pub fn man() -> anyhow::Result<i32> {
    let cmd = Cli::command();
    clap_mangen::Man::new(cmd).render(&mut std::io::stdout())?;
    Ok(0)
}
