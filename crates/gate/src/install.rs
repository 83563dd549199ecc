//! `warden install` / `uninstall`: writes the hook into an agent's settings, idempotently,
//! keeping every other setting and the order of the user's keys. The default is the user's
//! own settings, also when run as root. Managed (machine-wide) settings are an explicit
//! choice, and `allowManagedHooksOnly` (which disables every user and project hook on the
//! machine) is set only when asked for ([`Options::managed_hooks_only`]). `uninstall`
//! removes what `install` adds: warden's hook entries, and `allowManagedHooksOnly` only
//! when asked the same way. Inside `warden run` these files are read-only. A document warden
//! cannot edit is an [`InstallError`].

use crate::protocol::Agent;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Managed,
    User,
    Project,
}

pub fn settings_path(
    agent: Agent,
    scope: Scope,
    root: &Path,
    home: &Path,
    project: &Path,
) -> PathBuf {
    match (agent, scope) {
        (Agent::Claude, Scope::Managed) => root.join("etc/claude-code/managed-settings.json"),
        (Agent::Claude, Scope::User) => home.join(".claude/settings.json"),
        (Agent::Claude, Scope::Project) => project.join(".claude/settings.json"),
        (Agent::Codex, Scope::Managed) => root.join("etc/codex/hooks.json"),
        (Agent::Codex, Scope::User) => home.join(".codex/hooks.json"),
        (Agent::Codex, Scope::Project) => project.join(".codex/hooks.json"),
        (Agent::Gemini, Scope::Managed) => root.join("etc/gemini-cli/settings.json"),
        (Agent::Gemini, Scope::User) => home.join(".gemini/settings.json"),
        (Agent::Gemini, Scope::Project) => project.join(".gemini/settings.json"),
    }
}

fn events(agent: Agent) -> &'static [&'static str] {
    match agent {
        Agent::Gemini => &["BeforeTool", "AfterTool", "SessionStart", "SessionEnd"],
        _ => &[
            "PreToolUse",
            "PostToolUse",
            "PostToolUseFailure",
            "SessionStart",
            "Stop",
            "SessionEnd",
            "SubagentStop",
        ],
    }
}

fn is_ours(h: &Value) -> bool {
    h.get("hooks").and_then(Value::as_array).is_some_and(|a| {
        a.iter().any(|x| {
            x.get("command")
                .and_then(Value::as_str)
                .is_some_and(|c| c.contains("warden") && c.contains(" hook "))
        })
    })
}

/// What `install`/`uninstall` may touch besides warden's own hook entries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// Claude Code, managed scope: set (install) or remove (uninstall)
    /// `allowManagedHooksOnly`.
    pub managed_hooks_only: bool,
}

/// The hook timeout each agent reads: Claude Code and Codex in seconds, Gemini CLI in
/// milliseconds. Both are 30 s, far beyond the hook's own deadline.
pub fn timeout_value(agent: Agent) -> u64 {
    match agent {
        Agent::Gemini => 30_000,
        _ => 30,
    }
}

/// A settings document warden cannot edit, or an option the scope does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InstallError {
    #[error(
        "allowManagedHooksOnly exists only in Claude Code's managed settings (--scope managed)"
    )]
    ManagedOnly,
    #[error("settings file is not a JSON object")]
    NotAnObject,
    #[error("`hooks` is not an object")]
    HooksNotAnObject,
    #[error("hooks.{0} is not an array")]
    EventNotAnArray(String),
}

/// Returns the new settings document.
pub fn install(
    doc: Value,
    agent: Agent,
    scope: Scope,
    warden: &str,
) -> Result<Value, InstallError> {
    install_with(doc, agent, scope, warden, Options::default())
}

/// [`install`] with options.
pub fn install_with(
    doc: Value,
    agent: Agent,
    scope: Scope,
    warden: &str,
    opts: Options,
) -> Result<Value, InstallError> {
    if opts.managed_hooks_only && !(agent == Agent::Claude && scope == Scope::Managed) {
        return Err(InstallError::ManagedOnly);
    }
    let mut doc = uninstall(doc)?;
    let obj = doc.as_object_mut().ok_or(InstallError::NotAnObject)?;
    let hooks = obj.entry("hooks").or_insert_with(|| json!({}));
    let hooks = hooks
        .as_object_mut()
        .ok_or(InstallError::HooksNotAnObject)?;
    for ev in events(agent) {
        let list = hooks.entry(ev.to_string()).or_insert_with(|| json!([]));
        let list = list
            .as_array_mut()
            .ok_or_else(|| InstallError::EventNotAnArray(ev.to_string()))?;
        let mut entry = json!({"hooks": [{"type": "command", "command": format!("{warden} hook {}", agent.name()), "timeout": timeout_value(agent)}]});
        if ev.contains("Tool") {
            entry["matcher"] = json!("*");
        }
        list.push(entry);
    }
    if opts.managed_hooks_only {
        obj.insert("allowManagedHooksOnly".into(), json!(true));
    }
    Ok(doc)
}

/// Removes warden's hook entries, and `allowManagedHooksOnly` when asked.
pub fn uninstall_with(doc: Value, opts: Options) -> Result<Value, InstallError> {
    let mut doc = uninstall(doc)?;
    if opts.managed_hooks_only {
        if let Some(o) = doc.as_object_mut() {
            o.remove("allowManagedHooksOnly");
        }
    }
    Ok(doc)
}

/// Removes warden's hook entries (and nothing else).
pub fn uninstall(mut doc: Value) -> Result<Value, InstallError> {
    if doc.is_null() {
        doc = json!({});
    }
    let obj = doc.as_object_mut().ok_or(InstallError::NotAnObject)?;
    if let Some(hooks) = obj.get_mut("hooks").and_then(Value::as_object_mut) {
        for (_, list) in hooks.iter_mut() {
            if let Some(a) = list.as_array_mut() {
                a.retain(|h| !is_ours(h));
            }
        }
        hooks.retain(|_, l| l.as_array().is_none_or(|a| !a.is_empty()));
    }
    if obj
        .get("hooks")
        .and_then(Value::as_object)
        .is_some_and(|h| h.is_empty())
    {
        obj.remove("hooks");
    }
    Ok(doc)
}
