//! Judging one tool call against the shared policy: file tools against `[files]`
//! (the same [`FileRules`] the sandbox enforces), shell commands against `[exec]` (the same
//! content hashes the exec guard enforces, resolved through PATH, the cwd, `/proc/self/root`
//! and symlinks; [`warden_policy::progrules`], with the identity the caller passes in), web
//! tools against `[network]` (the host rules the proxy enforces, [`warden_policy::netrules`]), MCP tools
//! against `[gate] mcp_allow`/`mcp_deny`, and everything unresolvable against
//! `[gate] dynamic`/`unknown_tool` (where `ask` becomes `deny` in headless mode).
//!
//! Inside a `warden run` session the file rules are [`FileRules::session`], the same view
//! the sandbox enforces (its private `$HOME`, `/tmp`, ... are scratch space), so each
//! action gets one decision in every layer. Paths are resolved before judging: `~`,
//! `$HOME`/`${HOME}`, `/proc/self/cwd` (the tool's cwd), `/proc/self/root`,
//! `/proc/<pid>/cwd|root` (read from /proc), `.` and `..`; the canonical form is judged
//! too. URLs are parsed by a WHATWG parser (the `url` crate), exactly as the agent's fetch
//! will read them. A program is hashed only when its size is a denied file's (or a denial's
//! size is unknown, or in allowlist mode): content of another size cannot be denied
//! content. One that must be hashed and is larger than [`MAX_HASH_BYTES`] is not: the call
//! is denied with a message (hashing it would outlast the agent's hook timeout).

// Deferred lints (issue 17): this file was being rewritten in parallel; fix and remove.
#![allow(clippy::double_ended_iterator_last)]

use crate::shell::{analyze, Analysis};
use serde_json::Value;
use std::path::{Path, PathBuf};
use warden_policy::env::glob_match;
use warden_policy::files::{Access, FileRules};
use warden_policy::gate::GateAnswer;
use warden_policy::netrules::NetRules;
use warden_policy::progrules::{ExecRules, Identity};
use warden_policy::{Policy, RuleError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Answer {
    Allow,
    Ask,
    Deny,
}

impl Answer {
    pub fn as_str(self) -> &'static str {
        match self {
            Answer::Allow => "allow",
            Answer::Ask => "ask",
            Answer::Deny => "deny",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Judgement {
    pub answer: Answer,
    pub rule: String,
    /// What was judged (a command, a path, a host).
    pub what: String,
    pub reason: String,
}

impl Judgement {
    fn allow(what: impl Into<String>, rule: &str) -> Judgement {
        Judgement {
            answer: Answer::Allow,
            rule: rule.into(),
            what: what.into(),
            reason: "allowed by policy".into(),
        }
    }

    /// The message for whoever reads this answer: the model for a deny, the human (in the
    /// agent's permission prompt) for an ask.
    pub fn message(&self) -> String {
        match self.answer {
            Answer::Allow => format!("warden: no objection ({})", self.rule),
            Answer::Ask => format!(
                "warden asks you to confirm: {} — {} (rule `{}`). Approve only if you expect this; to stop being asked, change the rule in ~/.config/warden/policy.toml.",
                self.what, self.reason, self.rule
            ),
            Answer::Deny => format!(
                "warden blocked this tool call: {} — {} (rule `{}`). This is enforced by warden outside the agent (at this hook and in the kernel), so rewording the command, another path or copy, an interpreter or a wrapper will be blocked too. If it is really needed, tell the user what you need and why; only the user can allow it, outside the sandbox (`warden exec allow …`, or ~/.config/warden/policy.toml).",
                self.what, self.reason, self.rule
            ),
        }
    }
}

/// Programs larger than this are not hashed by the hook (hashing 64 GiB would outlast any
/// agent's hook timeout): the call is denied, with a message.
pub const MAX_HASH_BYTES: u64 = 512 << 20;

pub struct Ctx<'a> {
    pub policy: &'a Policy,
    pub cwd: PathBuf,
    pub home: PathBuf,
    pub headless: bool,
    pub files: FileRules,
    /// Compiled on first use: most tool calls run no program, and resolving the rules'
    /// names looks through every search directory (the hook runs once per tool call).
    exec: std::cell::OnceCell<Result<ExecRules, RuleError>>,
    /// The program search directories, listed on first use (once per call, not per program
    /// in a command line: the toolchain globs read directories).
    search: std::cell::OnceCell<warden_policy::progrules::SearchDirs>,
    identity: std::sync::Arc<dyn Identity>,
    /// The network rules, compiled on first use (only a command naming a URL needs them).
    net: std::cell::OnceCell<Result<NetRules, RuleError>>,
    /// Inside a session ([`Ctx::in_session`]): the denied contents `warden run` resolved.
    session: Option<Vec<(warden_policy::progrules::Hash, u64, String)>>,
}

impl<'a> Ctx<'a> {
    /// `identity` says what a program's content is (the exec guard's hash cache).
    pub fn new(
        policy: &'a Policy,
        cwd: PathBuf,
        home: PathBuf,
        headless: bool,
        identity: std::sync::Arc<dyn Identity>,
    ) -> Ctx<'a> {
        Self::with_cache(policy, cwd, home, headless, identity)
    }

    /// Judges files as the sandbox of a `warden run` session does ([`FileRules::session`]),
    /// anchored at the session's workspace (the tool's cwd may be below it).
    pub fn in_session(
        mut self,
        workspace: &Path,
        pinned: Vec<(warden_policy::progrules::Hash, u64, String)>,
    ) -> Ctx<'a> {
        let anchors = warden_policy::Anchors {
            home: self.home.clone(),
            workspace: workspace.to_path_buf(),
        };
        self.files = FileRules::session(self.policy, &anchors);
        self.session = Some(pinned);
        self
    }

    /// [`Ctx::new`], hashing programs through a persistent cache (the hook's hot path).
    pub fn with_cache(
        policy: &'a Policy,
        cwd: PathBuf,
        home: PathBuf,
        headless: bool,
        cache: std::sync::Arc<dyn Identity>,
    ) -> Ctx<'a> {
        let anchors = warden_policy::Anchors {
            home: home.clone(),
            workspace: cwd.clone(),
        };
        Ctx {
            policy,
            files: FileRules::new(policy, &anchors, None),
            exec: std::cell::OnceCell::new(),
            search: std::cell::OnceCell::new(),
            identity: cache,
            net: std::cell::OnceCell::new(),
            session: None,
            cwd,
            home,
            headless,
        }
    }

    /// The network rules (see the field).
    pub fn net(&self) -> &Result<NetRules, RuleError> {
        self.net
            .get_or_init(|| NetRules::from_section(&self.policy.network))
    }

    /// The program rules (see the field).
    pub fn exec(&self) -> &Result<ExecRules, RuleError> {
        self.exec.get_or_init(|| match &self.session {
            None => ExecRules::build_in(
                self.policy,
                &self.home,
                self.identity.clone(),
                self.search(),
            ),
            Some(pinned) => ExecRules::build_in_session(
                self.policy,
                &self.home,
                self.identity.clone(),
                self.search(),
            )
            .map(|mut r| {
                r.pin(pinned.iter().cloned());
                r
            }),
        })
    }

    fn policy_answer(&self, a: Option<GateAnswer>, default: GateAnswer) -> Answer {
        match a.unwrap_or(default) {
            GateAnswer::Allow => Answer::Allow,
            GateAnswer::Deny => Answer::Deny,
            GateAnswer::Ask if self.headless => Answer::Deny,
            GateAnswer::Ask => Answer::Ask,
        }
    }

    /// Resolves a path as the tool would see it: `~`, `$HOME`, `${HOME}`, relative to the
    /// tool's cwd, `/proc/self|thread-self/cwd|root`, `/proc/<pid>/cwd|root`. `.` and `..`
    /// are left for [`FileRules::decide`], which judges both the lexical and the kernel's
    /// resolution.
    pub fn abs(&self, p: &str) -> PathBuf {
        let home_rest = ["$HOME", "${HOME}", "~"].iter().find_map(|h| {
            p.strip_prefix(h)
                .filter(|r| r.is_empty() || r.starts_with('/'))
        });
        if let Some(r) = home_rest {
            self.home.join(r.trim_start_matches('/'))
        } else if p.starts_with('/') {
            self.proc_link(p, 0)
        } else {
            self.cwd.join(p)
        }
    }

    /// `/proc/self/cwd/x` is the tool's cwd, `/proc/self/root/x` is `/x`; another process's
    /// cwd or root is read from /proc (the hook shares the agent's view). Components after
    /// the link are kept as written (`..` applies to the link's target).
    fn proc_link(&self, p: &str, depth: u8) -> PathBuf {
        let raw = PathBuf::from(p);
        let parts: Vec<&str> = p
            .split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .collect();
        let (Some(&"proc"), Some(who), Some(link)) = (parts.first(), parts.get(1), parts.get(2))
        else {
            return raw;
        };
        let own = *who == "self" || *who == "thread-self";
        let base = match *link {
            "cwd" if own => self.cwd.clone(),
            "root" if own => PathBuf::from("/"),
            l @ ("cwd" | "root") if who.bytes().all(|b| b.is_ascii_digit()) => {
                match std::fs::read_link(format!("/proc/{who}/{l}")) {
                    Ok(t) => t,
                    Err(_) => return raw,
                }
            }
            _ => return raw,
        };
        let mut out = base;
        for c in &parts[3..] {
            out.push(c);
        }
        // The rest may itself be a /proc path (`/proc/self/root/proc/self/cwd/...`).
        match out.to_str() {
            Some(s) if s.starts_with("/proc/") && depth < 8 => self.proc_link(s, depth + 1),
            _ => out,
        }
    }

    fn path(&self, tool: &str, p: &str, access: Access) -> Option<Judgement> {
        let abs = self.abs(p);
        let d = self.files.decide(&abs, access);
        (!d.allowed).then(|| Judgement {
            answer: Answer::Deny,
            rule: d.rule.to_string(),
            what: format!("{tool} {}", abs.display()),
            reason: d.explain(&abs, access),
        })
    }

    fn host(&self, tool: &str, url: &str) -> Option<Judgement> {
        let bad = |rule: &str, reason: String| {
            Some(Judgement {
                answer: Answer::Deny,
                rule: rule.into(),
                what: format!("{tool} {url}"),
                reason,
            })
        };
        // WHATWG parsing, as the agent's fetch reads it (`https://a\\@b/` is host `a`).
        let text = url.trim();
        let parsed = match url::Url::parse(text) {
            Err(url::ParseError::RelativeUrlWithoutBase) => {
                url::Url::parse(&format!("https://{text}"))
            }
            r => r,
        };
        let u = match parsed {
            Ok(u) => u,
            Err(e) => return bad("gate.malformed", format!("the URL does not parse: {e}")),
        };
        if !matches!(u.scheme(), "http" | "https") {
            return bad(
                "network.scheme",
                format!(
                    "the scheme `{}:` is not fetched through warden's proxy",
                    u.scheme()
                ),
            );
        }
        let Some(host) = u.host_str() else {
            return bad("gate.malformed", "the URL has no host".into());
        };
        let port = u.port_or_known_default().unwrap_or(443);
        match self.net() {
            Err(e) => bad("network.invalid", e.to_string()),
            Ok(n) => {
                let d = n.decide_host(host, port);
                // An `ask` host: the human decides (the proxy asks again, outside the agent).
                (!d.allowed).then(|| Judgement {
                    answer: if d.ask { Answer::Ask } else { Answer::Deny },
                    rule: d.rule,
                    what: format!("{tool} {url}"),
                    reason: d.reason,
                })
            }
        }
    }

    /// Resolves a program name as the shell would: a path (relative to the cwd, through
    /// `/proc/self/root`), else PATH and the system directories; symlinks followed.
    pub fn resolve_program(&self, name: &str) -> Option<PathBuf> {
        if name.contains('/') {
            let p = self.abs(name);
            return std::fs::canonicalize(p).ok().filter(|p| p.is_file());
        }
        self.search().first(name)
    }

    /// The program search directories (see the field).
    fn search(&self) -> &warden_policy::progrules::SearchDirs {
        self.search
            .get_or_init(|| warden_policy::progrules::SearchDirs::list(&self.home))
    }

    fn denied_names(&self) -> Vec<&str> {
        self.policy
            .exec
            .deny
            .iter()
            .filter(|d| !d.contains('/') && !d.contains(':'))
            .map(String::as_str)
            .collect()
    }

    fn exec_check(&self, name: &str, cmd_text: &str) -> Option<Judgement> {
        let base = name.rsplit('/').next().unwrap_or(name);
        if let Some(d) = self.denied_names().into_iter().find(|d| *d == base) {
            return Some(Judgement {
                answer: Answer::Deny,
                rule: format!("exec.deny:{d}"),
                what: format!("Bash `{cmd_text}`"),
                reason: format!("it runs `{base}`, which is denied"),
            });
        }
        let rules = match self.exec() {
            Ok(r) => r,
            Err(e) => {
                return Some(Judgement {
                    answer: Answer::Deny,
                    rule: "exec.invalid".into(),
                    what: format!("Bash `{cmd_text}`"),
                    reason: format!("the exec policy cannot be loaded: {e}"),
                })
            }
        };
        let file = self.resolve_program(name)?;
        match verdict_capped(rules, &file) {
            Ok(v) if !v.allowed => Some(Judgement {
                answer: Answer::Deny,
                rule: v.rule.clone(),
                what: format!("Bash `{cmd_text}`"),
                reason: format!("it runs {} ({}), and {}", file.display(), base, v.reason),
            }),
            Ok(_) => None,
            Err(e) => Some(Judgement {
                answer: Answer::Deny,
                rule: "exec.fail_closed".into(),
                what: format!("Bash `{cmd_text}`"),
                reason: format!(
                    "cannot hash {}: {e}; the program's identity is unknown, so it is denied (fail closed)",
                    file.display()
                ),
            }),
        }
    }

    pub fn judge_shell(&self, command: &str) -> Judgement {
        // The command as shown in decisions: at most 200 characters, with a marker when cut
        // (a reader must not take a prefix for the whole command).
        let mut shown: String = command.chars().take(200).collect();
        if shown.len() < command.len() {
            shown.push_str(" … [cut]");
        }
        let a: Analysis = analyze(command);
        let mut worst: Option<Judgement> = None;
        let mut consider = |j: Option<Judgement>| {
            if let Some(j) = j {
                if worst.as_ref().is_none_or(|w| j.answer > w.answer) {
                    worst = Some(j);
                }
            }
        };
        for c in &a.commands {
            if let Some(name) = c.name() {
                consider(self.exec_check(name, &shown));
                for arg in c.argv.iter().skip(1).flatten() {
                    if arg.starts_with('/')
                        || arg.starts_with("~/")
                        || arg.starts_with("./")
                        || arg.starts_with("../")
                        || (arg.contains('/') && !arg.contains("://"))
                    {
                        if let Some(j) = self
                            .path("Bash reads", arg, Access::Read)
                            .filter(|j| j.rule == "files.deny")
                        {
                            consider(Some(j));
                        }
                    }
                }
                // Programs whose arguments are write targets.
                let base = name.rsplit('/').next().unwrap_or(name);
                let targets: Vec<&String> = match base {
                    "tee" => c
                        .argv
                        .iter()
                        .skip(1)
                        .flatten()
                        .filter(|x| !x.starts_with('-'))
                        .collect(),
                    "cp" | "mv" | "ln" | "install" | "rsync" => c
                        .argv
                        .iter()
                        .skip(1)
                        .flatten()
                        .filter(|x| !x.starts_with('-'))
                        .last()
                        .into_iter()
                        .collect(),
                    "touch" | "mkdir" | "rm" | "chmod" | "truncate" => c
                        .argv
                        .iter()
                        .skip(1)
                        .flatten()
                        .filter(|x| !x.starts_with('-'))
                        .collect(),
                    "sed"
                        if c.argv
                            .iter()
                            .flatten()
                            .any(|x| x.starts_with("-i") || x == "--in-place") =>
                    {
                        c.argv
                            .iter()
                            .skip(2)
                            .flatten()
                            .filter(|x| !x.starts_with('-'))
                            .collect()
                    }
                    _ => Vec::new(),
                };
                for t in targets {
                    consider(
                        self.path("Bash writes", t, Access::Write)
                            .filter(|j| j.rule == "files.protect" || j.rule == "files.deny"),
                    );
                }
            }
        }
        for w in &a.writes {
            match w {
                Some(t) if t.starts_with("/dev/") => {}
                Some(t) => consider(
                    self.path("Bash writes", t, Access::Write)
                        .filter(|j| j.rule == "files.protect" || j.rule == "files.deny"),
                ),
                None => consider(Some(Judgement {
                    answer: self.policy_answer(self.policy.gate.dynamic, GateAnswer::Ask),
                    rule: "gate.dynamic".into(),
                    what: format!("Bash `{shown}`"),
                    reason: "it writes to a file whose name is computed at run time".into(),
                })),
            }
        }
        let names = self.denied_names();
        for code in &a.inline_code {
            let hit = code
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
                .find(|t| names.contains(t));
            if let Some(n) = hit {
                consider(Some(Judgement {
                    answer: Answer::Deny,
                    rule: format!("exec.deny:{n}"),
                    what: format!("Bash `{shown}`"),
                    reason: format!("inline interpreter code names `{n}`, which is denied"),
                }));
            }
        }
        if a.parse_error {
            consider(Some(Judgement {
                answer: self.policy_answer(self.policy.gate.dynamic, GateAnswer::Ask),
                rule: "gate.dynamic".into(),
                what: format!("Bash `{shown}`"),
                reason: "the command does not parse as bash".into(),
            }));
        }
        if let Some(d) = a.dynamic.first() {
            consider(Some(Judgement {
                answer: self.policy_answer(self.policy.gate.dynamic, GateAnswer::Ask),
                rule: "gate.dynamic".into(),
                what: format!("Bash `{shown}`"),
                reason: format!("it cannot be resolved statically: {d}"),
            }));
        }
        worst.unwrap_or_else(|| Judgement::allow(format!("Bash `{shown}`"), "gate.shell"))
    }

    /// Judges one tool call (tool names of Claude Code, Codex and Gemini CLI).
    pub fn judge_tool(&self, tool: &str, input: &Value) -> Judgement {
        let s = |k: &str| input.get(k).and_then(Value::as_str);
        match tool {
            "Bash" | "run_shell_command" | "shell" | "local_shell" | "exec_command" => {
                let cmd = match input.get("command") {
                    Some(Value::String(c)) => c.clone(),
                    Some(Value::Array(a)) => a
                        .iter()
                        .filter_map(Value::as_str)
                        .map(warden_sys::shell::quote)
                        .collect::<Vec<_>>()
                        .join(" "),
                    _ => {
                        return Judgement {
                            answer: Answer::Deny,
                            rule: "gate.malformed".into(),
                            what: tool.into(),
                            reason: "no `command` in the tool input".into(),
                        }
                    }
                };
                self.judge_shell(&cmd)
            }
            "Read" | "read_file" | "NotebookRead" => {
                match s("file_path").or(s("absolute_path")).or(s("notebook_path")) {
                    Some(p) => self
                        .path("Read", p, Access::Read)
                        .unwrap_or_else(|| Judgement::allow(format!("Read {p}"), "files")),
                    None => malformed(tool, "file_path"),
                }
            }
            "read_many_files" => {
                for p in input
                    .get("paths")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                {
                    if let Some(j) = self.path("Read", p, Access::Read) {
                        return j;
                    }
                }
                Judgement::allow("read_many_files", "files")
            }
            "Write" | "Edit" | "MultiEdit" | "NotebookEdit" | "write_file" | "replace" | "edit" => {
                match s("file_path").or(s("notebook_path")).or(s("absolute_path")) {
                    Some(p) => self
                        .path(tool, p, Access::Write)
                        .unwrap_or_else(|| Judgement::allow(format!("{tool} {p}"), "files")),
                    None => malformed(tool, "file_path"),
                }
            }
            "Glob" | "Grep" | "LS" | "glob" | "search_file_content" | "list_directory" | "grep" => {
                let p = s("path").or(s("dir_path")).unwrap_or(".");
                self.path(tool, p, Access::Read)
                    .unwrap_or_else(|| Judgement::allow(format!("{tool} {p}"), "files"))
            }
            "WebFetch" | "web_fetch" => {
                let url = s("url").map(str::to_string).or_else(|| {
                    s("prompt").and_then(|p| {
                        p.split_whitespace()
                            .find(|w| w.starts_with("http"))
                            .map(str::to_string)
                    })
                });
                match url {
                    Some(u) => self.host("WebFetch", &u).unwrap_or_else(|| {
                        Judgement::allow(format!("WebFetch {u}"), "network.allow")
                    }),
                    None => malformed(tool, "url"),
                }
            }
            "WebSearch" | "google_web_search" => Judgement::allow("WebSearch", "gate.websearch"),
            "Task" | "Agent" => Judgement::allow(
                format!(
                    "subagent {}",
                    s("subagent_type").or(s("description")).unwrap_or("")
                ),
                "gate.subagent",
            ),
            "TodoWrite" | "ExitPlanMode" | "BashOutput" | "KillShell" | "KillBash"
            | "save_memory" | "write_todos" => Judgement::allow(tool, "gate.harmless"),
            t if t.starts_with("mcp__") => {
                let g = &self.policy.gate;
                if g.mcp_deny.iter().any(|p| glob_match(p, t)) {
                    Judgement {
                        answer: Answer::Deny,
                        rule: "gate.mcp_deny".into(),
                        what: t.into(),
                        reason: format!("MCP tool {t} is denied"),
                    }
                } else if g.mcp_allow.iter().any(|p| glob_match(p, t)) {
                    Judgement::allow(t, "gate.mcp_allow")
                } else {
                    Judgement {
                        answer: self.policy_answer(g.mcp_default, GateAnswer::Ask),
                        rule: "gate.mcp_default".into(),
                        what: t.into(),
                        reason: format!("MCP tool {t} is not in gate.mcp_allow"),
                    }
                }
            }
            other => Judgement {
                answer: self.policy_answer(self.policy.gate.unknown_tool, GateAnswer::Ask),
                rule: "gate.unknown_tool".into(),
                what: format!("tool {other}"),
                reason: format!("warden does not know the tool `{other}`"),
            },
        }
    }
}

/// A program's verdict: hashed when its size could be a denied file's
/// ([`ExecRules::must_hash`]; otherwise no byte is read, which inside a session, where the
/// hook has no persistent cache, spared hashing `node`'s 99 MB on every Bash call), refusing
/// files over [`MAX_HASH_BYTES`] (checked on the opened file, before any byte is read).
fn verdict_capped(
    rules: &ExecRules,
    file: &Path,
) -> std::io::Result<warden_policy::progrules::Verdict> {
    use std::os::fd::AsFd;
    let f = std::fs::File::open(file)?;
    let size = f.metadata()?.len();
    if !rules.must_hash(size) {
        return Ok(rules.not_denied());
    }
    if size > MAX_HASH_BYTES {
        return Err(std::io::Error::other(format!(
            "it is {} MiB, over the hook's {} MiB hashing limit (hashing it would outlast the agent's hook timeout)",
            size >> 20,
            MAX_HASH_BYTES >> 20
        )));
    }
    let h = rules.identity().of_file(f.as_fd())?;
    Ok(rules.decide(&h))
}

fn malformed(tool: &str, key: &str) -> Judgement {
    Judgement {
        answer: Answer::Deny,
        rule: "gate.malformed".into(),
        what: tool.into(),
        reason: format!("the tool input has no `{key}`"),
    }
}

/// Lets tests and benchmarks resolve relative paths like the agent would.
pub fn cwd_of(input: &Value) -> Option<&Path> {
    input.get("cwd").and_then(Value::as_str).map(Path::new)
}
