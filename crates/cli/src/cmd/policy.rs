//! `warden policy show|check|profiles`.

use super::{fail, load_policy};
use crate::cli::PolicyCmd;
use crate::exit;

pub fn policy(c: PolicyCmd) -> anyhow::Result<i32> {
    match c {
        PolicyCmd::Show { policy, json } => {
            let ws = super::workspace(&policy.workspace).ok();
            let loaded = load_policy(&policy, ws.as_ref())?;
            if json {
                let v = serde_json::json!({
                    "profile": loaded.profile,
                    "sources": loaded.sources.iter().map(|s| serde_json::json!({"kind": s.kind, "origin": s.origin})).collect::<Vec<_>>(),
                    "policy": loaded.policy,
                });
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("# effective policy (profile `{}`)", loaded.profile);
                for s in &loaded.sources {
                    println!("#   from {}: {}", s.kind, s.origin);
                }
                print!("{}", loaded.policy.to_toml());
            }
            Ok(exit::OK)
        }
        PolicyCmd::Check { file } => {
            let doc = warden_policy::load::parse_file(&file).map_err(|e| fail(exit::POLICY, e))?;
            if let Some(parent) = &doc.extends {
                let mut sources = Vec::new();
                warden_policy::load::resolve_profile(parent, file.parent(), &mut sources)
                    .map_err(|e| fail(exit::POLICY, e))?;
            }
            warden_proxy::rules::validate(&doc.network)
                .map_err(|e| fail(exit::POLICY, format!("{}: {e}", file.display())))?;
            let cwd = std::env::current_dir().unwrap_or_else(|_| "/".into());
            warden_session::config::check_writable_roots(&doc, &super::home_dir(), &cwd)
                .map_err(|e| fail(exit::POLICY, format!("{}: {e}", file.display())))?;
            println!("{}: ok", file.display());
            Ok(exit::OK)
        }
        PolicyCmd::Profiles => {
            for (name, text) in warden_policy::PROFILES {
                let d = warden_policy::Policy::parse(text, name)
                    .ok()
                    .and_then(|p| p.description)
                    .unwrap_or_default();
                println!("{name:<8} {d}");
            }
            Ok(exit::OK)
        }
    }
}
