//! The gate inside `warden run` judges with the run's effective policy (issue 11 §5).
//!
//! The user's policy denies curl through `--policy`. Inside the sandbox the agent forges
//! `~/.config/warden/policy.toml` (its private `$HOME` is writable), strips every `WARDEN_*`
//! variable, passes the forged file with `--policy`, and tries to rewrite or remove the
//! session's policy file. Then a Claude Code `PreToolUse` payload for `curl …` is piped into
//! `warden hook claude` inside the sandbox. The answers are written to the workspace and
//! judged from the host after the session: every one must be deny, and an ordinary command
//! must still get no objection (defer: exit 0, empty stdout).
//!
//! Outside a sandbox: the whole-hook deadline denies on input that never ends, and a sparse
//! 64 GiB program on PATH is denied in well under a second.

use super::common::warden;
use super::common::Scratch;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const W: &str = env!("CARGO_BIN_EXE_warden");

struct T(Scratch);

impl std::ops::Deref for T {
    type Target = Scratch;
    fn deref(&self) -> &Scratch {
        &self.0
    }
}

impl T {
    fn new(name: &str) -> T {
        T(Scratch::nested("warden-gate", name))
    }
}

fn payload(ws: &Path, command: &str) -> String {
    serde_json::json!({
        "session_id": "4c6d5cf2-dc7a-42f5-b6ba-7063a4e58b3e",
        "transcript_path": "/dev/null",
        "cwd": ws,
        "permission_mode": "default",
        "hook_event_name": "PreToolUse",
        "tool_name": "Bash",
        "tool_input": {"command": command, "description": "fetch"},
        "tool_use_id": "toolu_gate_run"
    })
    .to_string()
}

/// `warden run --policy <policy> -- bash -c <script>` in the scratch workspace, and its
/// output as a message for failed assertions.
fn run_script(t: &T, policy: &Path, script: &str) -> (std::process::Output, String) {
    let o = warden(&t.home)
        .args(["run", "--policy"])
        .arg(policy)
        .args(["--", "/bin/bash", "-c", script])
        .current_dir(&t.ws)
        .stdin(Stdio::null())
        .output()
        .expect("spawn warden run");
    let ctx = format!(
        "warden run: {:?}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o, ctx)
}

/// curl's path on this machine, if it is installed.
fn installed_curl() -> Option<&'static Path> {
    ["/usr/bin/curl", "/bin/curl"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.is_file())
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| format!("<{}: {e}>", p.display()))
}

#[test]
fn hook_inside_a_run_uses_the_runs_policy_not_agent_files() {
    let t = T::new("run");
    let user_policy = t.root.join("user-policy.toml");
    std::fs::write(&user_policy, "[exec]\ndeny = [\"curl\"]\n").unwrap();
    std::fs::write(
        t.ws.join("deny.json"),
        payload(&t.ws, "curl -s https://example.com/"),
    )
    .unwrap();
    std::fs::write(t.ws.join("ok.json"), payload(&t.ws, "ls -la")).unwrap();
    // Each attempt writes <name>.out (stdout) and <name>.rc (exit code) into the workspace.
    let script = format!(
        r#"
set -u
cd {ws}
mkdir -p ~/.config/warden
printf 'description = "forged by the agent"\n[exec]\nmode = "denylist"\ndeny = []\n[gate]\nmcp_default = "allow"\n' > ~/.config/warden/policy.toml
grep -c forged ~/.config/warden/policy.toml > forged.txt
hook() {{ name=$1; shift; "$@" < deny.json > $name.out 2>/dev/null; echo $? > $name.rc; }}
hook plain {w} hook claude
hook no_env env -u WARDEN_SANDBOX -u WARDEN_SESSION_ID -u WARDEN_HOOK_FD {w} hook claude
hook env_i env -i PATH="$PATH" HOME="$HOME" {w} hook claude
hook flag {w} hook claude --policy "$HOME/.config/warden/policy.toml" --profile generic
( unset $(env | grep -o '^WARDEN_[A-Z_]*'); {w} hook claude < deny.json > unset.out 2>/dev/null; echo $? > unset.rc )
echo '{{}}' > /run/warden-gate/policy.json 2>/dev/null; echo $? > tamper_write.rc
rm -f /run/warden-gate/policy.json 2>/dev/null; echo $? > tamper_rm.rc
mv /run/warden-gate /run/x 2>/dev/null; echo $? > tamper_mv.rc
hook after_tamper {w} hook claude
{w} hook claude < ok.json > ok.out 2>/dev/null; echo $? > ok.rc
"#,
        ws = t.ws.display(),
        w = W
    );
    let (o, ctx) = run_script(&t, &user_policy, &script);
    assert!(o.status.success(), "{ctx}");
    // Judged from the host, after the session.
    assert_eq!(
        read(&t.ws.join("forged.txt")).trim(),
        "1",
        "the forgery was in place\n{ctx}"
    );
    for name in ["plain", "no_env", "env_i", "flag", "unset", "after_tamper"] {
        let rc = read(&t.ws.join(format!("{name}.rc")));
        let out = read(&t.ws.join(format!("{name}.out")));
        assert_eq!(
            rc.trim(),
            "2",
            "{name}: exit code {rc}, stdout {out}\n{ctx}"
        );
        let v: serde_json::Value = serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("{name}: stdout is not JSON ({e}): {out}\n{ctx}"));
        assert_eq!(
            v["hookSpecificOutput"]["permissionDecision"], "deny",
            "{name}: {out}"
        );
        let reason = v["hookSpecificOutput"]["permissionDecisionReason"]
            .as_str()
            .unwrap_or_default();
        assert!(reason.contains("exec.deny:curl"), "{name}: {reason}");
    }
    for name in ["tamper_write", "tamper_rm", "tamper_mv"] {
        let rc = read(&t.ws.join(format!("{name}.rc")));
        assert_ne!(rc.trim(), "0", "{name} succeeded inside the sandbox\n{ctx}");
    }
    // The everyday command: no objection, so Claude Code's own permission checks apply.
    assert_eq!(read(&t.ws.join("ok.rc")).trim(), "0", "{ctx}");
    assert_eq!(
        read(&t.ws.join("ok.out")),
        "",
        "warden defers, it never answers allow"
    );
    // The host's own user policy directory was never created by the session.
    assert!(!t.home.join(".config/warden").exists());
}

/// Inside a run the gate has no persistent hash cache; `warden run` passes it the hashes of
/// the files its denials resolved to (`known` in the read-only session policy), and the gate
/// hashes a program only when its size is a denied file's. Judged from the host after the
/// session: a copy of curl under another name is still denied, a copy with one byte changed
/// is not, a 64 GiB sparse program is judged in well under a second without being read,
/// and a denied file in the workspace (which the agent can write) is not among the known
/// hashes, while curl is.
#[test]
fn inside_a_run_the_gate_hashes_only_what_a_denial_could_match() {
    let Some(curl) = installed_curl() else {
        eprintln!("skipped: no curl installed");
        return;
    };
    let t = T::new("known");
    std::fs::write(t.ws.join("tool"), "#!/bin/sh\necho workspace tool\n").unwrap();
    // Older than the hash cache's two seconds of doubt, so its hash is cached at the start
    // (and the session must leave it out on purpose).
    std::thread::sleep(Duration::from_millis(2100));
    let user_policy = t.root.join("user-policy.toml");
    std::fs::write(
        &user_policy,
        format!(
            "[exec]\ndeny = [\"curl\", \"{}\"]\n",
            t.ws.join("tool").display()
        ),
    )
    .unwrap();
    for (name, cmd) in [
        ("copy", "./fetch -s https://example.com/"),
        ("changed", "./fetch2 -s https://example.com/"),
        ("huge", "./huge --version"),
    ] {
        std::fs::write(t.ws.join(format!("{name}.json")), payload(&t.ws, cmd)).unwrap();
    }
    let script = format!(
        r#"
set -u
cd {ws}
cp {curl} fetch && cp {curl} fetch2 && printf 'x' | dd of=fetch2 bs=1 seek=100 conv=notrunc 2>/dev/null
truncate -s 64G huge && chmod 755 huge fetch fetch2
cp /run/warden-gate/policy.json gate.json
for n in copy changed huge; do
  s=$(date +%s%N); {w} hook claude < $n.json > $n.out 2>/dev/null; echo $? > $n.rc
  echo $(( ($(date +%s%N) - s) / 1000000 )) > $n.ms
done
"#,
        ws = t.ws.display(),
        w = W,
        curl = curl.display()
    );
    let (o, ctx) = run_script(&t, &user_policy, &script);
    assert!(o.status.success(), "{ctx}");
    let answer = |name: &str| {
        let out = read(&t.ws.join(format!("{name}.out")));
        let rc = read(&t.ws.join(format!("{name}.rc")));
        (rc.trim().to_string(), out)
    };
    let (rc, out) = answer("copy");
    assert_eq!(rc, "2", "a copy of curl: {out}\n{ctx}");
    assert!(out.contains("exec.deny:curl"), "{out}");
    let (rc, out) = answer("changed");
    assert_eq!(
        rc, "0",
        "curl with one byte changed is other content: {out}\n{ctx}"
    );
    let (rc, out) = answer("huge");
    assert_eq!(rc, "0", "64 GiB, no denied file's size: {out}\n{ctx}");
    let ms: u64 = read(&t.ws.join("huge.ms")).trim().parse().unwrap();
    assert!(ms < 1000, "the huge program took {ms} ms");
    // What the gate was told, as the agent saw it.
    let gate: serde_json::Value = serde_json::from_str(&read(&t.ws.join("gate.json"))).unwrap();
    let known = gate["known"].as_array().cloned().unwrap_or_default();
    use std::os::unix::fs::MetadataExt;
    let ino_of = |p: &Path| std::fs::metadata(p).unwrap().ino();
    let inos: Vec<u64> = known.iter().filter_map(|k| k["ino"].as_u64()).collect();
    assert!(
        inos.contains(&ino_of(curl)),
        "curl's hash was not passed: {known:?}"
    );
    assert!(
        !inos.contains(&ino_of(&t.ws.join("tool"))),
        "a workspace file's hash was passed: {known:?}"
    );
    // Attack review 130: nor the hash of a denied file the sandbox hides (`~/.ssh`), which
    // told the agent the hash of content it cannot read.
    let secret = t.home.join(".ssh/tool");
    std::fs::create_dir_all(secret.parent().unwrap()).unwrap();
    std::fs::write(&secret, "hunter2\n").unwrap();
    std::thread::sleep(Duration::from_millis(2100));
    std::fs::write(
        &user_policy,
        format!("[exec]\ndeny = [\"curl\", \"{}\"]\n", secret.display()),
    )
    .unwrap();
    let (o, ctx) = run_script(
        &t,
        &user_policy,
        "cat ~/.ssh/tool > seen.txt 2>&1; cp /run/warden-gate/policy.json gate2.json",
    );
    assert!(o.status.success(), "{ctx}");
    assert!(!read(&t.ws.join("seen.txt")).contains("hunter2"));
    let gate: serde_json::Value = serde_json::from_str(&read(&t.ws.join("gate2.json"))).unwrap();
    let known = gate["known"].as_array().cloned().unwrap_or_default();
    let inos: Vec<u64> = known.iter().filter_map(|k| k["ino"].as_u64()).collect();
    assert!(inos.contains(&ino_of(curl)), "{known:?}");
    assert!(
        !inos.contains(&ino_of(&secret)),
        "a hidden file's hash was passed: {known:?}"
    );
}

/// Attack review 130: a denial by path resolving to a file the agent can write followed the
/// file's new content, in both layers: the exec guard's 30 s refresh replaced its denials and
/// the hook resolved them afresh, so a copy of the denied content saved before the file was
/// overwritten ran. Now the guard's denials only grow, and the hook also denies what
/// `warden run` resolved at the start (`pinned`). A denial by path the sandbox hides no
/// longer makes the hook deny every command. Judged from the host after the session: the
/// saved copy never ran, and the hook's answers.
#[test]
fn a_denied_files_old_content_stays_denied_after_the_file_changes() {
    let Some(curl) = installed_curl() else {
        eprintln!("skipped: no curl installed");
        return;
    };
    let t = T::new("pinned");
    std::fs::copy(curl, t.ws.join("tool")).unwrap();
    let hidden = t.home.join(".ssh/tool2");
    std::fs::create_dir_all(hidden.parent().unwrap()).unwrap();
    std::fs::write(&hidden, "#!/bin/sh\necho hidden\n").unwrap();
    let user_policy = t.root.join("user-policy.toml");
    std::fs::write(
        &user_policy,
        format!(
            "[exec]\ndeny = [\"{}\", \"{}\"]\n",
            t.ws.join("tool").display(),
            hidden.display()
        ),
    )
    .unwrap();
    std::fs::write(t.ws.join("saved.json"), payload(&t.ws, "/tmp/saved -V")).unwrap();
    std::fs::write(t.ws.join("ls.json"), payload(&t.ws, "ls -la")).unwrap();
    let script = format!(
        r#"
set -u
cd {ws}
cp tool /tmp/saved
{w} hook claude < saved.json > before.out 2>/dev/null; echo $? > before.rc
printf '#!/bin/sh\necho replaced\n' > tool
{w} hook claude < saved.json > after.out 2>/dev/null; echo $? > after.rc
{w} hook claude < ls.json > ls.out 2>/dev/null; echo $? > ls.rc
sleep 33
/tmp/saved -V > ran.txt 2>/dev/null; echo $? > ran.rc
"#,
        ws = t.ws.display(),
        w = W
    );
    let (_, ctx) = run_script(&t, &user_policy, &script);
    let rc = |n: &str| read(&t.ws.join(format!("{n}.rc"))).trim().to_string();
    for n in ["before", "after"] {
        let out = read(&t.ws.join(format!("{n}.out")));
        assert_eq!(
            rc(n),
            "2",
            "{n}: the saved copy was not denied: {out}\n{ctx}"
        );
        assert!(out.contains("exec.deny:"), "{n}: {out}");
    }
    assert_eq!(
        rc("ls"),
        "0",
        "a hidden denial made the hook deny `ls`: {}\n{ctx}",
        read(&t.ws.join("ls.out"))
    );
    // The exec guard, after its refresh: the old content still denied.
    let ran = read(&t.ws.join("ran.txt"));
    assert!(!ran.contains("curl"), "the saved copy ran: {ran}\n{ctx}");
    assert_ne!(rc("ran"), "0", "{ctx}");
}

#[test]
fn outside_a_run_the_user_policy_is_used() {
    // The same forged-looking file, outside a sandbox, is the user's real policy: it is read.
    let t = T::new("outside");
    std::fs::create_dir_all(t.home.join(".config/warden")).unwrap();
    std::fs::write(
        t.home.join(".config/warden/policy.toml"),
        "[exec]\ndeny = [\"curl\"]\n",
    )
    .unwrap();
    let mut c = warden(&t.home)
        .args(["hook", "claude"])
        .current_dir(&t.ws)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin
        .take()
        .unwrap()
        .write_all(payload(&t.ws, "curl https://example.com").as_bytes())
        .unwrap();
    let o = c.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{o:?}");
}

#[test]
fn the_deadline_denies_input_that_never_ends() {
    let t = T::new("deadline");
    let start = Instant::now();
    let mut c = warden(&t.home)
        .args(["hook", "claude", "--deadline-ms", "300"])
        .current_dir(&t.ws)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = c.stdin.take().unwrap();
    stdin.write_all(b"{\"hook_event_name\": \"PreTo").unwrap();
    // Keep stdin open: the hook must not wait for it.
    let o = c.wait_with_output().unwrap();
    drop(stdin);
    let took = start.elapsed();
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["hookSpecificOutput"]["permissionDecision"], "deny");
    assert!(String::from_utf8_lossy(&o.stderr).contains("deadline"));
    assert!(took < Duration::from_secs(3), "took {took:?}");
}

/// A huge program is hashed only when a denial could match it: allowed at once when every
/// denial's size is known (the default policy denies nothing), denied within a second at
/// the hashing limit when one is a bare hash (its size unknown).
#[test]
fn a_sparse_64_gib_program_on_path_is_judged_within_a_second() {
    let t = T::new("huge");
    let bin = t.root.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let prog = bin.join("hugetool");
    let st = Command::new("truncate")
        .args(["-s", "64G"])
        .arg(&prog)
        .status()
        .unwrap();
    assert!(st.success());
    Command::new("chmod")
        .arg("755")
        .arg(&prog)
        .status()
        .unwrap();
    let path = format!("{}:/usr/bin:/bin", bin.display());
    let by_hash = t.root.join("by-hash.toml");
    std::fs::write(
        &by_hash,
        format!("[exec]\ndeny = [\"sha256:{}\"]\n", "ab".repeat(32)),
    )
    .unwrap();
    for policy in [None, Some(&by_hash)] {
        let start = Instant::now();
        let mut cmd = warden(&t.home);
        cmd.args(["hook", "claude"]);
        if let Some(p) = policy {
            cmd.arg("--policy").arg(p);
        }
        let mut c = cmd
            .current_dir(&t.ws)
            .env("PATH", &path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin
            .take()
            .unwrap()
            .write_all(payload(&t.ws, "hugetool --version").as_bytes())
            .unwrap();
        let o = c.wait_with_output().unwrap();
        let took = start.elapsed();
        let err = String::from_utf8_lossy(&o.stderr);
        if policy.is_some() {
            assert_eq!(o.status.code(), Some(2), "{o:?}");
            assert!(err.contains("hashing limit"), "{err}");
        } else {
            assert_eq!(o.status.code(), Some(0), "{o:?}");
            assert!(!err.contains("hashing limit"), "{err}");
        }
        assert!(took < Duration::from_secs(1), "took {took:?}");
    }
}

#[test]
fn install_defaults_to_user_scope_and_dry_run_names_the_file() {
    let t = T::new("install");
    let root = t.root.join("sysroot");
    std::fs::create_dir_all(&root).unwrap();
    let settings = t.home.join(".claude/settings.json");
    std::fs::create_dir_all(settings.parent().unwrap()).unwrap();
    std::fs::write(&settings, "{\"zeta\": 1, \"alpha\": 2}\n").unwrap();
    let run = |args: &[&str]| {
        warden(&t.home)
            .args(args)
            .arg("--root")
            .arg(&root)
            .current_dir(&t.ws)
            .output()
            .unwrap()
    };
    // Dry run: names the file, writes nothing.
    let o = run(&["install", "claude", "--dry-run"]);
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{o:?}");
    assert!(
        s.contains(&format!("would update {}", settings.display())),
        "{s}"
    );
    assert_eq!(
        std::fs::read_to_string(&settings).unwrap(),
        "{\"zeta\": 1, \"alpha\": 2}\n"
    );
    // No scope named, even as root: the user's settings, never the managed file.
    let o = run(&["install", "claude"]);
    assert!(o.status.success(), "{o:?}");
    assert!(!root.join("etc/claude-code/managed-settings.json").exists());
    let text = std::fs::read_to_string(&settings).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(v.get("allowManagedHooksOnly").is_none(), "{text}");
    // The user's key order is kept.
    assert!(
        text.find("zeta").unwrap() < text.find("alpha").unwrap(),
        "{text}"
    );
    // Managed scope: only the hook unless --managed-hooks-only.
    let o = run(&["install", "claude", "--scope", "managed"]);
    assert!(o.status.success(), "{o:?}");
    let managed = root.join("etc/claude-code/managed-settings.json");
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&managed).unwrap()).unwrap();
    assert!(m.get("allowManagedHooksOnly").is_none(), "{m}");
    assert!(run(&[
        "install",
        "claude",
        "--scope",
        "managed",
        "--managed-hooks-only"
    ])
    .status
    .success());
    assert!(run(&[
        "uninstall",
        "claude",
        "--scope",
        "managed",
        "--managed-hooks-only"
    ])
    .status
    .success());
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&managed).unwrap()).unwrap();
    assert_eq!(
        m,
        serde_json::json!({}),
        "uninstall removed what install added"
    );
    // Gemini's timeout is in milliseconds.
    assert!(run(&["install", "gemini"]).status.success());
    let g: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(t.home.join(".gemini/settings.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(g["hooks"]["BeforeTool"][0]["hooks"][0]["timeout"], 30_000);
}

#[test]
fn a_sandbox_without_its_policy_channel_denies_everything() {
    // WARDEN_SANDBOX says "inside", but /run/warden-gate is not there (this host): the hook
    // cannot know the run's policy, so even `ls` is denied, with the reason.
    assert!(!Path::new(warden_policy_gate_file()).exists());
    let t = T::new("broken");
    let mut c = warden(&t.home)
        .args(["hook", "claude"])
        .current_dir(&t.ws)
        .env("WARDEN_SANDBOX", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin
        .take()
        .unwrap()
        .write_all(payload(&t.ws, "ls").as_bytes())
        .unwrap();
    let o = c.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("session's policy") && err.contains("missing"),
        "{err}"
    );
}

fn warden_policy_gate_file() -> &'static str {
    "/run/warden-gate/policy.json"
}
