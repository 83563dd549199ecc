//! Approvals with the real Claude Code CLI (`@anthropic-ai/claude-code`, the version pinned in
//! scripts/versions.env): Claude runs inside `warden run --profile claude` against a scripted
//! model server on 127.0.0.1 (no API key, no internet; the model server and the Messages API
//! pieces are shared with `claude_e2e.rs` in `e2e.rs`). The scripted model asks for one Bash call,
//! `curl http://ask.test:PORT/ok`, where `ask.test:PORT` is a loopback HTTP server of this
//! test's own, named in the policy's `[network] ask` (the proxy resolves `ask.test` through a
//! test hosts file, `--proxy-hosts-file`). warden's hook is installed as a user would have it
//! (`warden install claude`); the gate lets the shell command through (it does not ask for a
//! URL inside a command) and the connection waits in warden's proxy, outside the
//! sandbox; this test process (a second process, on the host) polls `warden approve --json`
//! until the request shows up, checks it names host:port and the resolved address, and
//! answers it.
//!
//! Judged from the host after the session: the ask server's own log (a request that was
//! denied never reached it), the tool result Claude sent back to the model in its next
//! request, and the audit store (`warden log --json`: the request and the answer, with who
//! answered, down to the pid of the `warden approve` that answered). Cases: allow-once (the
//! response reaches Claude), deny (Claude sees warden's 403, the server sees nothing), no
//! answer (the policy's short deadline denies), and Claude's own Bash timeout firing first
//! (Claude backgrounds the command; the request stays listed and a late answer counts).
//!
//! The ask host is a name, not `127.0.0.1:PORT`: inside the sandbox `NO_PROXY` covers
//! 127.0.0.1, so a curl to a loopback address goes to the sandbox's own loopback, where only
//! `[network] allow`ed ports are bridged (the loopback gateway); a loopback `ask` entry is
//! reached only through the proxy.

use super::common::{text, SCRUBBED_ENV, WARDEN as W};
use super::e2e::anthropic::{self, claude, result_text, tool_result};
use super::e2e::{read_request, ModelServer, Request};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const MAGIC: &str = "warden-ask-e2e: run the scripted steps";
const TOOL_ID: &str = "toolu_ask_1";
/// What the ask server answers; it reaches Claude's tool result only if a human allowed it.
const SERVED: &str = "hello-from-the-ask-server";

// ---- the scripted model (the server and the Messages API are in e2e.rs) ----

/// One scripted reply per step: 0 for side requests, 1 asks for the curl, 2 ends the turn.
fn step_for(req: &Value) -> usize {
    let text = serde_json::to_string(&req["messages"]).unwrap_or_default();
    if !text.contains(MAGIC) {
        return 0;
    }
    if text.contains(&format!("\"tool_use_id\":\"{TOOL_ID}\"")) {
        2
    } else {
        1
    }
}

fn reply(step: usize, input: &Value) -> Vec<(String, Value)> {
    let block = |start: Value, delta: Value| -> Vec<(String, Value)> {
        vec![
            (
                "content_block_start".into(),
                json!({"type":"content_block_start","index":0,"content_block":start}),
            ),
            (
                "content_block_delta".into(),
                json!({"type":"content_block_delta","index":0,"delta":delta}),
            ),
            (
                "content_block_stop".into(),
                json!({"type":"content_block_stop","index":0}),
            ),
        ]
    };
    let (body, stop) = match step {
        1 => (
            block(
                json!({"type":"tool_use","id":TOOL_ID,"name":"Bash","input":{}}),
                json!({"type":"input_json_delta","partial_json": input.to_string()}),
            ),
            "tool_use",
        ),
        2 => (
            block(
                json!({"type":"text","text":""}),
                json!({"type":"text_delta","text":"all steps done"}),
            ),
            "end_turn",
        ),
        _ => (
            block(
                json!({"type":"text","text":""}),
                json!({"type":"text_delta","text":"ok"}),
            ),
            "end_turn",
        ),
    };
    let mut ev = vec![(
        "message_start".to_string(),
        json!({"type":"message_start","message":{"id":format!("msg_ask_{step}"),"type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":10,"output_tokens":1}}}),
    )];
    ev.extend(body);
    ev.push(("message_delta".into(), json!({"type":"message_delta","delta":{"stop_reason":stop,"stop_sequence":null},"usage":{"output_tokens":8}})));
    ev.push(("message_stop".into(), json!({"type":"message_stop"})));
    ev
}

fn now_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

// ---- the ask host: the test's own HTTP server, logging every request that reached it ----

fn serve_ask(l: TcpListener, log: Arc<Mutex<Vec<String>>>) {
    for s in l.incoming() {
        let Ok(mut s) = s else { continue };
        let log = log.clone();
        std::thread::spawn(move || {
            let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
            if let Ok((line, _)) = read_request(&s) {
                log.lock().unwrap().push(line);
                let b = format!("{SERVED}\n");
                let _ = write!(s, "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{b}", b.len());
            }
        });
    }
}

/// One session: hermetic HOME and workspace, the model server, the ask server, the policy.
struct Case {
    root: PathBuf,
    home: PathBuf,
    ws: PathBuf,
    ask_port: u16,
    model_port: u16,
    model_log: Arc<Mutex<Vec<Value>>>,
    ask_log: Arc<Mutex<Vec<String>>>,
}

impl Case {
    /// `bash_timeout_ms`: the Bash tool's own `timeout` the model asks for (Claude's
    /// default is 2 minutes).
    fn new(name: &str, timeout_secs: u64, bash_timeout_ms: Option<u64>) -> Case {
        let root =
            std::env::temp_dir().join(format!("warden-claude-ask-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let (home, ws) = (root.join("home"), root.join("ws"));
        std::fs::create_dir_all(home.join(".config/warden")).unwrap();
        std::fs::create_dir_all(&ws).unwrap();

        let al = TcpListener::bind("127.0.0.1:0").unwrap();
        let ask_port = al.local_addr().unwrap().port();
        let ask_log = Arc::new(Mutex::new(Vec::new()));
        {
            let log = ask_log.clone();
            std::thread::spawn(move || serve_ask(al, log));
        }
        let model_log: Arc<Mutex<Vec<Value>>> = Arc::new(Mutex::new(Vec::new()));
        // The Bash call the model asks for: through warden's proxy (HTTP_PROXY inside), the
        // body and the status code on stdout.
        let curl = format!("curl -s -w '\\ncode=%{{http_code}}\\n' http://ask.test:{ask_port}/ok");
        let mut input = json!({"command": curl, "description": "fetch from the ask host"});
        if let Some(ms) = bash_timeout_ms {
            input["timeout"] = json!(ms);
        }
        let model_port = {
            let log = model_log.clone();
            ModelServer::start(move |r: &Request| {
                anthropic::answer(r, |req| {
                    let step = step_for(req);
                    log.lock()
                        .unwrap()
                        .push(json!({"step": step, "at_ms": now_ms(), "request": req}));
                    reply(step, &input)
                })
            })
            .port
        };
        // The user's own policy (outside the workspace). The model host is allowed; the ask
        // host, by name and by the address the proxy resolves it to, is `ask`.
        std::fs::write(
            home.join(".config/warden/policy.toml"),
            format!(
                "[network]\nallow = [\"model.test:{model_port}\", \"127.0.0.1:{model_port}\"]\n\
                 ask = [\"ask.test:{ask_port}\", \"127.0.0.1:{ask_port}\"]\n\
                 [approvals]\ntimeout_secs = {timeout_secs}\n"
            ),
        )
        .unwrap();
        std::fs::write(
            root.join("hosts"),
            "127.0.0.1 model.test\n127.0.0.1 ask.test\n",
        )
        .unwrap();
        Case {
            root,
            home,
            ws,
            ask_port,
            model_port,
            model_log,
            ask_log,
        }
    }

    /// Hermetic: this case's `HOME`, none of [`SCRUBBED_ENV`], in the workspace.
    fn env(&self, c: &mut Command) {
        c.env("HOME", &self.home).current_dir(&self.ws);
        for v in SCRUBBED_ENV {
            c.env_remove(v);
        }
    }

    /// `warden run --profile claude -- claude -p ...`, no terminal.
    fn spawn(&self, claude: &Path) -> Child {
        // The deployment a user has: warden's hook in Claude's settings, and `warden run`.
        let mut c = Command::new(W);
        c.args(["install", "claude", "--scope", "user"]);
        self.env(&mut c);
        let o = c.output().unwrap();
        assert!(o.status.success(), "install: {}", text(&o));
        let mut c = Command::new(W);
        c.arg("run")
            .args(["--profile", "claude", "--proxy-hosts-file"])
            .arg(self.root.join("hosts"))
            .arg("--")
            .arg(claude)
            .args([
                "-p",
                MAGIC,
                "--output-format",
                "json",
                "--allowedTools",
                "Bash",
                "--max-turns",
                "4",
                "--model",
                "claude-sonnet-4-5",
            ]);
        self.env(&mut c);
        anthropic::env(&mut c, format!("http://model.test:{}", self.model_port))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c.spawn().unwrap()
    }

    /// `warden approve ...` from this test process: on the host, outside the session.
    fn approve(&self, args: &[&str]) -> Output {
        self.approve_pid(args).1
    }

    /// [`Self::approve`], with the pid of that `warden approve` (the audit names it).
    fn approve_pid(&self, args: &[&str]) -> (u32, Output) {
        let mut c = Command::new(W);
        c.arg("approve")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        self.env(&mut c);
        let child = c.spawn().unwrap();
        (child.id(), child.wait_with_output().unwrap())
    }

    /// Answers request `id` from the host; returns who the audit must name.
    fn answer(&self, id: u64, flag: &str) -> String {
        let (pid, o) = self.approve_pid(&[&id.to_string(), flag]);
        assert!(o.status.success(), "approve {id} {flag}: {}", text(&o));
        // SAFETY: getuid has no preconditions and cannot fail.
        let uid = unsafe { libc::getuid() };
        format!("uid {uid} (pid {pid}) via the control socket")
    }

    fn pending(&self) -> Vec<Value> {
        let o = self.approve(&["--json"]);
        assert!(o.status.success(), "{}", text(&o));
        serde_json::from_slice::<Vec<Value>>(&o.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", text(&o)))
    }

    /// Polls until a request is pending; fails with the session's output if it ends first.
    fn wait_pending(&self, child: &mut Child, limit: Duration) -> Value {
        let t0 = Instant::now();
        loop {
            if let Some(p) = self.pending().into_iter().next() {
                return p;
            }
            if let Ok(Some(st)) = child.try_wait() {
                let mut out = String::new();
                let mut err = String::new();
                if let Some(mut o) = child.stdout.take() {
                    let _ = o.read_to_string(&mut out);
                }
                if let Some(mut e) = child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                panic!(
                    "the session ended ({st}) before any approval request\nstdout: {out}\nstderr: {err}\n{}",
                    self.ctx()
                );
            }
            assert!(
                t0.elapsed() < limit,
                "no approval request within {limit:?}\n{}",
                self.ctx()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn reached(&self) -> Vec<String> {
        self.ask_log.lock().unwrap().clone()
    }

    fn model_requests(&self) -> Vec<Value> {
        self.model_log.lock().unwrap().clone()
    }

    fn ctx(&self) -> String {
        format!(
            "ask server log: {:?}\nmodel requests (steps): {:?}",
            self.reached(),
            self.model_requests()
                .iter()
                .map(|e| e["step"].clone())
                .collect::<Vec<_>>()
        )
    }

    /// The approval rows of the audit store (`warden log --json`), as JSON values.
    fn approval_rows(&self) -> Vec<Value> {
        let mut c = Command::new(W);
        c.args(["log", "--json"]);
        self.env(&mut c);
        let o = c.output().unwrap();
        assert!(o.status.success(), "{}", text(&o));
        let s = String::from_utf8_lossy(&o.stdout);
        let rows: Vec<Value> = match serde_json::from_str::<Value>(s.trim()) {
            Ok(Value::Array(a)) => a,
            _ => s
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect(),
        };
        rows.into_iter()
            .filter(|r| r.to_string().contains("\"approval\""))
            .collect()
    }

    /// The audit rows for request `id`: the request (verdict `ask`) and its answer, which
    /// must have `verdict` and name `by` as who answered. Returns the time between them.
    fn check_audit(&self, id: u64, verdict: &str, by: &str) -> Duration {
        let rows = self.approval_rows();
        let all = serde_json::to_string_pretty(&rows).unwrap();
        let mine: Vec<&Value> = rows
            .iter()
            .filter(|r| r["extra"]["request"].as_u64() == Some(id))
            .collect();
        let what = format!(
            "connect to ask.test:{p} (resolved: 127.0.0.1:{p})",
            p = self.ask_port
        );
        let asked = mine
            .iter()
            .find(|r| r["verdict"] == "ask")
            .unwrap_or_else(|| panic!("no audited request {id}: {all}"));
        assert_eq!(asked["layer"], "approval", "{all}");
        assert_eq!(asked["what"], what.as_str(), "{all}");
        assert_eq!(
            asked["extra"]["asked_by_rule"],
            format!("network.ask:ask.test:{}", self.ask_port),
            "{all}"
        );
        let answered = mine
            .iter()
            .find(|r| r["verdict"] != "ask")
            .unwrap_or_else(|| panic!("no audited answer to request {id}: {all}"));
        assert_eq!(answered["verdict"], verdict, "{all}");
        assert_eq!(answered["what"], what.as_str(), "{all}");
        assert_eq!(answered["who"], by, "{all}");
        assert_eq!(answered["extra"]["answered_by"], by, "{all}");
        assert_eq!(mine.len(), 2, "one request, one answer: {all}");
        let ms = |r: &Value| r["ts_ms"].as_u64().unwrap_or(0);
        Duration::from_millis(ms(answered).saturating_sub(ms(asked)))
    }

    /// Checks the request the human sees: a network connection to ask.test:PORT, the
    /// address the proxy will use, and nothing reached the server while it waits.
    fn check_request(&self, req: &Value) {
        let p = self.ask_port;
        assert_eq!(req["kind"], "network", "{req}");
        assert_eq!(req["subject"]["host"], "ask.test", "{req}");
        assert_eq!(req["subject"]["port"], p, "{req}");
        assert_eq!(
            req["subject"]["addrs"],
            json!([format!("127.0.0.1:{p}")]),
            "{req}"
        );
        // It waits: Claude's Bash call is blocked in the proxy, the server saw nothing, and
        // the model has not been sent a result for the call.
        std::thread::sleep(Duration::from_millis(500));
        assert!(self.reached().is_empty(), "{}", self.ctx());
        assert!(
            tool_result(&self.model_requests(), TOOL_ID).is_none(),
            "the tool call finished before a human answered\n{}",
            self.ctx()
        );
        assert!(
            self.pending().iter().any(|r| r["id"] == req["id"]),
            "the request is still pending after 500 ms"
        );
    }
}

impl Drop for Case {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

fn finish(c: Child) -> Output {
    c.wait_with_output().unwrap()
}

#[test]
fn claude_waits_on_an_ask_host_and_a_second_process_allows_it_once() {
    let Some(claude) = claude("claude_waits_on_an_ask_host_and_a_second_process_allows_it_once")
    else {
        return;
    };
    let t = Case::new("allow", 90, None);
    let t0 = Instant::now();
    let mut child = t.spawn(&claude);
    let req = t.wait_pending(&mut child, Duration::from_secs(90));
    let asked_after = t0.elapsed();
    t.check_request(&req);
    let id = req["id"].as_u64().unwrap();
    let by = t.answer(id, "--allow-once");
    let answered = Instant::now();
    let o = finish(child);
    let ctx = format!(
        "warden run: {}\n{}\nasked after {asked_after:?}",
        text(&o),
        t.ctx()
    );
    let log = t.model_requests();
    // Claude's tool result, as the model received it in the next request, carries the
    // server's response.
    let r =
        tool_result(&log, TOOL_ID).unwrap_or_else(|| panic!("no result for the Bash call\n{ctx}"));
    let rt = result_text(&r);
    assert!(
        rt.contains(SERVED) && rt.contains("code=200"),
        "tool result: {rt}\n{ctx}"
    );
    assert_ne!(r["is_error"], true, "{r}\n{ctx}");
    // The server's own log has the request, once.
    assert_eq!(t.reached(), vec!["GET /ok HTTP/1.1".to_string()], "{ctx}");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("all steps done"), "{ctx}");
    eprintln!(
        "allow-once: request pending {asked_after:?} after start; session ended {:?} after the answer",
        answered.elapsed()
    );
    // The hook judged the Bash call inside (the gate does not ask for a shell command's
    // URL; the proxy does), and its decision reached the session log outside.
    let sessions = t.home.join(".local/state/warden/sessions");
    let slog: String = std::fs::read_dir(&sessions)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| std::fs::read_to_string(e.path()).ok())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        slog.lines().any(|l| l.contains("\"layer\":\"gate\"")
            && l.contains(&format!("ask.test:{}/ok", t.ask_port))),
        "no gate decision for the Bash call in the session log: {slog}"
    );
    // The audit store: the request and the answer, with who answered.
    let waited = t.check_audit(id, "allow", &by);
    assert!(waited >= Duration::from_millis(400), "{waited:?}");
    eprintln!("allow-once: the request waited {waited:?} for the answer (audit timestamps)");
    // Nothing is left waiting.
    assert!(t.pending().is_empty());
}

#[test]
fn claude_waits_on_an_ask_host_and_a_second_process_denies_it() {
    let Some(claude) = claude("claude_waits_on_an_ask_host_and_a_second_process_denies_it") else {
        return;
    };
    let t = Case::new("deny", 90, None);
    let mut child = t.spawn(&claude);
    let req = t.wait_pending(&mut child, Duration::from_secs(90));
    t.check_request(&req);
    let id = req["id"].as_u64().unwrap();
    let by = t.answer(id, "--deny");
    let o = finish(child);
    let ctx = format!("warden run: {}\n{}", text(&o), t.ctx());
    let log = t.model_requests();
    let r =
        tool_result(&log, TOOL_ID).unwrap_or_else(|| panic!("no result for the Bash call\n{ctx}"));
    let rt = result_text(&r);
    assert!(
        rt.contains("code=403") && rt.contains("denied by warden approval"),
        "Claude sees warden's 403: {rt}\n{ctx}"
    );
    assert!(!rt.contains(SERVED), "{rt}\n{ctx}");
    // Judged from the server's own log: nothing reached it.
    assert!(t.reached().is_empty(), "{ctx}");
    let waited = t.check_audit(id, "deny", &by);
    assert!(waited >= Duration::from_millis(400), "{waited:?}");
}

#[test]
fn claude_waits_on_an_ask_host_and_no_answer_denies_at_the_deadline() {
    let Some(claude) = claude("claude_waits_on_an_ask_host_and_no_answer_denies_at_the_deadline")
    else {
        return;
    };
    let t = Case::new("timeout", 4, None);
    let mut child = t.spawn(&claude);
    let req = t.wait_pending(&mut child, Duration::from_secs(90));
    let seen = Instant::now();
    t.check_request(&req);
    let o = finish(child);
    let ctx = format!("warden run: {}\n{}", text(&o), t.ctx());
    let log = t.model_requests();
    let r =
        tool_result(&log, TOOL_ID).unwrap_or_else(|| panic!("no result for the Bash call\n{ctx}"));
    let rt = result_text(&r);
    assert!(
        rt.contains("code=403") && rt.contains("nobody answered within 4 s"),
        "Claude sees warden's 403 at the deadline: {rt}\n{ctx}"
    );
    assert!(t.reached().is_empty(), "{ctx}");
    eprintln!(
        "timeout: session ended {:?} after the request was seen",
        seen.elapsed()
    );
    let waited = t.check_audit(req["id"].as_u64().unwrap(), "deny", "timeout");
    assert!(
        (Duration::from_millis(3900)..Duration::from_secs(15)).contains(&waited),
        "denied at the deadline, not before: waited {waited:?}"
    );
    assert!(t.pending().is_empty());
}

/// Claude's own deadline first: the Bash tool's `timeout` (3 s here; 2 minutes by default,
/// the same as warden's default approval deadline) is shorter than the approval deadline.
/// Claude Code does not kill the command at its timeout: it moves it to the background and
/// tells the model so. The connection keeps waiting in warden's proxy, the request stays
/// listed, and a human's later allow-once still admits exactly that one request; Claude then
/// gets a background-task notification. (With no answer, `claude -p` waits for the
/// background task, so the session lasts until warden's deadline denies it.)
#[test]
fn claude_backgrounds_the_waiting_command_and_a_late_answer_still_counts() {
    let Some(claude) =
        claude("claude_backgrounds_the_waiting_command_and_a_late_answer_still_counts")
    else {
        return;
    };
    let t = Case::new("late", 60, Some(3000));
    let mut child = t.spawn(&claude);
    let req = t.wait_pending(&mut child, Duration::from_secs(90));
    let seen = Instant::now();
    t.check_request(&req);
    let id = req["id"].as_u64().unwrap();
    // Claude's tool timeout passes: the model is told the command went to the background.
    let r = loop {
        if let Some(r) = tool_result(&t.model_requests(), TOOL_ID) {
            break r;
        }
        assert!(
            seen.elapsed() < Duration::from_secs(30),
            "Claude's 3 s Bash timeout gave the model no result\n{}",
            t.ctx()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let rt = result_text(&r);
    assert!(
        rt.contains("moved to the background") && !rt.contains(SERVED),
        "tool result at Claude's timeout: {rt}\n{}",
        t.ctx()
    );
    let timed_out_after = seen.elapsed();
    // The request still waits, and nothing reached the server.
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        t.pending().iter().any(|p| p["id"].as_u64() == Some(id)),
        "the request left the list at Claude's timeout: {:?}",
        t.pending()
    );
    assert!(t.reached().is_empty(), "{}", t.ctx());
    let by = t.answer(id, "--allow-once");
    let o = finish(child);
    let ctx = format!("warden run: {}\n{}", text(&o), t.ctx());
    assert_eq!(t.reached(), vec!["GET /ok HTTP/1.1".to_string()], "{ctx}");
    // Claude noticed the background command finish (exit 0 from curl).
    let notified = t.model_requests().iter().any(|e| {
        let m = e["request"]["messages"].to_string();
        m.contains("task-notification")
            && m.contains(&format!("<tool-use-id>{TOOL_ID}</tool-use-id>"))
            && m.contains("<status>completed</status>")
    });
    assert!(
        notified,
        "no background-task notification reached the model\n{ctx}"
    );
    let waited = t.check_audit(id, "allow", &by);
    eprintln!(
        "late answer: Claude's Bash timeout fired {timed_out_after:?} after the request was \
         listed; the request waited {waited:?} for the human"
    );
    assert!(waited > timed_out_after, "{waited:?} {timed_out_after:?}");
}
