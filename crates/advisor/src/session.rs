//! The supervisor's side of the advisor in a `warden run` session ([`Wiring`]): everything
//! `warden run` needs, in a few calls.
//!
//! 1. [`Wiring::prepare`] (before the sandbox is forked, single-threaded): builds the
//!    [`Advisor`] from the effective policy, takes the key out of warden's own environment —
//!    the variable is removed and its bytes in the process's initial environment block are
//!    overwritten, so `/proc/<pid>/environ` of warden and of every process forked from it
//!    (the sandbox's init included) no longer shows it — and makes the socket pair.
//! 2. [`Wiring::scrub`]: removes `key_env` from the sandbox's environment, whatever
//!    `env.pass` says (the policy loader refuses such a policy already).
//! 3. [`Wiring::sandbox_fd`]: the sandbox's end, for the launcher to pass as fd
//!    [`INHERITED_FD`] with `WARDEN_ADVISOR_FD` ([`Wiring::env`]).
//! 4. [`Wiring::start`] (after the fork, once the session's sinks are set): registers the
//!    bounded [`RecentDecisions`] sink and serves consultations on a thread of its own.
//!    Requests are single bounded `warden-proto` frames, at most [`crate::channel::MAX_IN_FLIGHT`]
//!    at once, and the advisor's token bucket bounds the rate. A wiring that cannot be made is a
//!    [`WiringError`].

use crate::channel::{fdpass, Server, ENV_FD, INHERITED_FD};
use crate::transcript::TranscriptRoot;
use crate::{Advisor, AdvisorConfig, RecentDecisions};
use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::Arc;

/// Why the advisor cannot be wired into a session.
#[derive(Debug, thiserror::Error)]
pub enum WiringError {
    /// The effective policy's `[advisor]` is incomplete or would leak its key.
    #[error("{0}")]
    Policy(warden_policy::SectionError),
    #[error("{0}")]
    Config(crate::config::ConfigError),
    #[error("advisor disk cache: {0}")]
    DiskCache(std::io::Error),
    #[error("advisor socketpair: {0}")]
    Socketpair(std::io::Error),
}

/// `warden hook`'s whole-hook deadline (`warden_gate::protocol::DEADLINE`), for the warning.
pub const HOOK_DEADLINE_MS: u64 = 5000;

/// warden's own decisions kept for the prompt.
pub const RECENT_DECISIONS: usize = 32;

pub struct Wiring {
    sup: OwnedFd,
    sandbox: Option<OwnedFd>,
    advisor: Advisor,
    transcripts: Option<TranscriptRoot>,
    recent: Arc<RecentDecisions>,
    key_env: String,
    missing_key: bool,
}

impl std::fmt::Debug for Wiring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wiring")
            .field("advisor", &self.advisor)
            .finish()
    }
}

impl Wiring {
    /// None when the policy does not enable the advisor. Call before any thread starts.
    pub fn prepare(
        policy: &warden_policy::Policy,
        home: &Path,
        agent: &str,
    ) -> Result<Option<Wiring>, WiringError> {
        if !policy.advisor.is_enabled() {
            return Ok(None);
        }
        policy
            .advisor
            .check_effective(&policy.env.pass)
            .map_err(WiringError::Policy)?;
        let cfg = AdvisorConfig::from_policy(&policy.advisor).map_err(WiringError::Config)?;
        cfg.check_key_isolation(&policy.env.pass)
            .map_err(WiringError::Config)?;
        let key = take_key(&cfg.key_env);
        let mut advisor = Advisor::from_config(&cfg)
            .map_err(WiringError::Config)?
            .with_known_mcp(
                policy
                    .gate
                    .mcp_allow
                    .iter()
                    .chain(&policy.gate.mcp_deny)
                    .cloned(),
            );
        let missing_key = !cfg.key_env.is_empty() && key.is_none();
        if let Some(k) = key {
            // Unset, it stays an error per consultation (`on_error`), as
            // `Advisor::from_config` reports it.
            advisor = advisor.with_key(Some(k));
        }
        if cfg.disk_cache {
            advisor = advisor
                .with_disk_cache(&home.join(".local/state/warden/advisor-cache"))
                .map_err(WiringError::DiskCache)?;
        }
        let transcripts = match agent {
            "claude" => TranscriptRoot::open(home, ".claude/projects").ok(),
            _ => None,
        };
        let (sup, sandbox) = fdpass::pair().map_err(WiringError::Socketpair)?;
        Ok(Some(Wiring {
            sup,
            sandbox: Some(sandbox),
            advisor,
            transcripts,
            recent: Arc::new(RecentDecisions::new(RECENT_DECISIONS)),
            key_env: cfg.key_env.clone(),
            missing_key,
        }))
    }

    /// A warning for the human at start, if the advisor cannot work as configured.
    pub fn note(&self) -> Option<String> {
        let cfg = self.advisor.config();
        let mut n = Vec::new();
        if self.missing_key {
            n.push(format!(
                "the advisor's key variable {} is not set in warden's environment: every grey call will get advisor.on_error ({})",
                self.key_env,
                match cfg.on_error {
                    crate::config::OnError::Deny => "deny",
                    crate::config::OnError::Ask => "ask",
                }
            ));
        }
        let budget = cfg.timeout_ms + crate::channel::HOOK_MARGIN.as_millis() as u64;
        if budget >= HOOK_DEADLINE_MS {
            n.push(format!(
                "advisor.timeout_ms = {} plus the channel's margin reaches the hook's own {HOOK_DEADLINE_MS} ms deadline, which denies a slow consultation first",
                cfg.timeout_ms
            ));
        }
        (!n.is_empty()).then(|| n.join("; "))
    }

    /// The variable that tells the hook where the channel is.
    pub fn env(&self) -> (String, String) {
        (ENV_FD.to_string(), INHERITED_FD.to_string())
    }

    /// Removes the key's variable from the sandbox's environment (recording it as
    /// scrubbed), whatever `env.pass` or `env.set` say.
    pub fn scrub(&self, env: &mut Vec<(OsString, OsString)>, scrubbed: &mut Vec<(String, String)>) {
        scrub_key(&self.key_env, env, scrubbed)
    }

    /// The sandbox's end, to be inherited as [`INHERITED_FD`] (once).
    pub fn sandbox_fd(&mut self) -> Option<(i32, OwnedFd)> {
        self.sandbox.take().map(|fd| (INHERITED_FD, fd))
    }

    /// After the fork: registers the recent-decisions sink and serves on a thread. The
    /// thread ends when every holder of the sandbox's end has closed it.
    pub fn start(mut self) {
        // Our copy of the sandbox's end must go, or the server never sees the end.
        self.sandbox = None;
        warden_event::sinks::add(self.recent.clone());
        let server = Arc::new(Server {
            advisor: self.advisor,
            transcripts: self.transcripts,
            recent: Some(self.recent),
        });
        let sup = self.sup;
        if let Err(e) = std::thread::Builder::new()
            .name("warden-advisor-serve".into())
            .spawn(move || fdpass::serve(sup, server))
        {
            // The hooks then see the channel fail: `on_error`.
            tracing::warn!("advisor: cannot start the server thread: {e}");
        }
    }
}

/// Removes `key_env` from `env` (and records it in `scrubbed` with the reason).
pub fn scrub_key(
    key_env: &str,
    env: &mut Vec<(OsString, OsString)>,
    scrubbed: &mut Vec<(String, String)>,
) {
    if key_env.is_empty() {
        return;
    }
    let before = env.len();
    env.retain(|(k, _)| k.as_os_str() != std::ffi::OsStr::new(key_env));
    if env.len() != before && !scrubbed.iter().any(|(k, _)| k == key_env) {
        scrubbed.push((key_env.to_string(), "advisor.key_env".to_string()));
    }
}

/// Takes the key out of this process's environment: returns its value, overwrites the
/// value's bytes where the C library keeps them (for a variable from the initial
/// environment that is the block `/proc/<pid>/environ` shows, inherited by every fork),
/// then removes the variable. Call single-threaded.
pub fn take_key(name: &str) -> Option<String> {
    if name.is_empty() || name.contains('\0') || name.contains('=') {
        return None;
    }
    let value = std::env::var(name).ok().filter(|v| !v.is_empty());
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: getenv returns a pointer to the NUL-terminated value inside the environment
    // (writable memory: the initial block on the stack, or a setenv allocation); we
    // overwrite its bytes up to the NUL, keeping the length. Single-threaded (the caller's
    // contract), so no concurrent reader of the environment.
    unsafe {
        let p = libc::getenv(c.as_ptr());
        if !p.is_null() {
            let len = libc::strlen(p);
            std::ptr::write_bytes(p, b'x', len);
        }
    }
    std::env::remove_var(name);
    value
}
