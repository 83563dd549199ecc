//! # warden-policy
//!
//! Owns warden's policy: the TOML schema (strictly validated, errors carry file, line and
//! column), the built-in profiles (`generic`, `claude`, `codex`, `gemini`) and `extends`, the
//! layering of system, user and workspace policy files (a workspace file may only *narrow*),
//! and the pure decisions that other layers and `warden explain` share: whether a path may be
//! read or written and which rule says so ([`files`]), which environment variables survive
//! ([`env`]). Section modules [`exec`], [`network`] and [`gate`] hold the schema of the layers
//! of the same names; [`audit`] holds the audit store's retention limits.

pub mod audit;
pub mod env;
pub mod exec;
pub mod files;
pub mod gate;
pub mod load;
pub mod network;

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

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
    #[error("{file}: {msg}")]
    Invalid { file: String, msg: String },
    #[error("unknown profile `{0}` (built-in profiles: generic, claude, codex, gemini)")]
    UnknownProfile(String),
    #[error("{file}: cannot read: {err}")]
    Io { file: String, err: std::io::Error },
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
    pub fn parse(s: &str) -> Result<ByteSize, String> {
        let t = s.trim();
        let digits = t.bytes().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 {
            return Err(format!(
                "size `{s}`: expected a number with an optional K/M/G/T suffix"
            ));
        }
        let n: u64 = t[..digits]
            .parse()
            .map_err(|_| format!("size `{s}`: number too large"))?;
        let mult: u64 = match t[digits..].trim().to_ascii_uppercase().as_str() {
            "" | "B" => 1,
            "K" | "KB" | "KIB" => 1 << 10,
            "M" | "MB" | "MIB" => 1 << 20,
            "G" | "GB" | "GIB" => 1 << 30,
            "T" | "TB" | "TIB" => 1 << 40,
            other => {
                return Err(format!(
                    "size `{s}`: unknown suffix `{other}` (use K, M, G or T)"
                ))
            }
        };
        n.checked_mul(mult)
            .map(ByteSize)
            .ok_or_else(|| format!("size `{s}`: too large"))
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

pub(crate) fn append_unique(dst: &mut Vec<String>, src: &[String]) {
    for s in src {
        if !dst.contains(s) {
            dst.push(s.clone());
        }
    }
}

impl Policy {
    /// Parses one document strictly. `origin` names it in errors.
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
        p.validate(origin)?;
        Ok(p)
    }

    /// Semantic checks that serde cannot express.
    pub fn validate(&self, origin: &str) -> Result<(), PolicyError> {
        let bad = |msg: String| PolicyError::Invalid {
            file: origin.to_string(),
            msg,
        };
        if let Some(0) = self.process.pids_max {
            return Err(bad("process.pids_max must be at least 1".into()));
        }
        for (k, v) in ProcessSection::SIZE_KEYS.iter().zip(self.process.sizes()) {
            if let Some(v) = v {
                if v.0 < 1 << 20 {
                    return Err(bad(format!(
                        "{k} must be at least 1M (it is {} bytes)",
                        v.0
                    )));
                }
                if v.0 > 1 << 50 {
                    return Err(bad(format!(
                        "{k} must be at most 1024T (it is {} bytes)",
                        v.0
                    )));
                }
            }
        }
        self.files.validate().map_err(bad)?;
        self.env.validate().map_err(bad)?;
        self.exec.validate().map_err(bad)?;
        self.network.validate().map_err(bad)?;
        self.gate.validate().map_err(bad)?;
        self.audit.validate().map_err(bad)?;
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
    }

    /// Applies a workspace (untrusted) document: only settings that narrow are accepted; any
    /// setting that could widen is an error naming the key.
    pub fn narrow(&mut self, ws: &Policy, origin: &str) -> Result<(), PolicyError> {
        let widen = |key: &str| PolicyError::Widening {
            file: origin.to_string(),
            key: key.to_string(),
        };
        if ws.extends.is_some() {
            return Err(widen("extends"));
        }
        if !ws.files.read.is_empty() {
            return Err(widen("files.read"));
        }
        if !ws.files.write.is_empty() {
            return Err(widen("files.write"));
        }
        if !ws.files.system.is_empty() {
            return Err(widen("files.system"));
        }
        if !ws.files.cache.is_empty() {
            return Err(widen("files.cache"));
        }
        if !ws.env.pass.is_empty() {
            return Err(widen("env.pass"));
        }
        if !ws.env.set.is_empty() {
            return Err(widen("env.set"));
        }
        if !ws.agent.state.is_empty()
            || !ws.agent.install.is_empty()
            || !ws.agent.credentials.is_empty()
            || ws.agent.name.is_some()
        {
            return Err(widen("agent"));
        }
        if let Some(n) = ws.process.pids_max {
            self.process.pids_max = Some(self.process.pids_max.map_or(n, |c| c.min(n)));
        }
        if let Some(n) = ws.process.nofile {
            self.process.nofile = Some(self.process.nofile.map_or(n, |c| c.min(n)));
        }
        if ws.process.core_dumps == Some(true) {
            return Err(widen("process.core_dumps"));
        }
        if ws.process.core_dumps == Some(false) {
            self.process.core_dumps = Some(false);
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
        self.exec.narrow(&ws.exec).map_err(|k| widen(&k))?;
        self.network.narrow(&ws.network).map_err(|k| widen(&k))?;
        self.gate.narrow(&ws.gate).map_err(|k| widen(&k))?;
        self.audit.narrow(&ws.audit).map_err(|k| widen(&k))?;
        Ok(())
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render policy: {e}\n"))
    }
}

/// 1-based line and column of a byte offset.
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
            self.home.join(rest)
        } else if p.starts_with('/') {
            PathBuf::from(p)
        } else {
            self.workspace.join(p)
        };
        normalize(&raw)
    }
}

/// Lexical normalisation: removes `.`, resolves `..` against the preceding component.
pub fn normalize(p: &std::path::Path) -> PathBuf {
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
