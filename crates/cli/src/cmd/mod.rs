//! Subcommand implementations. Each module maps one subcommand onto the library crate that
//! owns the job.

use crate::cli::{Cli, Command, PolicyArgs};
use crate::exit;
use std::path::PathBuf;

mod advisor;
mod audit;
mod daemon;
mod doctor;
mod eval;
mod exec;
mod explain;
mod gateask;
mod held;
mod hook;
mod log;
mod misc;
mod net;
mod policy;
mod run;
pub(crate) mod session;
mod top;
mod why;

pub fn dispatch(cli: Cli) -> i32 {
    misc::set_color(cli.color);
    // `run`, `hook` and the daemon set up their own decision logs; everything else logs to
    // stderr only.
    let own_log = matches!(&cli.cmd, Command::Daemon(d) if !d.status && !d.unload);
    if !matches!(cli.cmd, Command::Run(_) | Command::Hook(_)) && !own_log {
        warden_event::init_tracing(None, cli.verbose);
    }
    let r = match cli.cmd {
        Command::Run(a) => run::run(a, cli.verbose),
        Command::Policy(c) => policy::policy(c),
        Command::Explain(a) => explain::explain(a),
        Command::Why(a) => why::why(a),
        Command::Doctor(a) => doctor::doctor(a),
        Command::Hash(a) => exec::hash(a),
        Command::Index(a) => exec::index(a),
        Command::Exec(c) => exec::exec(c),
        Command::Hook(a) => hook::hook(a),
        Command::Install(a) => hook::install(a),
        Command::Uninstall(a) => hook::uninstall(a),
        Command::Daemon(a) => daemon::daemon(a),
        Command::Held(c) => held::held(c),
        Command::Freeze(a) => session::control(a, warden_session::Request::Freeze),
        Command::Thaw(a) => session::control(a, warden_session::Request::Thaw),
        Command::Kill(a) => session::control(a, warden_session::Request::Kill),
        Command::Status(a) => session::control(a, warden_session::Request::Status),
        Command::Top(a) => session::top(a),
        Command::Approve(a) => session::approve(a),
        Command::Audit(c) => audit::audit(c),
        Command::Log(a) => log::log(a),
        Command::Sessions(a) => log::sessions(a),
        Command::Eval(a) => eval::eval(a),
        Command::Completions { shell } => misc::completions(shell),
        Command::Man => misc::man(),
    };
    match r {
        Ok(code) => code,
        Err(e) => {
            let code = e
                .downcast_ref::<Exit>()
                .map(|x| x.code)
                .unwrap_or(exit::INTERNAL);
            eprintln!("{} {e:#}", misc::paint_err("warden: error:"));
            code
        }
    }
}

/// An error carrying one of the documented exit codes; build it with [`fail`].
#[derive(Debug)]
pub struct Exit {
    pub code: i32,
    pub msg: String,
}
impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.msg)
    }
}
impl std::error::Error for Exit {}

/// An error carrying an exit code.
pub fn fail(code: i32, msg: impl std::fmt::Display) -> anyhow::Error {
    anyhow::Error::new(Exit {
        code,
        msg: msg.to_string(),
    })
}

/// The user's home directory, resolved: `$HOME` (else the password database's entry) with
/// every symlink followed. Every `~` in a policy, warden's state dir and the broad-workspace
/// check use this one path; a `$HOME` that is a symlink (`/home -> /var/home` on Fedora
/// Silverblue, NFS layouts) would otherwise name the same tree by two paths, and the
/// protected `~/...` entries would miss the real one the sandbox mounts.
pub fn home_dir() -> PathBuf {
    let raw = raw_home_dir();
    std::fs::canonicalize(&raw).unwrap_or(raw)
}

fn raw_home_dir() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .unwrap_or_else(|| {
            // SAFETY: getpwuid returns a pointer into static storage or NULL.
            unsafe {
                let pw = libc::getpwuid(libc::getuid());
                if !pw.is_null() && !(*pw).pw_dir.is_null() {
                    let s = std::ffi::CStr::from_ptr((*pw).pw_dir);
                    return PathBuf::from(s.to_string_lossy().into_owned());
                }
            }
            PathBuf::from("/")
        })
}

/// Resolves the workspace: the flag, else the current directory; must exist and be a dir.
pub fn workspace(arg: &Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let raw = match arg {
        Some(p) => p.clone(),
        None => std::env::current_dir().map_err(|e| {
            fail(
                exit::WORKSPACE,
                format!("cannot read the current directory: {e}"),
            )
        })?,
    };
    let c = std::fs::canonicalize(&raw)
        .map_err(|e| fail(exit::WORKSPACE, format!("workspace {}: {e}", raw.display())))?;
    if !c.is_dir() {
        return Err(fail(
            exit::WORKSPACE,
            format!("workspace {} is not a directory", c.display()),
        ));
    }
    Ok(c)
}

/// Loads the effective policy for a command.
pub fn load_policy(a: &PolicyArgs, ws: Option<&PathBuf>) -> anyhow::Result<warden_policy::Loaded> {
    let opts = warden_policy::LoadOptions {
        profile: a.profile.clone(),
        policy_file: a.policy.clone(),
        workspace: ws.cloned(),
        home: home_dir(),
        skip_machine_and_user: false,
    };
    warden_policy::load(&opts).map_err(|e| fail(exit::POLICY, e))
}
