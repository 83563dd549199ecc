//! Which tool calls are grey: pure, cheap classification that decides whether the advisor is
//! consulted at all. A call that is not grey never reaches the advisor.
//!
//! Classification errs towards grey (a false positive costs one consultation). A false
//! negative leaves the rules' answer unchanged, as if the advisor were off. The one place
//! where a miss matters is the order of risk: a call is resolvable to `allow` only when
//! *every* class it falls in allows resolution ([`Grey::may_resolve_to_allow`]).

use crate::config::{AdvisorConfig, ClassRule};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One tool call as the gate saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolCall {
    /// The agent's tool name (`Bash`, `Write`, `mcp__server__tool`, ...).
    pub tool: String,
    /// The tool's input object, as the agent sent it.
    pub input: Value,
    /// The agent's working directory.
    #[serde(default)]
    pub cwd: String,
    /// The simple commands of a shell command, as the gate's bash parser evaluated them
    /// (`warden_gate::shell::Cmd::argv`: words known only at run time as `None`). The
    /// advisor also splits `input.command` itself, conservatively, and uses both.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub commands: Vec<Vec<Option<String>>>,
}

impl ToolCall {
    pub fn new(tool: impl Into<String>, input: Value) -> ToolCall {
        ToolCall {
            tool: tool.into(),
            input,
            cwd: String::new(),
            commands: Vec::new(),
        }
    }

    pub fn with_cwd(mut self, cwd: impl Into<String>) -> ToolCall {
        self.cwd = cwd.into();
        self
    }

    /// The shell command, for shell tools.
    pub fn command(&self) -> Option<&str> {
        if !is_shell_tool(&self.tool) {
            return None;
        }
        self.input
            .get("command")
            .or_else(|| self.input.get("cmd"))
            .and_then(Value::as_str)
    }

    /// A short description for audit records: the command, or the tool name.
    pub fn summary(&self) -> String {
        let s = match self.command() {
            Some(c) => c.to_string(),
            None => self.tool.clone(),
        };
        crate::prompt::clip(&s, 512)
    }

    /// The simple commands (argv, with unknown words as `None`): the gate's parse, if it
    /// gave one, plus the advisor's own conservative split (a call is grey if either view
    /// says so).
    pub fn argvs(&self) -> Vec<Vec<Option<String>>> {
        let mut out = self.commands.clone();
        if let Some(c) = self.command() {
            out.extend(split_commands(c));
        }
        out
    }

    /// The call with every string longer than `max_str` bytes clipped, so it fits a
    /// bounded channel frame. Classification must run on the full call first.
    pub fn bounded(&self, max_str: usize) -> ToolCall {
        fn clip_value(v: &Value, max: usize, budget: &mut usize) -> Value {
            match v {
                Value::String(s) => {
                    let c = crate::prompt::clip(s, max.min(*budget));
                    *budget = budget.saturating_sub(c.len());
                    Value::String(c)
                }
                Value::Array(a) => Value::Array(
                    a.iter()
                        .take(1024)
                        .map(|x| clip_value(x, max, budget))
                        .collect(),
                ),
                Value::Object(o) => Value::Object(
                    o.iter()
                        .take(1024)
                        .map(|(k, x)| (crate::prompt::clip(k, 256), clip_value(x, max, budget)))
                        .collect(),
                ),
                other => other.clone(),
            }
        }
        let mut budget = max_str * 4;
        ToolCall {
            tool: crate::prompt::clip(&self.tool, 256),
            input: clip_value(&self.input, max_str, &mut budget),
            cwd: crate::prompt::clip(&self.cwd, 4096),
            commands: self
                .commands
                .iter()
                .take(256)
                .map(|c| {
                    c.iter()
                        .take(256)
                        .map(|w| w.as_ref().map(|w| crate::prompt::clip(w, 4096)))
                        .collect()
                })
                .collect(),
        }
    }
}

fn is_shell_tool(tool: &str) -> bool {
    matches!(
        tool,
        "Bash" | "bash" | "shell" | "Shell" | "run_shell_command" | "exec_command" | "local_shell"
    )
}

/// A grey class. Built-ins are ordered from highest to lowest risk.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GreyClass {
    /// A secret-looking string in the arguments (cloud keys, API tokens, private keys,
    /// high-entropy tokens).
    SecretInArgs,
    /// Workspace content sent over the network (`curl -d @file`, `scp`, `rsync host:`).
    NetworkSend,
    /// An MCP tool the policy does not list as known.
    UnknownMcp,
    /// `git push --force`, `+refspec`, `--mirror`, remote branch deletion.
    ForcePush,
    /// `git reset --hard`, `rebase`, `filter-branch`, `commit --amend`, ...
    HistoryRewrite,
    /// Deleting many files: `rm -r`, `rm` of a glob, `find -delete`, `git clean -f`.
    DestructiveFiles,
    /// A class the policy added (`[[advisor.classes]]`).
    Policy(String),
}

impl GreyClass {
    pub fn name(&self) -> &str {
        match self {
            GreyClass::SecretInArgs => "secret_in_args",
            GreyClass::NetworkSend => "network_send",
            GreyClass::UnknownMcp => "unknown_mcp",
            GreyClass::ForcePush => "force_push",
            GreyClass::HistoryRewrite => "history_rewrite",
            GreyClass::DestructiveFiles => "destructive_files",
            GreyClass::Policy(n) => n,
        }
    }

    pub fn builtin(name: &str) -> Option<GreyClass> {
        Some(match name {
            "secret_in_args" => GreyClass::SecretInArgs,
            "network_send" => GreyClass::NetworkSend,
            "unknown_mcp" => GreyClass::UnknownMcp,
            "force_push" => GreyClass::ForcePush,
            "history_rewrite" => GreyClass::HistoryRewrite,
            "destructive_files" => GreyClass::DestructiveFiles,
            _ => return None,
        })
    }

    /// The audit rule for a consultation about this class.
    pub fn rule(&self) -> String {
        format!("advisor.{}", self.name())
    }
}

/// A grey call: its classes (highest risk first) and whether the policy lets the advisor
/// resolve its `ask` to `allow`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grey {
    pub classes: Vec<GreyClass>,
    pub may_resolve_to_allow: bool,
}

impl Grey {
    /// The highest-risk class.
    pub fn primary(&self) -> Option<&GreyClass> {
        self.classes.first()
    }

    /// The audit rule: `advisor.<highest-risk class>`.
    pub fn rule(&self) -> String {
        self.primary()
            .map(GreyClass::rule)
            .unwrap_or_else(|| "advisor.unclassified".into())
    }

    pub fn names(&self) -> Vec<String> {
        self.classes.iter().map(|c| c.name().to_string()).collect()
    }
}

/// The built-in classes of a call, highest risk first (pure; no policy).
pub fn grey_classes(call: &ToolCall) -> Vec<GreyClass> {
    let mut out = Vec::new();
    if has_secret(&call.input) {
        out.push(GreyClass::SecretInArgs);
    }
    if call.tool.starts_with("mcp__") {
        out.push(GreyClass::UnknownMcp);
    }
    for argv in call.argvs() {
        classify_argv(&argv, &mut out);
    }
    out.sort();
    out.dedup();
    out
}

/// The highest-risk built-in class of a call, if it is grey (every MCP tool counts as
/// unknown here; [`Classifier`] knows the policy's list).
pub fn grey_class(call: &ToolCall) -> Option<GreyClass> {
    grey_classes(call).into_iter().next()
}

/// Classification with the policy's extra classes, known MCP tools and resolution list.
/// Pure and cheap: the hook runs it inside the sandbox without any key.
#[derive(Debug, Clone, Default)]
pub struct Classifier {
    extra: Vec<ClassRule>,
    allow_resolution: Vec<String>,
    known_mcp: Vec<String>,
}

impl Classifier {
    pub fn from_config(cfg: &AdvisorConfig) -> Classifier {
        Classifier {
            extra: cfg.classes.clone(),
            allow_resolution: cfg.allow_resolution.clone(),
            known_mcp: Vec::new(),
        }
    }

    /// MCP tool globs the policy already knows (`[gate] mcp_allow` and `mcp_deny`): these
    /// are not `unknown_mcp`.
    pub fn with_known_mcp(mut self, globs: impl IntoIterator<Item = String>) -> Classifier {
        self.known_mcp.extend(globs);
        self
    }

    pub fn classify(&self, call: &ToolCall) -> Option<Grey> {
        let mut classes = grey_classes(call);
        if self.known_mcp.iter().any(|g| glob_match(g, &call.tool)) {
            classes.retain(|c| *c != GreyClass::UnknownMcp);
        }
        if !self.extra.is_empty() {
            let argvs = call.argvs();
            for rule in &self.extra {
                if rule_matches(rule, call, &argvs) {
                    classes.push(GreyClass::Policy(rule.name.clone()));
                }
            }
            classes.sort();
            classes.dedup();
        }
        if classes.is_empty() {
            return None;
        }
        let may = classes
            .iter()
            .all(|c| self.allow_resolution.iter().any(|a| a == c.name()));
        Some(Grey {
            classes,
            may_resolve_to_allow: may,
        })
    }
}

fn rule_matches(rule: &ClassRule, call: &ToolCall, argvs: &[Vec<Option<String>>]) -> bool {
    if !rule.tools.is_empty() && !rule.tools.iter().any(|g| glob_match(g, &call.tool)) {
        return false;
    }
    if !rule.programs.is_empty() {
        let hit = argvs.iter().any(|a| {
            a.iter()
                .flatten()
                .take(1)
                .any(|p| rule.programs.iter().any(|x| x == basename(p)))
        });
        if !hit {
            return false;
        }
    }
    if !rule.args_contain.is_empty() {
        let mut hit = false;
        visit_strings(&call.input, &mut |s| {
            if rule.args_contain.iter().any(|n| s.contains(n.as_str())) {
                hit = true;
            }
        });
        if !hit {
            return false;
        }
    }
    true
}

/// `*` (any run) and `?` (one char) glob.
pub fn glob_match(pat: &str, s: &str) -> bool {
    let p: Vec<char> = pat.chars().collect();
    let t: Vec<char> = s.chars().collect();
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

fn basename(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

/// Programs that run their arguments as a command: classified through.
const WRAPPERS: &[&str] = &[
    "sudo", "doas", "env", "nice", "nohup", "time", "timeout", "command", "builtin", "exec",
    "xargs", "stdbuf", "ionice", "chrt", "setsid",
];

fn classify_argv(argv: &[Option<String>], out: &mut Vec<GreyClass>) {
    // Skip wrappers and their leading options / assignments.
    let mut i = 0;
    while i < argv.len() {
        match argv[i].as_deref() {
            Some(w) if w.contains('=') && !w.starts_with('-') && i == 0 => i += 1,
            Some(w) if WRAPPERS.contains(&basename(w)) => {
                i += 1;
                while let Some(Some(a)) = argv.get(i) {
                    if a.starts_with('-') || a.contains('=') || a.parse::<f64>().is_ok() {
                        i += 1;
                    } else {
                        break;
                    }
                }
            }
            _ => break,
        }
    }
    let argv = &argv[i.min(argv.len())..];
    let Some(Some(prog)) = argv.first() else {
        return;
    };
    let prog = basename(prog);
    let args: Vec<Option<&str>> = argv[1..].iter().map(|a| a.as_deref()).collect();
    let known = || args.iter().flatten().copied();
    match prog {
        "rm" | "unlink" | "shred" | "srm" => {
            let recursive = known().any(|a| {
                a == "--recursive"
                    || (a.starts_with('-')
                        && !a.starts_with("--")
                        && (a.contains('r') || a.contains('R')))
            });
            let globbed = args
                .iter()
                .any(|a| a.is_none_or(|a| a.contains(['*', '?', '['])));
            let many = args
                .iter()
                .filter(|a| a.is_none_or(|a| !a.starts_with('-')))
                .count()
                > 8;
            if recursive || globbed || many || prog == "shred" {
                out.push(GreyClass::DestructiveFiles);
            }
        }
        "rmdir" => {}
        "find" => {
            let del = known().any(|a| a == "-delete")
                || args.windows(2).any(|w| {
                    matches!(
                        w[0],
                        Some("-exec") | Some("-execdir") | Some("-ok") | Some("-okdir")
                    ) && w[1].is_none_or(|p| matches!(basename(p), "rm" | "shred" | "unlink"))
                });
            if del {
                out.push(GreyClass::DestructiveFiles);
            }
        }
        "git" => classify_git(&args, out),
        "curl" if curl_sends(&args) => out.push(GreyClass::NetworkSend),
        // httpie / xh: `@file` bodies, `field=@file`, `field:=@file`.
        "http" | "https" | "xh" | "xhs"
            if args.iter().any(|a| {
                a.is_none_or(|a| a.starts_with('@') || a.contains("=@") || a.contains('<'))
            }) =>
        {
            out.push(GreyClass::NetworkSend)
        }
        "wget"
            if known().any(|a| {
                a.starts_with("--post-file")
                    || a.starts_with("--body-file")
                    || a.starts_with("--method")
            }) =>
        {
            out.push(GreyClass::NetworkSend)
        }
        "scp" | "sftp" | "rsync" | "rclone" => {
            // Sends when the destination (last operand) is remote.
            let ops: Vec<Option<&str>> = args
                .iter()
                .copied()
                .filter(|a| a.is_none_or(|a| !a.starts_with('-')))
                .collect();
            let remote = |a: &Option<&str>| {
                a.is_none_or(|a| {
                    a.starts_with("rsync://")
                        || a.contains("://")
                        || a.split_once(':')
                            .is_some_and(|(h, _)| !h.is_empty() && !h.contains('/'))
                })
            };
            if prog == "sftp" || ops.last().is_some_and(remote) {
                out.push(GreyClass::NetworkSend);
            }
            if prog == "rsync" && known().any(|a| a.starts_with("--delete")) {
                out.push(GreyClass::DestructiveFiles);
            }
        }
        "nc" | "ncat" | "netcat" | "socat" | "telnet" => out.push(GreyClass::NetworkSend),
        _ => {}
    }
}

/// curl short options that take a value (the rest of a cluster, or the next word).
const CURL_VALUE_SHORT: &str = "dFTHoOuXAebcwxKErmCyYztPUQDhK";

/// Whether a curl command line uploads a file, stdin, or run-time content.
fn curl_sends(args: &[Option<&str>]) -> bool {
    // A value that reads a file (`@f`, form `=@f`/`=<f`), stdin, or is known only at run time.
    let from_file = |v: Option<&str>| {
        v.is_none_or(|v| {
            v.starts_with('@')
                || v.contains("=@")
                || v.contains("=<")
                || v.contains("$(")
                || v.contains('`')
        })
    };
    let mut i = 0;
    while i < args.len() {
        let Some(a) = args[i] else {
            i += 1;
            continue;
        };
        i += 1;
        if let Some(long) = a.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (long, None),
            };
            let mut value = || match inline {
                Some(v) => Some(v),
                None => {
                    let v = args.get(i).copied().flatten();
                    i += 1;
                    v
                }
            };
            match name {
                "upload-file" => return true,
                "data" | "data-binary" | "data-urlencode" | "data-ascii" | "json" | "form"
                    if from_file(value()) =>
                {
                    return true
                }
                _ => {}
            }
        } else if let Some(cluster) = a.strip_prefix('-').filter(|c| !c.is_empty()) {
            for (k, ch) in cluster.char_indices() {
                if !CURL_VALUE_SHORT.contains(ch) {
                    continue;
                }
                let rest = &cluster[k + ch.len_utf8()..];
                let v = if rest.is_empty() {
                    let v = args.get(i).copied().flatten();
                    i += 1;
                    v
                } else {
                    Some(rest)
                };
                match ch {
                    'T' => return true,
                    'd' | 'F' if from_file(v) => return true,
                    _ => {}
                }
                break;
            }
        }
    }
    false
}

/// Global git options that take a separate value.
const GIT_VALUE_OPTS: &[&str] = &[
    "-C",
    "-c",
    "--git-dir",
    "--work-tree",
    "--namespace",
    "--exec-path",
    "--config-env",
];

fn classify_git(args: &[Option<&str>], out: &mut Vec<GreyClass>) {
    let mut i = 0;
    while i < args.len() {
        match args[i] {
            Some(a) if GIT_VALUE_OPTS.contains(&a) => i += 2,
            Some(a) if a.starts_with('-') => i += 1,
            _ => break,
        }
    }
    let Some(sub) = args.get(i).copied() else {
        return;
    };
    let Some(sub) = sub else {
        // A subcommand known only at run time: could be anything.
        out.push(GreyClass::HistoryRewrite);
        return;
    };
    let rest = &args[i + 1..];
    let has = |f: &str| {
        rest.iter()
            .flatten()
            .any(|a| *a == f || a.starts_with(&format!("{f}=")))
    };
    let short = |c: char| {
        rest.iter()
            .flatten()
            .any(|a| a.starts_with('-') && !a.starts_with("--") && a.contains(c))
    };
    match sub {
        "push" => {
            let force = has("--force")
                || has("--force-with-lease")
                || has("--force-if-includes")
                || has("--mirror")
                || has("--delete")
                || has("--prune")
                || short('f')
                || short('d')
                || rest
                    .iter()
                    .flatten()
                    .any(|a| !a.starts_with('-') && (a.starts_with('+') || a.starts_with(':')));
            if force {
                out.push(GreyClass::ForcePush);
                out.push(GreyClass::HistoryRewrite);
            }
        }
        "reset" if has("--hard") || has("--keep") || has("--merge") => {
            out.push(GreyClass::HistoryRewrite)
        }
        "rebase" | "filter-branch" | "filter-repo" | "replace" => {
            out.push(GreyClass::HistoryRewrite)
        }
        "commit" if has("--amend") => out.push(GreyClass::HistoryRewrite),
        "reflog"
            if rest
                .iter()
                .flatten()
                .any(|a| *a == "expire" || *a == "delete") =>
        {
            out.push(GreyClass::HistoryRewrite)
        }
        "update-ref" if has("-d") || has("--stdin") => out.push(GreyClass::HistoryRewrite),
        "branch" if has("-D") || (has("--delete") && has("--force")) || short('D') => {
            out.push(GreyClass::HistoryRewrite)
        }
        "stash" if rest.iter().flatten().any(|a| *a == "drop" || *a == "clear") => {
            out.push(GreyClass::HistoryRewrite)
        }
        "gc" if rest.iter().flatten().any(|a| a.starts_with("--prune")) => {
            out.push(GreyClass::HistoryRewrite)
        }
        "clean" if has("--force") || short('f') => out.push(GreyClass::DestructiveFiles),
        "checkout" | "restore"
            if rest.iter().flatten().any(|a| *a == "." || *a == ":/")
                || has("--force")
                || short('f') =>
        {
            out.push(GreyClass::DestructiveFiles)
        }
        _ => {}
    }
}

/// Splits a shell command into simple commands, conservatively: quotes are honoured,
/// `;`, `&&`, `||`, `|`, `&`, newlines and `(`/`)` separate commands, words with `$`,
/// backquotes or globs inside double quotes are kept literal (they are matched as text).
/// `$(…)` and backquoted text is also split on its own, so `echo $(rm -rf x)` is seen.
pub fn split_commands(src: &str) -> Vec<Vec<Option<String>>> {
    let mut budget = 64usize;
    split_at_depth(src, 0, &mut budget)
}

/// Nesting followed (`$(…)`, `bash -c`), and splits made in total, are bounded.
const MAX_SPLIT_DEPTH: u32 = 6;

fn split_at_depth(src: &str, depth: u32, budget: &mut usize) -> Vec<Vec<Option<String>>> {
    let mut cmds: Vec<Vec<Option<String>>> = Vec::new();
    let mut cur: Vec<Option<String>> = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = src.chars().peekable();
    let mut nested: Vec<String> = Vec::new();
    let flush_word = |cur: &mut Vec<Option<String>>, word: &mut String, in_word: &mut bool| {
        if *in_word {
            cur.push(Some(std::mem::take(word)));
            *in_word = false;
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                for d in chars.by_ref() {
                    if d == '\'' {
                        break;
                    }
                    word.push(d);
                }
            }
            '"' => {
                in_word = true;
                while let Some(d) = chars.next() {
                    match d {
                        '"' => break,
                        '\\' => {
                            if let Some(e) = chars.next() {
                                word.push(e);
                            }
                        }
                        _ => word.push(d),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(e) = chars.next() {
                    if e != '\n' {
                        word.push(e);
                    }
                }
            }
            '$' if chars.peek() == Some(&'(') => {
                // Command substitution: its text is split as well.
                chars.next();
                let mut depth = 1;
                let mut inner = String::new();
                for d in chars.by_ref() {
                    if d == '(' {
                        depth += 1;
                    } else if d == ')' {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    inner.push(d);
                }
                nested.push(inner.clone());
                in_word = true;
                word.push_str("$(");
                word.push_str(&inner);
                word.push(')');
            }
            '`' => {
                let mut inner = String::new();
                for d in chars.by_ref() {
                    if d == '`' {
                        break;
                    }
                    inner.push(d);
                }
                nested.push(inner.clone());
                in_word = true;
                word.push('`');
                word.push_str(&inner);
                word.push('`');
            }
            ';' | '&' | '|' | '\n' | '(' | ')' | '{' | '}' if !in_word || c != '{' && c != '}' => {
                flush_word(&mut cur, &mut word, &mut in_word);
                if !cur.is_empty() {
                    cmds.push(std::mem::take(&mut cur));
                }
            }
            c if c.is_whitespace() => flush_word(&mut cur, &mut word, &mut in_word),
            _ => {
                in_word = true;
                word.push(c);
            }
        }
        if cmds.len() > 512 {
            break;
        }
    }
    flush_word(&mut cur, &mut word, &mut in_word);
    if !cur.is_empty() {
        cmds.push(cur);
    }
    // A word that is a `$(…)` substitution or contains `$VAR` is only known at run time.
    for c in cmds.iter_mut() {
        for w in c.iter_mut() {
            if w.as_deref()
                .is_some_and(|s| s.starts_with("$(") || s.starts_with('`'))
            {
                *w = None;
            }
        }
    }
    // `bash -c 'script'` and friends at this level: the script is split as well.
    let mut scripts: Vec<String> = nested;
    for c in &cmds {
        if let Some(Some(p)) = c.first() {
            if matches!(basename(p), "sh" | "bash" | "dash" | "zsh" | "ksh" | "eval") {
                for (k, w) in c.iter().enumerate() {
                    let script = if basename(p) == "eval" && k > 0 {
                        w.clone()
                    } else if w.as_deref() == Some("-c") {
                        c.get(k + 1).cloned().flatten()
                    } else {
                        None
                    };
                    scripts.extend(script);
                }
            }
        }
    }
    let mut inner = Vec::new();
    for s in scripts {
        if depth >= MAX_SPLIT_DEPTH || *budget == 0 {
            break;
        }
        if s.len() < src.len() {
            *budget -= 1;
            inner.extend(split_at_depth(&s, depth + 1, budget));
        }
    }
    cmds.extend(inner);
    cmds
}

/// Calls `f` on every string in a JSON value (keys too), up to 4 MiB of text in total.
pub fn visit_strings(v: &Value, f: &mut dyn FnMut(&str)) {
    fn go(v: &Value, f: &mut dyn FnMut(&str), budget: &mut usize, depth: u32) {
        if *budget == 0 || depth > 64 {
            return;
        }
        match v {
            Value::String(s) => {
                let n = s.len().min(*budget);
                *budget -= n;
                f(crate::prompt::clip_bytes(s, n));
            }
            Value::Array(a) => a.iter().for_each(|x| go(x, f, budget, depth + 1)),
            Value::Object(o) => o.iter().for_each(|(k, x)| {
                f(k);
                go(x, f, budget, depth + 1)
            }),
            _ => {}
        }
    }
    let mut budget = 4 << 20;
    go(v, f, &mut budget, 0);
}

/// Whether any string in the value looks like a secret.
pub fn has_secret(v: &Value) -> bool {
    let mut hit = false;
    visit_strings(v, &mut |s| {
        if !hit && looks_secret(s) {
            hit = true;
        }
    });
    hit
}

/// Secret-looking text: AWS access keys, `sk-…` API keys, GitHub and Slack tokens, private
/// key headers, and high-entropy tokens of 32+ characters mixing cases and digits.
pub fn looks_secret(s: &str) -> bool {
    if s.contains("PRIVATE KEY-----") {
        return true;
    }
    for tok in s.split(|c: char| {
        !(c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '+' || c == '=' || c == '/')
    }) {
        if tok.len() < 16 {
            continue;
        }
        let b = tok.as_bytes();
        for (i, _) in tok.char_indices() {
            if !matches!(b[i], b'A' | b's' | b'g' | b'x') {
                continue;
            }
            let t = &tok[i..];
            let run = |pfx: &str, min: usize, ok: fn(u8) -> bool| {
                t.starts_with(pfx)
                    && t.as_bytes()[pfx.len()..]
                        .iter()
                        .take_while(|c| ok(**c))
                        .count()
                        >= min
            };
            let upper_digit = |c: u8| c.is_ascii_uppercase() || c.is_ascii_digit();
            let alnum = |c: u8| c.is_ascii_alphanumeric();
            let tokc = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b'-';
            if (i == 0 || !b[i - 1].is_ascii_alphanumeric())
                && (run("AKIA", 16, upper_digit)
                    || run("ASIA", 16, upper_digit)
                    || run("sk-", 20, tokc)
                    || run("ghp_", 30, alnum)
                    || run("gho_", 30, alnum)
                    || run("ghu_", 30, alnum)
                    || run("ghs_", 30, alnum)
                    || run("ghr_", 30, alnum)
                    || run("github_pat_", 22, tokc)
                    || run("glpat-", 20, tokc)
                    || run("xoxb-", 10, tokc)
                    || run("xoxp-", 10, tokc)
                    || run("AIza", 35, tokc))
            {
                return true;
            }
        }
        for part in tok.split('/') {
            if part.len() >= 32 && high_entropy(part) {
                return true;
            }
        }
    }
    false
}

fn high_entropy(t: &str) -> bool {
    let b = t.as_bytes();
    let (up, lo, dg) = (
        b.iter().any(u8::is_ascii_uppercase),
        b.iter().any(u8::is_ascii_lowercase),
        b.iter().any(u8::is_ascii_digit),
    );
    if !(up && lo && dg) {
        return false;
    }
    let mut counts = [0u32; 256];
    for c in b {
        counts[*c as usize] += 1;
    }
    let n = b.len() as f64;
    let h: f64 = counts
        .iter()
        .filter(|c| **c > 0)
        .map(|c| {
            let p = *c as f64 / n;
            -p * p.log2()
        })
        .sum();
    h >= 4.2
}
