//! End to end with the real Codex CLI (`@openai/codex`, pinned in scripts/versions.env and
//! installed by scripts/bootstrap.sh) against a scripted Responses-API server started here
//! (a `mock` model provider, `POST /v1/responses`, streaming SSE). The script asks for a
//! denied `curl`, then an allowed command, then ends the turn.
//!
//! 1. Hook: `warden install codex` writes `~/.codex/hooks.json`; Codex runs a hook only once
//!    the user trusted it, so the test trusts it the way `/hooks` does (the hash Codex's
//!    app-server reports, stored in `config.toml`) after checking it starts untrusted. Then
//!    Codex, outside warden, gets warden's denial for `curl` and runs the allowed command.
//! 2. Sandbox: the same Codex inside `warden run --profile codex`. Codex's own sandbox cannot
//!    start there; the profile shows Codex a config with `sandbox_mode =
//!    "danger-full-access"` (warden is the sandbox), so commands run, `curl` is blocked by
//!    warden's exec guard, the allowed command runs, and the hook's decisions reach the
//!    session log outside the agent's reach. The host's `config.toml` is unchanged.
//!
//! Without Codex installed the test prints why and passes.

use super::common::{text as show, WARDEN as W};
use super::e2e::{self, Log, ModelServer, Reply, Request, Tree};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Which scripted reply: one per function-call output already in the conversation.
fn step_for(req: &Value) -> usize {
    let input = req.get("input").cloned().unwrap_or(Value::Null);
    let items = input.as_array().cloned().unwrap_or_default();
    ["call_1", "call_2"]
        .iter()
        .filter(|id| {
            items
                .iter()
                .any(|i| i["type"] == "function_call_output" && i["call_id"] == **id)
        })
        .count()
}

fn reply(step: usize, ws: &Path) -> String {
    let call = |id: &str, cmd: String| {
        json!({"type":"function_call","id":format!("fc_{id}"),"call_id":id,"name":"exec_command",
               "arguments": json!({"cmd": cmd}).to_string()})
    };
    let item = match step {
        0 => call(
            "call_1",
            format!(
                "curl --version > /dev/null && echo ran > {}/curl-ran",
                ws.display()
            ),
        ),
        1 => call(
            "call_2",
            format!("echo allowed > {}/allowed-marker", ws.display()),
        ),
        _ => json!({"type":"message","role":"assistant","id":"msg_done",
                    "content":[{"type":"output_text","text":"all steps done"}]}),
    };
    let events = [
        json!({"type":"response.created","response":{"id":"resp_e2e"}}),
        json!({"type":"response.output_item.done","item":item}),
        json!({"type":"response.completed","response":{"id":"resp_e2e","usage":{
            "input_tokens":1,"input_tokens_details":null,"output_tokens":1,
            "output_tokens_details":null,"total_tokens":2}}}),
    ];
    events
        .iter()
        .map(|e| format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap_or("")))
        .collect()
}

/// The scripted Responses API: `POST .../responses` gets the step's events, anything else
/// an empty model list.
fn model(log: Log, ws: PathBuf) -> ModelServer {
    ModelServer::start(move |r: &Request| {
        if r.method != "POST" || !r.path.ends_with("/responses") {
            return Reply::json(json!({"models": []}).to_string());
        }
        let req = r.json();
        let step = step_for(&req);
        log.lock().unwrap().push(req);
        Reply::sse(reply(step, &ws))
    })
}

/// The output the model got for `call_id` (the last request that carries it).
fn call_output(log: &[Value], call_id: &str) -> Option<String> {
    log.iter().rev().find_map(|r| {
        r["input"].as_array()?.iter().find_map(|i| {
            (i["type"] == "function_call_output" && i["call_id"] == call_id).then(|| {
                match &i["output"] {
                    Value::String(s) => s.clone(),
                    o => o.to_string(),
                }
            })
        })
    })
}

/// The hooks Codex's app-server lists for `ws`: (key, currentHash, trustStatus, command).
fn list_hooks(codex: &Path, home: &Path, ws: &Path) -> Vec<(String, String, String, String)> {
    let mut c = Command::new(codex)
        .arg("app-server")
        .env("HOME", home)
        .current_dir(ws)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("codex app-server");
    let mut stdin = c.stdin.take().unwrap();
    for m in [
        json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"clientInfo":{"name":"warden-e2e","version":"1"}}}),
        json!({"jsonrpc":"2.0","method":"initialized"}),
        json!({"jsonrpc":"2.0","id":2,"method":"hooks/list","params":{"cwds":[ws]}}),
    ] {
        writeln!(stdin, "{m}").unwrap();
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let out = c.stdout.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<Value>(&l) {
                if v["id"] == 2 {
                    let _ = tx.send(v);
                    return;
                }
            }
        }
    });
    let v = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("hooks/list answer");
    let _ = c.kill();
    let _ = c.wait();
    v["result"]["data"][0]["hooks"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|h| {
            let s = |k: &str| h[k].as_str().unwrap_or("").to_string();
            (s("key"), s("currentHash"), s("trustStatus"), s("command"))
        })
        .collect()
}

fn config(base_url: &str, trust: &str) -> String {
    format!(
        "model = \"gpt-5-e2e\"\nmodel_provider = \"mock\"\n\n[model_providers.mock]\nname = \"mock\"\nbase_url = \"{base_url}\"\nwire_api = \"responses\"\nenv_key = \"OPENAI_API_KEY\"\nrequest_max_retries = 0\nstream_max_retries = 0\n{trust}"
    )
}

#[test]
fn real_codex_cli_with_warden() {
    let Some(codex) = e2e::find_cli(
        "codex",
        "real_codex_cli_with_warden",
        "Codex CLI",
        "scripts/bootstrap.sh installs @openai/codex",
    ) else {
        return;
    };
    let t = Tree::new("codex", e2e::POLICY);
    let (home, ws) = (t.home(), t.ws());
    std::fs::create_dir_all(home.join(".codex")).unwrap();
    let log = e2e::new_log();
    let port = model(log.clone(), ws.to_path_buf()).port;
    let env = |c: &mut Command| {
        t.hermetic(c)
            .env("OPENAI_API_KEY", "sk-e2e-test")
            .env_remove("CODEX_HOME")
            .stdin(Stdio::null());
    };
    let o = {
        let mut c = Command::new(W);
        c.args(["install", "codex", "--scope", "user"]);
        env(&mut c);
        c.output().unwrap()
    };
    assert!(o.status.success(), "install: {}", show(&o));

    // The hook starts untrusted: Codex would never run it. Trust it as `/hooks` does.
    let hooks = list_hooks(&codex, home, ws);
    let ours: Vec<_> = hooks
        .iter()
        .filter(|h| h.3.contains("hook codex"))
        .collect();
    assert!(!ours.is_empty(), "codex lists warden's hooks: {hooks:?}");
    assert!(
        ours.iter().all(|h| h.2 == "untrusted"),
        "a new hook starts untrusted: {ours:?}"
    );
    // warden says so before launch.
    std::fs::write(
        home.join(".codex/config.toml"),
        config(&format!("http://127.0.0.1:{port}/v1"), ""),
    )
    .unwrap();
    let o = {
        let mut c = Command::new(W);
        c.args(["run", "--profile", "codex", "--", "true"]);
        env(&mut c);
        c.output().unwrap()
    };
    assert!(
        o.status.success() && String::from_utf8_lossy(&o.stderr).contains("until you trust it"),
        "{}",
        show(&o)
    );
    let trust: String = ours
        .iter()
        .map(|h| format!("\n[hooks.state.\"{}\"]\ntrusted_hash = \"{}\"\n", h.0, h.1))
        .collect();

    // 1. The hook, Codex outside warden.
    std::fs::write(
        home.join(".codex/config.toml"),
        config(&format!("http://127.0.0.1:{port}/v1"), &trust),
    )
    .unwrap();
    let o = {
        let mut c = Command::new(&codex);
        c.args([
            "exec",
            "--skip-git-repo-check",
            "-c",
            "sandbox_mode=\"danger-full-access\"",
            "run the scripted steps",
        ]);
        env(&mut c);
        c.output().unwrap()
    };
    let reqs = log.lock().unwrap().clone();
    let ctx = format!("{}\nrequests: {}", show(&o), reqs.len());
    let r1 = call_output(&reqs, "call_1").unwrap_or_else(|| panic!("no output for call_1\n{ctx}"));
    assert!(
        r1.contains("warden blocked") && r1.contains("exec.deny:curl"),
        "the hook denied curl with warden's reason: {r1}\n{ctx}"
    );
    assert!(!ws.join("curl-ran").exists(), "curl ran\n{ctx}");
    assert_eq!(
        std::fs::read_to_string(ws.join("allowed-marker")).unwrap_or_default(),
        "allowed\n",
        "{ctx}"
    );
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("all steps done"),
        "{ctx}"
    );

    // 2. The sandbox: Codex inside `warden run --profile codex`.
    std::fs::remove_file(ws.join("allowed-marker")).unwrap();
    log.lock().unwrap().clear();
    let host_config = config(&format!("http://model.test:{port}/v1"), &trust);
    std::fs::write(home.join(".codex/config.toml"), &host_config).unwrap();
    let o = {
        let mut c = Command::new(W);
        c.arg("run")
            .args(["--profile", "codex", "--proxy-hosts-file"])
            .arg(t.hosts())
            .arg("--")
            .arg(&codex)
            .args(["exec", "--skip-git-repo-check", "run the scripted steps"]);
        env(&mut c);
        c.output().unwrap()
    };
    let reqs = log.lock().unwrap().clone();
    let ctx = format!("{}\nrequests: {}", show(&o), reqs.len());
    let r1 = call_output(&reqs, "call_1").unwrap_or_else(|| panic!("no output for call_1\n{ctx}"));
    let r2 = call_output(&reqs, "call_2").unwrap_or_else(|| panic!("no output for call_2\n{ctx}"));
    for r in [&r1, &r2] {
        assert!(
            // Codex's bubblewrap failure ("No permissions to create new namespace"); warden's
            // own deny text mentions "the sandbox", which is fine.
            !r.contains("namespace") && !r.contains("bwrap") && !r.contains("landlock"),
            "Codex's own sandbox got in the way: {r}\n{ctx}"
        );
    }
    assert!(
        r1.contains("Permission denied") || r1.contains("warden blocked"),
        "curl was blocked inside warden: {r1}\n{ctx}"
    );
    assert!(
        !ws.join("curl-ran").exists(),
        "curl ran inside warden\n{ctx}"
    );
    assert!(r2.contains("exited with code 0"), "{r2}\n{ctx}");
    assert_eq!(
        std::fs::read_to_string(ws.join("allowed-marker")).unwrap_or_default(),
        "allowed\n",
        "{ctx}"
    );
    assert!(o.status.success(), "{ctx}");
    assert!(
        !String::from_utf8_lossy(&o.stderr).contains("until you trust it"),
        "trusted now: {ctx}"
    );
    assert_eq!(
        std::fs::read_to_string(home.join(".codex/config.toml")).unwrap(),
        host_config,
        "the host's config.toml is unchanged"
    );
    // The hook ran inside: its decisions are in the session log, outside the sandbox.
    let text = t.session_log();
    assert!(
        text.contains("warden hook inside the sandbox") && text.contains("allowed-marker"),
        "hook decisions in the session log: {text}"
    );
}
