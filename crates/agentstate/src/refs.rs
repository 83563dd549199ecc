//! Files the host's agent configuration runs or loads from a directory the agent can write.
//!
//! The host's own agent settings name commands: Claude Code's `statusLine.command` is often
//! `bash ~/.claude/statusline-command.sh`, a hook runs `~/.claude/scripts/x.py`, an MCP
//! server is `node ~/.gemini/mcp/server.js`, Codex's `notify` is `["python3",
//! "~/.codex/notify.py"]`. Those settings files are locked or filtered, but the files they
//! name live in the agent's writable state directory: an agent that appends to
//! `statusline-command.sh` runs code in the host's next plain `claude`.
//!
//! [`host_referenced`] (supervisor, before launch, before the agent exists) reads the host's
//! agent configuration as data ([`SOURCES`]), takes every path-like token of every string in
//! it (of the whole text when it does not parse: Gemini's settings may carry comments), and
//! returns the ones inside a writable root: the sandbox locks each read-only for the
//! session (a placeholder when absent). Inside an agent state directory a referenced file in
//! a subdirectory locks that whole top-level subdirectory (a script's siblings are its
//! modules), unless the subdirectory is the agent's own data ([`DATA_DIRS`]: only a script
//! named inside it is locked). Files the agent itself writes ([`AGENT_WRITES`]: its login
//! token, history) are data a command may read, never locked. A symlink (or a
//! path through one) cannot be locked by a mount: it is returned as `watch_only`, for the
//! integrity report.
//!
//! In the workspace (and `files.write` roots), only scripts are locked: a file with a script
//! extension or an execute bit, never a directory or a data file the agent edits.
//!
//! Limit: what a referenced script itself sources or imports from elsewhere is not followed.

use std::path::{Component, Path, PathBuf};

/// Claude Code's auto-memory of the project at `workspace`: `~/.claude/projects/<name>/memory`,
/// whose `MEMORY.md` the next Claude Code session there puts in its system prompt as
/// instructions ("These instructions OVERRIDE any default behavior"). Instructions the host's
/// agent obeys, like `~/.claude/CLAUDE.md`: the sandbox locks it (attack review 76). `None` for
/// a path that is not UTF-8 (Claude Code would name it differently).
pub fn claude_project_memory(home: &Path, workspace: &Path) -> Option<PathBuf> {
    let name = claude_project_dir_name(workspace.to_str()?);
    Some(
        home.join(".claude")
            .join("projects")
            .join(name)
            .join("memory"),
    )
}

/// Gemini CLI's auto-memory of the projects at `roots`: `~/.gemini/tmp/<name>/memory`, under
/// every name Gemini CLI could give the project. Its `ProjectRegistry` takes the name
/// `~/.gemini/projects.json` registers (`{"projects": {path: name}}`, every name `[a-z0-9-]+`,
/// or the whole registry is treated as empty); without one, a directory of `tmp/` or `history/`
/// whose `.project_root` marker names the project; without one, a new name: the project's base
/// name made a slug, with `-1`, `-2`, … past names taken by the registry or by another
/// project's marker. All of those are files an earlier session's agent could write: each is
/// read bounded and as data, a registry that cannot be read or parsed counts as empty (as
/// Gemini counts it), and the registered name and every marked one are all returned (Gemini
/// drops a registered name whose marker names another project); the new name only when
/// neither answers. What the agent changes during the session to move the next answer
/// elsewhere is the exit report's: it names a memory written under any name. Attack review 79 left the fail-open case: an agent that broke
/// `projects.json` had the next session lock no memory at all.
pub fn gemini_project_memories(home: &Path, roots: &[PathBuf]) -> Vec<PathBuf> {
    let gem = home.join(".gemini");
    let tmp = gem.join("tmp");
    let registry = gemini_registry(&gem.join("projects.json"));
    let markers = gemini_markers(&[tmp.clone(), gem.join("history")]);
    let mut names: Vec<String> = Vec::new();
    let add = |names: &mut Vec<String>, n: &str| {
        if !names.iter().any(|x| x == n) {
            names.push(n.to_string());
        }
    };
    for r in roots {
        let Some(p) = r.to_str() else {
            continue;
        };
        let mut found = false;
        if let Some(n) = registry.iter().find(|(k, _)| k == p).map(|(_, n)| n) {
            add(&mut names, n);
            // Gemini keeps a registered name only while no marker of it names another
            // project (attack review 81: a foreign marker sent it elsewhere).
            found = !markers
                .iter()
                .any(|(m, o)| m == n && !o.as_deref().is_some_and(|o| owner_is(o, p)));
        }
        for (n, owner) in &markers {
            if owner.as_deref().is_some_and(|o| owner_is(o, p)) {
                add(&mut names, n);
                found = true;
            }
        }
        if !found {
            if let Some(n) = gemini_new_name(p, &registry, &markers) {
                add(&mut names, &n);
            }
        }
    }
    names
        .into_iter()
        .map(|n| tmp.join(n).join("memory"))
        .collect()
}

/// Gemini's registry as it would load it: every entry, or none when the file is unreadable,
/// not JSON, or one name is not `[a-z0-9-]+` (Gemini's schema check resets it then).
fn gemini_registry(file: &Path) -> Vec<(String, String)> {
    let Ok(Some(text)) = read_bounded(file) else {
        return Vec::new();
    };
    let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
        return Vec::new();
    };
    let Some(projects) = v.get("projects").and_then(|p| p.as_object()) else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(projects.len());
    for (k, n) in projects {
        match n.as_str() {
            Some(n) if gemini_slug_ok(n) => out.push((k.clone(), n.to_string())),
            _ => return Vec::new(),
        }
    }
    out
}

fn gemini_slug_ok(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 255
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Most entries of `tmp/` and `history/` whose markers are read (a larger state directory is
/// left to the exit report, which names a memory written under any name).
const MAX_MARKERS: usize = 10_000;

/// `(name, owner)` of every directory of `bases` with a `.project_root` marker: the owner as
/// Gemini compares it (trimmed, without a trailing `/`), `None` when the marker is there but
/// unreadable (Gemini counts that as someone else's).
fn gemini_markers(bases: &[PathBuf]) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    let mut seen = 0;
    for base in bases {
        let Ok(rd) = std::fs::read_dir(base) else {
            continue;
        };
        for e in rd.flatten() {
            seen += 1;
            if seen > MAX_MARKERS {
                return out;
            }
            let Some(name) = e.file_name().to_str().map(str::to_string) else {
                continue;
            };
            let marker = base.join(&name).join(".project_root");
            let owner = match read_bounded(&marker) {
                Ok(None) if std::fs::symlink_metadata(&marker).is_err() => continue,
                Ok(Some(t)) => Some(t.trim().to_string()),
                Ok(None) | Err(_) => None,
            };
            out.push((name, owner));
        }
    }
    out
}

/// Whether a marker's text names `project`, as Gemini compares them: both through node's
/// `path.resolve`, a relative one against the directory `gemini` runs in (the project: a
/// marker holding `.` names whatever project reads it; attack review 81).
fn owner_is(owner: &str, project: &str) -> bool {
    node_resolve(project, owner) == node_resolve("/", project)
}

/// node's `path.resolve(cwd, p)` on POSIX: `p` against `cwd` unless absolute, `.` and empty
/// components dropped, `..` applied, no trailing `/`.
fn node_resolve(cwd: &str, p: &str) -> String {
    let full = if p.starts_with('/') {
        p.to_string()
    } else {
        format!("{cwd}/{p}")
    };
    let mut parts: Vec<&str> = Vec::new();
    for c in full.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

/// The name Gemini would claim for a project it finds neither in the registry nor by a marker.
fn gemini_new_name(
    project: &str,
    registry: &[(String, String)],
    markers: &[(String, Option<String>)],
) -> Option<String> {
    let base = Path::new(project)
        .file_name()
        .and_then(|b| b.to_str())
        .unwrap_or("project");
    let slug = gemini_slugify(base);
    for counter in 0..10_000u32 {
        let candidate = match counter {
            0 => slug.clone(),
            c => format!("{slug}-{c}"),
        };
        let taken = registry.iter().any(|(_, n)| *n == candidate)
            || markers.iter().any(|(n, o)| {
                *n == candidate && !o.as_deref().is_some_and(|o| owner_is(o, project))
            });
        if !taken {
            return Some(candidate);
        }
    }
    None
}

/// Gemini's `slugify`: lower case, every run of other characters one `-`, none at the ends,
/// `project` when nothing is left.
fn gemini_slugify(text: &str) -> String {
    let mut out = String::new();
    for ch in text.chars().flat_map(char::to_lowercase) {
        if ch.is_ascii_lowercase() || ch.is_ascii_digit() {
            out.push(ch);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let out = out.trim_matches('-');
    if out.is_empty() {
        "project".into()
    } else {
        out.into()
    }
}

/// The directory name Claude Code gives the project at `path` under `~/.claude/projects`:
/// every UTF-16 unit that is not an ASCII letter or digit becomes `-`; a name longer than
/// 200 units is cut there and given `-` and the path's 32-bit string hash
/// (`h = 31 * h + unit`, wrapping), absolute, in base 36.
pub fn claude_project_dir_name(path: &str) -> String {
    const MAX: usize = 200;
    let units: Vec<u16> = path.encode_utf16().collect();
    let name: String = units
        .iter()
        .map(|&u| match u8::try_from(u) {
            Ok(b) if b.is_ascii_alphanumeric() => b as char,
            _ => '-',
        })
        .collect();
    if units.len() <= MAX {
        return name;
    }
    let h = units.iter().fold(0i32, |h, &u| {
        h.wrapping_shl(5).wrapping_sub(h).wrapping_add(u as i32)
    });
    format!("{}-{}", &name[..MAX], base36(i64::from(h).unsigned_abs()))
}

fn base36(mut n: u64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

/// Largest configuration file read (larger ones are skipped with a warning).
const MAX_CONFIG: u64 = 32 << 20;

/// Host configuration files whose strings name commands: (where, path relative to it,
/// format).
pub const SOURCES: &[(Base, &str, Format)] = &[
    (Base::Home, ".claude/settings.json", Format::Json),
    (Base::Home, ".claude/settings.local.json", Format::Json),
    // State with executable keys: only the command-bearing subtrees (project paths and
    // history mention many files the agent must keep writing).
    (Base::Home, ".claude.json", Format::ClaudeState),
    (Base::Home, ".gemini/settings.json", Format::Json),
    (Base::Home, ".codex/config.toml", Format::Toml),
    // The project's own settings (locked, but the scripts they run are ordinary files):
    // `$CLAUDE_PROJECT_DIR/.claude/hooks/fmt.sh` runs in the host's next `claude` there.
    (Base::Workspace, ".claude/settings.json", Format::Json),
    (Base::Workspace, ".claude/settings.local.json", Format::Json),
    (Base::Workspace, ".mcp.json", Format::Json),
    (Base::Workspace, ".gemini/settings.json", Format::Json),
    (Base::Workspace, ".codex/config.toml", Format::Toml),
];

/// What a [`SOURCES`] path is relative to; a workspace source's relative tokens
/// (`./x.sh`, `.claude/hooks/x.sh`, `$CLAUDE_PROJECT_DIR/x.sh`) are relative to the workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Base {
    Home,
    Workspace,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Toml,
    /// `~/.claude.json`: state with a few command-bearing keys (top-level `mcpServers`,
    /// `env`, `apiKeyHelper`; each project's `mcpServers` and `env`). Only those are read
    /// (typed, the rest skipped: the file holds megabytes of history naming files the agent
    /// keeps writing). One that does not parse names nothing: Claude Code cannot load it.
    ClaudeState,
}

#[derive(serde::Deserialize)]
struct ClaudeState {
    #[serde(rename = "mcpServers")]
    mcp_servers: Option<serde_json::Value>,
    env: Option<serde_json::Value>,
    #[serde(rename = "apiKeyHelper")]
    api_key_helper: Option<serde_json::Value>,
    projects: Option<std::collections::BTreeMap<String, ClaudeProject>>,
}

#[derive(serde::Deserialize)]
struct ClaudeProject {
    #[serde(rename = "mcpServers")]
    mcp_servers: Option<serde_json::Value>,
    env: Option<serde_json::Value>,
}

/// Top-level directories of an agent state directory that hold the agent's own data
/// (transcripts, todos, caches): never locked whole, only a referenced file inside them.
pub const DATA_DIRS: &[&str] = &[
    "projects",
    "todos",
    "tmp",
    "history",
    "sessions",
    "log",
    "logs",
    "shell-snapshots",
    "shell_snapshots",
    "statsig",
    "file-history",
    "debug",
    "ide",
    "session-env",
    "plans",
    "cache",
    "telemetry",
    "archived_sessions",
    "paste-cache",
    "image-cache",
];

/// Files at the top of a state directory the agent itself writes (tokens, history, ids): a
/// host command that reads them (a statusline showing usage reads `.credentials.json`) is
/// reading data; locking them would stop the agent refreshing its login.
pub const AGENT_WRITES: &[&str] = &[
    ".credentials.json",
    "auth.json",
    "oauth_creds.json",
    "google_accounts.json",
    "mcp-oauth-tokens.json",
    "history.jsonl",
    "installation_id",
    "user_id",
    "projects.json",
    "state.json",
    "version.json",
    "models_cache.json",
];

/// Extensions of files inside a data directory that are still locked when named: scripts.
const SCRIPT_EXT: &[&str] = &[
    "sh", "bash", "zsh", "fish", "py", "js", "mjs", "cjs", "ts", "rb", "pl", "php", "lua",
];

/// One path to lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Referenced {
    pub path: PathBuf,
    pub is_dir: bool,
    /// The configuration file that named it (`~/.claude/settings.json`).
    pub from: String,
    /// A symlink is on the way: a mount cannot lock it; the integrity report watches it.
    pub watch_only: bool,
}

/// Every path the host's agent configuration names inside `writable` (the session's real
/// writable roots, the workspace included), with `state` (the agent's state directories,
/// a subset) getting whole-subdirectory locks (see the module doc). Reads only; errors mean
/// "nothing found in that file" and are returned as warnings.
pub fn host_referenced(
    home: &Path,
    workspace: &Path,
    state: &[PathBuf],
    writable: &[PathBuf],
) -> (Vec<Referenced>, Vec<String>) {
    let mut out: Vec<Referenced> = Vec::new();
    let mut seen: std::collections::HashSet<PathBuf> = std::collections::HashSet::new();
    let mut warnings = Vec::new();
    for (base, rel, format) in SOURCES {
        // A user-level hook runs in the project too: `$CLAUDE_PROJECT_DIR` and a relative
        // path name the workspace whichever settings file holds the command (attack review
        // 97: `"$CLAUDE_PROJECT_DIR"/.claude/hooks/fmt.sh` in `~/.claude/settings.json` was
        // left writable).
        let (path, shown) = match base {
            Base::Home => (home.join(rel), format!("~/{rel}")),
            Base::Workspace => (
                workspace.join(rel),
                workspace.join(rel).display().to_string(),
            ),
        };
        let project = Some(workspace);
        let text = match read_bounded(&path) {
            Ok(Some(t)) => t,
            Ok(None) => continue,
            Err(e) => {
                warnings.push(format!(
                    "{shown}: {e}; files it names are not locked for this session"
                ));
                continue;
            }
        };
        let mut strings = Vec::new();
        match format {
            Format::Json => match serde_json::from_str::<serde_json::Value>(&text) {
                Ok(v) => json_strings(&v, &mut strings),
                // Gemini CLI reads settings with comments: then (and for any file that does
                // not parse) every path-like token of the whole text counts.
                Err(_) => strings.push(text.clone()),
            },
            Format::ClaudeState => {
                if let Ok(c) = serde_json::from_str::<ClaudeState>(&text) {
                    let projects = c.projects.unwrap_or_default();
                    let values = [c.mcp_servers, c.env, c.api_key_helper]
                        .into_iter()
                        .chain(projects.into_values().flat_map(|p| [p.mcp_servers, p.env]));
                    values
                        .flatten()
                        .for_each(|v| json_strings(&v, &mut strings));
                }
            }
            Format::Toml => match text.parse::<toml::Table>() {
                Ok(t) => t.values().for_each(|v| toml_strings(v, &mut strings)),
                Err(_) => strings.push(text.clone()),
            },
        }
        for s in &strings {
            let named = path_tokens(s, project)
                .into_iter()
                .filter_map(|tok| expand(&tok, home, project))
                .map(|p| (p, false));
            let run = command_paths(s, home, project)
                .into_iter()
                .chain(dynamic_tails(s, project))
                .map(|p| (p, true));
            for (p, script) in named.chain(run) {
                for r in lock_for(&p, state, writable, &shown, script, project) {
                    if seen.insert(r.path.clone()) {
                        out.push(r);
                    } else if !r.watch_only {
                        // A lock wins over an earlier string's watch of the same path.
                        if let Some(o) = out.iter_mut().find(|o| o.path == r.path && o.watch_only) {
                            *o = r;
                        }
                    }
                }
            }
            // (After the locks: a module `-m` runs that exists is locked, not only watched.)
            for m in python_modules(s, project) {
                if seen.insert(m.clone()) {
                    out.push(Referenced {
                        is_dir: m.extension().is_none_or(|e| e != "py"),
                        path: m,
                        from: shown.clone(),
                        watch_only: true,
                    });
                }
            }
        }
    }
    (collapse(out, writable), warnings)
}

/// Locks (one mount each) at most this many paths; past it, the paths are taken up to
/// their directories until they fit (attack review 98: a project's settings naming 20,000
/// scripts made the start take minutes). A directory locked holds every file in it: the
/// session can write less, never more.
const MAX_REFERENCED: usize = 256;

fn collapse(mut out: Vec<Referenced>, writable: &[PathBuf]) -> Vec<Referenced> {
    while out.len() > MAX_REFERENCED {
        let mut next: Vec<Referenced> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut moved = false;
        for r in out {
            // Up one level, unless that is a writable root itself (never locked whole) or
            // the path is watched only (a link on the way: its directory is not lockable
            // either).
            // Nor an agent data directory (`~/.claude/projects`: attack review 99).
            let up = r.path.parent().filter(|p| {
                !r.watch_only
                    && writable.iter().any(|w| p.starts_with(w) && p != w)
                    && !p
                        .file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| DATA_DIRS.contains(&n))
            });
            let r = match up {
                Some(p) => {
                    moved = true;
                    Referenced {
                        path: p.to_path_buf(),
                        is_dir: true,
                        from: r.from,
                        watch_only: false,
                    }
                }
                None => r,
            };
            if seen.insert(r.path.clone()) {
                next.push(r);
            }
        }
        out = next;
        if !moved {
            break;
        }
    }
    out
}

fn read_bounded(path: &Path) -> std::io::Result<Option<String>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    // Non-blocking: a FIFO put where a file was (`~/.gemini/projects.json` is the agent's to
    // write) would otherwise hold the next session's start until someone writes to it; it is
    // refused below as not a regular file.
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path);
    let f = match opened {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if !f.metadata()?.is_file() {
        return Ok(None);
    }
    let mut buf = Vec::new();
    f.take(MAX_CONFIG + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > MAX_CONFIG {
        return Err(std::io::Error::other(format!(
            "over {MAX_CONFIG} bytes, not read"
        )));
    }
    Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
}

/// Every string value.
fn json_strings(v: &serde_json::Value, out: &mut Vec<String>) {
    use serde_json::Value;
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| json_strings(x, out)),
        Value::Object(m) => m.values().for_each(|x| json_strings(x, out)),
        _ => {}
    }
}

fn toml_strings(v: &toml::Value, out: &mut Vec<String>) {
    match v {
        toml::Value::String(s) => out.push(s.clone()),
        toml::Value::Array(a) => a.iter().for_each(|x| toml_strings(x, out)),
        toml::Value::Table(t) => t.values().for_each(|x| toml_strings(x, out)),
        _ => {}
    }
}

/// Tokens of a command string that look like absolute or home-relative paths (and, in a
/// project's settings, project-relative ones: `$CLAUDE_PROJECT_DIR/x`, `./x`, `.claude/x`,
/// or a relative path that exists there). Drops quotes, then splits on white space, shell
/// punctuation, and on `=` (`--require=/p`, `X=/p cmd`).
pub fn path_tokens(s: &str, project: Option<&Path>) -> Vec<String> {
    // Quotes join what they quote with what follows (`"$CLAUDE_PROJECT_DIR"/x.sh`).
    // (A backslash too: `\"$CLAUDE_PROJECT_DIR/x.sh\"` nested in `bash -c "..."`.)
    let s: String = s
        .chars()
        .filter(|c| !matches!(c, '\'' | '"' | '\\'))
        .collect();
    // `${NAME}` as `$NAME`: braces split (JSON text with comments is scanned whole).
    let s = unbrace(&s);
    s.split(|c: char| {
        c.is_whitespace()
            || matches!(
                c,
                '`' | ';' | '&' | '|' | '(' | ')' | '=' | '<' | '>' | ',' | '[' | ']' | '{' | '}'
            )
    })
    .map(|t| t.trim_end_matches([':', '.']))
    .filter(|t| {
        t.starts_with('/')
            || t.starts_with("~/")
            || t.starts_with("$HOME/")
            || t.starts_with("${HOME}/")
            || (t.starts_with('~') && t.contains('/'))
            || env_prefix(t).is_some()
            || project.is_some_and(|ws| {
                PROJECT_VARS.iter().any(|v| t.starts_with(v))
                    || ((t.starts_with("./")
                        || t.starts_with(".claude/")
                        || t.starts_with(".gemini/")
                        || t.starts_with(".codex/")
                        || (t.contains('/') && std::fs::symlink_metadata(ws.join(t)).is_ok()))
                        && !t.contains("://"))
            })
    })
    .map(str::to_string)
    .collect()
}

/// `${NAME}` (an identifier inside) as `$NAME`; anything else as it is.
fn unbrace(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        match after.find('}') {
            Some(j)
                if j > 0
                    && after[..j]
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_') =>
            {
                out.push('$');
                out.push_str(&after[..j]);
                rest = &after[j + 1..];
            }
            _ => {
                out.push_str("${");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Variables Claude Code and Gemini CLI set to the project directory for hooks.
const PROJECT_VARS: &[&str] = &[
    "$CLAUDE_PROJECT_DIR/",
    "${CLAUDE_PROJECT_DIR}/",
    "$GEMINI_PROJECT_DIR/",
    "${GEMINI_PROJECT_DIR}/",
];

/// The token as an absolute, lexically normal path (`..` resolved), or None.
fn expand(tok: &str, home: &Path, project: Option<&Path>) -> Option<PathBuf> {
    let raw = if let Some(r) = tok
        .strip_prefix("~/")
        .or_else(|| tok.strip_prefix("$HOME/"))
        .or_else(|| tok.strip_prefix("${HOME}/"))
    {
        home.join(r)
    } else if tok.starts_with('/') {
        PathBuf::from(tok)
    } else if let Some((value, rest)) = env_prefix(tok) {
        PathBuf::from(value).join(rest)
    } else if let Some(r) = tok.strip_prefix('~') {
        let (user, rest) = r.split_once('/')?;
        warden_sys::user_home(user)?.join(rest)
    } else {
        let ws = project?;
        let r = PROJECT_VARS
            .iter()
            .find_map(|v| tok.strip_prefix(v))
            .unwrap_or(tok);
        ws.join(r)
    };
    let mut p = PathBuf::from("/");
    for c in raw.components() {
        match c {
            Component::Normal(n) => p.push(n),
            Component::ParentDir => {
                p.pop();
            }
            _ => {}
        }
    }
    (p != Path::new("/")).then_some(p)
}

/// `$VAR/rest` or `${VAR}/rest` with `VAR` set in warden's (the host user's) environment
/// to an absolute path: (its value, rest). `$XDG_CONFIG_HOME/../.claude/x.sh` reaches the
/// same file as `~/.claude/x.sh`.
fn env_prefix(tok: &str) -> Option<(String, &str)> {
    let r = tok.strip_prefix('$')?;
    let (name, rest) = match r.strip_prefix('{') {
        Some(b) => {
            let (n, rest) = b.split_once('}')?;
            (n, rest.strip_prefix('/')?)
        }
        None => r.split_once('/')?,
    };
    // The project variables are the workspace's, whatever warden's environment says.
    if name.is_empty()
        || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        || name == "CLAUDE_PROJECT_DIR"
        || name == "GEMINI_PROJECT_DIR"
    {
        return None;
    }
    let v = std::env::var(name).ok().filter(|v| v.starts_with('/'))?;
    Some((v, rest))
}

/// Interpreters whose next non-option word is a script they run, whatever its name or mode.
const INTERPRETERS: &[&str] = &[
    "sh", "bash", "zsh", "dash", "ksh", "fish", "python", "python2", "python3", "node", "deno",
    "bun", "ruby", "perl", "php", "lua", "Rscript", "pwsh", "tsx", "ts-node", "source", ".",
];

/// Paths a command names beyond [`path_tokens`], resolved against the directory it would run
/// in: the script an interpreter runs (`python3 tools/fmt-hook`, extension or not), and bare
/// names after a `cd DIR &&` (`cd ~/.claude && bash stop-hook.sh`). Returned with `true`:
/// lock even when not executable.
fn command_paths(s: &str, home: &Path, project: Option<&Path>) -> Vec<PathBuf> {
    let clean: String = s
        .chars()
        .filter(|c| !matches!(c, '\'' | '"' | '\\'))
        .collect();
    let resolve = |w: &str, dir: Option<&Path>| -> Option<PathBuf> {
        if w.starts_with('/') || w.starts_with('~') || w.starts_with('$') {
            return expand(w, home, project);
        }
        let base = dir.or(project)?;
        expand(&base.join(w).to_string_lossy(), home, project)
    };
    let mut out = Vec::new();
    // The directory a `cd` went to, for the rest of the command line.
    let mut dir: Option<PathBuf> = None;
    // One simple command at a time: an interpreter's arguments end at `;`, `&&`, `|`.
    for segment in clean.split([';', '&', '|', '(', ')', '`', '\n']) {
        let words: Vec<&str> = segment.split_whitespace().collect();
        let mut i = 0;
        while i < words.len() {
            let w = words[i];
            let name = w.rsplit('/').next().unwrap_or(w);
            if (w == "cd" || w == "pushd") && i + 1 < words.len() {
                dir = resolve(words[i + 1], None).filter(|d| d.is_dir());
                i += 2;
                continue;
            }
            // A search path set for the command (`PATH=$CLAUDE_PROJECT_DIR/.venv/bin:$PATH
            // python x.py`, `PYTHONPATH=tools`): each directory of it is code the command
            // runs or imports (attack review 97). (An absent one is not made a placeholder:
            // that would stop the agent creating it; what appears there is the integrity
            // report's.)
            if let Some((var, value)) = w.split_once('=') {
                if SEARCH_PATHS.contains(&var) {
                    out.extend(
                        value
                            .split(':')
                            .filter(|e| !e.is_empty() && (e.contains('/') || !e.starts_with('$')))
                            .filter_map(|e| resolve(e, dir.as_deref()))
                            .filter(|d| d.is_dir()),
                    );
                }
                i += 1;
                continue;
            }
            // A project runner uses the project's own environment (`uv run x.py`: `.venv`).
            if RUNNERS.contains(&name) && words.get(i + 1) == Some(&"run") {
                out.extend(
                    project
                        .filter(|p| p.join(".venv/pyvenv.cfg").is_file())
                        .map(|p| p.join(".venv/bin/python")),
                );
            }
            let interp = INTERPRETERS.contains(&name)
                || name.starts_with("python3.")
                || (RUNNERS.contains(&name) && words.get(i + 1) == Some(&"run"));
            if !interp {
                // A name in the directory a `cd` went to (`cd ~/.claude && ./x.sh`, `x.sh`,
                // `cd .venv && bin/python ../x.py`).
                if let Some(d) = &dir {
                    let relative = !w.starts_with(['/', '~', '$', '-']);
                    if let Some(p) = relative.then(|| resolve(w, Some(d))).flatten() {
                        if std::fs::symlink_metadata(&p).is_ok_and(|m| !m.is_dir()) {
                            out.push(p);
                        }
                    }
                }
                i += 1;
                continue;
            }
            // The interpreter itself, named by a path (`cd .venv && bin/python x.py`).
            if w.contains('/') {
                out.extend(resolve(w, dir.as_deref()));
            }
            // Every script-like file among its arguments (`python3 -W ignore hook.py`,
            // `node -r ./pre.js x.js`, `uv run --with x hook.py`: attack review 98), an
            // argument that is not one a data file the command reads.
            for a in &words[i + 1..] {
                if a.starts_with('-') || a.contains('=') {
                    continue;
                }
                if let Some(p) = resolve(a, dir.as_deref()) {
                    if runnable_file(&p) && std::fs::symlink_metadata(&p).is_ok() {
                        out.push(p);
                    }
                }
            }
            let mut j = i + 1;
            let mut command_string = false;
            while j < words.len() && (words[j].starts_with('-') || words[j] == "run") {
                let opt = words[j];
                // `bash -c 'source .venv/bin/activate && …'`, `sh -ec …`, `python3 -c`:
                // what follows is a command, read as one, not a script's name.
                command_string |= opt.starts_with('-')
                    && !opt.starts_with("--")
                    && (opt.contains('c') || opt == "-e" || opt == "-p");
                // `python3 -m tools.hook`: the package `tools` (or module `tools.py`) where
                // the command runs (attack review 98).
                if opt == "-m" {
                    if let Some(top) = words.get(j + 1).and_then(|m| m.split('.').next()) {
                        let pkg = resolve(top, dir.as_deref());
                        let module = resolve(&format!("{top}.py"), dir.as_deref());
                        out.extend(pkg.filter(|p| p.is_dir()));
                        out.extend(module.filter(|p| p.is_file()));
                    }
                    command_string = true;
                }
                // Options that take the next word (`-W ignore`, `-X utf8`, `-r mod`,
                // `--with pkg`): skipped with it.
                if OPTION_ARGS.contains(&opt) {
                    j += 1;
                }
                j += 1;
            }
            if command_string {
                i = j;
                continue;
            }
            match words.get(j) {
                // `uv run python x.py`: the next word is an interpreter: read it as one.
                Some(next) if INTERPRETERS.contains(next) || next.starts_with("python3.") => {
                    i = j;
                    continue;
                }
                Some(next) => out.extend(resolve(next, dir.as_deref())),
                None => {}
            }
            i = j + 1;
        }
    }
    out
}

/// Paths a command computes in the shell, after a `$(...)`, a `${VAR:-...}` or a variable
/// warden cannot know (`"$(git rev-parse --show-toplevel)"/scripts/a.sh`,
/// `${CLAUDE_PROJECT_DIR:-.}/x.sh`, `ROOT=...; $ROOT/x.sh`: attack review 99): the rest of
/// the path, taken from the project (where such a hook runs and what it computes), when a
/// script-like file is there.
fn dynamic_tails(s: &str, project: Option<&Path>) -> Vec<PathBuf> {
    let Some(ws) = project else {
        return Vec::new();
    };
    let text: String = s
        .chars()
        .filter(|c| !matches!(c, '\'' | '"' | '\\'))
        .collect();
    let mut out = Vec::new();
    for piece in text
        .split(|c: char| c.is_whitespace() || matches!(c, ';' | '&' | '|' | '`' | '<' | '>' | ','))
    {
        let b = piece.as_bytes();
        for i in 1..b.len() {
            if b[i] != b'/' {
                continue;
            }
            let dynamic = matches!(b[i - 1], b')' | b'}') || {
                let mut k = i;
                while k > 0 && (b[k - 1].is_ascii_alphanumeric() || b[k - 1] == b'_') {
                    k -= 1;
                }
                k < i && k > 0 && b[k - 1] == b'$'
            };
            if !dynamic {
                continue;
            }
            let tail = piece[i + 1..].trim_end_matches([')', '}']);
            if tail.is_empty() || tail.contains('$') {
                continue;
            }
            if let Some(p) = expand(&ws.join(tail).to_string_lossy(), Path::new("/"), None) {
                if p.starts_with(ws) && runnable_file(&p) && std::fs::symlink_metadata(&p).is_ok() {
                    out.push(p);
                }
            }
        }
    }
    out
}

/// What a Python started by the command imports from its working directory (the project,
/// or where a `cd` went), which comes first on `sys.path` for `-c` and `-m`: `import json`
/// in `python3 -c "..."` imports a planted `json.py` (attack review 99), `-m black` a planted
/// `black/`. Each `X.py` and `X/` there is watched for the integrity report (present or not:
/// locking an existing package would stop the agent editing its own project, a placeholder
/// `X.py` would shadow the host's real module).
fn python_modules(s: &str, project: Option<&Path>) -> Vec<PathBuf> {
    if !s.contains("python") {
        return Vec::new();
    }
    let text: String = s
        .chars()
        .map(|c| {
            if matches!(c, '\'' | '"' | '\\' | ';' | '(' | ')' | '&' | '|') {
                ' '
            } else {
                c
            }
        })
        .collect::<String>()
        .replace(',', " , ");
    let words: Vec<&str> = text.split_whitespace().collect();
    // The names of an `import a, b as c` list starting at `j`, and where it ends.
    let list = |mut j: usize, names: &mut Vec<String>, keep: bool| -> usize {
        while let Some(w) = words.get(j) {
            if keep {
                names.push(w.to_string());
            }
            j += 1;
            if words.get(j) == Some(&"as") {
                j += 2;
            }
            if words.get(j) == Some(&",") {
                j += 1;
            } else {
                break;
            }
        }
        j
    };
    let mut names: Vec<String> = Vec::new();
    let mut i = 0;
    while i < words.len() {
        match words[i] {
            "-m" => {
                names.extend(words.get(i + 1).map(|w| w.to_string()));
                i += 2;
            }
            // `from a.b import c, d`: the module `a` (its names are attributes of it).
            "from" => {
                names.extend(words.get(i + 1).map(|w| w.to_string()));
                i += 2;
                if words.get(i) == Some(&"import") {
                    i = list(i + 1, &mut names, false);
                }
            }
            "import" => i = list(i + 1, &mut names, true),
            _ => i += 1,
        }
    }
    let mut dirs: Vec<PathBuf> = project.map(Path::to_path_buf).into_iter().collect();
    let words_all: Vec<&str> = s
        .split(|c: char| c.is_whitespace() || matches!(c, ';' | '&' | '|'))
        .collect();
    for w in words_all.windows(2) {
        if w[0] == "cd" {
            let d = w[1].trim_matches(['\'', '"']);
            if let Some(d) = project.and_then(|p| {
                let d = d.replace("$CLAUDE_PROJECT_DIR", &p.to_string_lossy());
                let d = d.replace("${CLAUDE_PROJECT_DIR}", &p.to_string_lossy());
                expand(&p.join(d).to_string_lossy(), Path::new("/"), None)
            }) {
                dirs.push(d);
            }
        }
    }
    let mut out = Vec::new();
    for n in names {
        let top = n.split('.').next().unwrap_or("");
        if top.is_empty() || !top.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        for d in &dirs {
            for p in [d.join(format!("{top}.py")), d.join(top)] {
                if !out.contains(&p) {
                    out.push(p);
                }
            }
        }
    }
    out
}

/// Interpreter and runner options whose value is the next word.
const OPTION_ARGS: &[&str] = &[
    "-W",
    "-X",
    "-r",
    "--require",
    "--import",
    "--loader",
    "--experimental-loader",
    "-M",
    "--with",
    "--python",
    "-p",
    "--from",
    "--project",
    "--directory",
    "--env-file",
    "--extra",
    "--group",
    "--package",
    "--index",
    "--with-requirements",
    "--module",
];

/// Variables that make a command look for programs or modules in their directories.
const SEARCH_PATHS: &[&str] = &[
    "PATH",
    "PYTHONPATH",
    "NODE_PATH",
    "PERL5LIB",
    "RUBYLIB",
    "LD_LIBRARY_PATH",
];

/// Project runners whose `run` runs the command in the project's `.venv` (uv, and poetry,
/// pdm, pipenv, hatch, rye configured in-project).
const RUNNERS: &[&str] = &["uv", "poetry", "pdm", "pipenv", "hatch", "rye"];

/// What to lock for a referenced path `p`, if it lies inside a writable root; when a
/// symlink is on the way, also what it resolves to (once).
fn lock_for(
    p: &Path,
    state: &[PathBuf],
    writable: &[PathBuf],
    from: &str,
    script: bool,
    project: Option<&Path>,
) -> Vec<Referenced> {
    let mut out = Vec::new();
    // A path the host reaches through its own symlinks (`~/.claude -> dotfiles/claude` under
    // a profile that does not write `~/.claude`, the workspace `~/dotfiles`): where it lands,
    // locked too whatever locks the spelled path (a lock of `~/.claude/scripts` holds a link
    // in it, not the file the link names: attack review 59), a dangling link's landing
    // included (the agent could create it).
    let real = landing(p);
    // The `#!` line is read where the path lands (a hook script linked elsewhere).
    let script_at = real.clone();
    let landed = (real != p).then_some(real);
    let Some(r) = lock_one(p, state, writable, from, script)
        .or_else(|| lock_one(landed.as_ref()?, state, writable, from, script))
    else {
        return out;
    };
    if let Some(real) = landed.filter(|l| *l != r.path) {
        out.extend(lock_one(&real, state, writable, from, script));
    }
    // A script at the top of a state directory (`~/.claude/notify.js`): `require` looks in
    // `node_modules` beside it first. (Python's `sys.path[0]` is the script's directory too;
    // a module planted there is not locked: see the README.)
    let top_of_state = state
        .iter()
        .any(|s| p.parent() == Some(s.as_path()) && writable.contains(s));
    if top_of_state && r.path == p {
        if let Some(nm) = p.parent().map(|d| d.join("node_modules")) {
            out.extend(lock_one(&nm, state, writable, from, true).map(|mut x| {
                x.is_dir = true;
                x
            }));
        }
    }
    // A program of a Python virtual environment (`.venv/bin/python`, a console script
    // there): the interpreter reads `pyvenv.cfg`, a `python._pth` beside itself (which
    // replaces `sys.path`), and runs every `*.pth` and `sitecustomize` of its site-packages at
    // start, before the script it was given. Attack review 95: a `.pth` planted in the
    // workspace's venv ran at the next host `claude` start through a SessionStart hook
    // `.venv/bin/python .claude/hooks/start.py`, whose script and interpreter link were
    // locked; review 96: a `bin/python._pth` did with `pyvenv.cfg` and `lib/` locked. The
    // environment is locked whole (installing into it fails inside the session). A script
    // whose `#!` line names such a program counts too (review 96).
    let mut programs = vec![p.to_path_buf()];
    if script || runnable_file(p) {
        // A relative `#!` path is the kernel's to resolve from where the hook runs: the
        // project (attack review 97: `#!venv/bin/python`).
        programs.extend(
            shebang_program(&script_at).and_then(|s| match s.is_absolute() {
                true => Some(s),
                false => expand(&project?.join(s).to_string_lossy(), Path::new("/"), None),
            }),
        );
    }
    for prog in &programs {
        let venvs = venvs_of(prog);
        for v in &venvs {
            out.extend(lock_one(v, state, writable, from, true).map(|mut l| {
                l.is_dir |= !l.watch_only;
                l
            }));
        }
        if venvs.is_empty() && prog != p {
            // The interpreter a `#!` line names, when the agent could write it.
            out.extend(lock_one(prog, state, writable, from, true));
        }
    }
    out.insert(0, r);
    out
}

/// The Python virtual environment whose program (`X/bin/python`, a console script) or
/// program directory (`X/bin`, on a `PATH`) `p` is, spelled as `p` is and where its
/// directory lands (`link/bin/python` with `link -> real`: attack review 97 found `real`'s
/// modules writable).
fn venvs_of(p: &Path) -> Vec<PathBuf> {
    let bin = if p.file_name().is_some_and(|n| n == "bin") && p.is_dir() {
        p.to_path_buf()
    } else {
        match p.parent() {
            Some(b) => b.to_path_buf(),
            None => return Vec::new(),
        }
    };
    if bin.file_name().is_none_or(|n| n != "bin") {
        return Vec::new();
    }
    let real = landing(&bin);
    let mut out: Vec<PathBuf> = [bin.as_path(), real.as_path()]
        .into_iter()
        .filter_map(Path::parent)
        .filter(|v| v.join("pyvenv.cfg").is_file())
        .map(Path::to_path_buf)
        .collect();
    out.dedup();
    out
}

/// The program the `#!` line of the regular file `p` names, as written (a relative one is
/// the kernel's to resolve from the working directory; `#!/usr/bin/env NAME` names none:
/// `PATH` decides; `env` given a path runs it). A path an earlier session's agent could
/// have made: its last link is not followed and a FIFO is not waited on (read as root
/// before the session, it must neither block the start nor read elsewhere).
fn shebang_program(p: &Path) -> Option<PathBuf> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(p)
        .ok()?;
    if !f.metadata().ok()?.is_file() {
        return None;
    }
    let mut head = [0u8; 256];
    let n = f.read(&mut head).ok()?;
    let line = head[..n].strip_prefix(b"#!")?;
    let line = line.split(|&c| c == b'\n').next()?;
    let text = std::str::from_utf8(line).ok()?;
    let mut words = text.split_whitespace();
    let mut prog = words.next()?;
    // `#!/usr/bin/env /abs/python` (or `env -S /abs/python -u`) runs the path it is given.
    if prog.rsplit('/').next() == Some("env") {
        prog = words.find(|w| !w.starts_with('-') && w.contains('/'))?;
    }
    Some(PathBuf::from(prog))
}

/// Where `p` lands on the host: every symlink followed, a dangling one too (what it names
/// may not exist yet); from the first missing component on, the rest as spelled.
fn landing(p: &Path) -> PathBuf {
    let mut cur = p.to_path_buf();
    for _ in 0..40 {
        let mut base = cur.clone();
        let mut rest: Vec<std::ffi::OsString> = Vec::new();
        let real = loop {
            if let Ok(c) = std::fs::canonicalize(&base) {
                break c;
            }
            match (base.file_name().map(|n| n.to_os_string()), base.parent()) {
                (Some(n), Some(parent)) => {
                    rest.push(n);
                    base = parent.to_path_buf();
                }
                _ => return cur,
            }
        };
        let Some(first) = rest.pop() else {
            return real;
        };
        let next = real.join(&first);
        let mut out = match std::fs::read_link(&next) {
            // A dangling link: go on from what it names.
            Ok(t) => real.join(t),
            Err(_) => next,
        };
        for r in rest.iter().rev() {
            out.push(r);
        }
        if std::fs::symlink_metadata(real.join(&first)).is_err() {
            return out;
        }
        cur = out;
    }
    cur
}

fn lock_one(
    p: &Path,
    state: &[PathBuf],
    writable: &[PathBuf],
    from: &str,
    script: bool,
) -> Option<Referenced> {
    let root = writable
        .iter()
        .filter(|r| p.starts_with(r) && p != r.as_path())
        .max_by_key(|r| r.components().count())?;
    let rel = p.strip_prefix(root).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?.to_string();
    let in_state = state.iter().any(|s| s == root);
    let mut target = p.to_path_buf();
    if in_state && rel.components().count() > 1 && !DATA_DIRS.contains(&first.as_str()) {
        target = root.join(&first);
    }
    if in_state && DATA_DIRS.contains(&first.as_str()) {
        // The agent's own data: a directory is never locked whole, and a file in it only
        // when it is a script (a command reading a transcript reads data).
        let script = p
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| SCRIPT_EXT.contains(&e));
        if rel.components().count() == 1 || !script {
            return None;
        }
    }
    if in_state && rel.components().count() == 1 && AGENT_WRITES.contains(&first.as_str()) {
        return None;
    }
    if !in_state && !script && !runnable_file(p) {
        // The workspace is the agent's to edit: only a script a setting names is locked
        // (`./src` in `prettier --write ./src` stays writable; `Cargo.toml`, `package.json`
        // scripts and the like are in the integrity report).
        return None;
    }
    // A symlink on the way (or at the end) cannot be locked by a mount; a file where a
    // directory should be is what keeps the path from existing: lock that.
    let mut acc = root.clone();
    let mut watch_only = false;
    let comps: Vec<_> = target.strip_prefix(root).ok()?.components().collect();
    for (i, c) in comps.iter().enumerate() {
        acc.push(c);
        match std::fs::symlink_metadata(&acc) {
            Ok(m) if m.file_type().is_symlink() => {
                watch_only = true;
                break;
            }
            Ok(m) if !m.is_dir() && i + 1 < comps.len() => {
                target = acc.clone();
                break;
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    let is_dir = match std::fs::symlink_metadata(&target) {
        Ok(m) => {
            // A socket, fifo or device cannot be locked by a bind mount: watched only.
            watch_only |= !m.is_dir() && !m.is_file() && !m.file_type().is_symlink();
            m.is_dir()
        }
        Err(_) => target != p || !looks_like_file(&target),
    };
    Some(Referenced {
        path: target,
        is_dir,
        from: from.to_string(),
        watch_only,
    })
}

/// A script: an existing regular file with a script extension or an execute bit, or an
/// absent path with a script extension.
fn runnable_file(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let script = p
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| SCRIPT_EXT.contains(&e));
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.file_type().is_symlink() => true,
        Ok(m) => m.is_file() && (script || m.permissions().mode() & 0o111 != 0),
        Err(_) => script,
    }
}

/// An absent path is a file when its name has an extension (`x.sh`, `.env`).
fn looks_like_file(p: &Path) -> bool {
    p.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.contains('.'))
}

#[cfg(test)]
mod tests_commands {
    use super::*;

    /// Review round 3 (N2, N8, N9): what a command runs, however it is spelled.
    #[test]
    fn commands_name_what_they_run() {
        let d = std::env::temp_dir().join(format!("warden-refs-cmd-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let (home, ws) = (d.join("home"), d.join("ws"));
        std::fs::create_dir_all(home.join(".claude")).unwrap();
        std::fs::create_dir_all(ws.join("tools")).unwrap();
        std::fs::write(home.join(".claude/stop-hook.sh"), "x").unwrap();
        std::fs::write(ws.join("tools/fmt-hook"), "x").unwrap();
        let cd = command_paths(
            &format!("cd {}/.claude && bash stop-hook.sh", home.display()),
            &home,
            None,
        );
        assert!(cd.contains(&home.join(".claude/stop-hook.sh")), "{cd:?}");
        let py = command_paths(
            "python3 \"$CLAUDE_PROJECT_DIR\"/tools/fmt-hook --x",
            &home,
            Some(&ws),
        );
        assert!(py.contains(&ws.join("tools/fmt-hook")), "{py:?}");
        let rel = command_paths("sh tools/fmt-hook", &home, Some(&ws));
        assert!(rel.contains(&ws.join("tools/fmt-hook")), "{rel:?}");
        assert_eq!(
            expand("~root/.claude/x.sh", &home, None),
            Some(PathBuf::from("/root/.claude/x.sh"))
        );
        std::env::set_var("WARDEN_REFS_TEST_DIR", home.join(".config"));
        assert_eq!(
            expand("$WARDEN_REFS_TEST_DIR/../.claude/stop.sh", &home, None),
            Some(home.join(".claude/stop.sh"))
        );
        assert_eq!(
            path_tokens("bash ${WARDEN_REFS_TEST_DIR}/../x.sh", None),
            vec!["$WARDEN_REFS_TEST_DIR/../x.sh".to_string()]
        );
        let _ = std::fs::remove_dir_all(&d);
    }
}

#[cfg(test)]
mod tests_review99 {
    use super::*;

    /// What a `python3 -c`/`-m` hook imports from the project, however the list is spelled.
    #[test]
    fn modules_a_python_hook_imports_from_the_project() {
        let ws = Path::new("/ws");
        let m = python_modules(
            "python3 -c \"import json,sys as s; from tools.fmt import main\" && python3 -m black -q",
            Some(ws),
        );
        for name in ["json", "sys", "tools", "black"] {
            assert!(m.contains(&ws.join(format!("{name}.py"))), "{name}: {m:?}");
            assert!(m.contains(&ws.join(name)), "{name}: {m:?}");
        }
        assert!(
            !m.iter()
                .any(|p| p.ends_with("main.py") || p.ends_with("s.py")),
            "{m:?}"
        );
        assert!(python_modules("node -e 'import x'", Some(ws)).is_empty());
    }

    /// Paths computed in the shell are taken from the project when a script is there.
    #[test]
    fn computed_paths_resolve_from_the_project() {
        let d = std::env::temp_dir().join(format!("warden-tails-{}", std::process::id()));
        std::fs::create_dir_all(d.join("scripts")).unwrap();
        std::fs::write(d.join("scripts/a.sh"), "x").unwrap();
        let want = vec![d.join("scripts/a.sh")];
        for cmd in [
            "\"$(git rev-parse --show-toplevel)\"/scripts/a.sh",
            "${CLAUDE_PROJECT_DIR:-.}/scripts/a.sh",
            "ROOT=$(pwd); \"$ROOT/scripts/a.sh\"",
        ] {
            assert_eq!(dynamic_tails(cmd, Some(&d)), want, "{cmd}");
        }
        assert!(dynamic_tails("$(x)/../../etc/passwd", Some(&d)).is_empty());
        std::fs::remove_dir_all(&d).unwrap();
    }
}

#[cfg(test)]
mod tests_collapse {
    use super::*;

    /// Attack review 98: thousands of named scripts become their directory's one lock.
    #[test]
    fn many_references_collapse_to_their_directories() {
        let ws = PathBuf::from("/ws");
        let many: Vec<Referenced> = (0..1000)
            .map(|i| Referenced {
                path: ws.join(format!("h/x{i}.sh")),
                is_dir: false,
                from: "s".into(),
                watch_only: false,
            })
            .chain([Referenced {
                path: ws.join("fmt.sh"),
                is_dir: false,
                from: "s".into(),
                watch_only: false,
            }])
            .collect();
        let c = collapse(many, std::slice::from_ref(&ws));
        let paths: Vec<_> = c.iter().map(|r| r.path.clone()).collect();
        assert_eq!(paths, vec![ws.join("h"), ws.join("fmt.sh")]);
        assert!(c[0].is_dir);
    }
}

#[cfg(test)]
mod tests_shebang {
    use super::shebang_program;
    use std::path::PathBuf;

    /// The `#!` program of a regular file only: a link's or a FIFO's is not read (a FIFO
    /// would block the session's start); `env` with an absolute path counts.
    #[test]
    fn shebang_programs_are_read_from_regular_files_only() {
        let d = std::env::temp_dir().join(format!("warden-shebang-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let w = |n: &str, t: &str| {
            std::fs::write(d.join(n), t).unwrap();
            d.join(n)
        };
        let plain = w("a", "#!/ws/.venv/bin/python -u\nx\n");
        assert_eq!(
            shebang_program(&plain),
            Some(PathBuf::from("/ws/.venv/bin/python"))
        );
        let env = w("b", "#!/usr/bin/env -S /ws/env/bin/python -u\n");
        assert_eq!(
            shebang_program(&env),
            Some(PathBuf::from("/ws/env/bin/python"))
        );
        assert_eq!(shebang_program(&w("c", "#!/usr/bin/env python3\n")), None);
        assert_eq!(shebang_program(&w("e", "print(1)\n")), None);
        std::os::unix::fs::symlink(&plain, d.join("link")).unwrap();
        assert_eq!(
            shebang_program(&d.join("link")),
            None,
            "a link is not followed"
        );
        let fifo = std::ffi::CString::new(d.join("fifo").to_str().unwrap()).unwrap();
        // SAFETY: mkfifo with a valid C string.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        assert_eq!(
            shebang_program(&d.join("fifo")),
            None,
            "a FIFO is not waited on"
        );
        std::fs::remove_dir_all(&d).unwrap();
    }
}

#[cfg(test)]
mod tests {

    /// Claude Code's own names (computed with its function in node): letters and digits
    /// kept, every other UTF-16 unit `-` (a character outside the BMP is two), a long path
    /// cut at 200 and given its string hash in base 36.
    /// Gemini's name for a project, every way it finds one: the registry's (unless one entry
    /// is invalid: Gemini then drops the whole registry), a marked directory's, or the name a
    /// new registration claims (its base name as a slug, past taken ones). A registry that is
    /// broken, a FIFO, or absent still locks a memory: the one Gemini would use then.
    #[test]
    fn gemini_memories_follow_every_way_gemini_names_a_project() {
        use super::gemini_project_memories;
        let h = std::env::temp_dir().join(format!("warden-gemreg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&h);
        std::fs::create_dir_all(h.join(".gemini")).unwrap();
        let mem = |n: &str| h.join(".gemini/tmp").join(n).join("memory");
        let roots = [PathBuf::from("/w/My Proj"), PathBuf::from("/w/q")];
        // No registry: the names a first run claims.
        assert_eq!(
            gemini_project_memories(&h, &roots),
            vec![mem("my-proj"), mem("q")]
        );
        // A valid registry names them; a taken name moves the new one on.
        std::fs::write(
            h.join(".gemini/projects.json"),
            r#"{"projects": {"/w/My Proj": "p-1", "/x/q": "q"}}"#,
        )
        .unwrap();
        assert_eq!(
            gemini_project_memories(&h, &roots),
            vec![mem("p-1"), mem("q-1")]
        );
        // One invalid name: Gemini resets the registry, and so do we (fail open before).
        std::fs::write(
            h.join(".gemini/projects.json"),
            r#"{"projects": {"/w/My Proj": "p-1", "/w/q": "../../etc"}}"#,
        )
        .unwrap();
        assert_eq!(
            gemini_project_memories(&h, &roots),
            vec![mem("my-proj"), mem("q")]
        );
        // A marker names the project (in `history/` too); another project's marker on the
        // slug moves the new name on.
        for (base, name, owner) in [
            ("tmp", "old", "/w/My Proj"),
            ("history", "hist", "/w/My Proj/"),
            ("tmp", "q", "/elsewhere"),
        ] {
            let d = h.join(".gemini").join(base).join(name);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join(".project_root"), format!("{owner}\n")).unwrap();
        }
        let mut got = gemini_project_memories(&h, &roots);
        got.sort();
        assert_eq!(got, vec![mem("hist"), mem("old"), mem("q-1")]);
        // Attack review 81: a registered name whose marker names another project is dropped
        // by Gemini (so the other answers count), and a marker is compared as a path,
        // a relative one from the project (`.` names any project that reads it).
        std::fs::write(
            h.join(".gemini/projects.json"),
            r#"{"projects": {"/w/q": "qq"}}"#,
        )
        .unwrap();
        for (name, owner) in [
            ("qq", "/elsewhere"),
            ("dot", "."),
            ("dots", "/w/./x/../q//"),
        ] {
            let d = h.join(".gemini/tmp").join(name);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join(".project_root"), owner).unwrap();
        }
        let mut got = gemini_project_memories(&h, &[PathBuf::from("/w/q")]);
        got.sort();
        assert_eq!(got, vec![mem("dot"), mem("dots"), mem("qq")]);
        for name in ["qq", "dot", "dots"] {
            std::fs::remove_dir_all(h.join(".gemini/tmp").join(name)).unwrap();
        }
        // A FIFO where the registry was: not read, the markers still answer.
        std::fs::remove_file(h.join(".gemini/projects.json")).unwrap();
        let fifo =
            std::ffi::CString::new(h.join(".gemini/projects.json").to_str().unwrap()).unwrap();
        // SAFETY: mkfifo with a valid C string.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        let mut got = gemini_project_memories(&h, &roots);
        got.sort();
        assert_eq!(got, vec![mem("hist"), mem("old"), mem("q-1")]);
        let _ = std::fs::remove_dir_all(&h);
    }

    #[test]
    fn claude_project_names_match_claude_codes() {
        use super::{claude_project_dir_name, claude_project_memory};
        assert_eq!(
            claude_project_dir_name("/tmp/rA/home/proj"),
            "-tmp-rA-home-proj"
        );
        assert_eq!(
            claude_project_dir_name("/home/dev/my.proj \u{e9}\u{1d11e}"),
            "-home-dev-my-proj----"
        );
        let long = format!(
            "/home/dev/{}proj.\u{e9}",
            "very-long-directory-name_".repeat(9)
        );
        assert_eq!(
            claude_project_dir_name(&long),
            format!(
                "-home-dev-{}-very-long-direc-4wl1d5",
                "very-long-directory-name-".repeat(7).trim_end_matches('-')
            )
        );
        assert_eq!(
            claude_project_memory(Path::new("/h"), Path::new("/w/p")),
            Some(PathBuf::from("/h/.claude/projects/-w-p/memory"))
        );
    }
    use super::*;

    #[test]
    fn tokens() {
        assert_eq!(
            path_tokens("bash ~/.claude/statusline-command.sh", None),
            vec!["~/.claude/statusline-command.sh"]
        );
        assert_eq!(
            path_tokens(
                "NODE_OPTIONS=--require=$HOME/.claude/x.js node '/a/b c'",
                None
            ),
            vec!["$HOME/.claude/x.js", "/a/b"]
        );
        assert!(path_tokens("echo hi && ls", None).is_empty());
        assert_eq!(
            path_tokens("sh ${HOME}/.claude/a.sh", None),
            vec!["$HOME/.claude/a.sh"]
        );
        let ws = Path::new("/nonexistent-ws");
        assert_eq!(
            path_tokens(
                "node \"$CLAUDE_PROJECT_DIR\"/.claude/hooks/f.js ./x.sh a/b https://h/x",
                Some(ws)
            ),
            vec!["$CLAUDE_PROJECT_DIR/.claude/hooks/f.js", "./x.sh"]
        );
        assert_eq!(
            path_tokens("node $CLAUDE_PROJECT_DIR/.claude/hooks/f.js", Some(ws)),
            vec!["$CLAUDE_PROJECT_DIR/.claude/hooks/f.js"]
        );
    }

    #[test]
    fn finds_statusline_and_locks_subdirs() {
        let d = std::env::temp_dir().join(format!("warden-refs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let home = d.join("home");
        let claude = home.join(".claude");
        std::fs::create_dir_all(claude.join("scripts")).unwrap();
        std::fs::create_dir_all(claude.join("projects/p")).unwrap();
        std::fs::write(claude.join("statusline-command.sh"), "echo hi\n").unwrap();
        std::fs::write(
            claude.join("settings.json"),
            r#"{"statusLine":{"type":"command","command":"bash ~/.claude/statusline-command.sh"},
               "hooks":{"Stop":[{"hooks":[{"type":"command","command":"python3 $HOME/.claude/scripts/h.py; cat ~/.claude/projects/p/x.json ~/.claude/.credentials.json; sh ~/.claude/projects/p/y.sh"}]}]},
               "apiKeyHelper":"/usr/bin/true"}"#,
        )
        .unwrap();
        std::fs::create_dir_all(home.join(".codex")).unwrap();
        std::fs::write(
            home.join(".codex/config.toml"),
            "notify = [\"python3\", \"~/.codex/notify.py\"]\n",
        )
        .unwrap();
        std::fs::write(
            home.join(".claude.json"),
            r#"{"projects": {"/p": {"history": [{"display": "bash ~/.claude/old/x.sh"}],
                                    "mcpServers": {"m": {"command": "node",
                                                         "args": ["~/.claude/mcp/s.js"]}}}},
                "tipsHistory": {"~/.claude/tips/t.sh": 1}}"#,
        )
        .unwrap();
        let state = vec![claude.clone(), home.join(".codex")];
        let (r, w) = host_referenced(&home, &d.join("ws"), &state, &state);
        assert!(w.is_empty(), "{w:?}");
        let paths: Vec<_> = r.iter().map(|x| x.path.clone()).collect();
        assert!(
            paths.contains(&claude.join("statusline-command.sh")),
            "{r:?}"
        );
        assert!(paths.contains(&claude.join("scripts")), "{r:?}");
        assert!(!paths.contains(&claude.join("projects/p/x.json")), "{r:?}");
        assert!(!paths.contains(&claude.join(".credentials.json")), "{r:?}");
        assert!(paths.contains(&claude.join("projects/p/y.sh")), "{r:?}");
        assert!(paths.contains(&home.join(".codex/notify.py")), "{r:?}");
        // ~/.claude.json: a project's MCP server counts, its history does not.
        assert!(paths.contains(&claude.join("mcp")), "{r:?}");
        assert!(!paths.contains(&claude.join("old")), "{r:?}");
        assert!(!paths.contains(&claude.join("tips")), "{r:?}");
        assert!(!paths.iter().any(|p| p.starts_with("/usr")), "{r:?}");
        let sl = r.iter().find(|x| x.path.ends_with("scripts")).unwrap();
        assert!(sl.is_dir && !sl.watch_only);
        // A symlinked statusline: the link is watched, its target (in the state dir) locked.
        std::fs::write(claude.join("real-sl.sh"), "echo\n").unwrap();
        std::os::unix::fs::symlink("real-sl.sh", claude.join("sl.sh")).unwrap();
        std::fs::write(
            claude.join("settings.local.json"),
            r#"{"statusLine":{"command":"~/.claude/sl.sh"}}"#,
        )
        .unwrap();
        // Settings with comments (Gemini CLI accepts them) still count.
        std::fs::create_dir_all(home.join(".gemini")).unwrap();
        std::fs::write(
            home.join(".gemini/settings.json"),
            "{\n // mine\n \"mcpServers\": {\"m\": {\"command\": \"node\", \"args\": [\"~/.codex/m.js\"]}}}\n",
        )
        .unwrap();
        let (r, _) = host_referenced(&home, &d.join("ws"), &state, &state);
        let link = r.iter().find(|x| x.path == claude.join("sl.sh")).unwrap();
        assert!(link.watch_only, "{r:?}");
        let real = std::fs::canonicalize(claude.join("real-sl.sh")).unwrap();
        assert!(r.iter().any(|x| x.path == real && !x.watch_only), "{r:?}");
        assert!(
            r.iter().any(|x| x.path == home.join(".codex/m.js")),
            "{r:?}"
        );
        let _ = std::fs::remove_dir_all(&d);
    }
}
