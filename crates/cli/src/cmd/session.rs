//! `warden freeze|thaw|kill|status`, `warden top` and `warden approve`: clients of the
//! running sessions' control sockets, and their printing. The session's runtime (monitor, control socket,
//! audit writer) lives in warden-session.

use super::{fail, home_dir};
use crate::cli::SessionArg;
use crate::exit;
use std::path::Path;
use warden_session::{control, Answer, Request};

/// `warden freeze|thaw|kill|status SESSION`.
pub fn control(a: SessionArg, op: Request) -> anyhow::Result<i32> {
    let state = super::run::state_dir(&home_dir());
    let id = control::find(&state, &a.session).map_err(|e| fail(exit::USAGE, e))?;
    let r = control::request(&state, &id, op).map_err(|e| fail(exit::INTERNAL, e))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
    } else {
        if !r.message.is_empty() {
            println!("session {id}: {}", r.message);
        }
        if let Some(st) = &r.status {
            println!(
                "risk score {:.1}, level {:?}{}{}",
                st.score,
                st.level.unwrap_or(warden_risk::Level::Normal),
                if st.frozen { ", FROZEN" } else { "" },
                if st.killed { ", KILLED" } else { "" }
            );
            if let Some(us) = st.last_freeze_us {
                println!("last automatic freeze took {:.1} ms", us as f64 / 1000.0);
            }
            println!(
                "decisions seen {}, not scored (queue full) {}",
                st.decisions, st.dropped
            );
            println!("stop switch: {}", st.freezer);
            for (c, now) in &st.top {
                println!(
                    "  {:>5.1} (was +{:.0}) {}{}",
                    now,
                    c.points,
                    c.reason,
                    if c.claim { " [claim from inside]" } else { "" }
                );
            }
        }
    }
    Ok(if r.ok { exit::OK } else { exit::DENIED })
}

/// `warden approve`: list pending requests, or answer one.
pub fn approve(a: crate::cli::ApproveArgs) -> anyhow::Result<i32> {
    let state = super::run::state_dir(&home_dir());
    let answer = if a.allow_once {
        Some(Answer::AllowOnce)
    } else if a.allow_session {
        Some(Answer::AllowSession)
    } else if a.deny {
        Some(Answer::Deny)
    } else {
        None
    };
    let Some(ans) = answer else {
        // List: one session, or every running one.
        let ids = match a.target.as_deref().or(a.session.as_deref()) {
            Some(s) => vec![control::find(&state, s).map_err(|e| fail(exit::USAGE, e))?],
            None => running_ids(&state),
        };
        let mut all = Vec::new();
        for id in ids {
            match control::request(&state, &id, Request::Pending) {
                Ok(r) if r.ok => all.extend(r.pending.into_iter().map(|p| (id.clone(), p))),
                Ok(r) => eprintln!("warden: session {id}: {}", r.message),
                Err(e) => eprintln!("warden: {e}"),
            }
        }
        if a.json {
            let v: Vec<serde_json::Value> = all
                .iter()
                .map(|(id, p)| {
                    let mut v = serde_json::to_value(p).unwrap_or_default();
                    if let Some(o) = v.as_object_mut() {
                        o.insert("session".into(), id.clone().into());
                    }
                    v
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        } else if all.is_empty() {
            println!("no approval request is waiting");
        } else {
            let now = warden_audit::time::now_ms() as u128;
            for (id, p) in &all {
                println!(
                    "{:>4}  session {id}  {}  (rule {}; asked by {}; denied in {} s)",
                    p.id,
                    p.description,
                    p.rule,
                    p.who,
                    p.deadline_ms.saturating_sub(now) / 1000
                );
            }
            println!("answer: warden approve ID --allow-once | --allow-session | --deny [--session SESSION]");
        }
        return Ok(exit::OK);
    };
    let Some(target) = a.target.as_deref() else {
        return Err(fail(
            exit::USAGE,
            "name the request: warden approve ID --allow-once|--allow-session|--deny (warden approve lists them)",
        ));
    };
    let req_id: u64 = target.parse().map_err(|_| {
        fail(
            exit::USAGE,
            format!("`{target}` is not a request id (a number from `warden approve`)"),
        )
    })?;
    // The session: named, or the one running session with a request of that id.
    let session = match a.session.as_deref() {
        Some(s) => control::find(&state, s).map_err(|e| fail(exit::USAGE, e))?,
        None => {
            let with: Vec<String> = running_ids(&state)
                .into_iter()
                .filter(|id| {
                    control::request(&state, id, Request::Pending)
                        .map(|r| r.pending.iter().any(|p| p.id == req_id))
                        .unwrap_or(false)
                })
                .collect();
            match with.as_slice() {
                [one] => one.clone(),
                [] => {
                    return Err(fail(
                        exit::USAGE,
                        format!("no running session has a pending request {req_id} (`warden approve` lists them)"),
                    ))
                }
                many => {
                    return Err(fail(
                        exit::USAGE,
                        format!(
                            "request {req_id} is pending in several sessions ({}); add --session SESSION",
                            many.join(", ")
                        ),
                    ))
                }
            }
        }
    };
    let r = answer_request(&state, &session, req_id, ans).map_err(|e| fail(exit::INTERNAL, e))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
    } else {
        println!("session {session}: {}", r.message);
    }
    Ok(if r.ok { exit::OK } else { exit::DENIED })
}

/// Answers request `id` of a running session over its control socket: the one path of
/// `warden approve ID --allow-once|--allow-session|--deny` and of `warden top`'s keys.
pub(crate) fn answer_request(
    state: &Path,
    session: &str,
    id: u64,
    answer: Answer,
) -> Result<control::Reply, control::ControlError> {
    control::send(state, session, &Request::Answer { id, answer })
}

/// A running session's pending approval requests (none when it cannot be asked).
fn pending_of(state: &Path, id: &str) -> Vec<warden_session::Pending> {
    control::request(state, id, Request::Pending)
        .map(|r| r.pending)
        .unwrap_or_default()
}

fn running_ids(state: &Path) -> Vec<String> {
    let mut ids: Vec<String> = std::fs::read_dir(control::socket_dir(state))
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    e.file_name()
                        .to_str()
                        .and_then(|n| n.strip_suffix(".sock"))
                        .map(str::to_string)
                })
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

/// Running sessions (their control sockets) and their live status.
fn snapshot(state: &Path) -> Vec<(String, Result<warden_session::Status, String>)> {
    let mut ids: Vec<String> = std::fs::read_dir(control::socket_dir(state))
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    e.file_name()
                        .to_str()
                        .and_then(|n| n.strip_suffix(".sock"))
                        .map(str::to_string)
                })
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids.into_iter()
        .map(|id| {
            let st = control::request(state, &id, Request::Status)
                .map_err(|e| e.to_string())
                .and_then(|r| r.status.ok_or(r.message));
            (id, st)
        })
        .collect()
}

/// `warden top`: the running sessions, live (or one `--json` / `--once` snapshot).
pub fn top(a: crate::cli::TopArgs) -> anyhow::Result<i32> {
    let state = super::run::state_dir(&home_dir());
    if a.json {
        let v: Vec<serde_json::Value> = snapshot(&state)
            .into_iter()
            .map(|(id, st)| match st {
                Ok(s) => {
                    serde_json::json!({"session": id, "status": s, "approvals": pending_of(&state, &id)})
                }
                Err(e) => serde_json::json!({"session": id, "error": e}),
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return Ok(exit::OK);
    }
    let live = !a.once && std::io::IsTerminal::is_terminal(&std::io::stdout());
    let mut last: std::collections::HashMap<String, (u64, std::time::Instant)> = Default::default();
    // Keys (approvals, quit) when the terminal is ours to read; restored on return.
    let raw = if live {
        warden_sandbox::pty::RawMode::enter()
    } else {
        None
    };
    let mut picker = super::top::Picker::default();
    loop {
        let snap = snapshot(&state);
        let mut out = String::new();
        if live {
            out.push_str("\x1b[H\x1b[2J");
        }
        out.push_str(&format!(
            "warden top — {} running session(s); q quits; warden freeze|thaw|kill SESSION\n\n",
            snap.len()
        ));
        out.push_str(&format!(
            "{:<20} {:>6} {:<8} {:>9} {:>8}  {}\n",
            "SESSION", "SCORE", "STATE", "DECISIONS", "PER SEC", "WEIGHS MOST"
        ));
        for (id, st) in &snap {
            match st {
                Ok(s) => {
                    let now = std::time::Instant::now();
                    let rate = last
                        .get(id)
                        .map(|(n, t)| {
                            (s.decisions.saturating_sub(*n)) as f64
                                / now.duration_since(*t).as_secs_f64().max(0.001)
                        })
                        .unwrap_or(0.0);
                    last.insert(id.clone(), (s.decisions, now));
                    let state = if s.killed {
                        "KILLED"
                    } else if s.frozen {
                        "FROZEN"
                    } else {
                        "running"
                    };
                    let top = s
                        .top
                        .first()
                        .map(|(c, v)| format!("{v:.0} {}", c.reason))
                        .unwrap_or_default();
                    out.push_str(&format!(
                        "{:<20} {:>6.0} {:<8} {:>9} {:>8.1}  {}\n",
                        id,
                        s.score,
                        state,
                        s.decisions,
                        rate,
                        top.chars().take(80).collect::<String>()
                    ));
                }
                Err(e) => out.push_str(&format!("{id:<20} (no answer: {e})\n")),
            }
        }
        // Approval requests waiting for a human, in every session.
        let waiting: Vec<(String, warden_session::Pending)> = snap
            .iter()
            .filter(|(_, st)| st.is_ok())
            .flat_map(|(id, _)| {
                pending_of(&state, id)
                    .into_iter()
                    .map(move |p| (id.clone(), p))
            })
            .collect();
        let shown: Vec<(String, u64)> = waiting.iter().map(|(s, p)| (s.clone(), p.id)).collect();
        picker.refresh(&shown);
        if !waiting.is_empty() {
            let how = if raw.is_some() {
                "j/k select, a allow once, A allow for the session, d deny"
            } else {
                "warden approve ID --allow-once|--allow-session|--deny --session SESSION"
            };
            out.push_str(&format!(
                "\n{} approval request(s) waiting ({how}):\n",
                waiting.len()
            ));
            for (id, p) in &waiting {
                let mark = if raw.is_some() && picker.selected() == Some(&(id.clone(), p.id)) {
                    ">"
                } else {
                    " "
                };
                out.push_str(&format!(
                    "{mark}{:>4}  {id}  {}\n",
                    p.id,
                    p.description.chars().take(120).collect::<String>()
                ));
            }
        }
        if raw.is_some() && !picker.note.is_empty() {
            out.push_str(&format!(
                "\n{}\n",
                warden_session::approval::printable(&picker.note)
            ));
        }
        if raw.is_some() {
            // Raw mode: the terminal does not turn \n into \r\n.
            out = out.replace('\n', "\r\n");
        }
        print!("{out}");
        let _ = std::io::Write::flush(&mut std::io::stdout());
        if !live {
            return Ok(exit::OK);
        }
        if raw.is_none() {
            std::thread::sleep(std::time::Duration::from_secs(1));
            continue;
        }
        // Up to a second for keys; each key acts on the list as it was just shown.
        let mut p = libc::pollfd {
            fd: 0,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll on one valid pollfd.
        if unsafe { libc::poll(&mut p, 1, 1000) } <= 0 || p.revents & libc::POLLIN == 0 {
            if p.revents & (libc::POLLHUP | libc::POLLERR) != 0 {
                return Ok(exit::OK);
            }
            continue;
        }
        let mut buf = [0u8; 64];
        // SAFETY: read into a stack buffer.
        let n = unsafe { libc::read(0, buf.as_mut_ptr() as *mut libc::c_void, buf.len()) };
        if n <= 0 {
            return Ok(exit::OK);
        }
        for k in super::top::parse_keys(&buf[..n as usize]) {
            match picker.key(k, &shown) {
                super::top::Action::Nothing => {}
                super::top::Action::Quit => return Ok(exit::OK),
                super::top::Action::Answer {
                    session,
                    id,
                    answer,
                } => {
                    let note = match answer_request(&state, &session, id, answer) {
                        Ok(r) => format!("session {session}: {}", r.message),
                        Err(e) => format!("session {session}: {e}"),
                    };
                    picker.answered(note);
                }
            }
        }
    }
}
