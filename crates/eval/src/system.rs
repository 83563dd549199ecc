//! The systems under test: how each one is detected, versioned and invoked.
//!
//! Every system gets the closest equivalent of warden's benchmark policy (deny the program
//! `curl`, no direct network, workspace writable, home and credentials hidden). Where a system
//! has no such rule, cases that test it are reported "not expressible", not "escaped".

use crate::case::Case;
use std::path::{Path, PathBuf};

/// How a system is run.
#[derive(Debug, Clone)]
pub enum Kind {
    /// Baseline: the action runs directly on the host (inside the scratch dir).
    None,
    /// This warden binary: `warden run --policy <scratch policy>`.
    Warden(PathBuf),
    /// Bubblewrap, configured like the agent sandboxes built on it.
    Bwrap(PathBuf),
    /// Codex CLI's own sandbox: `codex sandbox -P :workspace` (binary, CODEX_HOME).
    Codex(PathBuf, PathBuf),
    /// Anthropic's sandbox-runtime (`srt --settings <scratch settings.json>`).
    Srt(PathBuf),
    /// A user template: `name=cmd ... {cmd} ...`, run through `sh -c`.
    Template(String),
    /// Known but not runnable here (not installed, or no invocation implemented).
    Absent(String),
}

#[derive(Debug, Clone)]
pub struct System {
    pub name: String,
    pub kind: Kind,
    pub version: String,
    /// The invocation, with `{ws}`, `{home}`, `{policy}`, `{cmd}` placeholders, as documented.
    pub invocation: String,
    /// Rule kinds (see `case::RULES`) this system cannot express.
    pub lacks: Vec<&'static str>,
}

/// Paths a system invocation may refer to.
pub struct Ctx<'a> {
    /// The case's scratch dir (per-system settings files go here, outside the workspace).
    pub scratch: &'a Path,
    pub ws: &'a Path,
    pub home: &'a Path,
    pub policy: &'a Path,
}

/// The policy warden runs with in the benchmark (default profile plus the denied program).
pub const WARDEN_POLICY: &str = "[exec]\ndeny = [\"curl\"]\n";

pub fn which(prog: &str) -> Option<PathBuf> {
    if prog.contains('/') {
        let p = PathBuf::from(prog);
        return p.is_file().then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(prog))
        .find(|p| p.is_file())
}

fn version_of(bin: &Path, arg: &str) -> String {
    std::process::Command::new(bin)
        .arg(arg)
        .stdin(std::process::Stdio::null())
        .output()
        .ok()
        .and_then(|o| {
            let s = String::from_utf8_lossy(&o.stdout).to_string()
                + &String::from_utf8_lossy(&o.stderr);
            s.lines().next().map(|l| l.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

const NO_PROGRAM_POLICY: &[&str] = &["exec-deny"];

/// An `--against` entry that names no system.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SystemError {
    #[error("system name `{0}` must be letters, digits, `-`, `_`")]
    Name(String),
    #[error("template for `{0}` must contain {{cmd}}")]
    NoCmd(String),
    #[error("unknown system `{0}`: use none, warden, bwrap, codex, srt, nono, fapolicyd or name='cmd {{cmd}}'")]
    Unknown(String),
}

/// Resolves one `--against` entry: a known name or `name=template`.
pub fn resolve(spec: &str, warden_bin: &Path) -> Result<System, SystemError> {
    if let Some((name, tmpl)) = spec.split_once('=') {
        let name = name.trim();
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(SystemError::Name(name.to_string()));
        }
        if !tmpl.contains("{cmd}") {
            return Err(SystemError::NoCmd(name.to_string()));
        }
        return Ok(System {
            name: name.into(),
            kind: Kind::Template(tmpl.into()),
            version: "user template".into(),
            invocation: tmpl.into(),
            lacks: vec![],
        });
    }
    let absent = |name: &str, inv: &str, why: String| System {
        name: name.into(),
        kind: Kind::Absent(why),
        version: "-".into(),
        invocation: inv.into(),
        lacks: NO_PROGRAM_POLICY.to_vec(),
    };
    Ok(match spec {
        "none" => System {
            name: "none".into(),
            kind: Kind::None,
            version: "-".into(),
            invocation: "sh -c 'bash -c \"$1\"; exit $?' sh {action}   (a plain shell parent, so `kill $PPID` hits a stand-in supervisor, not the runner)".into(),
            lacks: vec![],
        },
        "warden" => System {
            name: "warden".into(),
            kind: Kind::Warden(warden_bin.to_path_buf()),
            version: format!("warden {}", env!("CARGO_PKG_VERSION")),
            invocation: format!(
                "{} run --quiet --policy {{policy}} -w {{ws}} -- {{cmd}}   (policy: {})",
                warden_bin.display(),
                WARDEN_POLICY.replace('\n', " ").trim()
            ),
            lacks: vec![],
        },
        "bwrap" => {
            let inv = "bwrap --ro-bind / / --dev /dev --proc /proc --tmpfs /tmp --tmpfs /var/tmp --tmpfs {home} --bind {ws} {ws} --unshare-all --new-session --die-with-parent --chdir {ws} -- {cmd}";
            match which("bwrap") {
                Some(b) => System {
                    name: "bwrap".into(),
                    version: version_of(&b, "--version"),
                    kind: Kind::Bwrap(b),
                    invocation: inv.into(),
                    lacks: NO_PROGRAM_POLICY.to_vec(),
                },
                None => absent("bwrap", inv, "not installed (apt-get install bubblewrap)".into()),
            }
        }
        "codex" => {
            // codex refuses to keep its helper binaries under a temporary dir, so its state
            // lives in the caller's cache dir, never in the user's ~/.codex.
            let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| "/root".into());
            let codex_home = home.join(".cache/warden-eval/codex-home");
            let inv = format!("env CODEX_HOME={} codex sandbox -P :workspace -C {{ws}} -- {{cmd}}   (the built-in workspace-write profile: writes to the workspace and /tmp, reads everywhere, no network)", codex_home.display());
            match which("codex") {
                Some(b) => System {
                    name: "codex".into(),
                    version: version_of(&b, "--version"),
                    kind: Kind::Codex(b, codex_home),
                    invocation: inv.clone(),
                    lacks: NO_PROGRAM_POLICY.to_vec(),
                },
                None => absent("codex", &inv, "not installed (npm install -g @openai/codex)".into()),
            }
        }
        "srt" => {
            let inv = "srt --settings {scratch}/srt-settings.json -- {cmd}   (settings: {\"network\":{\"allowedDomains\":[]},\"filesystem\":{\"denyRead\":[{home}],\"allowWrite\":[{ws}]}}; srt's own mandatory write-denies cover .git/hooks, .git/config and agent settings)";
            match which("srt") {
                Some(b) => System {
                    name: "srt".into(),
                    version: format!("srt {}", version_of(&b, "--version")),
                    kind: Kind::Srt(b),
                    invocation: inv.into(),
                    lacks: NO_PROGRAM_POLICY.to_vec(),
                },
                None => absent(
                    "srt",
                    inv,
                    "not installed (scripts/eval-peers.sh: npm install -g @anthropic-ai/sandbox-runtime; needs ripgrep, socat)".into(),
                ),
            }
        }
        "nono" => absent(
            "nono",
            "nono run --allow {ws} -- {cmd}",
            match which("nono") {
                Some(_) => "installed, but no invocation is implemented yet: pass --against 'nono=nono run --allow . -- {cmd}'".into(),
                None => "not installed (cargo install nono-cli)".into(),
            },
        ),
        "fapolicyd" => System {
            name: "fapolicyd".into(),
            kind: Kind::Absent(match which("fapolicyd") {
                Some(_) => "installed, but the benchmark never loads machine-wide rules on the host; run it in a VM with a deny rule for curl's sha256".into(),
                None => "not installed (apt-get install fapolicyd; machine-wide, VM only)".into(),
            }),
            version: "-".into(),
            invocation: "deny_audit perm=execute all : sha256hash=<curl>  in /etc/fapolicyd/rules.d, then {cmd}".into(),
            lacks: vec![],
        },
        other => {
            return Err(SystemError::Unknown(other.to_string()))
        }
    })
}

/// Single-quotes a word for sh.
pub fn shq(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

impl System {
    pub fn runnable(&self) -> bool {
        !matches!(self.kind, Kind::Absent(_))
    }

    /// Why this system cannot express the rule `case` tests, if it cannot.
    pub fn not_expressible(&self, case: &Case) -> Option<String> {
        if let Some(why) = case.not_expressible.get(&self.name) {
            return Some(why.clone());
        }
        match &case.rule {
            Some(r) if self.lacks.contains(&r.as_str()) => {
                Some(format!("{} has no {r} rule", self.name))
            }
            _ => None,
        }
    }

    /// The argv that runs `cmd` inside this system.
    pub fn argv(&self, ctx: &Ctx, cmd: &[String], wrap_parent: bool) -> Vec<String> {
        let s = |p: &Path| p.display().to_string();
        let mut v: Vec<String> = Vec::new();
        match &self.kind {
            Kind::None => {
                if wrap_parent {
                    v.extend(["sh", "-c", "\"$@\"; exit $?", "sh"].map(String::from));
                }
            }
            Kind::Warden(b) => {
                v.push(s(b));
                v.extend(["run", "--quiet", "--policy"].map(String::from));
                v.push(s(ctx.policy));
                v.push("-w".into());
                v.push(s(ctx.ws));
                v.push("--".into());
            }
            Kind::Bwrap(b) => {
                v.push(s(b));
                for a in [
                    "--ro-bind",
                    "/",
                    "/",
                    "--dev",
                    "/dev",
                    "--proc",
                    "/proc",
                    "--tmpfs",
                    "/tmp",
                    "--tmpfs",
                    "/var/tmp",
                ] {
                    v.push(a.into());
                }
                v.extend(["--tmpfs".into(), s(ctx.home)]);
                v.extend(["--bind".into(), s(ctx.ws), s(ctx.ws)]);
                for a in [
                    "--unshare-all",
                    "--new-session",
                    "--die-with-parent",
                    "--chdir",
                ] {
                    v.push(a.into());
                }
                v.push(s(ctx.ws));
                v.push("--".into());
            }
            Kind::Codex(b, home) => {
                let _ = std::fs::create_dir_all(home);
                v.push("env".into());
                v.push(format!("CODEX_HOME={}", s(home)));
                v.push(s(b));
                v.extend(["sandbox", "-P", ":workspace", "-C"].map(String::from));
                v.push(s(ctx.ws));
                v.push("--".into());
            }
            Kind::Srt(b) => {
                let settings = ctx.scratch.join("srt-settings.json");
                let json = serde_json::json!({
                    "network": {"allowedDomains": [], "deniedDomains": []},
                    "filesystem": {
                        "denyRead": [s(ctx.home)],
                        "allowWrite": [s(ctx.ws)],
                        "denyWrite": [],
                    },
                });
                // A write failure shows up as srt's own error in the cell.
                let _ = std::fs::write(&settings, json.to_string());
                v.push(s(b));
                v.push("--settings".into());
                v.push(s(&settings));
                v.push("--".into());
            }
            Kind::Template(t) => {
                let cmdq = cmd.iter().map(|a| shq(a)).collect::<Vec<_>>().join(" ");
                let line = t
                    .replace("{ws}", &shq(&s(ctx.ws)))
                    .replace("{home}", &shq(&s(ctx.home)))
                    .replace("{cmd}", &cmdq);
                return vec!["sh".into(), "-c".into(), line];
            }
            Kind::Absent(_) => return vec![],
        }
        v.extend(cmd.iter().cloned());
        v
    }
}

/// Finds `prog` in an explicit PATH string.
pub fn which_in(prog: &str, path: &str) -> Option<PathBuf> {
    path.split(':')
        .map(|d| Path::new(d).join(prog))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_rejects_bad_specs_precisely() {
        let me = Path::new("/bin/warden");
        let e = resolve("bogus", me).unwrap_err();
        assert_eq!(e, SystemError::Unknown("bogus".into()));
        assert!(e.to_string().contains("unknown system `bogus`"), "{e}");
        let e = resolve("x=run it", me).unwrap_err();
        assert!(e.to_string().contains("must contain {cmd}"), "{e}");
        let e = resolve("a b=x {cmd}", me).unwrap_err();
        assert!(e.to_string().contains("system name `a b`"), "{e}");
        assert!(resolve("=x {cmd}", me).is_err());
    }

    #[test]
    fn templates_quote_the_command_and_expand_paths() {
        let me = Path::new("/bin/warden");
        let s = resolve("box=mybox --root {ws} -- {cmd}", me).unwrap();
        let ctx = Ctx {
            scratch: Path::new("/s"),
            ws: Path::new("/s/w s"),
            home: Path::new("/s/h"),
            policy: Path::new("/s/p"),
        };
        let argv = s.argv(
            &ctx,
            &["bash".into(), "-c".into(), "echo 'a' $X".into()],
            true,
        );
        assert_eq!(argv[..2], ["sh".to_string(), "-c".to_string()]);
        assert_eq!(
            argv[2],
            r#"mybox --root '/s/w s' -- 'bash' '-c' 'echo '\''a'\'' $X'"#
        );
    }

    #[test]
    fn warden_and_none_invocations() {
        let me = Path::new("/bin/warden");
        let ctx = Ctx {
            scratch: Path::new("/s"),
            ws: Path::new("/s/w"),
            home: Path::new("/s/h"),
            policy: Path::new("/s/p.toml"),
        };
        let cmd = ["true".to_string()];
        let w = resolve("warden", me).unwrap().argv(&ctx, &cmd, true);
        assert_eq!(
            w.join(" "),
            "/bin/warden run --quiet --policy /s/p.toml -w /s/w -- true"
        );
        let n = resolve("none", me).unwrap();
        assert_eq!(n.argv(&ctx, &cmd, false), cmd.to_vec());
        assert_eq!(
            n.argv(&ctx, &cmd, true)[..2],
            ["sh".to_string(), "-c".to_string()]
        );
    }

    #[test]
    fn peers_without_a_program_policy_cannot_express_exec_deny() {
        let me = Path::new("/bin/warden");
        let mut c = crate::case::parse(
            "x/exec-x.toml",
            "id = \"exec-x\"\nclass = \"exec\"\ndescription = \"d\"\naction = \"a\"\ncheck = \"c\"\nrule = \"exec-deny\"\n",
        )
        .unwrap();
        let srt = resolve("srt", me).unwrap();
        assert!(srt.not_expressible(&c).is_some());
        assert!(resolve("warden", me).unwrap().not_expressible(&c).is_none());
        c.not_expressible.insert("warden".into(), "why".into());
        assert_eq!(
            resolve("warden", me)
                .unwrap()
                .not_expressible(&c)
                .as_deref(),
            Some("why")
        );
    }
}
