//! `warden run`: argument handling and printing around one supervised session. The session's
//! decisions ([`SessionConfig::resolve`]) and life ([`Session::start`], [`SessionHandle::wait`])
//! live in warden-session.
//!
//! [`SessionHandle::wait`]: warden_session::SessionHandle::wait

use super::{fail, home_dir, load_policy, misc, workspace};
use crate::cli::{ExecBackendArg, RunArgs};
use crate::exit;
use warden_session::config::{self, ExecChoice};
use warden_session::warm;
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
    // A spare (`--warm`) first, before anything reads the environment; then what its key
    // hashes, before anything changes it.
    let spare = warm::Spare::from_env();
    if spare.is_some() && (!a.warm || a.dry_run) {
        return Ok(exit::USAGE);
    }
    let warm_key = (a.warm && !a.dry_run)
        .then(warm::Inputs::of_this_process)
        .flatten()
        .and_then(|i| warm::key(&i).map(|k| (i, k)));
    if let (Some(_), Some((_, key))) = (&spare, &warm_key) {
        warm::note_spare_key(key);
    }
    if spare.is_none() {
        if let Some((_, key)) = &warm_key {
            warden_event::timing::mark("warm: key");
            match warm::claim(key) {
                warm::Claim::Claimed(c) => {
                    warden_event::timing::mark("warm: claimed");
                    // The spare starts its successor once it has reported.
                    let code = c.wait();
                    warden_event::timing::mark("warm: exit reported");
                    return code.ok_or_else(|| {
                        fail(
                            exit::INTERNAL,
                            "the warm session's supervisor ended without reporting the agent's exit",
                        )
                    });
                }
                warm::Claim::Cold(why) => {
                    if verbose > 0 || warden_event::timing::enabled() {
                        eprintln!("warden: warm start: cold ({why})");
                    }
                }
            }
        }
    }
    let in_spare = spare.is_some();
    let code = cold(a, verbose, spare, warm_key.clone())?;
    if let (Some((inputs, key)), false) = (&warm_key, in_spare) {
        if let Err(e) = warm::spawn_spare(inputs, key) {
            tracing::debug!("warm: no spare: {e}");
        }
    }
    Ok(code)
}

/// A run that builds its own sandbox: a cold one, or a spare's (`spare`, with its `key`).
fn cold(
    a: RunArgs,
    verbose: u8,
    spare: Option<warm::Spare>,
    key: Option<(warm::Inputs, [u8; 32])>,
) -> anyhow::Result<i32> {
    let home = home_dir();
    let ws = workspace(&a.policy.workspace)?;
    // A spare's policy files as they are before it reads them (see `warm::Fingerprint`).
    let watched = spare
        .as_ref()
        .map(|_| warm::watched_paths(&home, &ws, a.policy.policy.as_deref()));
    let before = watched.clone().map(warm::Fingerprint::take);
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
    let mut session = Session::new(cfg, ui).map_err(|e| to_exit(e.kind(), e))?;
    if let (Some(spare), Some((inputs, key)), Some(mut watched), Some(before)) =
        (spare, key, watched, before)
    {
        // Only a sandbox in namespaces of its own: its view hides the spares' directory.
        if !session.config.features.user_namespaces {
            return Ok(exit::UNSUPPORTED);
        }
        watched.extend(loaded.files());
        // And each policy file as it was named (`extends = "shared/base.toml"` through a
        // linked directory): the resolved path stays the old file when the link is retargeted.
        let cwd = std::env::current_dir().unwrap_or_default();
        watched.extend(
            loaded
                .sources
                .iter()
                .filter(|s| !s.origin.starts_with("builtin:"))
                .map(|s| cwd.join(&s.origin)),
        );
        // An agent profile's state is copied as the session starts (`~/.claude.json`, its
        // settings) and its credentials are bound as files (an OAuth token the host's agent
        // replaces by rename): a host run of the agent in between makes the spare stale.
        let c = &session.config;
        let anchors = warden_policy::Anchors {
            home: c.home.clone(),
            workspace: c.workspace.clone(),
        };
        watched.extend(
            warden_agentstate::filtered_files(c.agent())
                .iter()
                .map(|f| c.home.join(f.rel)),
        );
        watched.extend(c.policy.agent.credentials.iter().map(|p| anchors.expand(p)));
        let fingerprint = warm::Fingerprint::take(watched);
        // A policy file changed while it was read: no spare of it.
        if before.changed().is_some() {
            return Ok(exit::POLICY);
        }
        session = session.hold_before_release(spare.hold(inputs, key, fingerprint));
    }
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
    debug_assert_eq!(exit::DENIED, 6);
    Ok(outcome.exit_code())
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
