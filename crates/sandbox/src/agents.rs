//! What a known agent must be told about running inside warden, shown to it as read-only
//! files of the sandbox's view (the host's files never change).
//!
//! Codex CLI: its own sandbox (bubblewrap, which needs a new user namespace) cannot start
//! inside warden's, so every command it runs fails ("No permissions to create new
//! namespace"). Under the `codex` profile, Codex sees its `config.toml` with
//! `sandbox_mode = "danger-full-access"` (top level and in each `[profiles.*]` that sets a
//! mode): warden is the sandbox, and one layer decides each action. Everything else of the
//! user's file (model, providers, hook trust) is kept.

use std::io::Read;
use std::path::{Path, PathBuf};

/// Files larger than this are not rewritten (a config file is a few KiB).
const MAX_CONFIG: u64 = 1 << 20;

/// A file shown read-only inside the sandbox with content warden supplies.
#[derive(Debug, Clone)]
pub struct View {
    pub path: PathBuf,
    pub content: String,
    /// Why (for `--dry-run`).
    pub why: &'static str,
}

/// The views for the agent a policy names (`agent.name`), and notes for the user when one
/// cannot be made.
pub fn views(agent: Option<&str>, home: &Path) -> (Vec<View>, Vec<String>) {
    match agent {
        Some("codex") => codex(home),
        _ => (Vec::new(), Vec::new()),
    }
}

fn codex(home: &Path) -> (Vec<View>, Vec<String>) {
    // CODEX_HOME moves the config; only a place under $HOME is handled (it is bound in as
    // the agent's state there).
    let rel = match std::env::var_os("CODEX_HOME").map(PathBuf::from) {
        Some(ch) => match ch.strip_prefix(home) {
            Ok(r) => r.join("config.toml"),
            Err(_) => {
                return (
                    Vec::new(),
                    vec![format!(
                        "CODEX_HOME={} is outside $HOME: set sandbox_mode = \"danger-full-access\" in its config.toml yourself (warden is Codex's sandbox)",
                        ch.display()
                    )],
                )
            }
        },
        None => PathBuf::from(".codex/config.toml"),
    };
    let path = home.join(&rel);
    let user = match read_beneath(home, &rel) {
        Ok(t) => t,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => String::new(),
        Err(e) => {
            return (
                Vec::new(),
                vec![format!(
                    "{} cannot be read safely ({e}); Codex's own sandbox will fail inside warden unless it runs with --sandbox danger-full-access",
                    path.display()
                )],
            )
        }
    };
    let mut notes = Vec::new();
    let hooks_rel = rel.with_file_name("hooks.json");
    if let Ok(hooks) = read_beneath(home, &hooks_rel) {
        let prefix = format!("{}:pre_tool_use:", home.join(&hooks_rel).display());
        if hooks.contains("hook codex") && !codex_trusts(&user, &prefix) {
            notes.push(format!(
                "Codex skips warden's hook in {} until you trust it, and it cannot save that trust from inside warden: run `codex` once outside warden and trust it in /hooks (the sandbox and the exec guard apply either way)",
                home.join(&hooks_rel).display()
            ));
        }
    }
    match codex_config(&user) {
        Ok(content) => (
            vec![View {
                path,
                content,
                why: "Codex: warden is the sandbox (sandbox_mode = \"danger-full-access\")",
            }],
            notes,
        ),
        // An invalid file is shown as it is: Codex reports the error itself.
        Err(_) => (Vec::new(), Vec::new()),
    }
}

/// Whether the Codex config records trust for a hook whose key starts with `prefix`
/// (`[hooks.state."<hooks.json>:pre_tool_use:<group>:<index>"] trusted_hash = ...`, what
/// `/hooks` writes). A hook changed since it was trusted is not detected here.
fn codex_trusts(config: &str, prefix: &str) -> bool {
    let Ok(t) = config.parse::<toml::Table>() else {
        return false;
    };
    t.get("hooks")
        .and_then(|h| h.get("state"))
        .and_then(toml::Value::as_table)
        .is_some_and(|st| {
            st.iter().any(|(k, v)| {
                k.starts_with(prefix)
                    && v.get("trusted_hash")
                        .and_then(toml::Value::as_str)
                        .is_some()
            })
        })
}

/// The user's Codex config with every sandbox mode set to `danger-full-access`.
pub fn codex_config(user: &str) -> Result<String, toml::de::Error> {
    let mut t: toml::Table = user.parse()?;
    let full = toml::Value::String("danger-full-access".into());
    t.insert("sandbox_mode".into(), full.clone());
    if let Some(toml::Value::Table(profiles)) = t.get_mut("profiles") {
        for (_, p) in profiles.iter_mut() {
            if let toml::Value::Table(p) = p {
                if p.contains_key("sandbox_mode") {
                    p.insert("sandbox_mode".into(), full.clone());
                }
            }
        }
    }
    let mut out = String::from(
        "# Shown by warden (read-only): warden is this session's sandbox. Your file is unchanged.\n",
    );
    out.push_str(&toml::to_string(&t).unwrap_or_default());
    Ok(out)
}

/// Reads `rel` under `base` without following any symlink (the agent may write under
/// `base`): openat2 with RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS, a
/// regular file of at most [`MAX_CONFIG`] bytes.
fn read_beneath(base: &Path, rel: &Path) -> std::io::Result<String> {
    let dir = std::fs::File::open(base)?;
    if rel.as_os_str().as_encoded_bytes().contains(&0) {
        return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
    }
    use warden_sys::OFlags;
    let f = std::fs::File::from(warden_sys::open_beneath(
        &dir,
        rel,
        OFlags::RDONLY | OFlags::NOCTTY | OFlags::NONBLOCK,
        warden_sys::Mode::empty(),
    )?);
    let md = f.metadata()?;
    if !md.is_file() || md.len() > MAX_CONFIG {
        return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
    }
    let mut s = String::new();
    f.take(MAX_CONFIG).read_to_string(&mut s)?;
    Ok(s)
}

/// A configuration file's text: a regular file (not followed if the last component is a
/// symlink) of at most [`MAX_CONFIG`] bytes, or `None`.
pub fn read_config(path: &Path) -> Option<String> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NOCTTY | libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    let md = f.metadata().ok()?;
    if !md.is_file() || md.len() > MAX_CONFIG {
        return None;
    }
    let mut b = Vec::new();
    f.take(MAX_CONFIG).read_to_end(&mut b).ok()?;
    // Not UTF-8 (a name in another encoding): judged and shown as text all the same.
    Some(
        String::from_utf8(b).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codex_config_keeps_the_users_keys() {
        let out = codex_config(
            "model = \"o3\"\nsandbox_mode = \"workspace-write\"\n[profiles.strict]\nsandbox_mode = \"read-only\"\n[profiles.other]\nmodel = \"x\"\n[hooks.state.\"k\"]\ntrusted_hash = \"sha256:1\"\n",
        )
        .unwrap();
        let t: toml::Table = out.parse().unwrap();
        assert_eq!(t["sandbox_mode"].as_str(), Some("danger-full-access"));
        assert_eq!(t["model"].as_str(), Some("o3"));
        assert_eq!(
            t["profiles"]["strict"]["sandbox_mode"].as_str(),
            Some("danger-full-access")
        );
        assert!(t["profiles"]["other"].get("sandbox_mode").is_none());
        assert_eq!(
            t["hooks"]["state"]["k"]["trusted_hash"].as_str(),
            Some("sha256:1")
        );
        assert!(codex_config("not = [toml").is_err());
        let empty: toml::Table = codex_config("").unwrap().parse().unwrap();
        assert_eq!(empty["sandbox_mode"].as_str(), Some("danger-full-access"));
    }

    #[test]
    fn hook_trust_is_found_by_key() {
        let c = "[hooks.state.\"/h/.codex/hooks.json:pre_tool_use:0:0\"]\ntrusted_hash = \"sha256:1\"\n";
        assert!(codex_trusts(c, "/h/.codex/hooks.json:pre_tool_use:"));
        assert!(!codex_trusts(c, "/other/.codex/hooks.json:pre_tool_use:"));
        assert!(!codex_trusts("", "/h/.codex/hooks.json:pre_tool_use:"));
    }

    #[test]
    fn symlinked_config_is_not_followed() {
        let d = std::env::temp_dir().join(format!("warden-agents-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join(".codex")).unwrap();
        std::fs::write(d.join("secret"), "s").unwrap();
        std::os::unix::fs::symlink(d.join("secret"), d.join(".codex/config.toml")).unwrap();
        let e = read_beneath(&d, Path::new(".codex/config.toml")).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ELOOP));
        let _ = std::fs::remove_dir_all(&d);
    }
}
