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

fn serve_one(mut s: TcpStream, handler: &dyn Fn(&Request) -> Reply) -> std::io::Result<()> {
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut r = BufReader::new(s.try_clone()?);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
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
