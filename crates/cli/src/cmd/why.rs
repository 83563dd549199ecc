//! `warden why <path|host|command>`: why something failed, from inside a session too.
//!
//! Inside `warden run` the only policy read is the run's effective policy that the sandbox's
//! init placed on a read-only mount ([`warden_policy::session::locate`], the same channel
//! `warden hook` uses); no policy file, flag or variable the agent can change is read there.
//! Outside, the user's policy is loaded as `warden explain` does. The decisions themselves
//! come from the layers' own rule code (files: `warden_policy::files`, exec:
//! `warden_execguard::rules`, network: `warden_proxy::explain`), so `why` answers as they
//! decide. It prints the rule, what the agent sees because of it (ENOENT, EROFS, an empty
//! file, HTTP 403), and the policy line a human would add outside the sandbox to allow it.

use super::{fail, home_dir, load_policy, workspace};
use crate::cli::WhyArgs;
use crate::exit;
use std::path::{Path, PathBuf};
use warden_policy::files::{Access, FileRules, PathDecision};
use warden_policy::session::Location;

/// One answer about one kind of action.
#[derive(serde::Serialize)]
struct Answer {
    action: String,
    allowed: bool,
    layer: &'static str,
    rule: String,
    /// What the agent meets because of the rule.
    effect: String,
    /// What a human changes, outside the sandbox, to allow it.
    to_allow: Option<String>,
}

struct Ctx {
    policy: warden_policy::Policy,
    home: PathBuf,
    rules: FileRules,
    inside: bool,
}

pub fn why(a: WhyArgs) -> anyhow::Result<i32> {
    let ctx = match warden_policy::session::locate() {
        Location::Inside(s) => {
            let anchors = warden_policy::Anchors {
                home: s.home.clone(),
                workspace: s.workspace.clone(),
            };
            Ctx {
                rules: FileRules::session(&s.policy, &anchors),
                home: s.home.clone(),
                policy: s.policy,
                inside: true,
            }
        }
        Location::Broken(e) => {
            return Err(fail(
                exit::POLICY,
                format!("inside a warden sandbox, but the session's policy cannot be read: {e}"),
            ))
        }
        Location::Outside => {
            let ws = workspace(&a.policy.workspace)?;
            let loaded = load_policy(&a.policy, Some(&ws))?;
            let anchors = warden_policy::Anchors {
                home: home_dir(),
                workspace: ws,
            };
            Ctx {
                rules: FileRules::new(&loaded.policy, &anchors, None),
                home: anchors.home.clone(),
                policy: loaded.policy,
                inside: false,
            }
        }
    };
    let t = a.target.trim();
    if t.is_empty() {
        return Err(fail(
            exit::USAGE,
            "warden why: name a path, host or command",
        ));
    }
    let answers = if t.contains("://") {
        vec![host_answer(&ctx, t)?]
    } else if looks_like_path(t) {
        path_answers(&ctx, &expand(t, &ctx.home))
    } else if looks_like_host(t) {
        vec![host_answer(&ctx, t)?]
    } else {
        command_answers(&ctx, t)
    };
    let denied = answers.iter().any(|x| !x.allowed);
    if a.json {
        println!(
            "{}",
            serde_json::json!({"target": t, "inside_session": ctx.inside, "answers": answers})
        );
    } else {
        print!("{}", render(t, &ctx, &answers));
    }
    Ok(if denied { exit::DENIED } else { exit::OK })
}

fn looks_like_path(t: &str) -> bool {
    t.starts_with('/')
        || t.starts_with('~')
        || t.starts_with('.')
        || t.contains('/')
        || std::fs::symlink_metadata(t).is_ok()
}

fn looks_like_host(t: &str) -> bool {
    !t.contains(char::is_whitespace)
        && (t.contains('.') || t.contains(':') || t == "localhost")
        && !Path::new(t).exists()
}

fn expand(t: &str, home: &Path) -> PathBuf {
    let p = if t == "~" {
        home.to_path_buf()
    } else if let Some(rest) = t.strip_prefix("~/") {
        home.join(rest)
    } else {
        PathBuf::from(t)
    };
    if p.is_absolute() {
        p
    } else {
        std::env::current_dir().map(|c| c.join(&p)).unwrap_or(p)
    }
}

/// The policy entry as the user wrote it (`~/.ssh`), for an expanded one.
fn written(ctx: &Ctx, list: &[String], entry: &Path) -> String {
    let anchors = warden_policy::Anchors {
        home: ctx.home.clone(),
        workspace: ctx.rules.workspace.clone(),
    };
    list.iter()
        .find(|e| anchors.expand(e.trim_end_matches('/')) == entry)
        .cloned()
        .unwrap_or_else(|| entry.display().to_string())
}

fn file_answer(ctx: &Ctx, path: &Path, access: Access) -> Answer {
    let d: PathDecision = ctx.rules.decide(path, access);
    let verb = if access == Access::Read {
        "read"
    } else {
        "write"
    };
    // Under the private trees a hidden path is absent, unless a root bound back in (the
    // workspace, files.read, ...) shows it: there it is covered by an empty file.
    let under_private = |p: &Path| {
        let r = &ctx.rules;
        let bound = p.starts_with(&r.workspace)
            || [&r.system, &r.read, &r.write, &r.state, &r.install]
                .iter()
                .any(|l| l.iter().any(|x| p.starts_with(x)));
        !bound
            && (p.starts_with(&ctx.home)
                || warden_policy::files::PRIVATE_TREES
                    .iter()
                    .any(|t| p.starts_with(t)))
    };
    let (rule, effect, to_allow) = match (d.allowed, d.rule, &d.entry) {
        (true, r, e) => (
            match e {
                Some(e) => format!("{r}:{}", e.display()),
                None => r.to_string(),
            },
            format!("allowed ({})", d.explain(path, access)),
            None,
        ),
        (false, "files.deny", Some(e)) => {
            let w = written(ctx, &ctx.policy.files.deny, e);
            let effect = if under_private(path) {
                "hidden: it does not exist in the sandbox's view (No such file or directory)"
            } else {
                "hidden: the sandbox shows an empty read-only file (or an unreadable empty directory) in its place"
            };
            (
                format!("files.deny:{w}"),
                effect.to_string(),
                Some(format!(
                    "files.deny always wins (files.read cannot lift it): a human removes \"{w}\" from `[files] deny` of the policy or profile that lists it (`warden policy show` prints the effective policy), outside the sandbox, and starts a new session"
                )),
            )
        }
        (false, "files.protect", Some(e)) => {
            let w = written(ctx, &ctx.policy.files.protect, e);
            (
                format!("files.protect:{w}"),
                "read-only, even where the rest is writable (Read-only file system); the host runs or loads what is written there, so a human must see it first".to_string(),
                Some(format!(
                    "make the change yourself outside the sandbox, or a human removes \"{w}\" from `[files] protect` of the policy that lists it and starts a new session"
                )),
            )
        }
        (false, r, _) => {
            let effect = if access == Access::Write {
                "not writable: only the workspace, the private TMPDIR and files.write are (Read-only file system or Permission denied)"
            } else {
                "not in the sandbox's view: only files.system, files.read, the workspace and the agent's own directories are (No such file or directory)"
            };
            (
                r.to_string(),
                effect.to_string(),
                Some(format!(
                    "add to ~/.config/warden/policy.toml, outside the sandbox, then start a new session:\n      [files]\n      {verb} = [\"{}\"]",
                    path.display()
                )),
            )
        }
    };
    Answer {
        action: format!("{verb} {}", path.display()),
        allowed: d.allowed,
        layer: "sandbox",
        rule,
        effect,
        to_allow,
    }
}

fn path_answers(ctx: &Ctx, path: &Path) -> Vec<Answer> {
    let mut out = vec![
        file_answer(ctx, path, Access::Read),
        file_answer(ctx, path, Access::Write),
    ];
    if is_executable(path) {
        out.push(exec_answer(ctx, path));
    }
    out
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

fn exec_answer(ctx: &Ctx, f: &Path) -> Answer {
    let action = format!("exec {}", f.display());
    let rules = match warden_execguard::rules::from_policy(&ctx.policy, &ctx.home) {
        Ok(r) => r,
        Err(e) => {
            return Answer {
                action,
                allowed: false,
                layer: "exec",
                rule: "exec".into(),
                effect: format!("the exec policy cannot be built here: {e}"),
                to_allow: None,
            }
        }
    };
    match rules.decide_file(f) {
        Ok((h, v)) => Answer {
            action: format!(
                "exec {} (sha256:{})",
                f.display(),
                warden_execguard::identity::hex(&h)
            ),
            allowed: v.allowed,
            layer: "exec",
            rule: v.rule.clone(),
            effect: if v.allowed {
                "allowed".into()
            } else {
                format!(
                    "{}: execve and executable mappings of this content fail (Permission denied), under any name, copy or loader",
                    v.reason
                )
            },
            to_allow: (!v.allowed).then(|| warden_execguard::rules::how_to_allow(&v).to_string()),
        },
        Err(e) => Answer {
            action,
            allowed: false,
            layer: "exec",
            rule: "exec".into(),
            effect: format!("cannot read it to compute its identity: {e}"),
            to_allow: None,
        },
    }
}

fn host_answer(ctx: &Ctx, t: &str) -> anyhow::Result<Answer> {
    let t = t
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let t = t.split('/').next().unwrap_or(t);
    let (allowed, rule, msg) =
        warden_proxy::explain(&ctx.policy, t).map_err(|e| fail(exit::USAGE, e))?;
    let host = t.rsplit_once(':').map(|(h, _)| h).unwrap_or(t);
    Ok(Answer {
        action: format!("connect {t}"),
        allowed,
        layer: "proxy",
        rule,
        effect: if allowed {
            msg
        } else {
            "refused by warden's proxy (HTTP 403, header x-warden: blocked; curl says `CONNECT tunnel failed, response 403`); direct sockets have no route out of the sandbox".to_string()
        },
        to_allow: (!allowed).then(|| {
            format!(
                "add to ~/.config/warden/policy.toml, outside the sandbox, then start a new session:\n      [network]\n      allow = [\"{host}\"]"
            )
        }),
    })
}

fn command_answers(ctx: &Ctx, name: &str) -> Vec<Answer> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for d in std::env::split_paths(&path) {
        let f = d.join(name);
        if is_executable(&f) {
            let mut v = vec![exec_answer(ctx, &f)];
            v.push(file_answer(ctx, &f, Access::Read));
            return v;
        }
    }
    // Not found in this view: say which PATH directories the policy hides (the command may
    // be installed there on the host; from inside, that cannot be known).
    let mut out: Vec<Answer> = Vec::new();
    let mut seen = Vec::new();
    for d in std::env::split_paths(&path) {
        if d.as_os_str().is_empty() || seen.contains(&d) {
            continue;
        }
        seen.push(d.clone());
        let mut a = file_answer(ctx, &d, Access::Read);
        if !a.allowed {
            a.action = format!("find {name} in PATH directory {}", d.display());
            out.push(a);
        }
    }
    if out.is_empty() {
        out.push(Answer {
            action: format!("run {name}"),
            allowed: true,
            layer: "sandbox",
            rule: "-".into(),
            effect: format!(
                "`{name}` is not on PATH here, and no rule hides a PATH directory: it is not installed (warden did not block it)"
            ),
            to_allow: None,
        });
    }
    out
}

fn render(t: &str, ctx: &Ctx, answers: &[Answer]) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "warden why {t}{}",
        if ctx.inside {
            " (this session's policy, read-only)"
        } else {
            " (your policy, outside a session)"
        }
    );
    for a in answers {
        let tag = if a.allowed {
            super::misc::green("allowed")
        } else {
            super::misc::red("denied")
        };
        let _ = writeln!(
            s,
            "  {}: {tag} by `{}` (layer {})",
            a.action, a.rule, a.layer
        );
        let _ = writeln!(s, "    effect: {}", a.effect);
        if let Some(h) = &a.to_allow {
            let _ = writeln!(s, "    to allow: {h}");
        }
    }
    if answers.iter().any(|a| !a.allowed) {
        let _ = writeln!(
            s,
            "  This is warden's decision, enforced outside the agent: retrying another way is blocked too. Only a human, outside the sandbox, can change it."
        );
    }
    s
}
