//! `warden run`: argument handling and printing around one supervised session. The session's
//! decisions ([`SessionConfig::resolve`]) and life ([`Session::start`], [`SessionHandle::wait`])
//! live in warden-session.
//!
//! [`SessionHandle::wait`]: warden_session::SessionHandle::wait

use super::{fail, home_dir, load_policy, misc, workspace};
use crate::cli::{ExecBackendArg, RunArgs};
use crate::exit;
use warden_session::config::{self, ExecChoice};
use warden_session::{ErrorKind, HostFeatures, RunOptions, Session, SessionConfig, Ui};

pub use warden_session::config::state_dir;

pub fn run(a: RunArgs, verbose: u8) -> anyhow::Result<i32> {
    // Before any thread or anything on the host: see the function's doc.
    warden_session::block_group_signals();
    started(a, verbose).map_err(|e| {
        let interrupted = e
            .downcast_ref::<super::Exit>()
            .is_some_and(|x| x.code > 128);
        match warden_session::pending_group_signal() {
            Some((sig, name)) if !interrupted => fail(
                128 + sig,
                format!("interrupted by {name}, which came while warden failed: {e}"),
            ),
            _ => e,
        }
    })
}

fn started(a: RunArgs, verbose: u8) -> anyhow::Result<i32> {
    let home = home_dir();
    let ws = workspace(&a.policy.workspace)?;
    // Before the policy is read: a broad workspace is refused whatever the policy says.
    config::check_workspace(&ws, &home, a.allow_broad_workspace)
        .map_err(|e| to_exit(e.kind(), e))?;
    let loaded = load_policy(&a.policy, Some(&ws))?;
    warden_event::timing::mark("run: policy loaded");
    let exec_guard = match a.exec_guard {
        ExecBackendArg::Auto => ExecChoice::Auto,
        ExecBackendArg::Bpf => ExecChoice::Bpf,
        ExecBackendArg::Seccomp => ExecChoice::Seccomp,
        ExecBackendArg::Off => ExecChoice::Off,
    };
    let host = HostFeatures::probe(a.best_effort, a.simulate_no_userns, exec_guard);
    warden_event::timing::mark("run: host probed");
    let opts = RunOptions {
        workspace: ws,
        home,
        command: a.command.clone(),
        session_id: config::new_session_id(),
        best_effort: a.best_effort,
        allow_broad_workspace: a.allow_broad_workspace,
        exec_guard,
        no_index: a.no_index,
        proxy_hosts_file: a.proxy_hosts_file.clone(),
        quiet: a.quiet,
        verbose,
    };
    let ui = Ui {
        paint_warn: misc::warn_stderr,
    };
    let cfg = SessionConfig::resolve(&loaded, &host, &opts).map_err(|e| to_exit(e.kind(), e))?;
    warden_event::timing::mark("run: config resolved");
    let session = Session::new(cfg, ui).map_err(|e| to_exit(e.kind(), e))?;
    session.print_notices();
    if a.dry_run {
        print!("{}", session.describe());
        return Ok(exit::OK);
    }
    let handle = session
        .start(Vec::new())
        .map_err(|e| to_exit(e.kind(), e))?;
    let outcome = handle.wait().map_err(|e| to_exit(e.kind(), e))?;
    // A session the risk monitor or a human killed exits 6 ("action denied").
    Ok(if outcome.killed {
        exit::DENIED
    } else {
        outcome.code
    })
}

/// The documented exit code of a session error.
fn to_exit(kind: ErrorKind, msg: impl std::fmt::Display) -> anyhow::Error {
    let code = match kind {
        ErrorKind::Workspace => exit::WORKSPACE,
        ErrorKind::Policy => exit::POLICY,
        ErrorKind::Unsupported => exit::UNSUPPORTED,
        ErrorKind::NotFound => exit::NOT_FOUND,
        ErrorKind::NotExecutable => 126,
        ErrorKind::Internal => exit::INTERNAL,
        ErrorKind::Interrupted(sig) => 128 + sig,
    };
    fail(code, msg)
}
