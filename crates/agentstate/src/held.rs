//! Held changes: stored by the supervisor at exit in `<state>/held/<session>.json` (outside
//! anything the sandbox can see), and listed, shown, applied or dropped by `warden held`,
//! which a human runs outside the sandbox.
//!
//! Inside a sandbox the command refuses ([`inside_sandbox`]). That check is a courtesy; the
//! guarantee is structural: the held directory is not in the sandbox's view, and `apply`
//! writes only through a directory fd whose identity (device, inode) must be the home
//! directory the session's supervisor recorded. A sandbox's `$HOME` is a private tmpfs, so
//! an agent cannot pass that check by editing its environment.

use crate::filter::{self, parse_state, Change, StateError, MAX_STATE_BYTES};
use crate::fsat::Dir;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeldFile {
    /// Path relative to `$HOME` (`.claude.json`, `.claude/settings.json`).
    pub file: String,
    pub changes: Vec<Change>,
    /// Where the file really is when `$HOME` names its directory through a symlink.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub real: Option<RealPlace>,
}

/// A filtered file whose directory `$HOME` names through a symlink (`~/.claude ->
/// dotfiles/claude`, a dotfile manager's layout): the real directory the sandbox bound as the
/// agent's state (resolved and recorded by the plan before launch), its identity, and the
/// file's path beneath it. Every later open of it must find the same directory: nothing is
/// read or written through the symlink, which could point elsewhere by then.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RealPlace {
    pub root: String,
    pub dev: u64,
    pub ino: u64,
    pub rel: String,
}

impl RealPlace {
    /// The file's directory beneath the recorded root (None when absent) and its name. A
    /// root that is gone or another directory is refused.
    pub fn parent(&self, what: &str) -> Result<Option<(Dir, &str)>, StateError> {
        let root = Dir::open(Path::new(&self.root), &self.root)?;
        if (root.dev, root.ino) != (self.dev, self.ino) {
            return Err(StateError::Refused {
                what: what.into(),
                msg: format!(
                    "{} is no longer the directory the session started with",
                    self.root
                ),
            });
        }
        root.parent_of(&self.rel)
    }
}

/// The directory of the filtered file `rel` (relative to `$HOME`), at its recorded real place
/// when there is one, and the file's name.
pub fn host_parent<'a>(
    home: &Dir,
    rel: &'a str,
    real: Option<&'a RealPlace>,
) -> Result<Option<(Dir, &'a str)>, StateError> {
    match real {
        Some(r) => r.parent(&format!("~/{rel}")),
        None => home.parent_of(rel),
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeldRecord {
    pub version: u32,
    pub session: String,
    /// Unix seconds.
    pub created: u64,
    pub home: String,
    pub home_dev: u64,
    pub home_ino: u64,
    pub files: Vec<HeldFile>,
}

pub fn held_dir(state: &Path) -> PathBuf {
    state.join("held")
}

/// Session ids are warden's own (`<hex>-<hex>`): letters, digits, `-` and `_`, at most 64.
pub fn check_session_id(s: &str) -> Result<(), StateError> {
    if s.is_empty()
        || s.len() > 64
        || !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(StateError::Refused {
            what: format!("session {s:?}"),
            msg: "not a warden session id (letters, digits, '-', '_')".into(),
        });
    }
    Ok(())
}

fn held_dir_fd(state: &Path) -> Result<Dir, StateError> {
    std::fs::create_dir_all(state).map_err(|e| StateError::io(state.display().to_string(), e))?;
    Dir::open(state, &state.display().to_string())?.subdir("held")
}

/// Writes a held record (replacing one of the same session).
pub fn store(state: &Path, rec: &HeldRecord) -> Result<PathBuf, StateError> {
    check_session_id(&rec.session)?;
    let dir = held_dir_fd(state)?;
    let name = format!("{}.json", rec.session);
    let mut bytes = serde_json::to_vec_pretty(rec).map_err(|e| StateError::Shape {
        what: name.clone(),
        msg: format!("cannot serialise: {e}"),
    })?;
    bytes.push(b'\n');
    dir.replace_file(&name, "w", &bytes, None)?;
    Ok(held_dir(state).join(name))
}

/// Reads the held record of `session`.
pub fn load(state: &Path, session: &str) -> Result<HeldRecord, StateError> {
    check_session_id(session)?;
    let dir = held_dir_fd(state)?;
    let name = format!("{session}.json");
    let what = held_dir(state).join(&name).display().to_string();
    let f = dir
        .read_file(&name, MAX_STATE_BYTES)?
        .ok_or_else(|| StateError::Refused {
            what: format!("session {session}"),
            msg: "no held changes (see `warden held list`)".into(),
        })?;
    let rec: HeldRecord = serde_json::from_slice(&f.bytes).map_err(|source| StateError::Parse {
        what: what.clone(),
        source,
    })?;
    if rec.session != session {
        return Err(StateError::Shape {
            what,
            msg: format!("records session {:?}", rec.session),
        });
    }
    for hf in &rec.files {
        check_file_name(&hf.file)?;
    }
    Ok(rec)
}

fn check_file_name(name: &str) -> Result<(), StateError> {
    if crate::spec_of(name).is_none() {
        return Err(StateError::Refused {
            what: format!("held file {name:?}"),
            msg: "not a state file warden filters".into(),
        });
    }
    Ok(())
}

/// Every held record, oldest first; unreadable ones as errors.
pub fn list(state: &Path) -> Result<Vec<Result<HeldRecord, StateError>>, StateError> {
    if !held_dir(state).exists() {
        return Ok(Vec::new());
    }
    let dir = held_dir_fd(state)?;
    let mut out = Vec::new();
    for n in dir.names()? {
        let Some(session) = n.strip_suffix(".json") else {
            continue;
        };
        out.push(load(state, session));
    }
    out.sort_by_key(|r| r.as_ref().map(|r| r.created).unwrap_or(0));
    Ok(out)
}

/// Deletes the held record of `session`.
pub fn drop_held(state: &Path, session: &str) -> Result<(), StateError> {
    load(state, session)?;
    held_dir_fd(state)?.remove_file(&format!("{session}.json"))
}

/// Applies the held changes of `session` to the host files, then deletes the record. A
/// change whose key no longer has the value it had when the session started is a conflict:
/// nothing is applied unless `force`.
pub fn apply(
    state: &Path,
    home: &Path,
    session: &str,
    force: bool,
    busy: crate::session::Busy<'_>,
) -> Result<Vec<String>, StateError> {
    if let Some(why) = inside_sandbox() {
        return Err(StateError::Refused {
            what: "warden held apply".into(),
            msg: format!("{why}; run it from your own shell, outside warden"),
        });
    }
    let rec = load(state, session)?;
    let home_dir = Dir::open(home, "~")?;
    if (home_dir.dev, home_dir.ino) != (rec.home_dev, rec.home_ino) {
        return Err(StateError::Refused {
            what: "warden held apply".into(),
            msg: format!(
                "this home directory ({}) is not the one session {session} ran with ({}); a warden sandbox shows a private $HOME: run it from your own shell, outside warden",
                home.display(),
                rec.home
            ),
        });
    }
    // Nothing is written while another session's agent could swap the file under the
    // rename, or while another session locks it (attack review 80).
    for hf in &rec.files {
        let path = match &hf.real {
            Some(r) => Path::new(&r.root).join(&r.rel),
            None => home.join(&hf.file),
        };
        if let Some(why) = busy(&path) {
            return Err(StateError::Refused {
                what: format!("~/{}", hf.file),
                msg: format!("{why}; nothing was applied: apply it once that session has ended"),
            });
        }
    }
    let mut done = Vec::new();
    for hf in &rec.files {
        let what = format!("~/{}", hf.file);
        let (dir, name) = host_parent(&home_dir, &hf.file, hf.real.as_ref())?.ok_or_else(|| {
            StateError::Refused {
                what: what.clone(),
                msg: "its directory does not exist".into(),
            }
        })?;
        let _lock = crate::spec_of(&hf.file)
            .is_some_and(|s| s.kind == crate::Kind::ClaudeState)
            .then(|| dir.lock(name))
            .flatten();
        let host = dir.read_file(name, MAX_STATE_BYTES)?;
        let mut m: Map<String, Value> = match &host {
            Some(h) => parse_state(&what, &h.bytes)?,
            None => Map::new(),
        };
        let conflicts: Vec<String> = hf
            .changes
            .iter()
            .filter(|c| !filter::same(filter::get(&m, &c.path), c.before.as_ref()))
            .map(|c| c.display_path())
            .collect();
        if !conflicts.is_empty() && !force {
            return Err(StateError::Refused {
                what,
                msg: format!(
                    "changed since session {session} started: {}; nothing was applied (`--force` applies the session's values anyway)",
                    conflicts.join(", ")
                ),
            });
        }
        for c in &hf.changes {
            filter::set(&mut m, &c.path, c.after.clone());
            done.push(format!("{what}: {}", describe(c, false)));
        }
        let mut bytes =
            serde_json::to_vec_pretty(&Value::Object(m)).map_err(|e| StateError::Shape {
                what: what.clone(),
                msg: format!("cannot serialise: {e}"),
            })?;
        bytes.push(b'\n');
        dir.replace_file(name, session, &bytes, host.as_ref())?;
    }
    held_dir_fd(state)?.remove_file(&format!("{session}.json"))?;
    Ok(done)
}

/// Why this process looks like it runs inside a warden sandbox, if it does.
pub fn inside_sandbox() -> Option<String> {
    if std::env::var_os("WARDEN_SANDBOX").is_some_and(|v| !v.is_empty()) {
        return Some("WARDEN_SANDBOX is set: this is a warden sandbox".into());
    }
    // The sandbox's init makes this directory in every sandbox view; the agent cannot
    // remove it (not a Landlock write root) and no host has it.
    if std::fs::symlink_metadata("/run/.warden").is_ok() {
        return Some("/run/.warden exists: this is a warden sandbox's view".into());
    }
    None
}

const SECRET_FRAGMENTS: &[&str] = &["apikey", "token", "secret", "password"];

/// Keys named like secrets that hold a command or an answer instead (`apiKeyHelper`,
/// `awsAuthRefresh`, `customApiKeyResponses`): shown in full, or a human would approve a
/// command it cannot see (attack review 77: `apiKeyHelper` was shown as `<secret, …>`).
const NOT_SECRET_FRAGMENTS: &[&str] = &["helper", "command", "refresh", "export", "responses"];

fn redact(path: &[String], v: &Value) -> Value {
    let secret = path.last().is_some_and(|k| {
        let k = k.to_ascii_lowercase();
        SECRET_FRAGMENTS.iter().any(|f| k.contains(f))
            && !NOT_SECRET_FRAGMENTS.iter().any(|f| k.contains(f))
    });
    match v {
        Value::String(s) if secret => {
            let tail: String = s
                .chars()
                .rev()
                .take(4)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            Value::String(format!(
                "<secret, {} chars, ends {tail}>",
                s.chars().count()
            ))
        }
        _ => v.clone(),
    }
}

/// One line: `+ path = value`, `- path (was value)` or `~ path: before -> after`; values are
/// cut at 160 characters unless `full`.
pub fn describe(c: &Change, full: bool) -> String {
    let show = |v: &Value| {
        let s = redact(&c.path, v).to_string();
        if full || s.chars().count() <= 160 {
            s
        } else {
            format!("{}…", s.chars().take(160).collect::<String>())
        }
    };
    let p = c.display_path();
    match (&c.before, &c.after) {
        (None, Some(a)) => format!("+ {p} = {}", show(a)),
        (Some(b), None) => format!("- {p} (was {})", show(b)),
        (Some(b), Some(a)) => format!("~ {p}: {} -> {}", show(b), show(a)),
        (None, None) => format!("? {p}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    /// Attack review 77: a command under a secret-looking name is shown, a key is not.
    #[test]
    fn commands_named_like_secrets_are_shown_and_keys_are_redacted() {
        let v = Value::String("id > /tmp/x; echo sk-ant-0123456789".into());
        assert_eq!(redact(&["apiKeyHelper".into()], &v), v);
        assert_eq!(redact(&["awsAuthRefresh".into()], &v), v);
        let k = Value::String("sk-ant-0123456789abcd".into());
        assert_eq!(
            redact(&["primaryApiKey".into()], &k),
            Value::String("<secret, 21 chars, ends abcd>".into())
        );
        assert_ne!(redact(&["env".into(), "GITHUB_TOKEN".into()], &k), k);
    }

    #[test]
    fn a_real_place_is_used_only_while_it_is_the_recorded_directory() {
        let t = std::env::temp_dir().join(format!("warden-realplace-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&t);
        std::fs::create_dir_all(t.join("real")).unwrap();
        std::fs::write(t.join("real/settings.json"), "{}").unwrap();
        let m = std::fs::metadata(t.join("real")).unwrap();
        let place = RealPlace {
            root: t.join("real").to_str().unwrap().into(),
            dev: m.dev(),
            ino: m.ino(),
            rel: "settings.json".into(),
        };
        let (dir, name) = place.parent("~/.claude/settings.json").unwrap().unwrap();
        assert_eq!(name, "settings.json");
        assert!(dir.read_file(name, 100).unwrap().is_some());
        // Swapped for another directory, or for a symlink to one: refused.
        std::fs::rename(t.join("real"), t.join("old")).unwrap();
        std::fs::create_dir(t.join("real")).unwrap();
        assert!(place.parent("x").is_err());
        std::fs::remove_dir(t.join("real")).unwrap();
        std::os::unix::fs::symlink(t.join("old"), t.join("real")).unwrap();
        // The same inode through a symlink is still that directory (the plan recorded the
        // resolved path; what counts is the identity).
        assert!(place.parent("x").is_ok());
        std::fs::remove_file(t.join("real")).unwrap();
        std::fs::create_dir(t.join("elsewhere")).unwrap();
        std::os::unix::fs::symlink(t.join("elsewhere"), t.join("real")).unwrap();
        assert!(place.parent("x").is_err());
        let _ = std::fs::remove_dir_all(&t);
    }
}
