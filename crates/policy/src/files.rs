//! The `[files]` section and the path decisions built on it.
//!
//! Order of evaluation, for both `warden explain` and the sandbox plan:
//! 1. `files.deny` (credentials, other secrets): never readable or writable;
//! 2. for writes, `files.protect`: read-only even inside writable roots;
//! 3. writable roots: the workspace, the private TMPDIR, `agent.state`, `files.write`, and
//!    inside a `warden run` session the private trees (rule `private`: the sandbox's own
//!    tmpfs `$HOME`, `/tmp`, `/var/tmp`, `/dev/shm`, whose writes are discarded at exit);
//! 4. readable roots: the writable roots, `agent.install`, `files.read`, `files.system`;
//!    `files.cache` is readable and writable, but writes go to a private per-session layer;
//! 5. everything else is denied (rule `default`).
//!
//! [`FileRules::session`] is the view of a `warden run` session, built from the same
//! [`PRIVATE_TREES`] the sandbox masks, so the gate inside a run and the sandbox give one
//! decision per action.

use crate::{append_unique, normalize, Anchors, Policy};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesSection {
    /// Read-only system roots.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub system: Vec<String>,
    /// Extra readable roots.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub read: Vec<String>,
    /// Extra writable roots.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub write: Vec<String>,
    /// Never readable.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<String>,
    /// Read-only, even when absent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub protect: Vec<String>,
    /// Package caches (`~/.cargo/registry`, `~/.npm`, ...): readable, and writable through a
    /// private layer that is discarded when the session ends, so the agent can add to a
    /// cache but never change what the host later builds from it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cache: Vec<String>,
    /// Protected files (or directories of them) whose write a human may allow: each entry
    /// is also in `protect` (read-only for the agent), and an open of such an existing
    /// file for write waits for a human's answer (`warden approve`) instead of failing.
    /// On allow, warden opens the real file itself and hands the agent that descriptor.
    /// Needs the seccomp exec guard; only your own policy may add entries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ask_write: Vec<String>,
}

impl FilesSection {
    pub(crate) fn validate(&self) -> Result<(), crate::SectionError> {
        for (key, list) in [
            ("files.system", &self.system),
            ("files.read", &self.read),
            ("files.write", &self.write),
            ("files.deny", &self.deny),
            ("files.protect", &self.protect),
            ("files.cache", &self.cache),
            ("files.ask_write", &self.ask_write),
        ] {
            for p in list {
                if p.is_empty() {
                    return Err(crate::SectionError::Invalid(format!("{key}: empty path")));
                }
                if p.contains('\0') {
                    return Err(crate::SectionError::Invalid(format!(
                        "{key}: path `{}` contains a NUL byte",
                        p.escape_debug()
                    )));
                }
                if p.starts_with('~') && p != "~" && !p.starts_with("~/") {
                    return Err(crate::SectionError::Invalid(format!(
                        "{key}: `{p}`: only `~` and `~/...` are supported, not `~user`"
                    )));
                }
                if (key == "files.system"
                    || key == "files.read"
                    || key == "files.write"
                    || key == "files.cache"
                    || key == "files.ask_write")
                    && (p == "/" || p == "~" || p == "~/")
                {
                    return Err(crate::SectionError::Invalid(format!(
                        "{key}: `{p}` would expose every credential under it; name narrower directories"
                    )));
                }
            }
        }
        Ok(())
    }

    pub(crate) fn merge(&mut self, o: &FilesSection) {
        append_unique(&mut self.system, &o.system);
        append_unique(&mut self.read, &o.read);
        append_unique(&mut self.write, &o.write);
        append_unique(&mut self.deny, &o.deny);
        append_unique(&mut self.protect, &o.protect);
        append_unique(&mut self.cache, &o.cache);
        append_unique(&mut self.ask_write, &o.ask_write);
        // An ask-write file is a protected file first: read-only for the agent.
        append_unique(&mut self.protect, &o.ask_write);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// A decision on one path, with the rule that made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathDecision {
    pub allowed: bool,
    /// `files.deny`, `files.protect`, `workspace`, `tmpdir`, `agent.state`, `agent.install`,
    /// `files.read`, `files.write`, `private`, `files.system` or `default`.
    pub rule: &'static str,
    /// The policy entry that matched (expanded), if any.
    pub entry: Option<PathBuf>,
}

impl PathDecision {
    pub fn explain(&self, path: &Path, access: Access) -> String {
        let verb = match access {
            Access::Read => "read",
            Access::Write => "write",
        };
        let what = if self.allowed { "allowed" } else { "denied" };
        match (&self.entry, self.rule) {
            (_, "default") => format!(
                "{verb} {}: {what} by rule `default` (not under any readable/writable root); to allow it, add it to files.{verb} in ~/.config/warden/policy.toml",
                path.display()
            ),
            (Some(e), rule) => {
                let mut s = format!("{verb} {}: {what} by rule `{rule}` (entry {})", path.display(), e.display());
                if !self.allowed && rule == "files.deny" {
                    s.push_str("; credentials and secrets are never exposed to the agent");
                } else if !self.allowed && rule == "files.protect" {
                    s.push_str("; protected paths stay read-only so the agent cannot plant code that runs outside the sandbox");
                }
                s
            }
            (None, rule) => format!("{verb} {}: {what} by rule `{rule}`", path.display()),
        }
    }
}

/// The file rules of an effective policy, expanded against concrete anchors.
#[derive(Debug, Clone)]
pub struct FileRules {
    pub workspace: PathBuf,
    pub tmpdir: Option<PathBuf>,
    pub system: Vec<PathBuf>,
    pub read: Vec<PathBuf>,
    pub write: Vec<PathBuf>,
    pub deny: Vec<PathBuf>,
    pub protect: Vec<PathBuf>,
    pub state: Vec<PathBuf>,
    pub install: Vec<PathBuf>,
    pub cache: Vec<PathBuf>,
    /// Private scratch trees of a session (empty outside a session).
    pub private: Vec<PathBuf>,
}

/// Trees a `warden run` session replaces with private tmpfs mounts (besides `$HOME`); the
/// sandbox's plan masks exactly these.
pub const PRIVATE_TREES: &[&str] = &["/tmp", "/run", "/var/tmp", "/dev/shm"];

fn expand_all(a: &Anchors, list: &[String]) -> Vec<PathBuf> {
    list.iter().map(|p| a.expand(p)).collect()
}

fn under<'a>(path: &Path, roots: &'a [PathBuf]) -> Option<&'a PathBuf> {
    // On bytes where both are spelled plainly (a decision looks at every rule of the policy,
    // a hundred or more: `Path::starts_with` was ~170k instructions per path decided).
    let pb = path.as_os_str().as_encoded_bytes();
    let plain = crate::plain(pb);
    // Longest match first so that explanations name the most specific entry.
    roots
        .iter()
        .filter(|r| {
            let rb = r.as_os_str().as_encoded_bytes();
            if plain && crate::plain(rb) {
                crate::under_bytes(pb, rb)
            } else {
                path.starts_with(r)
            }
        })
        .max_by_key(|r| r.as_os_str().len())
}

impl FileRules {
    pub fn new(p: &Policy, anchors: &Anchors, tmpdir: Option<PathBuf>) -> FileRules {
        FileRules {
            workspace: normalize(&anchors.workspace),
            tmpdir,
            system: expand_all(anchors, &p.files.system),
            read: expand_all(anchors, &p.files.read),
            write: expand_all(anchors, &p.files.write),
            deny: expand_all(anchors, &p.files.deny),
            protect: expand_all(anchors, &p.files.protect),
            state: expand_all(anchors, &p.agent.state),
            install: expand_all(anchors, &p.agent.install),
            cache: expand_all(anchors, &p.files.cache),
            private: Vec::new(),
        }
    }

    /// The rules inside a `warden run` session: as [`FileRules::new`], plus the private
    /// trees (`$HOME`, `/tmp`, `/var/tmp`, `/dev/shm`) that the sandbox makes writable
    /// scratch space. `files.deny` and `files.protect` still win inside them. (`/run` is
    /// private too but not writable in the sandbox.)
    pub fn session(p: &Policy, anchors: &Anchors) -> FileRules {
        let mut r = FileRules::new(p, anchors, Some(PathBuf::from("/tmp")));
        r.private = PRIVATE_TREES
            .iter()
            .filter(|t| **t != "/run")
            .map(PathBuf::from)
            .chain(std::iter::once(normalize(&anchors.home)))
            .collect();
        r
    }

    /// Decides on a path. Both the path as given (normalised) and, where it exists, its
    /// canonical form are checked; the stricter answer wins, so symlinks and `..` cannot
    /// launder a denied path.
    pub fn decide(&self, path: &Path, access: Access) -> PathDecision {
        let lexical = normalize(path);
        let d1 = self.decide_one(&lexical, access);
        // The kernel resolves `..` after symlinks: judge the path as given, resolved by the
        // kernel where it exists, too.
        let kernel = std::fs::canonicalize(path).ok();
        let canonical = canonical_prefix(&lexical);
        for c in std::iter::once(canonical).chain(kernel) {
            if c != lexical {
                let d2 = self.decide_one(&c, access);
                if !d2.allowed {
                    return d2;
                }
            }
        }
        d1
    }

    fn decide_one(&self, path: &Path, access: Access) -> PathDecision {
        let deny = |rule, entry: Option<&PathBuf>| PathDecision {
            allowed: false,
            rule,
            entry: entry.cloned(),
        };
        let allow = |rule, entry: Option<&PathBuf>| PathDecision {
            allowed: true,
            rule,
            entry: entry.cloned(),
        };
        if let Some(e) = under(path, &self.deny) {
            return deny("files.deny", Some(e));
        }
        if access == Access::Write {
            if let Some(e) = under(path, &self.protect) {
                return deny("files.protect", Some(e));
            }
        }
        if path.starts_with(&self.workspace) {
            return allow("workspace", Some(&self.workspace));
        }
        if let Some(t) = &self.tmpdir {
            if path.starts_with(t) {
                return allow("tmpdir", Some(t));
            }
        }
        if let Some(e) = under(path, &self.state) {
            return allow("agent.state", Some(e));
        }
        if let Some(e) = under(path, &self.write) {
            return allow("files.write", Some(e));
        }
        // Writes to a cache land in the session's private layer (the host copy never changes).
        if let Some(e) = under(path, &self.cache) {
            return allow("files.cache", Some(e));
        }
        if let Some(e) = under(path, &self.private) {
            return allow("private", Some(e));
        }
        if access == Access::Write {
            return deny("default", None);
        }
        if let Some(e) = under(path, &self.install) {
            return allow("agent.install", Some(e));
        }
        if let Some(e) = under(path, &self.read) {
            return allow("files.read", Some(e));
        }
        if let Some(e) = under(path, &self.system) {
            return allow("files.system", Some(e));
        }
        deny("default", None)
    }
}

/// Canonicalises the longest existing prefix of `p` and re-appends the rest.
pub fn canonical_prefix(p: &Path) -> PathBuf {
    let mut existing = p.to_path_buf();
    let mut rest = Vec::new();
    loop {
        if let Ok(c) = std::fs::canonicalize(&existing) {
            let mut out = c;
            for r in rest.iter().rev() {
                out.push(r);
            }
            return out;
        }
        match (
            existing.file_name().map(|s| s.to_os_string()),
            existing.parent(),
        ) {
            (Some(name), Some(parent)) => {
                rest.push(name);
                existing = parent.to_path_buf();
            }
            _ => return p.to_path_buf(),
        }
    }
}
