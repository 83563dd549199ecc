//! # warden-policy
//!
//! Owns warden's policy: the TOML schema (strictly validated, errors carry file, line and
//! column), the built-in profiles (`generic`, `claude`, `codex`, `gemini`) and `extends`, the
//! layering of system, user and workspace policy files (a workspace file may only *narrow*),
//! and the pure decisions that other layers and `warden explain` share: whether a path may be
//! read or written and which rule says so ([`files`]), which environment variables survive
//! ([`env`]). Section modules [`exec`], [`network`] and [`gate`] hold the schema of the layers
//! of the same names; [`audit`] holds the audit store's retention limits; [`advisor`] the
//! optional advisor's section (user/machine files only: every key is refused from a workspace);
//! [`approvals`] how long an `ask` waits for a human. Rule compilation lives here too:
//! [`netrules`] compiles `[network]` entries to host rules (with [`addr`], the address
//! classes and spellings), checked at parse time with the entry's line and column;
//! [`progrules`] resolves `[exec]` program rules (names, paths, hashes, trust indexes) to
//! content identities through an [`progrules::Identity`] the exec guard supplies.
//! of the same names. [`session`] is the channel through which a `warden run` session hands
//! its effective policy, read-only, to the gate inside it. A workspace file narrows only:
//! [`Policy::narrow`] compares with the effective values (defaults included) and
//! [`Policy::widens`] states the property it keeps (fuzzed in `fuzz/`). Errors are typed:
//! [`PolicyError`] names the file (and line and column); [`error`] holds what the sections,
//! rule compilers and sizes report below it, so callers match variants, never message text.

// No unwrap on input-dependent paths in library code; tests may (clippy.toml).
#![warn(clippy::unwrap_used)]
#![forbid(unsafe_code)]

pub mod addr;
pub mod advisor;
pub mod approvals;
pub mod audit;
pub mod env;
pub mod error;
pub mod exec;
pub mod files;
pub mod gate;
pub mod load;
pub mod netrules;
pub mod network;
pub mod progrules;
pub mod risk;
pub mod session;

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

pub use error::{AddrError, RuleError, SectionError, SizeError, Widens};
pub use load::{load, LoadOptions, Loaded, Source};

/// Built-in profiles, embedded in the binary.
pub const PROFILES: &[(&str, &str)] = &[
    ("generic", include_str!("../profiles/generic.toml")),
    ("claude", include_str!("../profiles/claude.toml")),
    ("codex", include_str!("../profiles/codex.toml")),
    ("gemini", include_str!("../profiles/gemini.toml")),
];

/// The default profile when nothing else is named.
pub const DEFAULT_PROFILE: &str = "generic";

pub fn builtin_profile(name: &str) -> Option<&'static str> {
    PROFILES.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

/// The built-in profiles as JSON, converted from [`PROFILES`] at build time (`build.rs`):
/// what [`load`] reads, several times faster than the TOML.
const PROFILES_JSON: &[(&str, &str)] = &[
    (
        "generic",
        include_str!(concat!(env!("OUT_DIR"), "/generic.json")),
    ),
    (
        "claude",
        include_str!(concat!(env!("OUT_DIR"), "/claude.json")),
    ),
    (
        "codex",
        include_str!(concat!(env!("OUT_DIR"), "/codex.json")),
    ),
    (
        "gemini",
        include_str!(concat!(env!("OUT_DIR"), "/gemini.json")),
    ),
];

/// Errors in loading or validating policy. Each names the file and, for syntax and schema
/// errors, the line and column.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{file}:{line}:{col}: {msg}")]
    Parse {
        file: String,
        line: usize,
        col: usize,
        msg: String,
    },
    #[error("{file}: {err}")]
    Invalid { file: String, err: SectionError },
    #[error("unknown profile `{0}` (built-in profiles: generic, claude, codex, gemini)")]
    UnknownProfile(String),
    #[error("{}: cannot read: {err}", file.display())]
    Io { file: PathBuf, err: std::io::Error },
    #[error("{file}: a workspace policy may only narrow the policy, but it sets `{key}`, which would widen it; move that setting to ~/.config/warden/policy.toml")]
    Widening { file: String, key: String },
    #[error("{0}: `extends` chain is too deep or cyclic")]
    Cycle(String),
}

/// One policy document, as written in TOML. Every field is optional so documents can be
/// layered; [`Policy::merge`] combines them (lists append, scalars override).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// A built-in profile name or a path to another policy file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extends: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub files: files::FilesSection,
    #[serde(default)]
    pub env: env::EnvSection,
    #[serde(default)]
    pub process: ProcessSection,
    #[serde(default)]
    pub agent: AgentSection,
    #[serde(default)]
    pub exec: exec::ExecSection,
    #[serde(default)]
    pub network: network::NetworkSection,
    #[serde(default)]
    pub gate: gate::GateSection,
    #[serde(default, skip_serializing_if = "is_default")]
    pub audit: audit::AuditSection,
    #[serde(default, skip_serializing_if = "is_default")]
    pub risk: risk::RiskSection,
    #[serde(default, skip_serializing_if = "is_default")]
    pub approvals: approvals::ApprovalsSection,
    /// The optional advisor (user and machine policy only; see [`advisor`]).
    #[serde(default, skip_serializing_if = "is_default")]
    pub advisor: advisor::AdvisorSection,
}

/// warden-risk's default thresholds (warn_at, freeze_at, kill_at, half_life_secs), which
/// narrowing compares against where no layer sets them. Kept equal to
/// `warden_risk::RiskConfig::default()` (a test in the CLI checks it).
pub const RISK_DEFAULTS: (f64, f64, f64, f64) = (50.0, 100.0, 200.0, 600.0);

/// The default weight of a signal, for narrowing (see [`risk::DEFAULT_WEIGHTS`]). An
/// unknown name is refused when the session builds its engine.
fn risk_default_weight(name: &str) -> Option<f64> {
    risk::DEFAULT_WEIGHTS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, w)| *w)
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// Process limits.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessSection {
    /// Maximum number of processes/threads in the sandbox (cgroup `pids.max`, else RLIMIT_NPROC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids_max: Option<u32>,
    /// RLIMIT_NOFILE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nofile: Option<u64>,
    /// Whether the agent may write core dumps (RLIMIT_CORE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub core_dumps: Option<bool>,
    /// Memory of the whole sandbox (cgroup `memory.max` / v1 `memory.limit_in_bytes`),
    /// e.g. `"8G"`. Default: half of RAM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_max: Option<ByteSize>,
    /// Size of the private `$HOME` tmpfs. Default: RAM/16.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home_size: Option<ByteSize>,
    /// Size of the private `/tmp` tmpfs. Default: RAM/16.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tmp_size: Option<ByteSize>,
    /// Size of the private `/var/tmp` tmpfs. Default: RAM/32.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub var_tmp_size: Option<ByteSize>,
    /// Size of the private `/run` tmpfs. Default: 64M.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_size: Option<ByteSize>,
    /// Size of the private `/dev/shm` tmpfs. Default: RAM/32.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shm_size: Option<ByteSize>,
}

/// Physical RAM in bytes (`/proc/meminfo` MemTotal; 4 GiB when unreadable).
pub fn ram_bytes() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))?
                .split_whitespace()
                .nth(1)?
                .parse::<u64>()
                .ok()
        })
        .map(|kb| kb * 1024)
        .unwrap_or(4 << 30)
}

/// A size in bytes, written as an integer or a string with a binary suffix
/// (`"512K"`, `"64M"`, `"2G"`, `"1T"`; `KiB`/`MiB`/... also accepted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub fn parse(s: &str) -> Result<ByteSize, SizeError> {
        let t = s.trim();
        let digits = t.bytes().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 {
            return Err(SizeError::NotANumber(s.to_string()));
        }
        let n: u64 = t[..digits]
            .parse()
            .map_err(|_| SizeError::NumberTooLarge(s.to_string()))?;
        let mult: u64 = match t[digits..].trim().to_ascii_uppercase().as_str() {
            "" | "B" => 1,
            "K" | "KB" | "KIB" => 1 << 10,
            "M" | "MB" | "MIB" => 1 << 20,
            "G" | "GB" | "GIB" => 1 << 30,
            "T" | "TB" | "TIB" => 1 << 40,
            other => {
                return Err(SizeError::Suffix {
                    size: s.to_string(),
                    suffix: other.to_string(),
                })
            }
        };
        n.checked_mul(mult)
            .map(ByteSize)
            .ok_or_else(|| SizeError::TooLarge(s.to_string()))
    }

    /// Human form (`1.5 GiB`).
    pub fn human(self) -> String {
        let n = self.0 as f64;
        for (u, d) in [
            ("TiB", 1u64 << 40),
            ("GiB", 1 << 30),
            ("MiB", 1 << 20),
            ("KiB", 1 << 10),
        ] {
            if self.0 >= d {
                return format!("{:.1} {u}", n / d as f64);
            }
        }
        format!("{} B", self.0)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a size in bytes or a string such as \"2G\"")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom("a size cannot be negative"))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ByteSize, E> {
                ByteSize::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

impl ProcessSection {
    /// Key names of the size limits, in the order of [`Self::sizes`].
    pub const SIZE_KEYS: [&'static str; 6] = [
        "process.memory_max",
        "process.home_size",
        "process.tmp_size",
        "process.var_tmp_size",
        "process.run_size",
        "process.shm_size",
    ];

    /// Defaults of [`Self::sizes`] for a machine with `ram` bytes: memory RAM/2; `$HOME`
    /// and `/tmp` RAM/16; `/var/tmp` and `/dev/shm` RAM/32; `/run` 64 MiB (rounded down to
    /// MiB, at least 1 MiB).
    pub fn default_sizes(ram: u64) -> [u64; 6] {
        let mib = |n: u64| (n >> 20).max(1) << 20;
        [
            mib(ram / 2),
            mib(ram / 16),
            mib(ram / 16),
            mib(ram / 32),
            64 << 20,
            mib(ram / 32),
        ]
    }

    pub fn sizes(&self) -> [Option<ByteSize>; 6] {
        [
            self.memory_max,
            self.home_size,
            self.tmp_size,
            self.var_tmp_size,
            self.run_size,
            self.shm_size,
        ]
    }

    fn sizes_mut(&mut self) -> [&mut Option<ByteSize>; 6] {
        [
            &mut self.memory_max,
            &mut self.home_size,
            &mut self.tmp_size,
            &mut self.var_tmp_size,
            &mut self.run_size,
            &mut self.shm_size,
        ]
    }
}

/// What the agent itself needs: its install directory (read) and its state (read/write).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSection {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Paths the agent reads and writes (its state directory and files).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub state: Vec<String>,
    /// Paths the agent reads and executes (its install directory).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub install: Vec<String>,
    /// The agent's own credential files (OAuth tokens it refreshes). Every profile denies
    /// them in `files.deny`; the profile that names one here takes it out of its own
    /// `files.deny`, so only that agent's sessions can read and rewrite it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub credentials: Vec<String>,
}

/// `process.pids_max` when no layer sets it (the sandbox's cgroup `pids.max`).
pub const DEFAULT_PIDS_MAX: u32 = 4096;
/// `process.nofile` when no layer sets it (RLIMIT_NOFILE).
pub const DEFAULT_NOFILE: u64 = 65536;

/// The scalars of a policy as the layers apply them ([`Policy::effective`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Effective {
    pub pids_max: u32,
    pub nofile: u64,
    pub core_dumps: bool,
    pub exec_mode: exec::ExecMode,
    pub exec_action: exec::ExecAction,
    pub allow_memfd: bool,
    pub dynamic: gate::GateAnswer,
    pub unknown_tool: gate::GateAnswer,
    pub mcp_default: gate::GateAnswer,
}

/// Appends each string of `src` that `dst` (or `src` before it) does not hold yet, in order.
pub(crate) fn append_unique(dst: &mut Vec<String>, src: &[String]) {
    for s in src {
        if !dst.contains(s) {
            dst.push(s.clone());
        }
    }
}

impl Policy {
    /// Parses one document strictly. `origin` names it in errors.
    /// Built-in profile `name` (the same policy as [`Policy::parse`] of its TOML, read from
    /// the build-time JSON form); `None` for a name that is not built in.
    pub fn builtin(name: &str) -> Option<Result<Policy, PolicyError>> {
        let json = PROFILES_JSON.iter().find(|(n, _)| *n == name)?.1;
        let origin = format!("builtin:{name}");
        let p: Policy = match serde_json::from_str(json) {
            Ok(p) => p,
            Err(e) => {
                return Some(Err(PolicyError::Parse {
                    file: origin,
                    line: e.line(),
                    col: e.column(),
                    msg: e.to_string(),
                }))
            }
        };
        // Not validated again here: the JSON is a constant of this binary, and the test
        // `builtin_json_forms_equal_the_toml` checks that each one is the policy its TOML
        // gives, which `Policy::parse` validates (5% of a hook call's instructions went to
        // re-checking the two profiles it loads).
        Some(Ok(p))
    }

    pub fn parse(text: &str, origin: &str) -> Result<Policy, PolicyError> {
        let p: Policy = toml::from_str(text).map_err(|e| {
            let (line, col) = e.span().map(|s| line_col(text, s.start)).unwrap_or((0, 0));
            PolicyError::Parse {
                file: origin.to_string(),
                line,
                col,
                msg: e.message().to_string(),
            }
        })?;
        if let Err(e) = p.validate(origin) {
            // A bad rule entry is reported where it is written.
            located_rule_check(text, origin)?;
            return Err(e);
        }
        Ok(p)
    }

    /// Semantic checks that serde cannot express.
    pub fn validate(&self, origin: &str) -> Result<(), PolicyError> {
        let bad = |err: SectionError| PolicyError::Invalid {
            file: origin.to_string(),
            err,
        };
        if let Some(0) = self.process.pids_max {
            return Err(bad(SectionError::Invalid(
                "process.pids_max must be at least 1".into(),
            )));
        }
        for (k, v) in ProcessSection::SIZE_KEYS.iter().zip(self.process.sizes()) {
            if let Some(v) = v {
                if v.0 < 1 << 20 {
                    return Err(bad(SectionError::Invalid(format!(
                        "{k} must be at least 1M (it is {} bytes)",
                        v.0
                    ))));
                }
                if v.0 > 1 << 50 {
                    return Err(bad(SectionError::Invalid(format!(
                        "{k} must be at most 1024T (it is {} bytes)",
                        v.0
                    ))));
                }
            }
        }
        self.files.validate().map_err(bad)?;
        self.env.validate().map_err(bad)?;
        self.exec.validate().map_err(bad)?;
        self.network.validate().map_err(bad)?;
        self.gate.validate().map_err(bad)?;
        self.audit.validate().map_err(bad)?;
        self.risk.validate().map_err(bad)?;
        self.approvals.validate().map_err(bad)?;
        self.advisor.validate().map_err(bad)?;
        Ok(())
    }

    /// Layers `over` on top of `self`: lists append, scalars in `over` win.
    pub fn merge(&mut self, over: &Policy) {
        if over.description.is_some() {
            self.description = over.description.clone();
        }
        self.files.merge(&over.files);
        self.env.merge(&over.env);
        if over.process.pids_max.is_some() {
            self.process.pids_max = over.process.pids_max;
        }
        if over.process.nofile.is_some() {
            self.process.nofile = over.process.nofile;
        }
        if over.process.core_dumps.is_some() {
            self.process.core_dumps = over.process.core_dumps;
        }
        for (dst, src) in self
            .process
            .sizes_mut()
            .into_iter()
            .zip(over.process.sizes())
        {
            if src.is_some() {
                *dst = src;
            }
        }
        if over.agent.name.is_some() {
            self.agent.name = over.agent.name.clone();
        }
        append_unique(&mut self.agent.state, &over.agent.state);
        append_unique(&mut self.agent.install, &over.agent.install);
        append_unique(&mut self.agent.credentials, &over.agent.credentials);
        // A profile's own credentials leave the deny list it inherited; a later layer that
        // denies them again (the user's file) wins, as its entries are appended after this.
        let own = &over.agent.credentials;
        self.files.deny.retain(|d| !own.contains(d));
        self.exec.merge(&over.exec);
        self.network.merge(&over.network);
        self.gate.merge(&over.gate);
        self.audit.merge(&over.audit);
        self.risk.merge(&over.risk);
        self.approvals.merge(&over.approvals);
        self.advisor.merge(&over.advisor);
    }

    /// Applies a workspace (untrusted) document: only settings that narrow are accepted; any
    /// setting that could widen is an error naming the key. Every scalar is compared with
    /// the *effective* value (the built-in default where no layer sets it), and a list that
    /// grants (files.read, env.pass, network.allow, ...) may only repeat entries the base
    /// already has.
    pub fn narrow(&mut self, ws: &Policy, origin: &str) -> Result<(), PolicyError> {
        let widen = |key: &str| PolicyError::Widening {
            file: origin.to_string(),
            key: key.to_string(),
        };
        let within = |key: &str, base: &[String], new: &[String]| match new
            .iter()
            .find(|n| !base.contains(n))
        {
            Some(_) => Err(widen(key)),
            None => Ok(()),
        };
        if ws.extends.is_some() {
            return Err(widen("extends"));
        }
        // Every advisor key decides where tool calls go and what may be resolved; turning
        // it off loosens the gate. None of them comes from the workspace.
        if let Some(k) = ws.advisor.keys_set().first() {
            return Err(widen(k));
        }
        within("files.read", &self.files.read, &ws.files.read)?;
        within("files.write", &self.files.write, &ws.files.write)?;
        within("files.system", &self.files.system, &ws.files.system)?;
        within("env.pass", &self.env.pass, &ws.env.pass)?;
        if ws
            .env
            .set
            .iter()
            .any(|(k, v)| self.env.set.get(k) != Some(v))
        {
            return Err(widen("env.set"));
        }
        within("agent.state", &self.agent.state, &ws.agent.state)?;
        within("agent.install", &self.agent.install, &ws.agent.install)?;
        if ws.agent.name.is_some() && ws.agent.name != self.agent.name {
            return Err(widen("agent.name"));
        }
        within("files.cache", &self.files.cache, &ws.files.cache)?;
        within(
            "files.ask_write",
            &self.files.ask_write,
            &ws.files.ask_write,
        )?;
        within(
            "agent.credentials",
            &self.agent.credentials,
            &ws.agent.credentials,
        )?;
        let eff = self.effective();
        if let Some(n) = ws.process.pids_max {
            self.process.pids_max = Some(eff.pids_max.min(n));
        }
        if let Some(n) = ws.process.nofile {
            self.process.nofile = Some(eff.nofile.min(n));
        }
        match ws.process.core_dumps {
            Some(true) if !eff.core_dumps => return Err(widen("process.core_dumps")),
            Some(v) => self.process.core_dumps = Some(v),
            None => {}
        }
        // Sizes: a workspace file may only lower them, compared with the effective value
        // (the RAM-derived default where the base sets none).
        let defaults = ProcessSection::default_sizes(ram_bytes());
        for ((dst, src), d) in self
            .process
            .sizes_mut()
            .into_iter()
            .zip(ws.process.sizes())
            .zip(defaults)
        {
            if let Some(n) = src {
                *dst = Some(dst.unwrap_or(ByteSize(d)).min(n));
            }
        }
        append_unique(&mut self.files.deny, &ws.files.deny);
        append_unique(&mut self.files.protect, &ws.files.protect);
        append_unique(&mut self.env.scrub, &ws.env.scrub);
        self.exec.narrow(&ws.exec).map_err(|Widens(k)| widen(&k))?;
        self.network
            .narrow(&ws.network)
            .map_err(|Widens(k)| widen(&k))?;
        self.gate.narrow(&ws.gate).map_err(|Widens(k)| widen(&k))?;
        self.audit
            .narrow(&ws.audit)
            .map_err(|Widens(k)| widen(&k))?;
        self.risk
            .narrow(&ws.risk, RISK_DEFAULTS, &risk_default_weight)
            .map_err(|Widens(k)| widen(&k))?;
        self.approvals
            .narrow(&ws.approvals)
            .map_err(|Widens(k)| widen(&k))?;
        Ok(())
    }

    /// Every scalar as the layers apply it: the policy's value, else the built-in default.
    pub fn effective(&self) -> Effective {
        Effective {
            pids_max: self.process.pids_max.unwrap_or(DEFAULT_PIDS_MAX),
            nofile: self.process.nofile.unwrap_or(DEFAULT_NOFILE),
            core_dumps: self.process.core_dumps.unwrap_or(false),
            exec_mode: self.exec.mode.unwrap_or(exec::ExecMode::Denylist),
            exec_action: self.exec.action.unwrap_or(exec::ExecAction::Enforce),
            allow_memfd: self.exec.allow_memfd.unwrap_or(false),
            dynamic: self.gate.dynamic.unwrap_or(gate::DEFAULT_ANSWER),
            unknown_tool: self.gate.unknown_tool.unwrap_or(gate::DEFAULT_ANSWER),
            mcp_default: self.gate.mcp_default.unwrap_or(gate::DEFAULT_ANSWER),
        }
    }

    /// The first setting in which `self` grants more than `base` (compared as the layers
    /// apply them, defaults included), if any. The property a workspace file must keep:
    /// `base.narrow(ws)` never yields a policy for which this returns `Some`.
    pub fn widens(&self, base: &Policy) -> Option<&'static str> {
        let grants_more = |a: &[String], b: &[String]| a.iter().any(|x| !b.contains(x));
        let drops = |a: &[String], b: &[String]| b.iter().any(|x| !a.contains(x));
        let (e, b) = (self.effective(), base.effective());
        let lists: [(&'static str, bool); 20] = [
            (
                "files.ask_write",
                grants_more(&self.files.ask_write, &base.files.ask_write),
            ),
            (
                "files.read",
                grants_more(&self.files.read, &base.files.read),
            ),
            (
                "files.write",
                grants_more(&self.files.write, &base.files.write),
            ),
            (
                "files.system",
                grants_more(&self.files.system, &base.files.system),
            ),
            ("files.deny", drops(&self.files.deny, &base.files.deny)),
            (
                "files.protect",
                drops(&self.files.protect, &base.files.protect),
            ),
            ("env.pass", grants_more(&self.env.pass, &base.env.pass)),
            ("env.scrub", drops(&self.env.scrub, &base.env.scrub)),
            (
                "agent.state",
                grants_more(&self.agent.state, &base.agent.state),
            ),
            (
                "agent.install",
                grants_more(&self.agent.install, &base.agent.install),
            ),
            (
                "exec.allow",
                grants_more(&self.exec.allow, &base.exec.allow),
            ),
            ("exec.deny", drops(&self.exec.deny, &base.exec.deny)),
            ("exec.jit", grants_more(&self.exec.jit, &base.exec.jit)),
            (
                "network.allow",
                grants_more(&self.network.allow, &base.network.allow),
            ),
            (
                "network.deny",
                drops(&self.network.deny, &base.network.deny),
            ),
            (
                "network.ask",
                grants_more(&self.network.ask, &base.network.ask),
            ),
            (
                "gate.mcp_allow",
                grants_more(&self.gate.mcp_allow, &base.gate.mcp_allow),
            ),
            (
                "gate.mcp_deny",
                drops(&self.gate.mcp_deny, &base.gate.mcp_deny),
            ),
            (
                "env.set",
                self.env
                    .set
                    .iter()
                    .any(|(k, v)| base.env.set.get(k) != Some(v)),
            ),
            ("agent.name", self.agent.name != base.agent.name),
        ];
        if let Some((k, _)) = lists.iter().find(|(_, w)| *w) {
            return Some(k);
        }
        if self.advisor != base.advisor {
            return Some("advisor");
        }
        let scalars: [(&'static str, bool); 12] = [
            ("process.pids_max", e.pids_max > b.pids_max),
            ("process.nofile", e.nofile > b.nofile),
            ("process.core_dumps", e.core_dumps && !b.core_dumps),
            (
                "exec.mode",
                e.exec_mode == exec::ExecMode::Denylist && b.exec_mode == exec::ExecMode::Allowlist,
            ),
            (
                "exec.action",
                e.exec_action == exec::ExecAction::Audit
                    && b.exec_action == exec::ExecAction::Enforce,
            ),
            ("exec.allow_memfd", e.allow_memfd && !b.allow_memfd),
            ("gate.dynamic", e.dynamic.rank() < b.dynamic.rank()),
            (
                "gate.unknown_tool",
                e.unknown_tool.rank() < b.unknown_tool.rank(),
            ),
            (
                "gate.mcp_default",
                e.mcp_default.rank() < b.mcp_default.rank(),
            ),
            (
                "exec.ask_unknown",
                self.exec.ask_unknown == Some(true) && base.exec.ask_unknown != Some(true),
            ),
            (
                "approvals.timeout_secs",
                self.approvals.timeout() > base.approvals.timeout(),
            ),
            (
                "approvals.gate",
                self.approvals.gate() == approvals::GateAsk::Agent
                    && base.approvals.gate() == approvals::GateAsk::Warden,
            ),
        ];
        scalars.iter().find(|(_, w)| *w).map(|(k, _)| *k)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render policy: {e}\n"))
    }
}

/// 1-based line and column of a byte offset.
/// Compiles the rule entries of one document where they are written, so that a bad one is
/// reported at its line and column (the same checks run again, without positions, in
/// [`Policy::validate`] for policies built in code).
fn located_rule_check(text: &str, origin: &str) -> Result<(), PolicyError> {
    #[derive(Deserialize, Default)]
    struct Net {
        #[serde(default)]
        allow: Vec<toml::Spanned<String>>,
        #[serde(default)]
        deny: Vec<toml::Spanned<String>>,
        #[serde(default)]
        ask: Vec<toml::Spanned<String>>,
    }
    #[derive(Deserialize, Default)]
    struct Exec {
        #[serde(default)]
        allow: Vec<toml::Spanned<String>>,
        #[serde(default)]
        deny: Vec<toml::Spanned<String>>,
    }
    #[derive(Deserialize)]
    struct Doc {
        #[serde(default)]
        network: Net,
        #[serde(default)]
        exec: Exec,
    }
    // The document already parsed as a `Policy`; a shape this cannot read is left to
    // `validate` (no position).
    let Ok(doc) = toml::from_str::<Doc>(text) else {
        return Ok(());
    };
    for (key, list) in [
        ("network.allow", &doc.network.allow),
        ("network.deny", &doc.network.deny),
        ("network.ask", &doc.network.ask),
        ("exec.allow", &doc.exec.allow),
        ("exec.deny", &doc.exec.deny),
    ] {
        for e in list {
            let res = if key.starts_with("exec.") {
                progrules::check_entry(key, e.get_ref())
            } else if e.get_ref().trim().is_empty() {
                Err(RuleError::EmptyEntry {
                    key: key.to_string(),
                })
            } else {
                netrules::check_entry(key, e.get_ref())
            };
            let Err(err) = res else {
                continue;
            };
            let (line, col) = line_col(text, e.span().start);
            return Err(PolicyError::Parse {
                file: origin.to_string(),
                line,
                col,
                msg: err.to_string(),
            });
        }
    }
    Ok(())
}

pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rfind('\n')
        .map_or(before.len(), |i| before.len() - i - 1)
        + 1;
    (line, col)
}

/// Where paths in a policy are anchored: `~` is `home`, relative paths are in `workspace`.
#[derive(Debug, Clone)]
pub struct Anchors {
    pub home: PathBuf,
    pub workspace: PathBuf,
}

impl Anchors {
    /// Expands `~`, `~/x`, absolute and workspace-relative paths. Lexically normalises `.`
    /// and `..` (no symlink resolution; callers canonicalise where the file exists).
    pub fn expand(&self, p: &str) -> PathBuf {
        let raw = if p == "~" {
            self.home.clone()
        } else if let Some(rest) = p.strip_prefix("~/") {
            join(&self.home, rest)
        } else if p.starts_with('/') {
            PathBuf::from(p)
        } else {
            join(&self.workspace, p)
        };
        normalize_owned(raw)
    }
}

/// `base.join(rest)` in one allocation of the right size.
fn join(base: &std::path::Path, rest: &str) -> PathBuf {
    if rest.starts_with('/') {
        return base.join(rest);
    }
    let b = base.as_os_str();
    let mut s = std::ffi::OsString::with_capacity(b.len() + 1 + rest.len());
    s.push(b);
    if !b.as_encoded_bytes().ends_with(b"/") {
        s.push("/");
    }
    s.push(rest);
    PathBuf::from(s)
}

/// [`normalize`] of a path the caller owns: returned as it is when already normal.
fn normalize_owned(p: PathBuf) -> PathBuf {
    if is_normal(p.as_os_str().as_encoded_bytes()) {
        return p;
    }
    normalize_components(&p)
}

/// Not empty, spelled with one `/` between components, no `.` component, no trailing `/`
/// (but `/`). One pass over the bytes. For two such spellings, [`under_bytes`] is
/// `Path::starts_with`, which parses both into components on every call.
pub fn plain(b: &[u8]) -> bool {
    if b == b"/" {
        return true;
    }
    !b.is_empty()
        && b.split(|&c| c == b'/')
            .enumerate()
            .all(|(i, c)| if c.is_empty() { i == 0 } else { c != b"." })
}

/// Whether the [`plain`]ly spelled `p` lies at or below the plainly spelled `r`.
pub fn under_bytes(pb: &[u8], rb: &[u8]) -> bool {
    pb.starts_with(rb) && (pb.len() == rb.len() || rb == b"/" || pb[rb.len()] == b'/')
}

/// Lexical normalisation: removes `.`, resolves `..` against the preceding component.
pub fn normalize(p: &std::path::Path) -> PathBuf {
    if is_normal(p.as_os_str().as_encoded_bytes()) {
        return p.to_path_buf();
    }
    normalize_components(p)
}

/// Whether `normalize` would return this path unchanged: absolute, [`plain`], and no `..`
/// component (most policy paths; the component walk allocated once
/// per component, 1,700 instructions a path, a sixth of a hook call's own work).
fn is_normal(b: &[u8]) -> bool {
    b.first() == Some(&b'/') && plain(b) && !b.split(|&c| c == b'/').any(|c| c == b"..")
}

fn normalize_components(p: &std::path::Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    if out.as_os_str().is_empty() {
        out.push("/");
    }
    out
}

#[cfg(test)]
mod tests;
