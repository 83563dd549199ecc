//! The run's effective policy, as the gate inside a `warden run` session sees it.
//!
//! `warden run` serialises the effective policy it enforces ([`SessionPolicy`]); the
//! sandbox's init writes it to [`GATE_FILE`] on a private, read-only tmpfs mounted at
//! [`GATE_DIR`] (inside the sandbox's own `/run`, which is itself a private tmpfs). The agent
//! has no capabilities, no mount syscalls and no Landlock write right under `/run`, so it can
//! neither remove, replace nor overmount that file.
//!
//! That presence is also how `warden hook` knows it runs inside a session: an environment
//! variable is the agent's to unset, a mount it cannot remove is not. [`locate`] therefore
//! decides from the file system first:
//! - [`GATE_FILE`] (or [`GATE_DIR`]) exists: inside. The file must be a regular file on a
//!   read-only mount, small, and parse; otherwise the hook denies (fail closed). Nothing
//!   else is read: not `~/.config/warden/policy.toml`, not the workspace's `.warden.toml`
//!   (both are agent-writable there, and the run already applied them).
//! - Neither exists but `WARDEN_SANDBOX` is set: inside, with the channel missing: deny.
//! - Otherwise: outside; the hook loads the user's policy files as every command does.

use crate::{Policy, PolicyError};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Why the session's policy file is not accepted (every answer is then deny).
#[derive(Debug, thiserror::Error)]
pub enum SessionPolicyError {
    #[error("{GATE_FILE} is not a warden session policy: {0}")]
    NotAPolicy(serde_json::Error),
    #[error("{GATE_FILE} has format version {0}, this warden reads {VERSION}; run the same warden binary inside and outside")]
    Version(u32),
    #[error("the session policy does not validate: {0}")]
    Invalid(PolicyError),
    #[error("the session policy's known files: {0}")]
    Known(String),
    // What was opened is not trustworthy (see `read_checked`).
    #[error("open: {0}")]
    Open(std::io::Error),
    #[error("fstat: {0}")]
    Fstat(std::io::Error),
    #[error("not a regular file")]
    NotRegular,
    #[error("{0} bytes, more than {MAX_SESSION_POLICY}")]
    TooLarge(u64),
    #[error("fstatvfs: {0}")]
    Fstatvfs(rustix::io::Errno),
    #[error("it is on a writable mount (warden places it on a read-only one)")]
    WritableMount,
    #[error("read: {0}")]
    Read(std::io::Error),
    #[error("more than {MAX_SESSION_POLICY} bytes")]
    Grew,
}

/// The read-only mount holding the session's effective policy, inside the sandbox.
pub const GATE_DIR: &str = "/run/warden-gate";
/// The effective policy of the session (JSON, [`SessionPolicy`]).
pub const GATE_FILE: &str = "/run/warden-gate/policy.json";
/// The hook-report socket inside the sandbox (its own read-only tmpfs under the private
/// `/run`): `warden hook` sends its decisions here when no inherited pipe reached it (agent
/// CLIs do not pass inherited fds on to their hooks). Everything on it is the agent side's
/// claim; the supervisor accepts on it from outside.
pub const HOOK_SOCK_DIR: &str = "/run/warden-hook";
pub const HOOK_SOCK: &str = "/run/warden-hook/hook.sock";
/// Largest policy file accepted.
pub const MAX_SESSION_POLICY: u64 = 4 << 20;
/// Format version of [`SessionPolicy`].
pub const VERSION: u32 = 1;

/// What `warden run` hands to the gate inside its sandbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionPolicy {
    pub version: u32,
    pub session_id: String,
    /// The base profile's name (for messages).
    pub profile: String,
    pub workspace: PathBuf,
    pub home: PathBuf,
    /// The effective policy the sandbox, exec guard and proxy enforce.
    pub policy: Policy,
    /// The content hashes `warden run` already knows of the files its `exec.deny` names and
    /// paths resolved to, so that the gate inside (which has no persistent hash cache) does
    /// not hash them again on every tool call (`curl` and `wget` are 0.75 MB). Files in the
    /// session's writable roots are left out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub known: Vec<KnownFile>,
    /// The content the run's `exec.deny` names and paths resolved to at its start, which the
    /// exec guard denies for the whole session ([`crate::progrules::ExecRules::refresh`] only
    /// adds): the gate inside denies it too, also after the file has changed. Only files the
    /// sandbox shows (the hash of a hidden one would tell the agent about its content).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pinned: Vec<Pinned>,
}

/// A denied content: its SHA-256, its size and the rule that denies it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pinned {
    /// Lowercase hex.
    pub sha256: String,
    pub size: u64,
    /// As decisions name it (`exec.deny:curl`).
    pub rule: String,
}

/// A file's identity as the hash cache keys it (`warden_execguard::identity::FileStamp`:
/// device, inode, size, modification and change times) and its SHA-256. The change time
/// cannot be set back, so a file changed since has another stamp and is hashed again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KnownFile {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
    /// Lowercase hex.
    pub sha256: String,
}

impl KnownFile {
    /// The hash ([`SessionPolicy::from_json`] accepts only entries where it parses).
    pub fn hash(&self) -> Option<crate::progrules::Hash> {
        hash_of(&self.sha256)
    }
}

impl Pinned {
    /// The hash ([`SessionPolicy::from_json`] accepts only entries where it parses).
    pub fn hash(&self) -> Option<crate::progrules::Hash> {
        hash_of(&self.sha256)
    }
}

/// 64 hex digits, nothing else.
fn hash_of(hex: &str) -> Option<crate::progrules::Hash> {
    crate::progrules::parse_hex(hex).filter(|_| hex.len() == 64)
}

/// At most this many [`KnownFile`]s are passed.
pub const MAX_KNOWN: usize = 256;

impl SessionPolicy {
    /// The [`SessionPolicy::pinned`] denials as `ExecRules::pin` takes them.
    pub fn policy_pins(&self) -> impl Iterator<Item = (crate::progrules::Hash, u64, String)> + '_ {
        self.pinned
            .iter()
            .filter_map(|p| Some((p.hash()?, p.size, p.rule.clone())))
    }

    pub fn to_json(&self) -> String {
        // A Policy always serialises (plain strings, maps with string keys).
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{}"))
    }

    pub fn from_json(text: &[u8]) -> Result<SessionPolicy, SessionPolicyError> {
        let s: SessionPolicy =
            serde_json::from_slice(text).map_err(SessionPolicyError::NotAPolicy)?;
        if s.version != VERSION {
            return Err(SessionPolicyError::Version(s.version));
        }
        if s.known.len() > MAX_KNOWN {
            return Err(SessionPolicyError::Known(format!(
                "{} entries, more than {MAX_KNOWN}",
                s.known.len()
            )));
        }
        if s.pinned.len() > MAX_KNOWN {
            return Err(SessionPolicyError::Known(format!(
                "{} denials, more than {MAX_KNOWN}",
                s.pinned.len()
            )));
        }
        if let Some(p) = s.pinned.iter().find(|p| hash_of(&p.sha256).is_none()) {
            return Err(SessionPolicyError::Known(format!(
                "{:?} is not a SHA-256 in hex",
                p.sha256.chars().take(80).collect::<String>()
            )));
        }
        if let Some(k) = s.known.iter().find(|k| k.hash().is_none()) {
            return Err(SessionPolicyError::Known(format!(
                "{:?} is not a SHA-256 in hex",
                k.sha256.chars().take(80).collect::<String>()
            )));
        }
        s.policy
            .validate(GATE_FILE)
            .map_err(SessionPolicyError::Invalid)?;
        Ok(s)
    }
}

/// Where the hook runs, and with which policy.
#[derive(Debug)]
pub enum Location {
    /// Not inside a `warden run` session: load the user's policy files.
    Outside,
    /// Inside a session: the run's effective policy.
    Inside(Box<SessionPolicy>),
    /// Inside a session, but its policy cannot be read: every answer is deny.
    Broken(String),
}

/// Decides where the hook runs (see the module doc). Reads only [`GATE_FILE`].
pub fn locate() -> Location {
    locate_at(
        Path::new(GATE_DIR),
        Path::new(GATE_FILE),
        std::env::var_os("WARDEN_SANDBOX").is_some(),
    )
}

/// [`locate`] with explicit paths (tests).
pub fn locate_at(dir: &Path, file: &Path, env_says_inside: bool) -> Location {
    let file_there = std::fs::symlink_metadata(file).is_ok();
    let dir_there = std::fs::symlink_metadata(dir).is_ok();
    if !file_there {
        if dir_there || env_says_inside {
            return Location::Broken(format!(
                "this is a warden sandbox ({}), but the session's policy {} is missing; every tool call is denied until the session is restarted",
                if dir_there {
                    format!("{} exists", dir.display())
                } else {
                    "WARDEN_SANDBOX is set".to_string()
                },
                file.display()
            ));
        }
        return Location::Outside;
    }
    match read_checked(file) {
        Ok(bytes) => match SessionPolicy::from_json(&bytes) {
            Ok(s) => Location::Inside(Box::new(s)),
            Err(e) => Location::Broken(e.to_string()),
        },
        Err(e) => Location::Broken(format!(
            "the session's policy {} cannot be trusted: {e}",
            file.display()
        )),
    }
}

/// Opens without following symlinks and checks what was opened: a regular file, on a
/// read-only mount, at most [`MAX_SESSION_POLICY`] bytes.
fn read_checked(file: &Path) -> Result<Vec<u8>, SessionPolicyError> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(file)
        .map_err(SessionPolicyError::Open)?;
    let md = f.metadata().map_err(SessionPolicyError::Fstat)?;
    if !md.file_type().is_file() {
        return Err(SessionPolicyError::NotRegular);
    }
    if md.len() > MAX_SESSION_POLICY {
        return Err(SessionPolicyError::TooLarge(md.len()));
    }
    let st = rustix::fs::fstatvfs(&f).map_err(SessionPolicyError::Fstatvfs)?;
    if !st.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY) {
        return Err(SessionPolicyError::WritableMount);
    }
    let mut buf = Vec::with_capacity(md.len() as usize);
    f.take(MAX_SESSION_POLICY + 1)
        .read_to_end(&mut buf)
        .map_err(SessionPolicyError::Read)?;
    if buf.len() as u64 > MAX_SESSION_POLICY {
        return Err(SessionPolicyError::Grew);
    }
    Ok(buf)
}
