//! The ways people install their agent, each run through `warden run --profile <agent>` in a
//! throw-away HOME with a fake install tree (a shell script that prints a marker), plus the
//! real npm install when present: Anthropic's native installer (`~/.local/bin/claude` is a
//! symlink into `~/.local/share/claude/versions/`), npm global prefixes (`~/.npm-global`, a
//! custom prefix under `$HOME`, `/usr/lib/node_modules`), a project-local `node_modules/.bin`.
//! Also: commands the view hides fail before launch with their own message and exit 127
//! (exit 4 stays "missing kernel feature"), package caches are writable without the host's
//! copy ever changing, and an agent's OAuth credentials are visible to its own profile only.

use super::common::text as show;
use super::common::warden;
use super::common::Scratch;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::{Output, Stdio};

struct T(Scratch);

impl std::ops::Deref for T {
    type Target = Scratch;
    fn deref(&self) -> &Scratch {
        &self.0
    }
}

impl T {
    fn new(name: &str) -> T {
        T(Scratch::beside("warden-inst", name))
    }

    /// A fake agent: a script printing `marker` and its arguments.
    fn script(&self, path: &Path, marker: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        // Written by a child process: a write fd held by this (multi-threaded) test process
        // leaks into children other tests fork meanwhile, and the exec guard then rightly
        // refuses a program someone holds open for write (ETXTBSY's cousin).
        let st = std::process::Command::new("/bin/sh")
            .args([
                "-c",
                "printf '#!/bin/sh\\necho %s \"$@\"\\n' \"$1\" > \"$2\" && chmod 755 \"$2\"",
                "sh",
                marker,
            ])
            .arg(path)
            .status()
            .unwrap();
        assert!(st.success());
    }

    fn link(&self, target: &str, at: &Path) {
        std::fs::create_dir_all(at.parent().unwrap()).unwrap();
        symlink(target, at).unwrap();
    }

    fn run(&self, path_prefix: &[&Path], args: &[&str]) -> Output {
        let mut path: Vec<String> = path_prefix
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        path.push("/usr/local/bin:/usr/bin:/bin".into());
        warden(&self.home)
            .arg("run")
            .args(args)
            .current_dir(&self.ws)
            .env("PATH", path.join(":"))
            .stdin(Stdio::null())
            .output()
            .expect("spawn warden")
    }
}

fn ran(o: &Output, marker: &str) {
    assert!(
        o.status.success() && String::from_utf8_lossy(&o.stdout).contains(marker),
        "expected the agent to run and print {marker}:\n{}",
        show(o)
    );
}

/// Native installer: `~/.local/bin/claude -> ../share/claude/versions/X`. Both `claude` and
/// a plain `true` must run under `--profile claude` (the symlink used to make every run fail
/// with "create ~/.local/bin/claude: Read-only file system", exit 4). Nothing is created on
/// the host.
#[test]
fn native_installer_symlink() {
    let t = T::new("native");
    let v = t.home.join(".local/share/claude/versions/2.1.330");
    t.script(&v, "NATIVE-OK");
    t.link(
        "../share/claude/versions/2.1.330",
        &t.home.join(".local/bin/claude"),
    );
    let bin = t.home.join(".local/bin");
    ran(
        &t.run(&[&bin], &["--profile", "claude", "--", "claude", "x"]),
        "NATIVE-OK x",
    );
    // By absolute path, and through the symlink from a shell inside.
    ran(
        &t.run(
            &[&bin],
            &[
                "--profile",
                "claude",
                "--",
                bin.join("claude").to_str().unwrap(),
            ],
        ),
        "NATIVE-OK",
    );
    ran(
        &t.run(
            &[&bin],
            &[
                "--profile",
                "claude",
                "--",
                "/bin/sh",
                "-c",
                "claude in-shell",
            ],
        ),
        "NATIVE-OK in-shell",
    );
    let o = t.run(&[&bin], &["--profile", "claude", "--", "true"]);
    assert!(o.status.success(), "{}", show(&o));
    // The versions directory is read-only inside (the agent cannot replace its own binary).
    let o = t.run(
        &[&bin],
        &[
            "--profile",
            "claude",
            "--",
            "/bin/sh",
            "-c",
            &format!("echo evil > {}", v.display()),
        ],
    );
    assert!(!o.status.success(), "{}", show(&o));
    assert!(std::fs::read_to_string(&v).unwrap().contains("NATIVE-OK"));
    // The host's tree is as it was: one symlink, one file.
    assert!(std::fs::symlink_metadata(bin.join("claude"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(std::fs::read_dir(&bin).unwrap().count(), 1);
}

/// The native symlink exists but the user runs an npm install that comes first on PATH
/// (they used to break together): the npm one runs.
#[test]
fn native_symlink_next_to_npm_global() {
    let t = T::new("both");
    t.script(
        &t.home.join(".local/share/claude/versions/2.1.330"),
        "NATIVE",
    );
    t.link(
        "../share/claude/versions/2.1.330",
        &t.home.join(".local/bin/claude"),
    );
    let pkg = t
        .home
        .join(".npm-global/lib/node_modules/@anthropic-ai/claude-code/bin/claude.exe");
    t.script(&pkg, "NPM-GLOBAL-OK");
    t.link(
        "../lib/node_modules/@anthropic-ai/claude-code/bin/claude.exe",
        &t.home.join(".npm-global/bin/claude"),
    );
    let npm_bin = t.home.join(".npm-global/bin");
    let local_bin = t.home.join(".local/bin");
    ran(
        &t.run(
            &[&npm_bin, &local_bin],
            &["--profile", "claude", "--", "claude"],
        ),
        "NPM-GLOBAL-OK",
    );
    ran(
        &t.run(
            &[&local_bin, &npm_bin],
            &["--profile", "claude", "--", "claude"],
        ),
        "NATIVE",
    );
}

/// npm with a prefix under $HOME that no profile names (`npm config set prefix ~/.local/npm`):
/// the command's own `node_modules` tree is shown read-only, including a sibling package it
/// loads (hoisted dependency), and nothing else of the prefix.
#[test]
fn npm_custom_prefix_in_home() {
    let t = T::new("prefix");
    let nm = t.home.join(".local/npm/lib/node_modules");
    t.script(&nm.join("@openai/codex/bin/codex.js"), "CUSTOM-PREFIX-OK");
    t.script(&nm.join("@openai/codex-linux-x64/bin/codex"), "SIBLING-OK");
    t.link(
        "../lib/node_modules/@openai/codex/bin/codex.js",
        &t.home.join(".local/npm/bin/codex"),
    );
    let bin = t.home.join(".local/npm/bin");
    ran(
        &t.run(&[&bin], &["--profile", "codex", "--", "codex"]),
        "CUSTOM-PREFIX-OK",
    );
    let sib = nm.join("@openai/codex-linux-x64/bin/codex");
    ran(
        &t.run(
            &[&bin],
            &["--profile", "codex", "--", sib.to_str().unwrap()],
        ),
        "SIBLING-OK",
    );
}

/// A project-local install: `node_modules/.bin/gemini -> ../@google/gemini-cli/bundle/gemini.js`.
#[test]
fn npm_project_local() {
    let t = T::new("local");
    t.script(
        &t.ws
            .join("node_modules/@google/gemini-cli/bundle/gemini.js"),
        "LOCAL-OK",
    );
    t.link(
        "../@google/gemini-cli/bundle/gemini.js",
        &t.ws.join("node_modules/.bin/gemini"),
    );
    let bin = t.ws.join("node_modules/.bin");
    ran(
        &t.run(&[&bin], &["--profile", "gemini", "--", "gemini"]),
        "LOCAL-OK",
    );
    ran(
        &t.run(
            &[],
            &["--profile", "gemini", "--", "./node_modules/.bin/gemini"],
        ),
        "LOCAL-OK",
    );
}

/// The real npm installs (scripts/bootstrap.sh), when present.
#[test]
fn real_npm_installs_start() {
    let t = T::new("real");
    // The native symlink next to them must not matter.
    t.script(&t.home.join(".local/share/claude/versions/0.0.1"), "NATIVE");
    t.link(
        "../share/claude/versions/0.0.1",
        &t.home.join(".local/bin/claude"),
    );
    let mut any = false;
    for (cli, profile, want) in [
        ("claude", "claude", "Claude Code"),
        ("codex", "codex", "codex-cli"),
        ("gemini", "gemini", "."),
    ] {
        let Some(dir) = ["/usr/bin", "/usr/local/bin"]
            .iter()
            .find(|d| Path::new(d).join(cli).exists())
        else {
            eprintln!("SKIP {cli}: not installed (scripts/bootstrap.sh installs it)");
            continue;
        };
        any = true;
        let o = t.run(
            &[Path::new(dir)],
            &["--profile", profile, "--", cli, "--version"],
        );
        ran(&o, want);
    }
    if !any {
        eprintln!("SKIP real_npm_installs_start: no agent CLI installed");
    }
}

/// A command the view hides (under /tmp, under $HOME) or that does not exist: exit 127 and a
/// message naming what hides it; never exit 4 ("missing kernel feature").
#[test]
fn hidden_and_missing_commands() {
    let t = T::new("hidden");
    let outside = t.root.join("outside-tool");
    t.script(&outside, "SHOULD-NOT-RUN");
    let o = t.run(&[], &["--", outside.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(127), "{}", show(&o));
    assert!(
        err.contains("hidden inside the sandbox") && err.contains("files.read"),
        "{}",
        show(&o)
    );
    // On PATH, in a hidden directory: a shell inside says "command not found", and warden
    // names the hidden PATH directory before launch. (Named as the command itself, its
    // directory is shown: the user chose to run it.)
    let hb = t.home.join("bin");
    t.script(&hb.join("mytool"), "MYTOOL-RAN");
    let o = t.run(&[&hb], &["--", "/bin/sh", "-c", "mytool"]);
    assert_eq!(o.status.code(), Some(127), "{}", show(&o));
    assert!(!String::from_utf8_lossy(&o.stdout).contains("MYTOOL-RAN"));
    ran(&t.run(&[&hb], &["--", "mytool"]), "MYTOOL-RAN");
    let o = t.run(&[&hb], &["--", "true"]);
    assert!(o.status.success(), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(&hb.display().to_string()),
        "the PATH note names the hidden directory: {}",
        show(&o)
    );
    let o = t.run(&[], &["--", "no-such-command-warden-test"]);
    assert_eq!(o.status.code(), Some(127), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("command not found"),
        "{}",
        show(&o)
    );
    // Shown with files.read: runs.
    let pol = t.root.join("p.toml");
    std::fs::write(&pol, format!("[files]\nread = [\"{}\"]\n", hb.display())).unwrap();
    ran(
        &t.run(
            &[&hb],
            &[
                "--policy",
                pol.to_str().unwrap(),
                "--",
                "/bin/sh",
                "-c",
                "mytool",
            ],
        ),
        "MYTOOL-RAN",
    );
}

/// Package caches: a build can add to `~/.cargo/registry` and `~/.npm` inside the session,
/// and read what was there; the host's cache is unchanged afterwards (no poisoning of what
/// the host builds later).
#[test]
fn caches_are_writable_without_touching_the_host() {
    let t = T::new("cache");
    let src = t
        .home
        .join(".cargo/registry/src/index/foo-1.0.0/src/lib.rs");
    std::fs::create_dir_all(src.parent().unwrap()).unwrap();
    std::fs::write(&src, "pub fn good() {}\n").unwrap();
    std::fs::create_dir_all(t.home.join(".npm/_cacache")).unwrap();
    let script = format!(
        "set -e; cat {src}; echo 'pub fn evil() {{}}' > {src}; grep evil {src}; \
         mkdir -p ~/.cargo/registry/cache/index && echo new > ~/.cargo/registry/cache/index/bar-2.0.0.crate; \
         cat ~/.cargo/registry/cache/index/bar-2.0.0.crate; echo x > ~/.npm/_cacache/entry; echo CACHE-OK",
        src = src.display()
    );
    let o = t.run(&[], &["--", "/bin/bash", "-c", &script]);
    ran(&o, "CACHE-OK");
    assert!(String::from_utf8_lossy(&o.stdout).contains("pub fn good"));
    // From the host, after the session.
    assert_eq!(std::fs::read_to_string(&src).unwrap(), "pub fn good() {}\n");
    assert!(!t.home.join(".cargo/registry/cache").exists());
    assert!(!t.home.join(".npm/_cacache/entry").exists());
    // A cache the user linked into the workspace is no overlay there, and warden says so
    // before the session (attack review 126, F2: it was silent).
    let inside = t.ws.join("pipc");
    std::fs::create_dir_all(&inside).unwrap();
    std::fs::create_dir_all(t.home.join(".cache")).unwrap();
    std::os::unix::fs::symlink(&inside, t.home.join(".cache/pip")).unwrap();
    let o = t.run(
        &[],
        &[
            "--",
            "/bin/bash",
            "-c",
            "echo x > ~/.cache/pip/w; echo LINKED-OK",
        ],
    );
    ran(&o, "LINKED-OK");
    let said = String::from_utf8_lossy(&o.stderr);
    assert!(
        said.contains("files.cache entry") && said.contains("not a discarded overlay"),
        "{}",
        show(&o)
    );
    assert!(
        inside.join("w").exists(),
        "the workspace is written as always"
    );
}

/// `~/.claude/.credentials.json` (subscription login): readable and refreshable under
/// `--profile claude`, invisible everywhere else, even when a policy shows `~/.claude`.
#[test]
fn agent_credentials_stay_with_their_agent() {
    let t = T::new("creds");
    let cred = t.home.join(".claude/.credentials.json");
    std::fs::create_dir_all(cred.parent().unwrap()).unwrap();
    std::fs::write(&cred, "{\"token\":\"oauth-secret-1\"}").unwrap();
    let codex_auth = t.home.join(".codex/auth.json");
    std::fs::create_dir_all(codex_auth.parent().unwrap()).unwrap();
    std::fs::write(&codex_auth, "{\"token\":\"codex-secret\"}").unwrap();
    let refresh = format!(
        "cat {c}; echo; printf '{{\"token\":\"oauth-secret-2\"}}' > {c}.tmp && mv {c}.tmp {c}; cat {c}; echo; cat {a} || echo CODEX-HIDDEN",
        c = cred.display(),
        a = codex_auth.display()
    );
    let o = t.run(
        &[],
        &["--profile", "claude", "--", "/bin/bash", "-c", &refresh],
    );
    let so = String::from_utf8_lossy(&o.stdout);
    assert!(
        so.contains("oauth-secret-1") && so.contains("CODEX-HIDDEN"),
        "{}",
        show(&o)
    );
    assert!(!so.contains("codex-secret"), "{}", show(&o));
    assert_eq!(
        std::fs::read_to_string(&cred).unwrap(),
        "{\"token\":\"oauth-secret-2\"}",
        "the refreshed token reached the host"
    );
    let pol = t.root.join("p.toml");
    std::fs::write(&pol, "[files]\nread = [\"~/.claude\"]\n").unwrap();
    for args in [
        vec!["--"],
        vec!["--policy", pol.to_str().unwrap(), "--"],
        vec!["--profile", "codex", "--"],
        vec!["--profile", "gemini", "--"],
    ] {
        let mut a = args.clone();
        let cmd = format!("cat {} || echo NO-CRED", cred.display());
        a.extend(["/bin/bash", "-c", &cmd]);
        let o = t.run(&[], &a);
        let so = String::from_utf8_lossy(&o.stdout);
        // Hidden: absent, or an empty file where a shown directory holds it.
        assert!(
            o.status.success() && !so.contains("oauth-secret"),
            "{args:?}: {}",
            show(&o)
        );
    }
    // Subscription sign-in, refresh and the start-up check reach their hosts under the claude
    // profile only.
    for (profile, host, allowed) in [
        ("claude", "platform.claude.com:443", true),
        ("claude", "claude.ai:443", true),
        ("claude", "api.anthropic.com:443", true),
        ("generic", "platform.claude.com:443", false),
        ("codex", "claude.ai:443", false),
    ] {
        let o = warden(&t.home)
            .args(["explain", "--profile", profile, "--connect", host])
            .current_dir(&t.ws)
            .output()
            .unwrap();
        let so = String::from_utf8_lossy(&o.stdout);
        assert_eq!(
            so.starts_with("allowed"),
            allowed,
            "{profile} {host}: {}",
            show(&o)
        );
    }
}
