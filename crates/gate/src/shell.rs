//! Static analysis of a shell command with a real bash parser (tree-sitter-bash).
//!
//! Every simple command that would run is collected — across pipelines, lists, subshells,
//! `{ }` groups, `if`/`for`/`while`/`case`, functions, command and process substitution —
//! with its words evaluated statically the way bash would (`c\url`, `"cu""rl"`, `'curl'`,
//! `$'\x63url'` all give `curl`). Wrappers are seen through (`env`, `sudo`, `doas`, `timeout`,
//! `nice`, `nohup`, `stdbuf`, `command`, `builtin`, `exec`, `time`, `watch`, `xargs`,
//! `parallel`, `find -exec`, `npx`/`npm exec`/`pnpm dlx`, `git -c alias.*=!…`/`core.pager=…`),
//! and the static strings of `bash -c`, `sh -c`, `eval`, here-docs fed to a shell, and aliases
//! are parsed recursively. Output redirections are collected as writes. Anything whose
//! meaning depends on run-time values (a computed command name, `eval "$x"`, a shell reading
//! commands from a pipe, `make -f -`) is reported as *dynamic*; a parse error is reported too.
//!
//! Parser choice: tree-sitter-bash (the grammar behind GitHub's code navigation) recovers
//! from malformed input with explicit `ERROR` nodes, which the gate treats as a reason to
//! deny (headless) or ask, never as "nothing to see". brush-parser (a typed bash AST in pure
//! Rust) was the other candidate; it was not benchmarked in this build.

use std::collections::HashMap;
use tree_sitter::{Node, Parser};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cmd {
    /// Evaluated words; `None` for a word that is only known at run time.
    pub argv: Vec<Option<String>>,
    /// The wrappers seen through to reach this command (`sudo`, `env`, `bash -c`, ...).
    pub via: Vec<String>,
}

impl Cmd {
    pub fn name(&self) -> Option<&str> {
        self.argv.first().and_then(|a| a.as_deref())
    }
}

#[derive(Debug, Clone, Default)]
pub struct Analysis {
    pub commands: Vec<Cmd>,
    /// Output redirection targets (static; `None` = computed).
    pub writes: Vec<Option<String>>,
    /// Constructs that cannot be resolved statically, in words.
    pub dynamic: Vec<String>,
    pub parse_error: bool,
    /// Inline interpreter code (`python3 -c`, `perl -e`, `node -e`), for name scanning.
    pub inline_code: Vec<String>,
    /// A word used `$HOME`/`${HOME}` (kept as the literal `$HOME` prefix for the judge).
    pub uses_home: bool,
}

const MAX_DEPTH: u32 = 8;
const SHELLS: &[&str] = &[
    "sh", "bash", "dash", "zsh", "ksh", "ash", "mksh", "fish", "busybox",
];

pub fn analyze(src: &str) -> Analysis {
    let mut a = Analysis::default();
    let mut aliases = HashMap::new();
    analyze_into(src, &mut a, &mut aliases, 0, &[]);
    // `$HOME` is judged as the user's home; a command that may change it is not static.
    if a.uses_home && (src.contains("HOME=") || src.contains("HOME+=") || src.contains(" HOME")) {
        a.dynamic
            .push("it uses $HOME and may change HOME first".into());
    }
    a
}

fn analyze_into(
    src: &str,
    a: &mut Analysis,
    aliases: &mut HashMap<String, String>,
    depth: u32,
    via: &[String],
) {
    if depth > MAX_DEPTH {
        a.dynamic.push("nesting too deep".into());
        return;
    }
    let mut p = Parser::new();
    if p.set_language(&tree_sitter_bash::LANGUAGE.into()).is_err() {
        a.parse_error = true;
        return;
    }
    let Some(tree) = p.parse(src, None) else {
        a.parse_error = true;
        return;
    };
    let mut w = Walker {
        src: src.as_bytes(),
        a,
        aliases,
        depth,
        via: via.to_vec(),
        a_uses_home: std::cell::Cell::new(false),
    };
    w.walk(tree.root_node());
    if w.a_uses_home.get() {
        w.a.uses_home = true;
    }
}

struct Walker<'a> {
    src: &'a [u8],
    a: &'a mut Analysis,
    aliases: &'a mut HashMap<String, String>,
    depth: u32,
    via: Vec<String>,
    /// Set by [`Walker::word`] (which borrows `self` shared) when `$HOME` was used.
    a_uses_home: std::cell::Cell<bool>,
}

fn basename(s: &str) -> &str {
    s.rsplit('/').next().unwrap_or(s)
}

impl<'a> Walker<'a> {
    fn text(&self, n: Node) -> String {
        String::from_utf8_lossy(&self.src[n.byte_range()]).into_owned()
    }

    fn walk(&mut self, n: Node) {
        if n.is_error() || n.is_missing() {
            self.a.parse_error = true;
        }
        match n.kind() {
            "command" => self.command(n, None),
            "redirected_statement" => {
                let mut heredoc = None;
                let mut c = n.walk();
                for ch in n.named_children(&mut c) {
                    match ch.kind() {
                        "file_redirect" => self.redirect(ch),
                        "heredoc_redirect" => heredoc = Some(self.heredoc_body(ch)),
                        "herestring_redirect" => {
                            let mut cc = ch.walk();
                            let v: Vec<Node> = ch.named_children(&mut cc).collect();
                            heredoc = v.last().map(|x| self.word(*x).unwrap_or_default());
                        }
                        _ => {}
                    }
                }
                if let Some(body) = n.child_by_field_name("body") {
                    if body.kind() == "command" {
                        self.command(body, heredoc);
                    } else {
                        self.walk(body);
                    }
                }
            }
            _ => {
                let mut c = n.walk();
                let kids: Vec<Node> = n.named_children(&mut c).collect();
                for ch in kids {
                    self.walk(ch);
                }
            }
        }
    }

    fn heredoc_body(&self, n: Node) -> String {
        let mut c = n.walk();
        let mut s = String::new();
        for ch in n.named_children(&mut c) {
            if ch.kind() == "heredoc_body" {
                s.push_str(&self.text(ch));
            }
        }
        s
    }

    fn redirect(&mut self, n: Node) {
        let t = self.text(n);
        let is_output = t.contains('>') && !t.trim_start().starts_with("<");
        if let Some(d) = n.child_by_field_name("destination") {
            self.walk_substitutions(d);
            if is_output {
                let w = self.word(d);
                self.a.writes.push(w);
            }
        }
    }

    /// Walks command/process substitutions inside a word (they run).
    fn walk_substitutions(&mut self, n: Node) {
        match n.kind() {
            "command_substitution" | "process_substitution" => {
                let mut c = n.walk();
                let kids: Vec<Node> = n.named_children(&mut c).collect();
                for ch in kids {
                    self.walk(ch);
                }
            }
            _ => {
                let mut c = n.walk();
                let kids: Vec<Node> = n.named_children(&mut c).collect();
                for ch in kids {
                    self.walk_substitutions(ch);
                }
            }
        }
    }

    /// `$HOME` / `${HOME}` (no operators): kept as the literal `$HOME`, which the judge
    /// resolves to the user's home. Any other expansion is not static.
    fn home_expansion(&self, n: Node) -> Option<String> {
        let t = self.text(n);
        (t == "$HOME" || t == "${HOME}").then(|| {
            self.a_uses_home.set(true);
            "$HOME".to_string()
        })
    }

    /// Static value of a word, as bash would produce it; None when it depends on run time.
    fn word(&self, n: Node) -> Option<String> {
        match n.kind() {
            "simple_expansion" | "expansion" => self.home_expansion(n),
            "word" | "number" => Some(unescape_word(&self.text(n))),
            "raw_string" => {
                let t = self.text(n);
                Some(
                    t.trim_start_matches('\'')
                        .trim_end_matches('\'')
                        .to_string(),
                )
            }
            "ansi_c_string" => {
                let t = self.text(n);
                Some(decode_ansi_c(
                    t.trim_start_matches("$'").trim_end_matches('\''),
                ))
            }
            "string" | "translated_string" => {
                let mut c = n.walk();
                let mut s = String::new();
                for ch in n.named_children(&mut c) {
                    match ch.kind() {
                        "string_content" => s.push_str(&unescape_dq(&self.text(ch))),
                        "simple_expansion" | "expansion" => s.push_str(&self.home_expansion(ch)?),
                        _ => return None,
                    }
                }
                if n.named_child_count() == 0 {
                    let t = self.text(n);
                    return Some(unescape_dq(t.trim_start_matches('$').trim_matches('"')));
                }
                Some(s)
            }
            "concatenation" => {
                let mut c = n.walk();
                let mut s = String::new();
                for ch in n.children(&mut c) {
                    s.push_str(&self.word(ch)?);
                }
                Some(s)
            }
            _ => None,
        }
    }

    fn command(&mut self, n: Node, stdin_text: Option<String>) {
        let mut argv: Vec<Option<String>> = Vec::new();
        let mut c = n.walk();
        let kids: Vec<Node> = n.named_children(&mut c).collect();
        for ch in kids {
            match ch.kind() {
                "variable_assignment" => self.walk_substitutions(ch),
                "file_redirect" => self.redirect(ch),
                "command_name" => {
                    self.walk_substitutions(ch);
                    let inner = ch.named_child(0);
                    argv.push(inner.and_then(|i| self.word(i)));
                }
                _ => {
                    self.walk_substitutions(ch);
                    argv.push(self.word(ch));
                }
            }
        }
        if argv.is_empty() {
            return;
        }
        let via = self.via.clone();
        self.resolve(argv, via, stdin_text);
    }

    /// Sees through wrappers and shells; records the final command(s).
    fn resolve(
        &mut self,
        argv: Vec<Option<String>>,
        mut via: Vec<String>,
        stdin_text: Option<String>,
    ) {
        let Some(Some(name0)) = argv.first().cloned() else {
            let shown = argv
                .first()
                .cloned()
                .flatten()
                .unwrap_or_else(|| "<computed>".into());
            self.a
                .dynamic
                .push(format!("command name `{shown}` is computed at run time"));
            self.a.commands.push(Cmd { argv, via });
            return;
        };
        // Aliases defined earlier in the same command line.
        if let Some(expansion) = self.aliases.get(&name0).cloned() {
            via.push(format!("alias {name0}"));
            let rest: Vec<String> = argv[1..]
                .iter()
                .map(|x| x.clone().unwrap_or_default())
                .collect();
            let src = format!("{expansion} {}", rest.join(" "));
            return self.recurse(&src, via);
        }
        let name = basename(&name0).to_string();
        let args: Vec<Option<String>> = argv[1..].to_vec();
        let all_static = |v: &[Option<String>]| v.iter().all(|x| x.is_some());
        let joined = |v: &[Option<String>]| {
            v.iter()
                .map(|x| x.clone().unwrap_or_default())
                .collect::<Vec<_>>()
                .join(" ")
        };
        self.a.commands.push(Cmd {
            argv: argv.clone(),
            via: via.clone(),
        });
        via.push(name.clone());
        match name.as_str() {
            "alias" => {
                for a in args.iter().flatten() {
                    if let Some((k, v)) = a.split_once('=') {
                        self.aliases.insert(k.to_string(), v.to_string());
                    }
                }
            }
            "eval" => {
                if all_static(&args) {
                    self.recurse(&joined(&args), via);
                } else {
                    self.a
                        .dynamic
                        .push("eval of text computed at run time".into());
                }
            }
            s if SHELLS.contains(&s) => {
                let mut i = 0;
                if s == "busybox" {
                    i = 1; // busybox sh ...
                }
                let mut ran = false;
                while i < args.len() {
                    match args[i].as_deref() {
                        Some("-c") => {
                            match args.get(i + 1) {
                                Some(Some(code)) => self.recurse(&code.clone(), via.clone()),
                                _ => self
                                    .a
                                    .dynamic
                                    .push(format!("{s} -c with a command computed at run time")),
                            }
                            ran = true;
                            break;
                        }
                        Some(o) if o.starts_with('-') => i += 1,
                        Some(file) => {
                            match std::fs::read_to_string(file) {
                                Ok(code) if code.len() < 256 * 1024 => {
                                    self.recurse(&code, via.clone())
                                }
                                _ => self.a.dynamic.push(format!(
                                    "{s} runs the script {file}, which cannot be read here"
                                )),
                            }
                            ran = true;
                            break;
                        }
                        None => {
                            self.a
                                .dynamic
                                .push(format!("{s} with a script path computed at run time"));
                            ran = true;
                            break;
                        }
                    }
                }
                if !ran {
                    match stdin_text {
                        Some(t) => self.recurse(&t, via),
                        None => self
                            .a
                            .dynamic
                            .push(format!("{s} reads commands from its standard input")),
                    }
                }
            }
            "source" | "." => match args.first() {
                Some(Some(f)) => match std::fs::read_to_string(f) {
                    Ok(code) if code.len() < 256 * 1024 => self.recurse(&code, via),
                    _ => self
                        .a
                        .dynamic
                        .push(format!("source of {f}, which cannot be read here")),
                },
                _ => self.a.dynamic.push("source of a computed path".into()),
            },
            "python" | "python3" | "python2" | "perl" | "ruby" | "node" | "nodejs" | "bun"
            | "deno" | "php" | "lua" => {
                for (i, a) in args.iter().enumerate() {
                    if matches!(
                        a.as_deref(),
                        Some("-c")
                            | Some("-e")
                            | Some("-E")
                            | Some("--eval")
                            | Some("-r")
                            | Some("-p")
                    ) {
                        match args.get(i + 1) {
                            Some(Some(code)) => self.a.inline_code.push(code.clone()),
                            _ => self
                                .a
                                .dynamic
                                .push(format!("{name} code computed at run time")),
                        }
                    }
                }
                if args.is_empty() && stdin_text.is_none() {
                    self.a
                        .dynamic
                        .push(format!("{name} reads a program from its standard input"));
                }
                if let Some(t) = stdin_text {
                    self.a.inline_code.push(t);
                }
            }
            _ => {
                if let Some(inner) = self.see_through(&name, &args) {
                    match inner {
                        Inner::Argv(v) => self.resolve(v, via, None),
                        Inner::Many(vs) => {
                            for v in vs {
                                self.resolve(v, via.clone(), None);
                            }
                        }
                        Inner::Shell(code) => self.recurse(&code, via),
                        Inner::Dynamic(why) => self.a.dynamic.push(why),
                        Inner::None => {}
                    }
                }
            }
        }
    }

    fn recurse(&mut self, src: &str, via: Vec<String>) {
        let depth = self.depth + 1;
        analyze_into(src, self.a, self.aliases, depth, &via);
    }

    fn see_through(&self, name: &str, args: &[Option<String>]) -> Option<Inner> {
        let s = |i: usize| args.get(i).cloned().flatten();
        let rest = |i: usize| -> Inner {
            if i < args.len() {
                Inner::Argv(args[i..].to_vec())
            } else {
                Inner::None
            }
        };
        // Skip options; `with_arg` lists options that take a separate argument.
        let skip = |from: usize, with_arg: &[&str]| -> usize {
            let mut i = from;
            while let Some(a) = args.get(i) {
                match a.as_deref() {
                    Some("--") => return i + 1,
                    Some(o) if o.starts_with('-') && o.len() > 1 => {
                        i += if with_arg.contains(&o) { 2 } else { 1 };
                    }
                    _ => return i,
                }
            }
            i
        };
        Some(match name {
            "env" => {
                let mut i = 0;
                while let Some(a) = args.get(i) {
                    match a.as_deref() {
                        Some("-S") | Some("--split-string") => {
                            return Some(
                                s(i + 1).map(Inner::Shell).unwrap_or(Inner::Dynamic(
                                    "env -S with a computed string".into(),
                                )),
                            )
                        }
                        Some("-u") | Some("--unset") | Some("-C") | Some("--chdir") => i += 2,
                        Some("--") => {
                            i += 1;
                            break;
                        }
                        Some(o) if o.starts_with('-') || o.contains('=') => i += 1,
                        _ => break,
                    }
                }
                rest(i)
            }
            "sudo" => rest(skip(
                0,
                &[
                    "-u", "-g", "-C", "-D", "-h", "-p", "-r", "-t", "-U", "-T", "-R",
                ],
            )),
            "doas" => rest(skip(0, &["-u", "-C"])),
            "nice" => rest(skip(0, &["-n", "--adjustment"])),
            "ionice" => rest(skip(0, &["-c", "-n", "-p", "-P", "-u"])),
            "chrt" | "taskset" => {
                let i = skip(0, &[]);
                rest(i + 1)
            }
            "nohup" | "setsid" | "builtin" | "unbuffer" | "catchsegv" | "strace" | "ltrace"
            | "flock" | "firejail" | "proxychains" | "proxychains4" | "torsocks" => {
                rest(skip(0, &["-o", "-e", "-s", "-E", "-w"]))
            }
            "stdbuf" => rest(skip(0, &["-i", "-o", "-e"])),
            "time" => rest(skip(0, &["-f", "-o", "--format", "--output"])),
            "timeout" => {
                let i = skip(0, &["-s", "--signal", "-k", "--kill-after"]);
                rest(i + 1)
            }
            "command" => {
                if args
                    .iter()
                    .any(|a| matches!(a.as_deref(), Some("-v") | Some("-V")))
                {
                    Inner::None
                } else {
                    rest(skip(0, &[]))
                }
            }
            "exec" => rest(skip(0, &["-a"])),
            "watch" => {
                let i = skip(0, &["-n", "--interval", "-d", "--differences", "-g", "-q"]);
                if i < args.len() {
                    if args[i..].iter().all(|x| x.is_some()) {
                        Inner::Shell(
                            args[i..]
                                .iter()
                                .map(|x| x.clone().unwrap_or_default())
                                .collect::<Vec<_>>()
                                .join(" "),
                        )
                    } else {
                        Inner::Dynamic("watch with a computed command".into())
                    }
                } else {
                    Inner::None
                }
            }
            "xargs" => {
                let i = skip(
                    0,
                    &[
                        "-I",
                        "-i",
                        "-n",
                        "-P",
                        "-d",
                        "-L",
                        "-l",
                        "-s",
                        "-E",
                        "-e",
                        "-a",
                        "--max-args",
                        "--max-procs",
                        "--delimiter",
                        "--arg-file",
                    ],
                );
                if i < args.len() {
                    rest(i)
                } else {
                    Inner::Argv(vec![Some("echo".into())])
                }
            }
            "parallel" => {
                let i = skip(
                    0,
                    &["-j", "--jobs", "-S", "--sshlogin", "--delay", "-N", "-n"],
                );
                let end = args
                    .iter()
                    .position(|a| matches!(a.as_deref(), Some(":::") | Some("::::") | Some(":::+")))
                    .unwrap_or(args.len());
                if i < end {
                    Inner::Argv(args[i..end].to_vec())
                } else {
                    Inner::Dynamic("parallel with commands from its input".into())
                }
            }
            "find" | "fd" | "fdfind" => {
                let mut out = Vec::new();
                let mut i = 0;
                while i < args.len() {
                    if matches!(
                        args[i].as_deref(),
                        Some("-exec")
                            | Some("-execdir")
                            | Some("-ok")
                            | Some("-okdir")
                            | Some("-x")
                            | Some("--exec")
                            | Some("-X")
                            | Some("--exec-batch")
                    ) {
                        let end = (i + 1..args.len())
                            .find(|&j| {
                                matches!(args[j].as_deref(), Some(";") | Some("+") | Some("\\;"))
                            })
                            .unwrap_or(args.len());
                        if i + 1 < end {
                            out.push(args[i + 1..end].to_vec());
                        }
                        i = end;
                    }
                    i += 1;
                }
                Inner::Many(out)
            }
            "npx" | "pnpx" | "bunx" => npx_like(args),
            "npm" | "pnpm" | "yarn" | "bun" => match s(0).as_deref() {
                Some("exec") | Some("x") | Some("dlx") => npx_like(&args[1..]),
                _ => Inner::None,
            },
            "git" => {
                let mut out = Inner::None;
                let mut i = 0;
                while i + 1 < args.len() {
                    if args[i].as_deref() == Some("-c") {
                        match args[i + 1].as_deref() {
                            Some(kv) => {
                                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                                let k = k.to_ascii_lowercase();
                                if k.starts_with("alias.") && v.starts_with('!') {
                                    out = Inner::Shell(v[1..].to_string());
                                } else if [
                                    "core.pager",
                                    "core.editor",
                                    "core.sshcommand",
                                    "core.fsmonitor",
                                    "core.hookspath",
                                    "core.askpass",
                                    "diff.external",
                                    "sequence.editor",
                                    "credential.helper",
                                    "gpg.program",
                                    "core.gitproxy",
                                ]
                                .contains(&k.as_str())
                                    || k.starts_with("pager.")
                                    || (k.starts_with("filter.")
                                        || k.starts_with("diff.")
                                        || k.starts_with("merge."))
                                        && (k.ends_with(".clean")
                                            || k.ends_with(".smudge")
                                            || k.ends_with(".textconv")
                                            || k.ends_with(".driver")
                                            || k.ends_with(".command"))
                                {
                                    out = if v.is_empty() {
                                        Inner::Dynamic(format!("git -c {k} sets a program"))
                                    } else {
                                        Inner::Shell(v.to_string())
                                    };
                                }
                            }
                            None => {
                                return Some(Inner::Dynamic(
                                    "git -c with a computed setting".into(),
                                ))
                            }
                        }
                        i += 2;
                    } else {
                        i += 1;
                    }
                }
                out
            }
            "make" | "gmake" => {
                let from_stdin = args.windows(2).any(|w| {
                    matches!(
                        (w[0].as_deref(), w[1].as_deref()),
                        (Some("-f"), Some("-")) | (Some("--file"), Some("-"))
                    )
                }) || args
                    .iter()
                    .any(|a| matches!(a.as_deref(), Some("--file=-") | Some("-f-")));
                if from_stdin {
                    Inner::Dynamic("make reads its makefile from standard input".into())
                } else {
                    Inner::None
                }
            }
            _ => return None,
        })
    }
}

enum Inner {
    Argv(Vec<Option<String>>),
    Many(Vec<Vec<Option<String>>>),
    Shell(String),
    Dynamic(String),
    None,
}

fn npx_like(args: &[Option<String>]) -> Inner {
    let mut i = 0;
    while let Some(a) = args.get(i) {
        match a.as_deref() {
            Some("-p") | Some("--package") | Some("-c") | Some("--call") => {
                if a.as_deref() == Some("-c") || a.as_deref() == Some("--call") {
                    return match args.get(i + 1) {
                        Some(Some(code)) => Inner::Shell(code.clone()),
                        _ => Inner::Dynamic("npx -c with a computed command".into()),
                    };
                }
                i += 2
            }
            Some(o) if o.starts_with('-') => i += 1,
            Some(pkg) => {
                // @scope/name@version -> name
                let p = pkg.rsplit('/').next().unwrap_or(pkg);
                let p = p
                    .split('@')
                    .find(|x| !x.is_empty())
                    .unwrap_or(p)
                    .to_string();
                let mut v = vec![Some(p)];
                v.extend(args[i + 1..].iter().cloned());
                return Inner::Argv(v);
            }
            None => return Inner::Dynamic("npx with a computed package".into()),
        }
    }
    Inner::None
}

/// Backslash removal in an unquoted word.
fn unescape_word(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c == '\\' {
            match it.next() {
                Some('\n') | None => {}
                Some(n) => out.push(n),
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Backslash handling inside double quotes (only \$ \` \" \\ and newline are special).
fn unescape_dq(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        if c == '\\' {
            match it.peek() {
                Some('$') | Some('`') | Some('"') | Some('\\') => {
                    out.push(it.next().unwrap_or('\\'))
                }
                Some('\n') => {
                    it.next();
                }
                _ => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Decodes the body of `$'...'`.
pub fn decode_ansi_c(s: &str) -> String {
    let b: Vec<char> = s.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    let hex = |cs: &[char]| {
        u32::from_str_radix(&cs.iter().collect::<String>(), 16)
            .ok()
            .and_then(char::from_u32)
    };
    while i < b.len() {
        if b[i] != '\\' || i + 1 >= b.len() {
            out.push(b[i]);
            i += 1;
            continue;
        }
        let c = b[i + 1];
        i += 2;
        match c {
            'n' => out.push('\n'),
            't' => out.push('\t'),
            'r' => out.push('\r'),
            'a' => out.push('\x07'),
            'b' => out.push('\x08'),
            'e' | 'E' => out.push('\x1b'),
            'f' => out.push('\x0c'),
            'v' => out.push('\x0b'),
            '\\' | '\'' | '"' | '?' => out.push(c),
            'x' => {
                let n = (i..b.len().min(i + 2))
                    .take_while(|&j| b[j].is_ascii_hexdigit())
                    .count();
                if let Some(ch) = hex(&b[i..i + n]) {
                    out.push(ch);
                }
                i += n;
            }
            'u' | 'U' => {
                let max = if c == 'u' { 4 } else { 8 };
                let n = (i..b.len().min(i + max))
                    .take_while(|&j| b[j].is_ascii_hexdigit())
                    .count();
                if let Some(ch) = hex(&b[i..i + n]) {
                    out.push(ch);
                }
                i += n;
            }
            '0'..='7' => {
                let start = i - 1;
                let n = (start..b.len().min(start + 3))
                    .take_while(|&j| ('0'..='7').contains(&b[j]))
                    .count();
                let v = u32::from_str_radix(&b[start..start + n].iter().collect::<String>(), 8)
                    .unwrap_or(0);
                if let Some(ch) = char::from_u32(v) {
                    out.push(ch);
                }
                i = start + n;
            }
            other => {
                out.push('\\');
                out.push(other);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    fn names(src: &str) -> Vec<String> {
        analyze(src)
            .commands
            .iter()
            .filter_map(|c| c.name().map(|n| basename(n).to_string()))
            .collect()
    }
    #[test]
    fn obfuscations_resolve_to_the_program() {
        for src in [
            "c\\url x",
            "$'\\x63url' x",
            "\"cu\"\"rl\" x",
            "'curl' x",
            "cu''rl x",
            "sudo -u root curl x",
            "env -i FOO=1 curl x",
            "bash -c 'curl x'",
            "sh -c \"curl x\"",
            "eval curl x",
            "timeout 5 curl x",
            "xargs -n1 curl < f",
            "find . -exec curl {} \\;",
            "echo $(curl x)",
            "cat <(curl x)",
            "f() { curl x; }; f",
            "alias c=curl; c x",
            "git -c alias.x='!curl x' x",
            "npx curl",
            "watch -n1 curl x",
            "bash <<EOF\ncurl x\nEOF\n",
            "command curl x",
            "exec curl x",
            "nohup nice -n 5 stdbuf -oL curl x",
            "/proc/self/root/usr/bin/curl x",
        ] {
            let n = names(src);
            assert!(n.iter().any(|x| x == "curl"), "{src:?}: {n:?}");
        }
    }
    #[test]
    fn dynamic_constructs_are_flagged() {
        for src in [
            "$X x",
            "${X:-curl} x",
            "eval \"$cmd\"",
            "echo Y3VybA== | base64 -d | sh",
            "$(echo curl) x",
            "make -f - < m",
            "bash -c \"$C\"",
        ] {
            let a = analyze(src);
            assert!(!a.dynamic.is_empty(), "{src:?}: {a:?}");
        }
        assert!(analyze("echo 'unterminated").parse_error);
    }
    #[test]
    fn writes_are_collected() {
        let a = analyze("echo x > .git/hooks/pre-commit; cat a >> ~/.bashrc; ls 2>/dev/null");
        assert!(a.writes.contains(&Some(".git/hooks/pre-commit".into())));
        assert!(a.writes.contains(&Some("~/.bashrc".into())));
    }
}
