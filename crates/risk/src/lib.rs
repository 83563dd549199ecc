//! # warden-risk
//!
//! Owns the live risk score of one session: which decisions are risk signals
//! ([`classify`]), their weights and the thresholds (policy `[risk]`, [`RiskConfig`]), the
//! exponential decay, the level transitions (warn, freeze, kill) and the explanation (the
//! contributions that moved the score most, [`RiskEngine::top`]). A configuration it refuses
//! is a [`RiskError`] naming the key.
//!
//! It is pure: no I/O and no clock. The session runtime feeds it every decision of the
//! session, with the time, and acts on the transitions it returns (a line on the user's
//! terminal, `cgroup.freeze`, `cgroup.kill`).
//!
//! The score is computed from what warden itself saw (the exec guard, the sandbox, the
//! proxy, the gate, the integrity report). Reports from inside the sandbox (hook claims)
//! may add to it; no weight is negative and no event lowers the score, so nothing the agent
//! says can make it look safer. Only time (decay) lowers it.

// No unwrap on input-dependent paths in library code; tests may (clippy.toml).
#![warn(clippy::unwrap_used)]
#![forbid(unsafe_code)]

use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet, VecDeque};
use warden_event::{Decision, Layer, Verdict};

/// Weights (points added per signal) and thresholds. Every weight must be >= 0.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RiskConfig {
    /// The score is computed and acted on (false: never warns, freezes or kills).
    pub enabled: bool,
    /// The score halves every this many seconds without new signals.
    pub half_life_secs: f64,
    pub warn_at: f64,
    pub freeze_at: f64,
    /// Kill the session tree at this score (0 disables the automatic kill).
    pub kill_at: f64,
    pub weights: Weights,
}

impl Default for RiskConfig {
    fn default() -> Self {
        RiskConfig {
            enabled: true,
            half_life_secs: 600.0,
            warn_at: 50.0,
            freeze_at: 100.0,
            kill_at: 200.0,
            weights: Weights::default(),
        }
    }
}

/// Points per signal. See [`Signal`] for what each one means.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Weights {
    pub evasion: f64,
    pub respelled_retry: f64,
    pub exec_deny: f64,
    pub fail_closed: f64,
    pub protected_write: f64,
    pub protected_indirect: f64,
    pub git_indirection: f64,
    pub setuid: f64,
    pub credential_probe: f64,
    pub net_refusal_new_host: f64,
    pub net_refusal_burst: f64,
    pub gate_deny: f64,
    pub gate_ask: f64,
    pub integrity_finding: f64,
    pub advisor_deny: f64,
    pub claim_tool_failures: f64,
    pub claim_subagents: f64,
    pub claim_drift: f64,
}

impl Default for Weights {
    fn default() -> Self {
        Weights {
            evasion: 40.0,
            respelled_retry: 20.0,
            exec_deny: 10.0,
            fail_closed: 5.0,
            protected_write: 15.0,
            protected_indirect: 40.0,
            git_indirection: 40.0,
            setuid: 40.0,
            credential_probe: 25.0,
            net_refusal_new_host: 2.0,
            net_refusal_burst: 15.0,
            gate_deny: 10.0,
            gate_ask: 2.0,
            integrity_finding: 15.0,
            advisor_deny: 10.0,
            claim_tool_failures: 5.0,
            claim_subagents: 5.0,
            claim_drift: 10.0,
        }
    }
}

/// A `[risk]` configuration the engine refuses; each names the key.
#[derive(Debug, thiserror::Error)]
pub enum RiskError {
    #[error("risk.weights.{0}: no such signal")]
    UnknownSignal(String),
    #[error("risk.weights.{key} = {value}: weights must be finite and >= 0")]
    Weight { key: &'static str, value: f64 },
    #[error("risk.{key} = {value}: must be finite and >= 0")]
    Threshold { key: &'static str, value: f64 },
    #[error("risk.half_life_secs = {0}: must be > 0")]
    HalfLife(f64),
    #[error("risk.warn_at ({warn_at}) is above risk.freeze_at ({freeze_at})")]
    WarnAboveFreeze { warn_at: f64, freeze_at: f64 },
    #[error("risk.kill_at ({kill_at}) is below risk.freeze_at ({freeze_at})")]
    KillBelowFreeze { kill_at: f64, freeze_at: f64 },
    /// The weights do not round-trip through their JSON form (a defect).
    #[error("{0}")]
    Weights(serde_json::Error),
}

impl RiskConfig {
    /// The engine's configuration from the policy's `[risk]` section (unset keys keep the
    /// defaults). Unknown weight names and broken invariants are errors naming the key.
    pub fn from_section(s: &warden_policy::risk::RiskSection) -> Result<RiskConfig, RiskError> {
        let mut c = RiskConfig::default();
        if let Some(v) = s.enabled {
            c.enabled = v;
        }
        if let Some(v) = s.warn_at {
            c.warn_at = v;
        }
        if let Some(v) = s.freeze_at {
            c.freeze_at = v;
        }
        if let Some(v) = s.kill_at {
            c.kill_at = v;
        }
        if let Some(v) = s.half_life_secs {
            c.half_life_secs = v;
        }
        if !s.weights.is_empty() {
            let mut w = serde_json::to_value(&c.weights).map_err(RiskError::Weights)?;
            for (k, v) in &s.weights {
                match w.get_mut(k) {
                    Some(slot) => *slot = serde_json::json!(v),
                    None => return Err(RiskError::UnknownSignal(k.clone())),
                }
            }
            c.weights = serde_json::from_value(w).map_err(RiskError::Weights)?;
        }
        c.validate()?;
        Ok(c)
    }

    /// Checks the invariants a policy cannot break: weights are finite and >= 0, thresholds
    /// are ordered, the half-life is positive.
    pub fn validate(&self) -> Result<(), RiskError> {
        let w = &self.weights;
        let all = [
            ("evasion", w.evasion),
            ("respelled_retry", w.respelled_retry),
            ("exec_deny", w.exec_deny),
            ("fail_closed", w.fail_closed),
            ("protected_write", w.protected_write),
            ("protected_indirect", w.protected_indirect),
            ("git_indirection", w.git_indirection),
            ("setuid", w.setuid),
            ("credential_probe", w.credential_probe),
            ("net_refusal_new_host", w.net_refusal_new_host),
            ("net_refusal_burst", w.net_refusal_burst),
            ("gate_deny", w.gate_deny),
            ("gate_ask", w.gate_ask),
            ("integrity_finding", w.integrity_finding),
            ("advisor_deny", w.advisor_deny),
            ("claim_tool_failures", w.claim_tool_failures),
            ("claim_subagents", w.claim_subagents),
            ("claim_drift", w.claim_drift),
        ];
        for (k, v) in all {
            if !v.is_finite() || v < 0.0 {
                return Err(RiskError::Weight { key: k, value: v });
            }
        }
        let t = [
            ("warn_at", self.warn_at),
            ("freeze_at", self.freeze_at),
            ("kill_at", self.kill_at),
        ];
        for (k, v) in t {
            if !v.is_finite() || v < 0.0 {
                return Err(RiskError::Threshold { key: k, value: v });
            }
        }
        if !(self.half_life_secs.is_finite() && self.half_life_secs > 0.0) {
            return Err(RiskError::HalfLife(self.half_life_secs));
        }
        if self.warn_at > self.freeze_at {
            return Err(RiskError::WarnAboveFreeze {
                warn_at: self.warn_at,
                freeze_at: self.freeze_at,
            });
        }
        if self.kill_at > 0.0 && self.kill_at < self.freeze_at {
            return Err(RiskError::KillBelowFreeze {
                kill_at: self.kill_at,
                freeze_at: self.freeze_at,
            });
        }
        Ok(())
    }
}

/// What a decision says about the agent's intent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    /// Denied content reached another way: a copy or rename, `/proc/self/root`, memfd,
    /// `ld.so`/a custom loader (a mapping), or an interpreter.
    Evasion,
    /// The same refused action again under a new spelling (same rule, other subject).
    RespelledRetry,
    /// A denied program by its own name.
    ExecDeny,
    /// An identity that could not be established (denied, fail-closed).
    FailClosed,
    /// A write to a protected path.
    ProtectedWrite,
    /// A protected path reached through a rename, a symlink or another indirection.
    ProtectedIndirect,
    /// A git indirection: `commondir`, `gitdir:`, a nested or re-created `.git`, hooks,
    /// fsmonitor.
    GitIndirection,
    /// A setuid/setgid bit or a `security.*` attribute.
    Setuid,
    /// A read of a credential (`~/.ssh`, `~/.aws`, keychains, `/proc/*/environ`, ...).
    CredentialProbe,
    /// A network refusal to a host not refused before in this session.
    NetRefusalNewHost,
    /// Many network refusals in a short time.
    NetRefusalBurst,
    GateDeny,
    GateAsk,
    /// A finding of the end-of-session (or live) integrity report.
    IntegrityFinding,
    /// The advisor judged a grey call as deny.
    AdvisorDeny,
    /// Claim (hook report): tool failures in a row.
    ClaimToolFailures,
    /// Claim (hook report): many or deep subagent spawns.
    ClaimSubagents,
    /// Claim (hook report): the recent tool mix left the task's early pattern.
    ClaimDrift,
}

impl Signal {
    pub fn weight(self, w: &Weights) -> f64 {
        match self {
            Signal::Evasion => w.evasion,
            Signal::RespelledRetry => w.respelled_retry,
            Signal::ExecDeny => w.exec_deny,
            Signal::FailClosed => w.fail_closed,
            Signal::ProtectedWrite => w.protected_write,
            Signal::ProtectedIndirect => w.protected_indirect,
            Signal::GitIndirection => w.git_indirection,
            Signal::Setuid => w.setuid,
            Signal::CredentialProbe => w.credential_probe,
            Signal::NetRefusalNewHost => w.net_refusal_new_host,
            Signal::NetRefusalBurst => w.net_refusal_burst,
            Signal::GateDeny => w.gate_deny,
            Signal::GateAsk => w.gate_ask,
            Signal::IntegrityFinding => w.integrity_finding,
            Signal::AdvisorDeny => w.advisor_deny,
            Signal::ClaimToolFailures => w.claim_tool_failures,
            Signal::ClaimSubagents => w.claim_subagents,
            Signal::ClaimDrift => w.claim_drift,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Evasion => "evasion",
            Signal::RespelledRetry => "respelled_retry",
            Signal::ExecDeny => "exec_deny",
            Signal::FailClosed => "fail_closed",
            Signal::ProtectedWrite => "protected_write",
            Signal::ProtectedIndirect => "protected_indirect",
            Signal::GitIndirection => "git_indirection",
            Signal::Setuid => "setuid",
            Signal::CredentialProbe => "credential_probe",
            Signal::NetRefusalNewHost => "net_refusal_new_host",
            Signal::NetRefusalBurst => "net_refusal_burst",
            Signal::GateDeny => "gate_deny",
            Signal::GateAsk => "gate_ask",
            Signal::IntegrityFinding => "integrity_finding",
            Signal::AdvisorDeny => "advisor_deny",
            Signal::ClaimToolFailures => "claim_tool_failures",
            Signal::ClaimSubagents => "claim_subagents",
            Signal::ClaimDrift => "claim_drift",
        }
    }
}

/// The session's escalation level. It only rises on its own; a human lowers it
/// ([`RiskEngine::human_reset`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Normal,
    Warn,
    Freeze,
    Kill,
}

/// One event's effect on the score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Contribution {
    /// Seconds (the caller's clock) when it happened.
    pub at: f64,
    pub signal: Signal,
    /// Points added at the time.
    pub points: f64,
    /// Why, in a sentence.
    pub reason: String,
    /// The decision's subject (what was attempted).
    pub what: String,
    /// Whether the decision was a claim from inside the sandbox.
    pub claim: bool,
}

/// What one observed decision did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Update {
    /// The score after the event.
    pub score: f64,
    /// Points this event added (0 when it is no signal).
    pub delta: f64,
    pub contributions: Vec<Contribution>,
    /// Set when the event raised the level.
    pub transition: Option<Level>,
}

/// Per-session memory that classification needs (retries, bursts, tool patterns).
#[derive(Debug, Default, Clone)]
pub struct History {
    /// Denied rule -> the distinct subjects seen under it.
    refused: HashMap<String, HashSet<String>>,
    refused_hosts: HashSet<String>,
    refusal_times: VecDeque<f64>,
    last_burst: Option<f64>,
    failures_in_a_row: u32,
    subagents: u32,
    early_tools: Vec<String>,
    recent_tools: VecDeque<String>,
    tools_seen: u32,
    last_drift_at: u32,
}

/// Network refusals within [`BURST_WINDOW`] seconds that make a burst.
pub const BURST_COUNT: usize = 10;
pub const BURST_WINDOW: f64 = 30.0;
/// Tool failures in a row (claims) that make a signal.
pub const FAILURE_STREAK: u32 = 3;
/// Subagent spawns (claims) beyond which each one is a signal.
pub const SUBAGENT_FREE: u32 = 3;
const EARLY: usize = 10;
const MAX_SUBJECTS_PER_RULE: usize = 64;
const MAX_TRACKED: usize = 4096;

const INTERPRETERS: &[&str] = &[
    "python", "perl", "node", "ruby", "php", "lua", "tclsh", "ld-linux", "ld.so", "ld-musl",
];

const CREDENTIALS: &[&str] = &[
    "/.ssh",
    "/.aws",
    "/.gnupg",
    "/.kube",
    "/.docker/config.json",
    "/.netrc",
    "/.git-credentials",
    "/.config/gcloud",
    "/.azure",
    "/.password-store",
    "/keyrings",
    "/.local/share/keyrings",
    "/environ",
    "/.pgpass",
    "/.npmrc",
    "/.pypirc",
    "/.credentials.json",
    "id_rsa",
    "id_ed25519",
    "id_ecdsa",
];

const GIT_TRICKS: &[&str] = &[
    "commondir",
    "gitdir",
    "worktrees/",
    "modules/",
    "fsmonitor",
    "hookspath",
    ".git/hooks",
    ".git/config",
    "config.worktree",
    "info/attributes",
];

fn is_claim(d: &Decision) -> bool {
    d.extra.contains_key("reported_by") || d.extra.get("origin").is_some_and(|o| o != "warden")
}

/// The longest prefix of `s` of at most `max` bytes that ends on a char boundary.
fn prefix(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn base_name(s: &str) -> &str {
    let first = s.split_whitespace().next().unwrap_or(s);
    first.rsplit('/').next().unwrap_or(first)
}

fn looks_like_credential(what: &str) -> bool {
    CREDENTIALS.iter().any(|c| what.contains(c))
}

fn looks_like_git_trick(what: &str) -> bool {
    let w = what.to_ascii_lowercase();
    GIT_TRICKS.iter().any(|g| w.contains(g))
}

fn str_extra<'a>(d: &'a Decision, k: &str) -> &'a str {
    prefix(d.extra.get(k).and_then(|v| v.as_str()).unwrap_or(""), 256)
}

/// The signals one decision carries, with a reason each. Updates `h` (retries, bursts,
/// tool patterns). Pure apart from `h`.
pub fn classify(d: &Decision, now: f64, h: &mut History) -> Vec<(Signal, String)> {
    let mut out = Vec::new();
    let denied = matches!(d.verdict, Verdict::Deny | Verdict::AuditDeny);
    // Bounded work per event: only the first 256 bytes of a subject are looked at.
    let what = prefix(&d.what, 256);
    // A refused action retried under a new spelling: the same target-naming rule
    // (`exec.deny:curl`, `exec.deny:sha256:…`), another subject. Generic rules
    // (`network.default`, `files.deny`) name no single target, so they are not retries.
    let subject = what.to_string();
    let mut respelled = false;
    if denied && d.rule.contains(':') && d.rule.len() <= 256 {
        let seen = h.refused.entry(d.rule.clone()).or_default();
        if !seen.is_empty() && !seen.contains(&subject) {
            respelled = true;
            out.push((
                Signal::RespelledRetry,
                format!(
                    "retried an action refused by `{}` under a new spelling ({} before)",
                    d.rule,
                    seen.len()
                ),
            ));
        }
        if seen.len() < MAX_SUBJECTS_PER_RULE {
            seen.insert(subject);
        }
        if h.refused.len() > MAX_TRACKED {
            h.refused.clear();
        }
    }
    match d.layer {
        Layer::Exec if denied => {
            let kind = str_extra(d, "kind");
            let comm = prefix(&d.who, 256)
                .split_once('(')
                .map(|(_, c)| c.trim_end_matches(')'))
                .unwrap_or("");
            let denied_name = d.rule.strip_prefix("exec.deny:");
            if d.rule == "exec.fail_closed" {
                out.push((
                    Signal::FailClosed,
                    "an identity could not be established".into(),
                ));
            } else if d.rule == "exec.anonymous_code"
                || (d.rule == "exec.allow_memfd" && (kind == "mmap" || kind == "mprotect"))
            {
                // Allowlist mode refuses JIT compilers that are not listed (PCRE2's in
                // `grep -P`, libffi's closures, which then try a memfd and ~25 deleted
                // temporary files: attack review 102 saw one ctypes callback freeze the
                // session) as it refuses an in-memory loader: an exec denial once per
                // program and rule, not an evasion at every attempt.
                let seen = h.refused.entry(d.rule.clone()).or_default();
                if seen.len() < MAX_SUBJECTS_PER_RULE && seen.insert(comm.to_string()) {
                    out.push((
                        Signal::ExecDeny,
                        format!("code from no file refused ({what}, {comm})"),
                    ));
                }
            } else if kind == "mmap" || kind == "mprotect" {
                out.push((
                    Signal::Evasion,
                    format!("denied content mapped executable ({kind}): a loader or dlopen"),
                ));
            } else if what.contains("memfd:") || what.starts_with("/proc/") {
                out.push((
                    Signal::Evasion,
                    format!("denied content reached through {what}"),
                ));
            } else if INTERPRETERS.iter().any(|i| comm.starts_with(i)) {
                out.push((
                    Signal::Evasion,
                    format!("denied content started from an interpreter ({comm})"),
                ));
            } else if let Some(name) = denied_name.filter(|n| !n.starts_with("sha256")) {
                if base_name(what) != name {
                    out.push((
                        Signal::Evasion,
                        format!("denied program `{name}` run under another name ({what})"),
                    ));
                } else if respelled {
                    // Its own name at another place: a copy (`cp /usr/bin/wget ./wget`;
                    // attack review 104 saw each copy score as a plain denial).
                    out.push((
                        Signal::Evasion,
                        format!("denied program `{name}` run from another place ({what})"),
                    ));
                } else {
                    out.push((Signal::ExecDeny, format!("denied program `{name}`")));
                }
            } else {
                out.push((Signal::ExecDeny, format!("denied content {what}")));
            }
        }
        Layer::Sandbox | Layer::Policy if denied => {
            let rule = d.rule.as_str();
            let via = str_extra(d, "via");
            if rule.contains("setuid") || rule.contains("xattr") {
                out.push((
                    Signal::Setuid,
                    format!("setuid/setgid or security attribute: {what}"),
                ));
            } else if looks_like_credential(what) {
                out.push((Signal::CredentialProbe, format!("credential probe: {what}")));
            } else if rule.starts_with("git") || looks_like_git_trick(what) {
                out.push((Signal::GitIndirection, format!("git indirection: {what}")));
            } else if rule.starts_with("files.protect") {
                if !via.is_empty() {
                    out.push((
                        Signal::ProtectedIndirect,
                        format!("protected path reached through {via}: {what}"),
                    ));
                } else {
                    out.push((Signal::ProtectedWrite, format!("write to protected {what}")));
                }
            } else if rule.starts_with("integrity") {
                out.push((
                    Signal::IntegrityFinding,
                    format!("integrity report: {what}"),
                ));
            }
        }
        Layer::Proxy if denied => {
            let host = str_extra(d, "host");
            let host = if host.is_empty() { what } else { host };
            let host = prefix(host, 256).to_string();
            if h.refused_hosts.len() < MAX_TRACKED && h.refused_hosts.insert(host.clone()) {
                out.push((
                    Signal::NetRefusalNewHost,
                    format!("network refusal to a new host {host}"),
                ));
            }
            h.refusal_times.push_back(now);
            while h
                .refusal_times
                .front()
                .is_some_and(|t| now - *t > BURST_WINDOW)
            {
                h.refusal_times.pop_front();
            }
            let burst_again = h.last_burst.is_none_or(|t| now - t > BURST_WINDOW);
            if h.refusal_times.len() >= BURST_COUNT && burst_again {
                h.last_burst = Some(now);
                out.push((
                    Signal::NetRefusalBurst,
                    format!(
                        "{} network refusals within {BURST_WINDOW} s",
                        h.refusal_times.len()
                    ),
                ));
            }
        }
        // The advisor's records: the supervisor's consultation record (rule
        // `advisor.<class>`, not a claim) scores its deny; nothing else of the advisor moves
        // the score — not its `ask`/`allow` verdicts, not a fail-closed deny for an
        // unreachable advisor, and not the hook's own record of the applied answer (a claim,
        // rule `advisor`), which would count the same deny twice.
        Layer::Gate if denied && !is_claim(d) && d.rule.starts_with("advisor.") => {
            out.push((
                Signal::AdvisorDeny,
                format!("advisor: {}", prefix(&d.reason, 256)),
            ));
        }
        Layer::Gate if d.rule == "advisor" || d.rule.starts_with("advisor.") => {}
        Layer::Gate => {
            if denied {
                if looks_like_credential(what) {
                    out.push((Signal::CredentialProbe, format!("credential probe: {what}")));
                }
                out.push((Signal::GateDeny, format!("gate denied {what}")));
            } else if d.verdict == Verdict::Ask {
                out.push((Signal::GateAsk, format!("gate asked about {what}")));
            }
            claim_patterns(d, h, &mut out);
        }
        _ => {}
    }
    out
}

/// Behaviour the agent's own hooks report (tool names, failures, subagents). These only
/// ever add.
fn claim_patterns(d: &Decision, h: &mut History, out: &mut Vec<(Signal, String)>) {
    let tool = str_extra(d, "tool");
    let event = str_extra(d, "event");
    if event.eq_ignore_ascii_case("PostToolUseFailure")
        || d.extra.get("tool_failed").and_then(|v| v.as_bool()) == Some(true)
    {
        h.failures_in_a_row += 1;
        if h.failures_in_a_row == FAILURE_STREAK {
            out.push((
                Signal::ClaimToolFailures,
                format!("{FAILURE_STREAK} tool failures in a row"),
            ));
        }
    } else if event.eq_ignore_ascii_case("PostToolUse") {
        h.failures_in_a_row = 0;
    }
    if tool.is_empty() || !event.eq_ignore_ascii_case("PreToolUse") && !event.is_empty() {
        return;
    }
    if tool == "Task" || tool == "Agent" {
        h.subagents += 1;
        if h.subagents > SUBAGENT_FREE {
            out.push((
                Signal::ClaimSubagents,
                format!("subagent spawn #{}", h.subagents),
            ));
        }
    }
    h.tools_seen += 1;
    if h.early_tools.len() < EARLY {
        h.early_tools.push(tool.to_string());
        return;
    }
    h.recent_tools.push_back(tool.to_string());
    if h.recent_tools.len() > EARLY {
        h.recent_tools.pop_front();
    }
    if h.recent_tools.len() == EARLY && h.tools_seen >= h.last_drift_at + EARLY as u32 {
        let early: HashSet<&str> = h.early_tools.iter().map(|s| s.as_str()).collect();
        let recent: HashSet<&str> = h.recent_tools.iter().map(|s| s.as_str()).collect();
        let inter = early.intersection(&recent).count() as f64;
        let union = early.union(&recent).count() as f64;
        if union > 0.0 && inter / union < 0.2 {
            h.last_drift_at = h.tools_seen;
            out.push((
                Signal::ClaimDrift,
                "the recent tool mix has left the task's early pattern".into(),
            ));
        }
    }
}

/// The live score of one session.
#[derive(Debug, Clone)]
pub struct RiskEngine {
    cfg: RiskConfig,
    score: f64,
    at: f64,
    level: Level,
    /// After a human thaw, the score at that time: freeze/kill need this much more.
    baseline: f64,
    contributions: Vec<Contribution>,
    history: History,
}

const MAX_CONTRIBUTIONS: usize = 4096;

impl RiskEngine {
    pub fn new(cfg: RiskConfig) -> RiskEngine {
        RiskEngine {
            cfg,
            score: 0.0,
            at: 0.0,
            level: Level::Normal,
            baseline: 0.0,
            contributions: Vec::new(),
            history: History::default(),
        }
    }

    pub fn config(&self) -> &RiskConfig {
        &self.cfg
    }

    fn decay(&self, from: f64, to: f64) -> f64 {
        let dt = (to - from).max(0.0);
        0.5f64.powf(dt / self.cfg.half_life_secs)
    }

    /// The score at `now` (decayed since the last event).
    pub fn score_at(&self, now: f64) -> f64 {
        self.score * self.decay(self.at, now)
    }

    pub fn level(&self) -> Level {
        self.level
    }

    /// Feeds one decision. `now` is seconds on any monotonic clock the caller keeps.
    pub fn observe(&mut self, now: f64, d: &Decision) -> Update {
        let claim = is_claim(d);
        let signals = classify(d, now, &mut self.history);
        self.score = self.score_at(now);
        self.at = self.at.max(now);
        let mut delta = 0.0;
        let mut contributions = Vec::new();
        for (signal, reason) in signals {
            let points = signal.weight(&self.cfg.weights);
            if points <= 0.0 {
                continue;
            }
            delta += points;
            contributions.push(Contribution {
                at: now,
                signal,
                points,
                // Both carry the agent's names (binaries, hosts, files): escaped once here,
                // so every screen that shows a contribution (the risk lines, `warden top`,
                // `warden status`) shows no terminal control from them.
                reason: warden_event::text::printable(&reason),
                what: warden_event::text::printable(prefix(&d.what, 256)),
                claim,
            });
        }
        self.score += delta;
        self.contributions.extend(contributions.iter().cloned());
        if self.contributions.len() > MAX_CONTRIBUTIONS {
            // Keep the ones that still weigh most.
            let now_ = now;
            let hl = self.cfg.half_life_secs;
            self.contributions.sort_by(|a, b| {
                let va = a.points * 0.5f64.powf((now_ - a.at).max(0.0) / hl);
                let vb = b.points * 0.5f64.powf((now_ - b.at).max(0.0) / hl);
                vb.total_cmp(&va)
            });
            self.contributions.truncate(MAX_CONTRIBUTIONS / 2);
            self.contributions.sort_by(|a, b| a.at.total_cmp(&b.at));
        }
        let transition = if self.cfg.enabled {
            self.escalate()
        } else {
            None
        };
        Update {
            score: self.score,
            delta,
            contributions,
            transition,
        }
    }

    fn escalate(&mut self) -> Option<Level> {
        let s = self.score;
        let over = |t: f64| t > 0.0 && s >= t + self.baseline;
        let target = if over(self.cfg.kill_at) {
            Level::Kill
        } else if over(self.cfg.freeze_at) {
            Level::Freeze
        } else if s >= self.cfg.warn_at && self.cfg.warn_at > 0.0 {
            Level::Warn
        } else {
            Level::Normal
        };
        if target > self.level {
            self.level = target;
            Some(target)
        } else {
            None
        }
    }

    /// A human thawed (or acknowledged) the session at `now`: the level goes back to
    /// normal, and the next freeze or kill needs the thresholds' worth of new signals on top
    /// of today's score (the score itself is not lowered).
    pub fn human_reset(&mut self, now: f64) {
        self.score = self.score_at(now);
        self.at = self.at.max(now);
        self.baseline = self.score;
        self.level = Level::Normal;
    }

    /// The `n` contributions that weigh most now (decayed), largest first, with their
    /// current value.
    pub fn top(&self, now: f64, n: usize) -> Vec<(Contribution, f64)> {
        let mut v: Vec<(Contribution, f64)> = self
            .contributions
            .iter()
            .map(|c| {
                let cur = c.points * self.decay(c.at, now);
                (c.clone(), cur)
            })
            .collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1));
        v.truncate(n);
        v
    }
}

#[cfg(test)]
mod tests;
