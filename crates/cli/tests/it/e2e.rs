//! What the real-CLI end-to-end modules (`claude_e2e`, `codex_e2e`, `gemini_e2e`) share:
//! finding the agent's CLI (or skipping with a message), a throw-away tree with a hermetic
//! `$HOME` and the user policy the tests run under, a scripted model server on loopback, and
//! the session log read back from the host. What each agent's API looks like stays in its
//! module (the handler given to [`ModelServer::start`]).

#![allow(dead_code)]

use super::common::{Scratch, SCRUBBED_ENV};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The prompt that starts every scripted conversation.
pub const MAGIC: &str = "warden-e2e: run the scripted steps";

/// The user policy of the e2e runs: `curl` is denied, the scripted model host is reachable.
pub const POLICY: &str =
    "[exec]\ndeny = [\"curl\"]\n[network]\nallow = [\"model.test\", \"127.0.0.1\"]\n";

/// The agent's CLI `name` on `PATH` (or in /usr/bin, /usr/local/bin). Without it, prints
/// `SKIP <test>: the <what> is not installed (<hint>)` and returns None: the test passes.
pub fn find_cli(name: &str, test: &str, what: &str, hint: &str) -> Option<PathBuf> {
    let found = std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .chain(["/usr/bin", "/usr/local/bin"])
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file());
    if found.is_none() {
        eprintln!("SKIP {test}: the {what} is not installed ({hint})");
    }
    found
}

/// A throw-away tree: `home` (hermetic `$HOME`) beside `ws`, with `~/.config/warden/
/// policy.toml` set to `policy` and a hosts file (`model.test` is loopback) for
/// `--proxy-hosts-file`.
pub struct Tree {
    pub scratch: Scratch,
}

impl Tree {
    pub fn new(name: &str, policy: &str) -> Tree {
        let scratch = Scratch::beside("warden-e2e", name);
        std::fs::create_dir_all(scratch.home.join(".config/warden")).unwrap();
        std::fs::write(scratch.home.join(".config/warden/policy.toml"), policy).unwrap();
        std::fs::write(scratch.root.join("hosts"), "127.0.0.1 model.test\n").unwrap();
        Tree { scratch }
    }

    pub fn home(&self) -> &Path {
        &self.scratch.home
    }

    pub fn ws(&self) -> &Path {
        &self.scratch.ws
    }

    /// For `warden run --proxy-hosts-file`.
    pub fn hosts(&self) -> PathBuf {
        self.scratch.root.join("hosts")
    }

    /// Makes `c` hermetic: `HOME` is the tree's, none of [`SCRUBBED_ENV`] is inherited, and
    /// it runs in the workspace.
    pub fn hermetic<'c>(&self, c: &'c mut Command) -> &'c mut Command {
        c.env("HOME", self.home()).current_dir(self.ws());
        for v in SCRUBBED_ENV {
            c.env_remove(v);
        }
        c
    }

    /// Everything the sessions of this tree wrote to their logs (outside the sandbox).
    pub fn session_log(&self) -> String {
        std::fs::read_dir(self.home().join(".local/state/warden/sessions"))
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| std::fs::read_to_string(e.path()).ok())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// One request to the scripted model server.
pub struct Request {
    pub method: String,
    /// The request target (path and query).
    pub path: String,
    pub body: Vec<u8>,
}

impl Request {
    /// The body as JSON (`Null` when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// The answer: a content type and a body, sent with its length and `connection: close`.
pub struct Reply {
    pub content_type: &'static str,
    pub body: String,
}

impl Reply {
    pub fn json(body: String) -> Reply {
        Reply {
            content_type: "application/json",
            body,
        }
    }

    pub fn sse(body: String) -> Reply {
        Reply {
            content_type: "text/event-stream",
            body,
        }
    }
}

/// A minimal HTTP/1.1 model server on 127.0.0.1: every request is answered by the handler
/// and the connection closed. It lives as long as the test process.
pub struct ModelServer {
    pub port: u16,
}

impl ModelServer {
    pub fn start(handler: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> ModelServer {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let handler = Arc::new(handler);
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(s) = s else { continue };
                let handler = handler.clone();
                std::thread::spawn(move || {
                    let _ = serve_one(s, &*handler);
                });
            }
        });
        ModelServer { port }
    }
}

/// Reads one HTTP/1.1 request from `s`: (request line without its CRLF, body by
/// content-length). Shared by every scripted server of these tests.
pub fn read_request(s: &TcpStream) -> std::io::Result<(String, Vec<u8>)> {
    let mut r = BufReader::new(s.try_clone()?);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let mut len = 0usize;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 || h == "\r\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body)?;
    Ok((line.trim_end().to_string(), body))
}

fn serve_one(mut s: TcpStream, handler: &dyn Fn(&Request) -> Reply) -> std::io::Result<()> {
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let (line, body) = read_request(&s)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    let reply = handler(&Request { method, path, body });
    let extra = if reply.content_type == "text/event-stream" {
        "cache-control: no-cache\r\n"
    } else {
        ""
    };
    write!(
        s,
        "HTTP/1.1 200 OK\r\ncontent-type: {}\r\n{extra}content-length: {}\r\nconnection: close\r\n\r\n{}",
        reply.content_type,
        reply.body.len(),
        reply.body
    )
}

/// A log the handler appends to and the test reads after the agent exits.
pub type Log = Arc<Mutex<Vec<Value>>>;

pub fn new_log() -> Log {
    Arc::new(Mutex::new(Vec::new()))
}

/// The Anthropic Messages API as Claude Code speaks it (`claude_e2e`, `claude_ask`).
pub mod anthropic {
    use super::{Reply, Request};
    use serde_json::{json, Value};

    /// Events as a `text/event-stream` body.
    pub fn sse(events: &[(String, Value)]) -> String {
        events
            .iter()
            .map(|(e, d)| format!("event: {e}\ndata: {d}\n\n"))
            .collect()
    }

    /// The one message the events stream, for a non-streaming request.
    pub fn message(events: &[(String, Value)]) -> Value {
        let mut msg = events
            .first()
            .map(|(_, d)| d["message"].clone())
            .unwrap_or(Value::Null);
        let mut block = Value::Null;
        for (_, d) in events {
            match d["type"].as_str() {
                Some("content_block_start") => block = d["content_block"].clone(),
                Some("content_block_delta") => {
                    if let Some(t) = d["delta"]["text"].as_str() {
                        block["text"] = json!(t);
                    }
                    if let Some(j) = d["delta"]["partial_json"].as_str() {
                        block["input"] = serde_json::from_str(j).unwrap_or(json!({}));
                    }
                }
                Some("content_block_stop") => {
                    msg["content"].as_array_mut().unwrap().push(block.clone())
                }
                Some("message_delta") => msg["stop_reason"] = d["delta"]["stop_reason"].clone(),
                _ => {}
            }
        }
        msg
    }

    /// Answers one request: `count_tokens` and other side paths get plain answers,
    /// `/v1/messages` the events `script` returns for the request body (streamed when asked).
    pub fn answer(r: &Request, script: impl FnOnce(&Value) -> Vec<(String, Value)>) -> Reply {
        if !r.path.starts_with("/v1/messages") || r.path.contains("count_tokens") {
            return Reply::json(if r.path.contains("count_tokens") {
                json!({"input_tokens": 10}).to_string()
            } else {
                "{}".into()
            });
        }
        let req = r.json();
        let events = script(&req);
        if req.get("stream").and_then(Value::as_bool) == Some(true) {
            Reply::sse(sse(&events))
        } else {
            Reply::json(message(&events).to_string())
        }
    }

    /// The tool_result the model received for `id`, from logged `{"request": ...}` entries.
    pub fn tool_result(log: &[Value], id: &str) -> Option<Value> {
        log.iter().rev().find_map(|e| {
            e["request"]["messages"].as_array()?.iter().find_map(|m| {
                m["content"]
                    .as_array()?
                    .iter()
                    .find(|c| c["type"] == "tool_result" && c["tool_use_id"] == id)
                    .cloned()
            })
        })
    }

    /// A tool_result's text.
    pub fn result_text(r: &Value) -> String {
        match &r["content"] {
            Value::String(s) => s.clone(),
            Value::Array(a) => a
                .iter()
                .filter_map(|c| c["text"].as_str())
                .collect::<Vec<_>>()
                .join("\n"),
            _ => String::new(),
        }
    }

    /// The Claude Code CLI, or None after a SKIP line naming `test`.
    pub fn claude(test: &str) -> Option<std::path::PathBuf> {
        super::find_cli(
            "claude",
            test,
            "Claude Code CLI",
            "scripts/bootstrap.sh installs @anthropic-ai/claude-code",
        )
    }

    /// The environment Claude Code gets: the scripted model at `base`, no traffic elsewhere.
    pub fn env(c: &mut std::process::Command, base: String) -> &mut std::process::Command {
        c.env("ANTHROPIC_BASE_URL", base)
            .env("ANTHROPIC_API_KEY", "sk-ant-e2e-test")
            .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
            .env("DISABLE_AUTOUPDATER", "1")
            .env("DISABLE_TELEMETRY", "1")
            .env_remove("ANTHROPIC_AUTH_TOKEN")
            .env_remove("CLAUDECODE")
            .stdin(std::process::Stdio::null())
    }
}
