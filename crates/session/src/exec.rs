//! The exec guard's part of a session: its rules compiled from the policy (with the
//! persistent hash cache and the trust index), and the hook that installs its seccomp filter
//! in the agent right before it execs. The mechanisms live in warden-execguard.

use crate::config::{ExecBackend, SessionConfig};
use crate::error::StartError;
use crate::ui::Ui;
use std::sync::Arc;
use warden_execguard::{cache::Cache, rules::ExecRules, unotify::Guard};

/// What the session's gate is told of the denied files, with the real paths they were found
/// at: their stamps and hashes ([`warden_policy::session::SessionPolicy::known`]) and their
/// contents ([`warden_policy::session::SessionPolicy::pinned`]).
#[derive(Default)]
pub(crate) struct Known {
    pub stamps: Vec<(std::path::PathBuf, warden_policy::session::KnownFile)>,
    pub pinned: Vec<(std::path::PathBuf, warden_policy::session::Pinned)>,
}

/// The exec guard of a session, ready to start.
pub enum ExecSetup {
    Off,
    /// seccomp user notification + exec tracing, supervised by `warden run`.
    Seccomp(Box<Guard>),
    /// BPF LSM programs of `warden daemon`: the session's cgroup is enforced in the kernel.
    Bpf(Box<ExecRules>),
}

impl ExecSetup {
    /// Compiles the exec rules for the backend `config` chose. Reads the hash cache and the
    /// trust index; writes nothing. Errors mean no run.
    /// Also returns the hashes of the files the denials resolved to, for the gate inside.
    pub(crate) fn load(config: &SessionConfig, ui: Ui) -> Result<(ExecSetup, Known), StartError> {
        match config.exec {
            ExecBackend::OffByFlag | ExecBackend::OffNested => {
                Ok((ExecSetup::Off, Known::default()))
            }
            ExecBackend::Bpf => {
                let (rules, cache) = exec_rules(config, ui)?;
                if config.verbose > 0 {
                    eprintln!("warden: exec guard: BPF LSM (warden daemon)");
                }
                let known = known(&rules, &cache);
                Ok((ExecSetup::Bpf(Box::new(rules)), known))
            }
            ExecBackend::Seccomp => {
                let (rules, cache) = exec_rules(config, ui)?;
                let known = known(&rules, &cache);
                Ok((
                    ExecSetup::Seccomp(Box::new(Guard::with_cache(rules, cache))),
                    known,
                ))
            }
        }
    }
}

/// The cached hashes of the files the denials resolved to (hashed just now, by the rules),
/// and the denied contents with the real paths of their files.
fn known(rules: &ExecRules, cache: &Cache) -> Known {
    let denied = rules.denied_files();
    let mut stamps = cache.known_files(denied.iter().map(|d| d.path.as_path()));
    stamps.truncate(warden_policy::session::MAX_KNOWN);
    let mut pinned: Vec<_> = denied
        .iter()
        .filter_map(|d| {
            let real = std::fs::canonicalize(&d.path).ok()?;
            Some((
                real,
                warden_policy::session::Pinned {
                    sha256: warden_policy::progrules::hex(&d.hash),
                    size: d.size,
                    rule: d.rule.clone(),
                },
            ))
        })
        .collect();
    pinned.truncate(warden_policy::session::MAX_KNOWN);
    Known { stamps, pinned }
}

fn exec_rules(config: &SessionConfig, ui: Ui) -> Result<(ExecRules, Arc<Cache>), StartError> {
    use warden_policy::exec::ExecMode;
    let policy = &config.policy;
    let cache = Arc::new(Cache::load(&config.hash_cache).map_err(StartError::Policy)?);
    let mut rules =
        warden_execguard::rules::from_policy_cached(policy, &config.home, cache.clone())
            .map_err(|e| StartError::Policy(format!("exec policy: {e}")))?;
    for n in &rules.notes {
        if n.warning {
            ui.warn("warden:", &n.text);
        } else if config.verbose > 0 {
            eprintln!("warden: {}", warden_event::text::printable(&n.to_string()));
        }
    }
    if rules.mode == ExecMode::Allowlist {
        let has_index = policy.exec.allow.iter().any(|r| r.starts_with("index:"));
        let default = warden_execguard::index::default_path(&config.home);
        if default.exists() {
            rules
                .add_index(&default)
                .map_err(|e| StartError::Policy(format!("exec policy: {e}")))?;
        } else if !has_index && !config.no_index {
            return Err(StartError::Policy(format!(
                "allowlist mode needs a trust index, and {} does not exist: run `warden index` first (or pass --no-index to trust only the explicit exec.allow rules)",
                default.display()
            )));
        }
    }
    Ok((rules, cache))
}

/// Installs the exec guard's seccomp filter in the agent, right before it execs; with
/// `record_writes` (`[audit] record_writes`) write opens trap too, for the record only; with
/// `ask_writes` (`[files] ask_write`) write opens and `openat2` trap for write asks.
///
/// The filter is compiled on a thread from [`ExecHook::new`] and finished in the supervisor
/// ([`AgentHook::prepare`](warden_sandbox::AgentHook::prepare)); the agent only loads the
/// program. Unprepared (or if the build failed), the agent builds and loads it with
/// libseccomp as before, so a failure is still the agent's, reported as a failed start.
pub(crate) struct ExecHook {
    record_writes: bool,
    ask_writes: bool,
    /// Allowlist mode: anonymous executable mappings trap too.
    anonymous_exec: bool,
    pending: std::sync::Mutex<Option<warden_sandbox::bpf::Pending<()>>>,
    program: std::sync::OnceLock<warden_sandbox::bpf::Program>,
}

impl ExecHook {
    pub(crate) fn new(record_writes: bool, ask_writes: bool, anonymous_exec: bool) -> ExecHook {
        let name = format!(
            "exec-guard-w{}-a{}-x{}",
            u8::from(record_writes),
            u8::from(ask_writes),
            u8::from(anonymous_exec)
        );
        let pending = warden_sandbox::bpf::Pending::cached((), name, move || {
            let f =
                warden_execguard::unotify::filter_all(record_writes, ask_writes, anonymous_exec)
                    .map_err(|e| e.to_string())?;
            warden_sandbox::bpf::Program::export(&f).map_err(|e| e.to_string())
        });
        ExecHook {
            record_writes,
            ask_writes,
            anonymous_exec,
            pending: std::sync::Mutex::new(Some(pending)),
            program: std::sync::OnceLock::new(),
        }
    }
}

impl warden_sandbox::AgentHook for ExecHook {
    fn prepare(&self) {
        let pending = match self.pending.lock() {
            Ok(mut p) => p.take(),
            Err(p) => p.into_inner().take(),
        };
        if let Some(Ok(p)) = pending.map(|p| p.wait()) {
            let _ = self.program.set(p);
        }
    }

    fn before_exec(&self) -> std::io::Result<Option<std::os::fd::OwnedFd>> {
        match self.program.get() {
            Some(p) => p
                .load(true)
                .map_err(|e| std::io::Error::other(format!("exec guard filter: load: {e}"))),
            None => warden_execguard::unotify::install_filter_all(
                self.record_writes,
                self.ask_writes,
                self.anonymous_exec,
            )
            .map(Some),
        }
    }
}

#[cfg(test)]
mod hook_tests {
    use super::*;
    use warden_sandbox::AgentHook;

    /// The exec guard's precompiled filter is, instruction for instruction, what
    /// libseccomp's own load puts in the kernel (every variant), and its load returns the
    /// listener.
    #[test]
    fn precompiled_exec_filter_is_what_libseccomp_loads() {
        for (record, ask, anon) in [
            (false, false, false),
            (true, false, false),
            (false, true, false),
            (true, true, false),
            (false, false, true),
        ] {
            let hook = ExecHook::new(record, ask, anon);
            hook.prepare();
            assert!(hook.program.get().is_some(), "prepared");
            let ours =
                warden_sandbox::bpf::loaded_filters(&|| matches!(hook.before_exec(), Ok(Some(_))));
            let theirs = warden_sandbox::bpf::loaded_filters(&|| {
                // SAFETY: plain prctl.
                unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
                warden_execguard::unotify::install_filter_all(record, ask, anon).is_ok()
            });
            let Some(theirs) = theirs else {
                eprintln!("skipped: PTRACE_SECCOMP_GET_FILTER unavailable");
                return;
            };
            let ours = ours.expect("the precompiled program loads");
            assert_eq!(ours, theirs, "record={record} ask={ask} anon={anon}");
            assert_eq!(
                ours[0],
                hook.program.get().map(|p| p.to_bytes()).unwrap_or_default()
            );
        }
    }
}
