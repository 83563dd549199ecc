//! `warden explain`: what would happen to an action, and which rule decides it.

use super::{home_dir, load_policy, workspace};
use crate::cli::ExplainArgs;
use crate::exit;
use warden_policy::files::{Access, FileRules};

pub fn explain(a: ExplainArgs) -> anyhow::Result<i32> {
    let ws = workspace(&a.policy.workspace)?;
    let loaded = load_policy(&a.policy, Some(&ws))?;
    let anchors = warden_policy::Anchors {
        home: home_dir(),
        workspace: ws.clone(),
    };
    let t = &a.target;
    let (allowed, layer, rule, message) = if let Some(p) = t
        .read
        .as_ref()
        .map(|p| (p, Access::Read))
        .or(t.write.as_ref().map(|p| (p, Access::Write)))
    {
        let (path, access) = p;
        let path = absolute(path);
        // The private TMPDIR is created per session; explain uses its pattern.
        let rules = FileRules::new(&loaded.policy, &anchors, None);
        let d = rules.decide(&path, access);
        (
            d.allowed,
            "sandbox",
            d.rule.to_string(),
            d.explain(&path, access),
        )
    } else if let Some(f) = &t.exec {
        let e = super::exec::explain_exec(&loaded.policy, f)?;
        (e.0, "exec", e.1, e.2)
    } else if let Some(h) = &t.connect {
        let e = super::net::explain_connect(&loaded.policy, h)?;
        (e.0, "proxy", e.1, e.2)
    } else {
        unreachable!("clap requires one target")
    };
    if a.json {
        println!(
            "{}",
            serde_json::json!({"allowed": allowed, "layer": layer, "rule": rule, "message": message, "profile": loaded.profile})
        );
    } else {
        let tag = if allowed {
            super::misc::green("allowed")
        } else {
            super::misc::red("denied")
        };
        println!("{tag}: {message}");
    }
    Ok(if allowed { exit::OK } else { exit::DENIED })
}

fn absolute(p: &std::path::Path) -> std::path::PathBuf {
    let s = p.to_string_lossy();
    if let Some(rest) = s.strip_prefix("~/") {
        return home_dir().join(rest);
    }
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|c| c.join(p))
            .unwrap_or_else(|_| p.to_path_buf())
    }
}
