//! `warden hook`, `warden install`, `warden uninstall` (the work lives in warden-gate).

use super::{fail, home_dir};
use crate::cli::{Agent as CliAgent, HookArgs, InstallArgs, Scope as CliScope};
use crate::exit;
use std::io::Read;
use warden_gate::install::{self, Scope};
use warden_gate::protocol::{self, Agent};

fn agent(a: CliAgent) -> Agent {
    match a {
        CliAgent::Claude => Agent::Claude,
        CliAgent::Codex => Agent::Codex,
        CliAgent::Gemini => Agent::Gemini,
    }
}

/// Answers one hook event. Every failure path denies (exit 2), and so does the deadline.
///
/// Inside a `warden run` session (known from a read-only file the agent cannot remove, see
/// [`warden_policy::session`]) the policy is the run's effective policy and nothing else:
/// no policy file, flag or environment variable the agent could change is read, and no
/// persistent hash cache (it would live in the agent-writable private `$HOME`).
pub fn hook(a: HookArgs) -> anyhow::Result<i32> {
    let ag = agent(a.agent);
    let deadline = a
        .deadline_ms
        .map(std::time::Duration::from_millis)
        .unwrap_or(protocol::DEADLINE);
    let watchdog = protocol::Watchdog::start(ag, deadline);
    let location = warden_policy::session::locate();
    let inside = !matches!(location, warden_policy::session::Location::Outside);
    let home = match &location {
        warden_policy::session::Location::Inside(s) => s.home.clone(),
        _ => home_dir(),
    };
    // Inside `warden run` the decisions go to the run's session log, through the pipe it
    // passes in (HOME there is a throw-away tmpfs); elsewhere to the state directory.
    let log = sandbox_pipe().or_else(|| {
        if inside {
            return None;
        }
        warden_event::SessionLog::open(&super::run::state_dir(&home).join("hooks.jsonl")).ok()
    });
    warden_event::init_tracing(log, 0);
    warden_event::timing::mark("hook: log ready");
    let mut input = Vec::new();
    let read = std::io::stdin()
        .lock()
        .take(protocol::MAX_INPUT as u64 + 1)
        .read_to_end(&mut input);
    warden_event::timing::mark("hook: input read");
    let out = match (read, location) {
        (Err(e), _) => protocol::render(ag, "", &deny(format!("cannot read hook input: {e}"))),
        (Ok(_), warden_policy::session::Location::Broken(why)) => {
            protocol::render(ag, "", &deny(why))
        }
        (Ok(_), warden_policy::session::Location::Inside(s)) => {
            let env = protocol::HookEnv {
                policy: &s.policy,
                home,
                headless: a.headless,
                // The hashes `warden run` knows (of the denied files), as it passed them on
                // the read-only policy file: nothing persistent the agent could write.
                cache: std::sync::Arc::new(warden_execguard::cache::Cache::seeded(
                    s.known.iter().filter_map(|k| {
                        Some((
                            warden_execguard::identity::FileStamp {
                                dev: k.dev,
                                ino: k.ino,
                                size: k.size,
                                mtime_ns: k.mtime_ns,
                                ctime_ns: k.ctime_ns,
                            },
                            k.hash()?,
                        ))
                    }),
                )),
                session: Some(s.workspace.clone()),
                pinned: s.policy_pins().collect(),
            };
            let advisor = super::advisor::hook_stage(&s.policy, a.headless);
            // `[approvals] gate = "warden"`: an ask (after the advisor) waits for a human
            // outside the agent's loop. Headless asks were already denied by the rules.
            let gate_wait = super::gateask::wait(&s.policy);
            let post = |j: &warden_gate::protocol::Judged<'_>| {
                let adv = advisor.as_ref().and_then(|f| f(j));
                let cur = adv.as_ref().map(|s| &s.judgement).unwrap_or(j.rules);
                match gate_wait {
                    Some(w) if cur.answer == warden_gate::judge::Answer::Ask => {
                        Some(super::gateask::ask(j, cur, w, &watchdog))
                    }
                    _ => adv,
                }
            };
            if advisor.is_some() || gate_wait.is_some() {
                protocol::handle_with(ag, &input, &env, Some(&post))
            } else {
                protocol::handle(ag, &input, &env)
            }
        }
        (Ok(_), warden_policy::session::Location::Outside) => {
            // The workspace (for narrowing `.warden.toml`) is the payload's cwd.
            let cwd = serde_json::from_slice::<serde_json::Value>(&input)
                .ok()
                .and_then(|v| {
                    v.get("cwd")
                        .and_then(|c| c.as_str())
                        .map(std::path::PathBuf::from)
                })
                .filter(|p| p.is_dir());
            let mut pa = a.policy.clone();
            if pa.profile.is_none() {
                pa.profile = Some(ag.name().to_string());
            }
            match super::load_policy(&pa, cwd.as_ref()) {
                Err(e) => {
                    protocol::render(ag, "", &deny(format!("the policy cannot be loaded ({e})")))
                }
                Ok(loaded) => {
                    warden_event::timing::mark("hook: policy loaded");
                    // A corrupted cache is dropped, not trusted: the hook then hashes afresh.
                    let cache_path = super::run::state_dir(&home).join("hook-cache.bin");
                    let cache = std::sync::Arc::new(
                        warden_execguard::cache::Cache::load(&cache_path).unwrap_or_default(),
                    );
                    warden_event::timing::mark("hook: cache loaded");
                    let env = protocol::HookEnv {
                        policy: &loaded.policy,
                        home,
                        headless: a.headless,
                        cache: cache.clone(),
                        session: None,
                        pinned: Vec::new(),
                    };
                    let out = protocol::handle(ag, &input, &env);
                    let code = watchdog.answer(&out);
                    warden_event::timing::mark("hook: answered");
                    if let Err(e) = cache.save_if_dirty(&cache_path) {
                        tracing::debug!("hook cache {}: {e}", cache_path.display());
                    }
                    return Ok(code);
                }
            }
        }
    };
    let code = watchdog.answer(&out);
    warden_event::timing::mark("hook: answered");
    Ok(code)
}

/// An error-path denial, also recorded as a decision.
fn deny(reason: String) -> warden_gate::judge::Judgement {
    warden_event::Decision::new(
        warden_event::Layer::Gate,
        "warden hook",
        "hook input",
        "gate.error",
        warden_event::Verdict::Deny,
        reason.clone(),
    )
    .emit();
    warden_gate::judge::Judgement {
        answer: warden_gate::judge::Answer::Deny,
        rule: "gate.error".into(),
        what: "hook".into(),
        reason,
    }
}

/// The user's own settings unless a scope is named, also for root: managed settings affect
/// every user of the machine and are an explicit choice.
fn scope_of(a: &InstallArgs) -> Scope {
    match a.scope {
        Some(CliScope::User) | None => Scope::User,
        Some(CliScope::Project) => Scope::Project,
        Some(CliScope::Managed) => Scope::Managed,
    }
}

fn target(a: &InstallArgs) -> std::path::PathBuf {
    let project = std::env::current_dir().unwrap_or_default();
    install::settings_path(agent(a.agent), scope_of(a), &a.root, &home_dir(), &project)
}

fn edit(
    a: &InstallArgs,
    f: impl FnOnce(serde_json::Value) -> Result<serde_json::Value, install::InstallError>,
) -> anyhow::Result<i32> {
    if std::env::var_os("WARDEN_SANDBOX").is_some()
        || !matches!(
            warden_policy::session::locate(),
            warden_policy::session::Location::Outside
        )
    {
        return Err(fail(
            exit::DENIED,
            "agent settings cannot be changed from inside a warden sandbox",
        ));
    }
    let path = target(a);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(fail(exit::POLICY, format!("{}: {e}", path.display()))),
    };
    let doc: serde_json::Value = if text.trim().is_empty() {
        serde_json::json!({})
    } else {
        serde_json::from_str(&text).map_err(|e| {
            fail(
                exit::POLICY,
                format!("{}: not valid JSON: {e}", path.display()),
            )
        })?
    };
    let before = doc.clone();
    let after = f(doc).map_err(|e| fail(exit::POLICY, format!("{}: {e}", path.display())))?;
    let rendered = serde_json::to_string_pretty(&after)? + "\n";
    if after
        .get("allowManagedHooksOnly")
        .is_some_and(|v| v == &serde_json::Value::Bool(true))
        && !a.managed_hooks_only
    {
        eprintln!(
            "note: {} sets allowManagedHooksOnly (every user and project hook on this machine is disabled); warden leaves it as it is (--managed-hooks-only removes it on uninstall)",
            path.display()
        );
    }
    if after == before {
        println!(
            "{}: unchanged{}",
            path.display(),
            if a.dry_run { " (dry run)" } else { "" }
        );
        return Ok(exit::OK);
    }
    if a.dry_run {
        println!(
            "would {} {} (dry run; nothing written). New content:",
            if text.is_empty() { "create" } else { "update" },
            path.display()
        );
        print!("{rendered}");
        return Ok(exit::OK);
    }
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d)?;
    }
    std::fs::write(&path, rendered)?;
    println!("{}: updated", path.display());
    Ok(exit::OK)
}

fn options(a: &InstallArgs) -> install::Options {
    install::Options {
        managed_hooks_only: a.managed_hooks_only,
    }
}

pub fn install(a: InstallArgs) -> anyhow::Result<i32> {
    let exe = std::env::current_exe()
        .map(|p| warden_sys::shell::quote(&p.display().to_string()))
        .unwrap_or_else(|_| "warden".into());
    let (ag, scope, opts) = (agent(a.agent), scope_of(&a), options(&a));
    edit(&a, |doc| install::install_with(doc, ag, scope, &exe, opts))
}

pub fn uninstall(a: InstallArgs) -> anyhow::Result<i32> {
    let opts = options(&a);
    edit(&a, |doc| install::uninstall_with(doc, opts))
}

/// The hook-event channel of an enclosing `warden run`: the inherited pipe
/// (`WARDEN_HOOK_FD`) when the agent passed it on, else the session's hook-report socket
/// (agent CLIs such as Claude Code do not pass inherited fds on to their hooks).
fn sandbox_pipe() -> Option<warden_event::SessionLog> {
    inherited_pipe().or_else(hook_socket)
}

fn hook_socket() -> Option<warden_event::SessionLog> {
    let path = std::path::Path::new(warden_policy::session::HOOK_SOCK);
    let s = std::os::unix::net::UnixStream::connect(path).ok()?;
    // A stuck reader must not hold the agent's tool call.
    let _ = s.set_write_timeout(Some(std::time::Duration::from_secs(1)));
    Some(warden_event::SessionLog::framed_pipe(
        std::fs::File::from(std::os::fd::OwnedFd::from(s)),
        path,
    ))
}

fn inherited_pipe() -> Option<warden_event::SessionLog> {
    use std::os::fd::FromRawFd;
    let fd: i32 = std::env::var("WARDEN_HOOK_FD").ok()?.parse().ok()?;
    // SAFETY: fstat on an fd number; dup of it when it is a pipe.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        if fd < 3 || libc::fstat(fd, &mut st) != 0 || st.st_mode & libc::S_IFMT != libc::S_IFIFO {
            return None;
        }
        let d = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3);
        if d < 0 {
            return None;
        }
        Some(warden_event::SessionLog::framed_pipe(
            std::fs::File::from_raw_fd(d),
            std::path::Path::new("warden run session log (pipe)"),
        ))
    }
}
