//! End to end with the real Claude Code CLI (`@anthropic-ai/claude-code`, installed by
//! scripts/bootstrap.sh): `warden install claude` writes the hook into the settings of a
//! throw-away HOME, and Claude Code talks to a scripted model server started here
//! (`ANTHROPIC_BASE_URL`, `POST /v1/messages` with streaming SSE). The script asks for a
//! denied Bash call, then an allowed one, then a denied Read of a credential; the test checks
//! that the denials came back to the model as errors carrying warden's reason, that the
//! denied commands did not run, and that the allowed one did.

use super::common::WARDEN as W;
use super::e2e::anthropic::{self, claude, result_text, tool_result};
use super::e2e::{self, Log, ModelServer, Request, Tree, MAGIC};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;

/// One scripted reply per step; the step is chosen from what the request carries.
fn step_for(req: &Value) -> usize {
    let msgs = req
        .get("messages")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let text = serde_json::to_string(&msgs).unwrap_or_default();
    if !text.contains(MAGIC) {
        return 0; // a side request (title, summary, quota): answer with plain text
    }
    let results = ["toolu_e2e_1", "toolu_e2e_2", "toolu_e2e_3"]
        .iter()
        .filter(|id| text.contains(&format!("\"tool_use_id\":\"{id}\"")))
        .count();
    results + 1
}

fn reply(step: usize, ws: &Path, home: &Path) -> Vec<(String, Value)> {
    let tool = |id: &str, name: &str, input: Value| -> Vec<(String, Value)> {
        vec![
            (
                "content_block_start".into(),
                json!({"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":id,"name":name,"input":{}}}),
            ),
            (
                "content_block_delta".into(),
                json!({"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json": input.to_string()}}),
            ),
            (
                "content_block_stop".into(),
                json!({"type":"content_block_stop","index":0}),
            ),
        ]
    };
    let text = |t: &str| -> Vec<(String, Value)> {
        vec![
            (
                "content_block_start".into(),
                json!({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}),
            ),
            (
                "content_block_delta".into(),
                json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":t}}),
            ),
            (
                "content_block_stop".into(),
                json!({"type":"content_block_stop","index":0}),
            ),
        ]
    };
    let (body, stop) = match step {
        1 => (
            tool(
                "toolu_e2e_1",
                "Bash",
                json!({"command": format!("curl --version > {}/denied-marker", ws.display()), "description": "denied"}),
            ),
            "tool_use",
        ),
        2 => (
            tool(
                "toolu_e2e_2",
                "Bash",
                json!({"command": format!("echo allowed > {}/allowed-marker", ws.display()), "description": "allowed"}),
            ),
            "tool_use",
        ),
        3 => (
            tool(
                "toolu_e2e_3",
                "Read",
                json!({"file_path": home.join(".ssh/id_ed25519")}),
            ),
            "tool_use",
        ),
        4 => (text("all steps done"), "end_turn"),
        _ => (text("ok"), "end_turn"),
    };
    let mut ev = vec![(
        "message_start".to_string(),
        json!({"type":"message_start","message":{"id":format!("msg_e2e_{step}"),"type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":10,"output_tokens":1}}}),
    )];
    ev.extend(body);
    ev.push(("message_delta".into(), json!({"type":"message_delta","delta":{"stop_reason":stop,"stop_sequence":null},"usage":{"output_tokens":8}})));
    ev.push(("message_stop".into(), json!({"type":"message_stop"})));
    ev
}

/// The scripted Messages API (see [`anthropic::answer`]); every `/v1/messages` request is
/// logged with its step.
fn model(log: Log, ws: PathBuf, home: PathBuf) -> ModelServer {
    ModelServer::start(move |r: &Request| {
        anthropic::answer(r, |req| {
            let step = step_for(req);
            log.lock()
                .unwrap()
                .push(json!({"step": step, "request": req}));
            reply(step, &ws, &home)
        })
    })
}

/// The credential the Read step asks for (denied; it must never reach the model).
fn plant_secret(home: &Path) {
    std::fs::create_dir_all(home.join(".ssh")).unwrap();
    std::fs::write(
        home.join(".ssh/id_ed25519"),
        "-----BEGIN OPENSSH PRIVATE KEY----- e2e-secret\n",
    )
    .unwrap();
}

/// `-p MAGIC` and the flags both runs use.
const CLAUDE_ARGS: [&str; 11] = [
    "-p",
    MAGIC,
    "--output-format",
    "json",
    "--allowedTools",
    "Bash",
    "Read",
    "--max-turns",
    "8",
    "--model",
    "claude-sonnet-4-5",
];

#[test]
fn real_claude_code_with_warden_hook() {
    let Some(claude) = claude("real_claude_code_with_warden_hook") else {
        return;
    };
    let t = Tree::new("claude-hook", "[exec]\ndeny = [\"curl\"]\n");
    let (home, ws) = (t.home(), t.ws());
    plant_secret(home);
    // The user's other settings must survive the install.
    std::fs::create_dir_all(home.join(".claude")).unwrap();
    std::fs::write(home.join(".claude/settings.json"), r#"{"theme": "dark", "hooks": {"Stop": [{"hooks": [{"type": "command", "command": "true"}]}]}}"#).unwrap();

    for _ in 0..2 {
        let mut c = Command::new(W);
        c.args(["install", "claude", "--scope", "user"]);
        t.hermetic(&mut c);
        let o = c.output().unwrap();
        assert!(
            o.status.success(),
            "install: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let settings: Value =
        serde_json::from_str(&std::fs::read_to_string(home.join(".claude/settings.json")).unwrap())
            .unwrap();
    assert_eq!(
        settings["theme"], "dark",
        "install kept the user's settings"
    );
    assert_eq!(
        settings["hooks"]["PreToolUse"].as_array().unwrap().len(),
        1,
        "install is idempotent: {settings}"
    );
    assert_eq!(
        settings["hooks"]["Stop"].as_array().unwrap().len(),
        2,
        "the user's own Stop hook is kept: {settings}"
    );

    let log = e2e::new_log();
    let port = model(log.clone(), ws.to_path_buf(), home.to_path_buf()).port;
    let mut c = Command::new(&claude);
    c.args(CLAUDE_ARGS);
    t.hermetic(&mut c);
    anthropic::env(&mut c, format!("http://127.0.0.1:{port}"));
    let o = c.output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    let log = log.lock().unwrap().clone();
    let ctx = format!(
        "claude exit {:?}\nstdout: {out}\nstderr: {err}\nrequests: {}",
        o.status.code(),
        log.len()
    );

    // 1. The denied Bash call came back to the model as an error with warden's reason, and
    //    did not run.
    let r1 = tool_result(&log, "toolu_e2e_1")
        .unwrap_or_else(|| panic!("no result for the denied Bash call\n{ctx}"));
    let t1 = result_text(&r1);
    assert!(
        t1.contains("warden blocked") && t1.contains("exec.deny:curl"),
        "denied Bash result: {t1}\n{ctx}"
    );
    assert_eq!(r1["is_error"], true, "{r1}");
    assert!(!ws.join("denied-marker").exists(), "the denied command ran");
    // 2. The allowed call ran.
    let r2 = tool_result(&log, "toolu_e2e_2")
        .unwrap_or_else(|| panic!("no result for the allowed Bash call\n{ctx}"));
    assert_ne!(r2["is_error"], true, "allowed Bash result: {r2}");
    assert_eq!(
        std::fs::read_to_string(ws.join("allowed-marker")).unwrap_or_default(),
        "allowed\n",
        "{ctx}"
    );
    // 3. The credential read was denied and the secret never reached the model.
    let r3 = tool_result(&log, "toolu_e2e_3")
        .unwrap_or_else(|| panic!("no result for the Read call\n{ctx}"));
    let t3 = result_text(&r3);
    assert!(
        t3.contains("warden blocked") && t3.contains("files.deny"),
        "denied Read result: {t3}"
    );
    assert!(
        !serde_json::to_string(&log).unwrap().contains("e2e-secret"),
        "the secret reached the model"
    );
    assert!(out.contains("all steps done"), "{ctx}");
    // The hook's decisions are in the session log outside the agent's reach.
    let decisions =
        std::fs::read_to_string(home.join(".local/state/warden/hooks.jsonl")).unwrap_or_default();
    assert!(
        decisions.contains("exec.deny:curl") && decisions.contains("files.deny"),
        "hook log: {decisions}"
    );

    // Uninstall removes warden's entries and nothing else.
    let mut c = Command::new(W);
    c.args(["uninstall", "claude", "--scope", "user"]);
    t.hermetic(&mut c);
    assert!(c.output().unwrap().status.success());
    let settings: Value =
        serde_json::from_str(&std::fs::read_to_string(home.join(".claude/settings.json")).unwrap())
            .unwrap();
    assert_eq!(settings["theme"], "dark");
    assert!(settings["hooks"].get("PreToolUse").is_none(), "{settings}");
    assert_eq!(
        settings["hooks"]["Stop"].as_array().unwrap().len(),
        1,
        "{settings}"
    );
}

/// Claude Code installed the way Anthropic's native installer does it
/// (`~/.local/bin/claude -> ~/.local/share/claude/versions/<v>`, here the real binary from the
/// npm package, hard-linked or copied), run inside `warden run --profile claude` with the
/// scripted model reached through warden's proxy. The native layout used to fail every run
/// (exit 4). Inside: the denied `curl` does not run (exec guard), the allowed command runs,
/// the credential does not exist in the sandbox's view, and the hook's decisions reach the
/// session log outside the sandbox.
#[test]
fn real_claude_code_native_install_inside_warden() {
    let Some(npm_claude) = claude("real_claude_code_native_install_inside_warden") else {
        return;
    };
    let Ok(real) = std::fs::canonicalize(&npm_claude) else {
        return;
    };
    let t = Tree::new("claude-native", e2e::POLICY);
    let (home, ws) = (t.home(), t.ws());
    let version = home.join(".local/share/claude/versions/2.1.330");
    std::fs::create_dir_all(version.parent().unwrap()).unwrap();
    std::fs::create_dir_all(home.join(".local/bin")).unwrap();
    if std::fs::hard_link(&real, &version).is_err() {
        std::fs::copy(&real, &version).unwrap();
    }
    std::os::unix::fs::symlink(&version, home.join(".local/bin/claude")).unwrap();
    plant_secret(home);
    let env = |c: &mut Command| {
        t.hermetic(c).env(
            "PATH",
            format!(
                "{}:/usr/local/bin:/usr/bin:/bin",
                home.join(".local/bin").display()
            ),
        );
    };
    let mut c = Command::new(W);
    c.args(["install", "claude", "--scope", "user"]);
    env(&mut c);
    assert!(c.output().unwrap().status.success());
    let log = e2e::new_log();
    let port = model(log.clone(), ws.to_path_buf(), home.to_path_buf()).port;
    let mut c = Command::new(W);
    c.arg("run")
        .args(["--profile", "claude", "--proxy-hosts-file"])
        .arg(t.hosts())
        .args(["--", "claude"])
        .args(CLAUDE_ARGS);
    env(&mut c);
    anthropic::env(&mut c, format!("http://model.test:{port}"));
    let o = c.output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    let log = log.lock().unwrap().clone();
    let ctx = format!(
        "warden run exit {:?}\nstdout: {out}\nstderr: {err}\nrequests: {}",
        o.status.code(),
        log.len()
    );
    assert_ne!(
        o.status.code(),
        Some(4),
        "the native layout must not fail setup\n{ctx}"
    );
    let r1 = tool_result(&log, "toolu_e2e_1")
        .unwrap_or_else(|| panic!("no result for the denied Bash call\n{ctx}"));
    let t1 = result_text(&r1);
    assert!(
        t1.contains("Permission denied") || t1.contains("warden blocked"),
        "curl blocked inside: {t1}\n{ctx}"
    );
    assert!(
        std::fs::read_to_string(ws.join("denied-marker"))
            .unwrap_or_default()
            .is_empty(),
        "curl wrote its output\n{ctx}"
    );
    assert_eq!(
        std::fs::read_to_string(ws.join("allowed-marker")).unwrap_or_default(),
        "allowed\n",
        "{ctx}"
    );
    assert!(
        !serde_json::to_string(&log).unwrap().contains("e2e-secret"),
        "the secret reached the model"
    );
    assert!(out.contains("all steps done"), "{ctx}");
    let text = t.session_log();
    // The hook ran inside (its exec is in the session log), and its decisions reached this
    // log: Claude Code does not pass the inherited pipe (WARDEN_HOOK_FD) on to its hooks, so
    // they come through the session's hook-report socket, marked as reported from inside.
    let own = std::fs::canonicalize(W).unwrap();
    assert!(
        text.contains(&format!("\"what\":\"{}\"", own.display())),
        "the hook (warden) ran inside: {text}"
    );
    assert!(
        text.contains("\"reported_by\"") && text.contains("\"layer\":\"gate\""),
        "the hook's decisions reached the session log: {text}"
    );
    // The install is as it was on the host.
    assert!(std::fs::symlink_metadata(home.join(".local/bin/claude"))
        .unwrap()
        .file_type()
        .is_symlink());
}
