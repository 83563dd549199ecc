//! The hook protocols, exactly as each agent reads them.
//!
//! - **Claude Code** (`PreToolUse`): stdout `{"hookSpecificOutput": {"hookEventName":
//!   "PreToolUse", "permissionDecision": "deny"|"ask", "permissionDecisionReason": …}}`.
//!   Claude Code treats exit 1, timeouts and non-JSON as *allow*, so a deny also exits 2
//!   with the reason on stderr — the one answer it cannot misread.
//! - **Codex CLI**: the same JSON shape; Codex has no `ask` (it reports a failed hook and
//!   runs the command), so an ask is a deny there, saying how the human allows it.
//! - **Gemini CLI** (`BeforeTool`): stdout `{"decision": …, "reason": …}`, exit 2 to block.
//!
//! Where warden has no objection it *defers*: exit 0 with no decision (Claude/Codex: empty
//! stdout; Gemini: `{}`), so the agent's own permission rules and prompts still apply. An
//! explicit `allow` would skip them.
//!
//! Every answer comes within a deadline ([`Watchdog`]): when judging takes longer (a huge
//! program to hash, a stalled read), the hook answers deny and exits.
//!
//! [`handle_with`] runs a second stage after the rules (the advisor, in `warden run`); its
//! answer is taken only when it is at least as strict as the rules'.
//!
//! Every other event (`PostToolUse`, `PostToolUseFailure`, `SessionStart`, `Stop`, ...) is
//! recorded as a decision event and answered with exit 0 and no output. Malformed or
//! oversized input, and any internal error, is a deny (exit 2), never a silent allow.

use crate::judge::{Answer, Ctx, Judgement};
use serde_json::{json, Value};
use warden_event::{Decision, Layer, Verdict};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Agent {
    Claude,
    Codex,
    Gemini,
}

impl Agent {
    pub fn name(self) -> &'static str {
        match self {
            Agent::Claude => "claude",
            Agent::Codex => "codex",
            Agent::Gemini => "gemini",
        }
    }
}

/// Largest hook payload accepted (Claude Code's Write payloads carry whole files).
pub const MAX_INPUT: usize = 8 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub stdout: String,
    pub stderr: String,
    pub code: i32,
}

fn deny_output(agent: Agent, event: &str, reason: &str) -> Output {
    let stdout = match agent {
        Agent::Gemini => json!({"decision": "deny", "reason": reason}),
        _ => {
            json!({"hookSpecificOutput": {"hookEventName": if event.is_empty() { "PreToolUse" } else { event }, "permissionDecision": "deny", "permissionDecisionReason": reason}})
        }
    };
    Output {
        stdout: stdout.to_string(),
        stderr: reason.to_string(),
        code: 2,
    }
}

/// Renders a judgement in the agent's protocol.
pub fn render(agent: Agent, event: &str, j: &Judgement) -> Output {
    if j.answer == Answer::Allow {
        // Defer: no decision, so the agent's own permission checks still run.
        return Output {
            stdout: if agent == Agent::Gemini {
                "{}".into()
            } else {
                String::new()
            },
            stderr: String::new(),
            code: 0,
        };
    }
    if j.answer == Answer::Ask && agent == Agent::Codex {
        let mut d = j.clone();
        d.answer = Answer::Deny;
        d.reason = format!(
            "{} — it needs a human's approval and Codex hooks cannot ask, so it is denied",
            j.reason
        );
        return deny_output(agent, event, &d.message());
    }
    let reason = j.message();
    if j.answer == Answer::Deny {
        return deny_output(agent, event, &reason);
    }
    let stdout = match agent {
        Agent::Gemini => json!({"decision": j.answer.as_str(), "reason": reason}),
        _ => {
            json!({"hookSpecificOutput": {"hookEventName": event, "permissionDecision": j.answer.as_str(), "permissionDecisionReason": reason}})
        }
    };
    Output {
        stdout: stdout.to_string(),
        stderr: String::new(),
        code: 0,
    }
}

pub struct HookEnv<'a> {
    pub policy: &'a warden_policy::Policy,
    pub home: std::path::PathBuf,
    pub headless: bool,
    /// Program identities come through this (the exec guard's hash cache, which the caller
    /// loads and saves).
    pub cache: std::sync::Arc<dyn warden_policy::progrules::Identity>,
    /// Inside a `warden run` session (its workspace): judge files as its sandbox does.
    pub session: Option<std::path::PathBuf>,
    /// Inside a session: the denied contents `warden run` resolved (hash, size, rule), denied
    /// here too ([`warden_policy::progrules::ExecRules::pin`]).
    pub pinned: Vec<(warden_policy::progrules::Hash, u64, String)>,
}

/// A `PreToolUse` call after the rules judged it, for a second stage ([`handle_with`]).
pub struct Judged<'a> {
    pub tool: &'a str,
    pub input: &'a Value,
    pub cwd: &'a str,
    /// The agent's session id from the payload (may be empty).
    pub agent_session: &'a str,
    /// `transcript_path` from the payload (Claude Code), untrusted.
    pub transcript_path: Option<&'a str>,
    /// The rules' judgement (headless already applied to the rules' own `ask`s).
    pub rules: &'a Judgement,
}

/// The rule of a judgement that is a human's answer to an `ask` (warden's approvals, out of
/// the agent's reach): the only second-stage answer that may be looser than the rules'.
pub const APPROVAL_RULE: &str = "approval";
/// The rule prefix of an advisor's answer that resolves a grey `ask` into `allow` for a
/// class the user's policy lists in `advisor.allow_resolution` (never a deny into anything).
pub const ADVISOR_RESOLVED: &str = "advisor.resolved.";

/// Who, in a second stage, may turn the rules' `ask` into `allow` (never a deny). A type,
/// not a rule name: no rule text a policy or an advisor can produce makes an answer looser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AskResolver {
    /// A human, through warden's approvals (out of the agent's reach).
    Human,
    /// The advisor, for a class the user's own policy lists in `advisor.allow_resolution`.
    Advisor,
}

/// A second stage's answer: a judgement, and whether it resolves the rules' `ask`.
#[derive(Debug, Clone)]
pub struct Second {
    pub judgement: Judgement,
    pub resolves_ask: Option<AskResolver>,
}

impl Second {
    /// An answer that may only be as strict as the rules or stricter.
    pub fn stricter(judgement: Judgement) -> Second {
        Second {
            judgement,
            resolves_ask: None,
        }
    }
}

/// A second stage after the rules: returns a replacement judgement (it must never be
/// looser than `rules`; the caller's contract) and records its own decision.
pub type Post<'a> = &'a dyn Fn(&Judged<'_>) -> Option<Second>;

/// Handles one hook invocation. Never panics (a panic becomes a deny).
pub fn handle(agent: Agent, input: &[u8], env: &HookEnv<'_>) -> Output {
    handle_with(agent, input, env, None)
}

/// [`handle`] with a second stage run on every judged `PreToolUse` (the advisor). A panic
/// in it is a deny like any other.
pub fn handle_with(
    agent: Agent,
    input: &[u8],
    env: &HookEnv<'_>,
    post: Option<Post<'_>>,
) -> Output {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        handle_inner(agent, input, env, post)
    })) {
        Ok(o) => o,
        Err(_) => deny_output(
            agent,
            "",
            "warden: internal error while judging this tool call; denied (fail closed)",
        ),
    }
}

fn handle_inner(agent: Agent, input: &[u8], env: &HookEnv<'_>, post: Option<Post<'_>>) -> Output {
    if input.len() > MAX_INPUT {
        return deny_output(
            agent,
            "",
            &format!(
                "warden: hook input of {} bytes exceeds the {} byte limit; denied",
                input.len(),
                MAX_INPUT
            ),
        );
    }
    let v: Value = match serde_json::from_slice(input) {
        Ok(v) => v,
        Err(e) => {
            return deny_output(
                agent,
                "",
                &format!("warden: malformed hook input ({e}); denied"),
            )
        }
    };
    let Some(obj) = v.as_object() else {
        return deny_output(agent, "", "warden: hook input is not a JSON object; denied");
    };
    let event = obj
        .get("hook_event_name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let tool = obj.get("tool_name").and_then(Value::as_str);
    let session = obj.get("session_id").and_then(Value::as_str).unwrap_or("");
    let who = format!(
        "{} {}",
        agent.name(),
        obj.get("tool_use_id")
            .and_then(Value::as_str)
            .unwrap_or(session)
    );
    match event {
        "PreToolUse" | "BeforeTool" => {
            let Some(tool) = tool else {
                return deny_output(agent, event, "warden: PreToolUse without tool_name; denied");
            };
            let Some(cwd) = obj
                .get("cwd")
                .and_then(Value::as_str)
                .filter(|c| c.starts_with('/'))
            else {
                return deny_output(
                    agent,
                    event,
                    "warden: hook input has no absolute `cwd`; denied",
                );
            };
            let tool_input = obj.get("tool_input").cloned().unwrap_or(Value::Null);
            if !tool_input.is_object() {
                return deny_output(
                    agent,
                    event,
                    "warden: `tool_input` is not an object; denied",
                );
            }
            let mut ctx = Ctx::with_cache(
                env.policy,
                cwd.into(),
                env.home.clone(),
                env.headless,
                env.cache.clone(),
            );
            if let Some(ws) = &env.session {
                ctx = ctx.in_session(ws, env.pinned.clone());
            }
            warden_event::timing::mark("hook: rules compiled");
            let started = std::time::Instant::now();
            let j = ctx.judge_tool(tool, &tool_input);
            warden_event::timing::mark("hook: judged");
            let verdict = match j.answer {
                Answer::Allow => Verdict::Allow,
                Answer::Ask => Verdict::Ask,
                Answer::Deny => Verdict::Deny,
            };
            Decision::new(Layer::Gate, &who, &j.what, &j.rule, verdict, &j.reason)
                .with("tool", tool)
                .with("agent_session", session)
                .with("latency_us", started.elapsed().as_micros() as u64)
                .emit();
            let second = post.and_then(|p| {
                p(&Judged {
                    tool,
                    input: &tool_input,
                    cwd,
                    agent_session: session,
                    transcript_path: obj.get("transcript_path").and_then(Value::as_str),
                    rules: &j,
                })
            });
            // Never looser than the rules, whatever the second stage returned, except that a
            // human's answer through warden's approvals, or the advisor for a class the user
            // lets it resolve, turns the rules' `ask` into `allow` (never a deny).
            let j = match second {
                Some(s) if rank(s.judgement.answer) >= rank(j.answer) => s.judgement,
                Some(s)
                    if s.resolves_ask.is_some()
                        && j.answer == Answer::Ask
                        && s.judgement.answer == Answer::Allow =>
                {
                    s.judgement
                }
                _ => j,
            };
            render(agent, event, &j)
        }
        "" => deny_output(
            agent,
            event,
            "warden: hook input has no hook_event_name; denied",
        ),
        other => {
            let mut d = Decision::new(
                Layer::Gate,
                &who,
                tool.unwrap_or(other),
                format!("event:{other}"),
                Verdict::Observe,
                other,
            )
            .with("agent_session", session);
            if let Some(t) = tool {
                d = d.with("tool", t);
            }
            if let Some(e) = obj.get("error").and_then(Value::as_str) {
                d = d.with("error", e);
            }
            if matches!(tool, Some("Task") | Some("Agent")) {
                d = d.with("subagent", true);
            }
            d.emit();
            Output {
                stdout: String::new(),
                stderr: String::new(),
                code: 0,
            }
        }
    }
}

fn rank(a: Answer) -> u8 {
    match a {
        Answer::Allow => 0,
        Answer::Ask => 1,
        Answer::Deny => 2,
    }
}

/// The whole-hook deadline: if the answer is not written by then, a deny (rendered in the
/// agent's protocol beforehand) is written from a `SIGALRM` handler and the process exits 2.
/// Start it before reading the input; [`Watchdog::answer`] writes the real answer (exactly
/// one of the two gets out). A timer, not a thread: nothing is spawned on the hot path.
pub struct Watchdog {
    _private: (),
}

/// Default whole-hook deadline: well inside every agent's hook timeout (Claude Code and
/// Codex as installed: 30 s; Gemini: 30 000 ms).
pub const DEADLINE: std::time::Duration = std::time::Duration::from_secs(5);

/// The deny written when the deadline passes (stdout, stderr), rendered before arming.
static EXPIRED: std::sync::OnceLock<(Vec<u8>, Vec<u8>)> = std::sync::OnceLock::new();
/// Set by whichever side writes first: the handler or [`Watchdog::answer`].
static ANSWERED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

#[allow(unsafe_code)] // write(2) and _exit(2) from a signal handler
extern "C" fn on_deadline(_: libc::c_int) {
    use std::sync::atomic::Ordering;
    if ANSWERED.swap(true, Ordering::SeqCst) {
        return;
    }
    if let Some((out, err)) = EXPIRED.get() {
        // SAFETY: write(2) and _exit(2) are async-signal-safe; the buffers are immutable.
        unsafe {
            libc::write(1, out.as_ptr().cast(), out.len());
            libc::write(2, err.as_ptr().cast(), err.len());
        }
    }
    // SAFETY: as above.
    unsafe { libc::_exit(2) }
}

#[allow(unsafe_code)] // sigaction, setitimer, pthread_sigmask
impl Watchdog {
    /// Moves the deadline to `from_now` (a gate ask waiting for a human): the timer is
    /// re-armed; a failure to re-arm leaves the earlier deadline in force.
    pub fn extend(&self, from_now: std::time::Duration) -> bool {
        let t = libc::itimerval {
            it_interval: libc::timeval {
                tv_sec: 0,
                tv_usec: 0,
            },
            it_value: libc::timeval {
                tv_sec: from_now.as_secs() as libc::time_t,
                tv_usec: from_now.subsec_micros().max(1) as libc::suseconds_t,
            },
        };
        // SAFETY: re-arming the one-shot real-time timer set by `start`.
        unsafe { libc::setitimer(libc::ITIMER_REAL, &t, std::ptr::null_mut()) == 0 }
    }

    pub fn start(agent: Agent, deadline: std::time::Duration) -> Watchdog {
        let out = deny_output(
            agent,
            "",
            &format!(
                "warden: judging this tool call took longer than the hook's {} ms deadline (a very large program to hash, or input that never ended); denied (fail closed). Retry it; if it keeps happening, run it outside the agent or allow its program by hash (`warden exec allow`).",
                deadline.as_millis()
            ),
        );
        let _ = EXPIRED.set((
            out.stdout.into_bytes(),
            format!("{}\n", out.stderr).into_bytes(),
        ));
        let armed = unsafe {
            // SAFETY: installing a handler that only touches async-signal-safe state, then a
            // one-shot real-time timer.
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_deadline as *const () as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            let t = libc::itimerval {
                it_interval: libc::timeval {
                    tv_sec: 0,
                    tv_usec: 0,
                },
                it_value: libc::timeval {
                    tv_sec: deadline.as_secs() as libc::time_t,
                    tv_usec: deadline.subsec_micros().max(1) as libc::suseconds_t,
                },
            };
            libc::sigaction(libc::SIGALRM, &sa, std::ptr::null_mut()) == 0
                && libc::setitimer(libc::ITIMER_REAL, &t, std::ptr::null_mut()) == 0
        };
        if !armed {
            // No deadline: answer deny now rather than run without one.
            let out = deny_output(
                agent,
                "",
                "warden: cannot arm the hook's deadline timer; denied (fail closed)",
            );
            write_out(&out);
            std::process::exit(out.code);
        }
        Watchdog { _private: () }
    }

    /// Writes the answer unless the deadline already did; returns the exit code to use.
    pub fn answer(&self, out: &Output) -> i32 {
        use std::sync::atomic::Ordering;
        // SAFETY: blocking SIGALRM in this thread, so the handler cannot run while we write.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGALRM);
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        }
        if ANSWERED.swap(true, Ordering::SeqCst) {
            // The deadline's deny is out and the process is exiting.
            loop {
                std::thread::park();
            }
        }
        write_out(out);
        out.code
    }
}

fn write_out(out: &Output) {
    use std::io::Write;
    let mut so = std::io::stdout().lock();
    let _ = so.write_all(out.stdout.as_bytes());
    let _ = so.flush();
    if !out.stderr.is_empty() {
        let mut se = std::io::stderr().lock();
        let _ = writeln!(se, "{}", out.stderr);
    }
}
