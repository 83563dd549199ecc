//! `warden`: the command-line front end. A thin layer over the library crates: it parses
//! arguments, loads policy, and calls into the layer that owns each job.

// No unwrap on input-dependent paths in library code; tests may (clippy.toml).
#![warn(clippy::unwrap_used)]

mod cli;
mod cmd;

/// Exit codes, documented in `warden --help` and the man page.
pub mod exit {
    /// Success.
    pub const OK: i32 = 0;
    /// An unexpected internal error.
    pub const INTERNAL: i32 = 1;
    /// Bad command line (clap's own code).
    pub const USAGE: i32 = 2;
    /// The policy is invalid (malformed TOML, unknown key or profile, widening workspace file).
    pub const POLICY: i32 = 3;
    /// The machine cannot deliver the policy (missing kernel feature); nothing was run.
    pub const UNSUPPORTED: i32 = 4;
    /// The workspace is missing or unusable.
    pub const WORKSPACE: i32 = 5;
    /// A check failed (`policy check`, `doctor`) or an action was denied (`explain`).
    pub const DENIED: i32 = 6;
    /// `warden run`: the command is not found, or is hidden inside the sandbox (as a shell).
    pub const NOT_FOUND: i32 = 127;
}

fn main() {
    warden_event::timing::start();
    let cli = cli::Cli::parse_args();
    let code = cmd::dispatch(cli);
    warden_event::timing::mark("main: exit");
    std::process::exit(code);
}
