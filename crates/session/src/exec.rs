//! The exec guard's part of a session: its rules compiled from the policy (with the
//! persistent hash cache and the trust index), and the hook that installs its seccomp filter
//! in the agent right before it execs. The mechanisms live in warden-execguard.

use crate::config::{ExecBackend, SessionConfig};
use crate::error::StartError;
use crate::ui::Ui;
use std::sync::Arc;
use warden_execguard::{cache::Cache, rules::ExecRules, unotify::Guard};

/// The exec guard of a session, ready to start.
pub enum ExecSetup {
    Off,
    /// seccomp user notification + exec tracing, supervised by `warden run`.
    Seccomp(Guard),
    /// BPF LSM programs of `warden daemon`: the session's cgroup is enforced in the kernel.
    Bpf(ExecRules),
}

impl ExecSetup {
    /// Compiles the exec rules for the backend `config` chose. Reads the hash cache and the
    /// trust index; writes nothing. Errors mean no run.
    pub fn load(config: &SessionConfig, ui: Ui) -> Result<ExecSetup, StartError> {
        match config.exec {
            ExecBackend::OffByFlag | ExecBackend::OffNested => Ok(ExecSetup::Off),
            ExecBackend::Bpf => {
                let (rules, _) = exec_rules(config, ui)?;
                if config.verbose > 0 {
                    eprintln!("warden: exec guard: BPF LSM (warden daemon)");
                }
                Ok(ExecSetup::Bpf(rules))
            }
            ExecBackend::Seccomp => {
                let (rules, cache) = exec_rules(config, ui)?;
                Ok(ExecSetup::Seccomp(Guard::with_cache(rules, cache)))
            }
        }
    }
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
/// `true` ( `[audit] record_writes`) write opens trap too, for the record only; with the
/// second `true` (`[files] ask_write`) write opens and `openat2` trap for write asks.
pub(crate) struct ExecHook(pub bool, pub bool);

impl warden_sandbox::AgentHook for ExecHook {
    fn before_exec(&self) -> std::io::Result<Option<std::os::fd::OwnedFd>> {
        warden_execguard::unotify::install_filter_opts(self.0, self.1).map(Some)
    }
}
