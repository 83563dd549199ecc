//! `warden`: the command-line front end. A thin layer over the library crates: it parses
//! arguments, loads policy, and calls into the layer that owns each job.

// No unwrap on input-dependent paths in library code; tests may (clippy.toml).
#![warn(clippy::unwrap_used)]
// warden's own C `main` (below), without std's runtime start-up.
#![cfg_attr(not(test), no_main)]

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

/// The process's entry, instead of std's `lang_start`, which also probes the main thread's
/// stack guard: glibc answers that by reading and parsing `/proc/self/maps` (~5% of a
/// `warden hook` process, run once per tool call), and std then installs SIGSEGV/SIGBUS
/// handlers on an alternate stack (a stack overflow is then reported by name instead of
/// as a plain SIGSEGV: the only loss). What std's start-up does that warden relies on is
/// done here: fds 0-2 are open (a closed one would make the next file opened — the audit
/// store — the target of stderr), SIGPIPE is ignored (a closed pipe is an EPIPE error, not
/// death), and a panic exits with 101.
#[cfg(not(test))]
#[no_mangle]
pub extern "C" fn main(_argc: libc::c_int, _argv: *const *const libc::c_char) -> libc::c_int {
    for fd in 0..3 {
        // SAFETY: fcntl/open/abort on plain integers and a NUL-terminated literal.
        unsafe {
            if libc::fcntl(fd, libc::F_GETFD) == -1
                && *libc::__errno_location() == libc::EBADF
                && libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) != fd
            {
                libc::abort();
            }
        }
    }
    // SAFETY: setting a signal's disposition to SIG_IGN, before any thread exists.
    let was = unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    warden_sandbox::launch::SIGPIPE_WAS_IGNORED
        .store(was == libc::SIG_IGN, std::sync::atomic::Ordering::Relaxed);
    let code = std::panic::catch_unwind(run).unwrap_or(101);
    std::process::exit(code)
}

fn run() -> i32 {
    warden_event::timing::start();
    warden_event::timing::mark("main: start");
    let cli = cli::Cli::parse_args();
    warden_event::timing::mark("main: args parsed");
    let code = cmd::dispatch(cli);
    // A claimed warm spare: the run that claimed it exits with this code.
    warden_session::warm::finish(code);
    // Directories a session removed, freed by a child after this process has exited.
    warden_sandbox::lateclose::release();
    warden_event::timing::mark("main: exit");
    code
}

/// Under the test harness (which brings its own `main`), std's start-up as usual.
#[cfg(test)]
#[allow(dead_code)]
fn main() {
    std::process::exit(run())
}
