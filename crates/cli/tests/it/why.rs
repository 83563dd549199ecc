//! `warden why` outside a session (inside one it is exercised by `completeness.rs`): the
//! rule, the effect and the policy line a human adds, with exit code 6 when denied.

use super::common::warden;

fn why(home: &std::path::Path, ws: &std::path::Path, args: &[&str]) -> (i32, String) {
    let o = warden(home)
        .arg("why")
        .args(args)
        .current_dir(ws)
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

#[test]
fn why_names_the_rule_and_the_line_to_add() {
    let root = std::env::temp_dir().join(format!("warden-why-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let home = root.join("home");
    let ws = root.join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    std::fs::create_dir_all(home.join(".ssh")).unwrap();

    let (rc, out) = why(&home, &ws, &["~/.ssh/id_ed25519"]);
    assert_eq!(rc, 6, "{out}");
    assert!(out.contains("files.deny:~/.ssh"), "{out}");
    assert!(out.contains("No such file or directory"), "{out}");

    let (rc, out) = why(&home, &ws, &[".git/hooks/pre-commit"]);
    assert_eq!(rc, 6, "{out}");
    assert!(out.contains("files.protect:.git/hooks"), "{out}");
    assert!(out.contains("Read-only file system"), "{out}");

    let (rc, out) = why(&home, &ws, &["https://example.com/x"]);
    assert_eq!(rc, 6, "{out}");
    assert!(
        out.contains("network.default") && out.contains("allow = [\"example.com\"]"),
        "{out}"
    );

    let (rc, out) = why(&home, &ws, &["/opt/nowhere/tool"]);
    assert_eq!(rc, 6, "{out}");
    assert!(
        out.contains("read = [\"/opt/nowhere/tool\"]") || out.contains("files.system"),
        "{out}"
    );

    // Readable and runnable, not writable: one answer per kind of action (exit 6: one is
    // denied).
    let (rc, out) = why(&home, &ws, &["--json", "/usr/bin/ls"]);
    assert_eq!(rc, 6, "{out}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["inside_session"], false);
    assert!(v["answers"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["layer"] == "exec" && a["allowed"] == true));
    assert!(v["answers"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["action"] == "read /usr/bin/ls" && a["allowed"] == true));

    let (rc, out) = why(&home, &ws, &["ls"]);
    assert_eq!(rc, 0, "{out}");
    assert!(
        out.contains("exec /usr/bin/ls") || out.contains("exec /bin/ls"),
        "{out}"
    );

    let (rc, out) = why(&home, &ws, &[""]);
    assert_eq!(rc, 2, "{out}");
    let _ = std::fs::remove_dir_all(&root);
}
