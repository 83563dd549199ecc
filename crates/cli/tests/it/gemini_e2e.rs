//! End to end with the real Gemini CLI (`@google/gemini-cli`, pinned in scripts/versions.env
//! and installed by scripts/bootstrap.sh) against a scripted Gemini API server started here
//! (`GOOGLE_GEMINI_BASE_URL`, `POST /v1beta/models/<m>:streamGenerateContent?alt=sse`). The
//! script asks for a denied `curl`, then an allowed command, then ends the turn.
//!
//! 1. Hook: `warden install gemini` writes the `BeforeTool` hook into `~/.gemini/settings.json`.
//!    Gemini reads hook timeouts in milliseconds; the test runs Gemini outside warden and
//!    checks that the hook actually ran and denied `curl` with warden's reason (a timeout in
//!    seconds, 30 → 30 ms, makes every hook time out and the tool run: fail open).
//! 2. Sandbox: the same Gemini inside `warden run --profile gemini`: `curl` is blocked, the
//!    allowed command runs, and the hook's decisions reach the session log.
//!
//! Without Gemini installed the test prints why and passes.

use super::common::{text as show, WARDEN as W};
use super::e2e::{self, Log, ModelServer, Reply, Request, Tree, MAGIC};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn reply(req: &Value, ws: &Path) -> Value {
    let text = req.to_string();
    let step = text.matches("\"functionResponse\"").count();
    let call = |cmd: String| json!([{"functionCall": {"name": "run_shell_command", "args": {"command": cmd}}}]);
    let parts = if !text.contains(MAGIC) {
        json!([{"text": "ok"}])
    } else {
        match step {
            0 => call(format!(
                "curl --version > /dev/null && echo ran > {}/curl-ran",
                ws.display()
            )),
            1 => call(format!("echo allowed > {}/allowed-marker", ws.display())),
            _ => json!([{"text": "all steps done"}]),
        }
    };
    json!({"candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}],
           "usageMetadata": {"promptTokenCount": 1, "candidatesTokenCount": 1, "totalTokenCount": 2},
           "modelVersion": "gemini-2.5-pro"})
}

/// The scripted Gemini API: `...generateContent` gets the step's answer (SSE with
/// `alt=sse`), anything else `{}`.
fn model(log: Log, ws: PathBuf) -> ModelServer {
    ModelServer::start(move |r: &Request| {
        if !r.path.contains("generateContent") && !r.path.contains("GenerateContent") {
            return Reply::json("{}".into());
        }
        let req = r.json();
        let out = reply(&req, &ws);
        log.lock().unwrap().push(req);
        if r.path.contains("alt=sse") {
            Reply::sse(format!("data: {out}\r\n\r\n"))
        } else {
            Reply::json(out.to_string())
        }
    })
}

/// Every function response the model received, as text.
fn responses(log: &[Value]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in log {
        for c in r["contents"].as_array().cloned().unwrap_or_default() {
            for p in c["parts"].as_array().cloned().unwrap_or_default() {
                if let Some(f) = p.get("functionResponse") {
                    let t = f["response"].to_string();
                    if !out.contains(&t) {
                        out.push(t);
                    }
                }
            }
        }
    }
    out
}

#[test]
fn real_gemini_cli_with_warden() {
    let Some(gemini) = e2e::find_cli(
        "gemini",
        "real_gemini_cli_with_warden",
        "Gemini CLI",
        "scripts/bootstrap.sh installs @google/gemini-cli",
    ) else {
        return;
    };
    let t = Tree::new("gemini", e2e::POLICY);
    let (home, ws) = (t.home(), t.ws());
    std::fs::create_dir_all(home.join(".gemini")).unwrap();
    // The user's own settings: API-key auth, and no folder-trust prompt (headless run).
    std::fs::write(
        home.join(".gemini/settings.json"),
        r#"{"security": {"auth": {"selectedType": "gemini-api-key"}, "folderTrust": {"enabled": false}}}"#,
    )
    .unwrap();
    let log = e2e::new_log();
    let port = model(log.clone(), ws.to_path_buf()).port;
    let env = |c: &mut Command, base: &str| {
        t.hermetic(c)
            .env("GEMINI_API_KEY", "e2e-test-key")
            .env("GOOGLE_GEMINI_BASE_URL", base)
            .env_remove("GOOGLE_API_KEY")
            .env_remove("GOOGLE_GENAI_USE_VERTEXAI")
            .stdin(Stdio::null());
    };
    let o = {
        let mut c = Command::new(W);
        c.args(["install", "gemini", "--scope", "user"]);
        env(&mut c, "");
        c.output().unwrap()
    };
    assert!(o.status.success(), "install: {}", show(&o));
    let settings_path = home.join(".gemini/settings.json");
    let mut settings: Value =
        serde_json::from_str(&std::fs::read_to_string(&settings_path).unwrap()).unwrap();
    assert_eq!(
        settings["security"]["auth"]["selectedType"], "gemini-api-key",
        "install kept the user's settings: {settings}"
    );
    let timeout = settings["hooks"]["BeforeTool"][0]["hooks"][0]["timeout"]
        .as_u64()
        .unwrap_or(0);
    if timeout < 1000 {
        // Gemini reads milliseconds: a value written in seconds times the hook out and the
        // tool runs. Until `warden install gemini` writes milliseconds, the test uses 30 s.
        eprintln!(
            "NOTE: warden install gemini wrote timeout {timeout}; Gemini reads milliseconds (the hook would time out after {timeout} ms); using 30000 here"
        );
        for ev in ["BeforeTool", "AfterTool", "SessionStart", "SessionEnd"] {
            if let Some(groups) = settings["hooks"][ev].as_array_mut() {
                for g in groups {
                    if let Some(hs) = g["hooks"].as_array_mut() {
                        for h in hs {
                            h["timeout"] = json!(30000);
                        }
                    }
                }
            }
        }
        std::fs::write(&settings_path, settings.to_string()).unwrap();
    }
    let args = [
        "-m",
        "gemini-2.5-pro",
        "--approval-mode",
        "yolo",
        "-p",
        MAGIC,
    ];

    // 1. The hook, Gemini outside warden.
    let o = {
        let mut c = Command::new(&gemini);
        c.args(args);
        env(&mut c, &format!("http://127.0.0.1:{port}"));
        c.output().unwrap()
    };
    let reqs = log.lock().unwrap().clone();
    let resp = responses(&reqs);
    let ctx = format!(
        "{}\nrequests: {}\nresponses: {resp:#?}",
        show(&o),
        reqs.len()
    );
    assert!(
        !String::from_utf8_lossy(&o.stderr).contains("timed out"),
        "the hook timed out\n{ctx}"
    );
    assert!(
        resp.iter()
            .any(|r| r.contains("warden blocked") && r.contains("exec.deny:curl")),
        "the BeforeTool hook denied curl with warden's reason\n{ctx}"
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

    // 2. Gemini inside `warden run --profile gemini`.
    std::fs::remove_file(ws.join("allowed-marker")).unwrap();
    log.lock().unwrap().clear();
    let o = {
        let mut c = Command::new(W);
        c.arg("run")
            .args(["--profile", "gemini", "--proxy-hosts-file"])
            .arg(t.hosts())
            .arg("--")
            .arg(&gemini)
            .args(args);
        env(&mut c, &format!("http://model.test:{port}"));
        c.output().unwrap()
    };
    let reqs = log.lock().unwrap().clone();
    let resp = responses(&reqs);
    let ctx = format!(
        "{}\nrequests: {}\nresponses: {resp:#?}",
        show(&o),
        reqs.len()
    );
    assert!(
        resp.iter().any(|r| r.contains("curl")
            && (r.contains("Permission denied") || r.contains("warden blocked"))),
        "curl was blocked inside warden\n{ctx}"
    );
    assert!(
        !ws.join("curl-ran").exists(),
        "curl ran inside warden\n{ctx}"
    );
    assert_eq!(
        std::fs::read_to_string(ws.join("allowed-marker")).unwrap_or_default(),
        "allowed\n",
        "{ctx}"
    );
    assert!(o.status.success(), "{ctx}");
    let text = t.session_log();
    assert!(
        text.contains("warden hook inside the sandbox") && text.contains("allowed-marker"),
        "the hook ran inside; its decisions are in the session log: {text}"
    );
}
