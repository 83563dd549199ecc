//! The `[exec]` section: content-addressed allow/deny of executables and executable mappings.
//! Owned by the exec guard layer (`warden-execguard`), which resolves names to hashes.

use crate::append_unique;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecMode {
    Denylist,
    Allowlist,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecAction {
    Enforce,
    Audit,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecSection {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<ExecMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<ExecAction>,
    /// Program names, `sha256:<hex>` hashes, or `index:<path>` files.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
    /// Program names, `sha256:<hex>` hashes, or `index:<path>` files. Deny always wins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<String>,
    /// Allow exec of memfd and anonymous files (denied in enforce mode by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_memfd: Option<bool>,
    /// Allowlist mode: programs (names, `sha256:` hashes or paths, as in `allow`) that may
    /// make anonymous memory executable (JIT compilers), besides the built-in ones
    /// ([`crate::progrules::JIT_PROGRAMS`]). Any other program's anonymous or written-to
    /// executable memory is refused (`exec.anonymous_code`): code that comes from no file
    /// could be any program's. Denylist mode does not decide it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub jit: Vec<String>,
    /// Allowlist mode: an exec of unknown content waits for a human's answer
    /// (`warden approve`; `[approvals] timeout_secs`, then deny) instead of being denied at
    /// once. Seccomp backend only. Only the user's own policy may turn it on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ask_unknown: Option<bool>,
}

impl ExecSection {
    pub(crate) fn validate(&self) -> Result<(), crate::SectionError> {
        for (key, list) in [
            ("exec.allow", &self.allow),
            ("exec.deny", &self.deny),
            ("exec.jit", &self.jit),
        ] {
            for r in list {
                crate::progrules::check_entry(key, r)?;
            }
        }
        Ok(())
    }

    pub(crate) fn merge(&mut self, o: &ExecSection) {
        if o.mode.is_some() {
            self.mode = o.mode;
        }
        if o.action.is_some() {
            self.action = o.action;
        }
        if o.allow_memfd.is_some() {
            self.allow_memfd = o.allow_memfd;
        }
        if o.ask_unknown.is_some() {
            self.ask_unknown = o.ask_unknown;
        }
        append_unique(&mut self.allow, &o.allow);
        append_unique(&mut self.deny, &o.deny);
        append_unique(&mut self.jit, &o.jit);
    }

    /// Workspace documents may add denials, switch to allowlist and enforce, nothing else.
    /// Compared with the effective values: unset mode is denylist, unset action enforce,
    /// unset `allow_memfd` false.
    pub(crate) fn narrow(&mut self, o: &ExecSection) -> Result<(), crate::Widens> {
        if o.allow.iter().any(|a| !self.allow.contains(a)) {
            return Err("exec.allow".into());
        }
        if o.jit.iter().any(|a| !self.jit.contains(a)) {
            return Err("exec.jit".into());
        }
        if o.allow_memfd == Some(true) && !self.allow_memfd.unwrap_or(false) {
            return Err("exec.allow_memfd".into());
        }
        if o.ask_unknown == Some(true) && !self.ask_unknown.unwrap_or(false) {
            return Err("exec.ask_unknown".into());
        }
        if o.action == Some(ExecAction::Audit)
            && self.action.unwrap_or(ExecAction::Enforce) == ExecAction::Enforce
        {
            return Err("exec.action".into());
        }
        if o.mode == Some(ExecMode::Denylist)
            && self.mode.unwrap_or(ExecMode::Denylist) == ExecMode::Allowlist
        {
            return Err("exec.mode".into());
        }
        self.merge(o);
        Ok(())
    }
}
