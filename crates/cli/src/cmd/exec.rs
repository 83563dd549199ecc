//! `warden hash`, `warden index`, `warden exec`, and `explain --exec`: the exec guard's
//! commands (the work lives in warden-execguard).

use super::{fail, home_dir};
use crate::cli::{ExecCmd, HashArgs, IndexArgs};
use crate::exit;
use std::path::{Path, PathBuf};
use warden_execguard::{identity, index, rules};

pub fn hash(a: HashArgs) -> anyhow::Result<i32> {
    let mut code = exit::OK;
    let mut out = Vec::new();
    for f in &a.files {
        match identity::sha256_file(f) {
            Ok(h) => {
                if a.json {
                    out.push(serde_json::json!({"file": f, "sha256": identity::hex(&h)}));
                } else {
                    println!("{}  {}", identity::hex(&h), f.display());
                }
            }
            Err(e) => {
                eprintln!("warden hash: {}: {e}", f.display());
                code = exit::INTERNAL;
            }
        }
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    }
    Ok(code)
}

pub fn index(a: IndexArgs) -> anyhow::Result<i32> {
    let home = home_dir();
    let db = a.db.clone().unwrap_or_else(|| index::default_path(&home));
    let roots: Vec<PathBuf> = if a.paths.is_empty() {
        let mut r: Vec<PathBuf> = index::DEFAULT_ROOTS.iter().map(PathBuf::from).collect();
        for t in rules::TOOLCHAIN_DIRS {
            if let Some(rest) = t.strip_prefix("~/") {
                if !rest.contains('*') {
                    r.push(home.join(rest));
                }
            }
        }
        r.retain(|p| p.exists());
        r
    } else {
        a.paths
            .iter()
            .map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone()))
            .collect()
    };
    let mut idx = index::Index::create(&db)
        .map_err(|e| fail(exit::INTERNAL, format!("index {}: {e}", db.display())))?;
    let started = std::time::Instant::now();
    let progress = std::io::IsTerminal::is_terminal(&std::io::stderr()) && !a.json;
    let stats = idx
        .update(&roots, progress)
        .map_err(|e| fail(exit::INTERNAL, format!("index {}: {e}", db.display())))?;
    let secs = started.elapsed().as_secs_f64();
    if a.json {
        println!(
            "{}",
            serde_json::json!({"db": db, "roots": roots, "stats": stats, "seconds": secs})
        );
    } else {
        println!(
            "{}: {} files ({} hashed, {} unchanged, {} removed, {} unreadable), {:.1} MB hashed in {:.1}s",
            db.display(),
            stats.files,
            stats.hashed,
            stats.unchanged,
            stats.removed,
            stats.errors,
            stats.bytes_hashed as f64 / 1e6,
            secs
        );
    }
    Ok(exit::OK)
}

fn user_policy() -> PathBuf {
    warden_policy::load::user_policy_path(&home_dir())
}

/// Normalises a rule: a path to an existing file stays a path; `sha256:` and names as given.
fn normalise(rule: &str) -> anyhow::Result<String> {
    if rule.starts_with("sha256:") {
        identity::parse_hex(rule).ok_or_else(|| {
            fail(
                exit::POLICY,
                format!("`{rule}` is not sha256:<64 hex digits>"),
            )
        })?;
        return Ok(rule.to_string());
    }
    if rule.contains('/') {
        let p =
            std::fs::canonicalize(rule).map_err(|e| fail(exit::POLICY, format!("{rule}: {e}")))?;
        return Ok(p.display().to_string());
    }
    Ok(rule.to_string())
}

fn edit(
    f: impl FnOnce(&mut toml_edit::DocumentMut) -> anyhow::Result<bool>,
) -> anyhow::Result<bool> {
    let path = user_policy();
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let mut doc: toml_edit::DocumentMut = text
        .parse()
        .map_err(|e| fail(exit::POLICY, format!("{}: {e}", path.display())))?;
    let changed = f(&mut doc)?;
    let out = doc.to_string();
    // Never write a policy that does not validate.
    warden_policy::Policy::parse(&out, &path.display().to_string())
        .map_err(|e| fail(exit::POLICY, e))?;
    if changed {
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d)?;
        }
        std::fs::write(&path, out)?;
    }
    Ok(changed)
}

fn list_mut<'a>(
    doc: &'a mut toml_edit::DocumentMut,
    key: &str,
) -> anyhow::Result<&'a mut toml_edit::Array> {
    let exec = doc.entry("exec").or_insert(toml_edit::table());
    let t = exec
        .as_table_mut()
        .ok_or_else(|| fail(exit::POLICY, "`exec` is not a table"))?;
    let v = t
        .entry(key)
        .or_insert(toml_edit::value(toml_edit::Array::new()));
    v.as_array_mut()
        .ok_or_else(|| fail(exit::POLICY, format!("exec.{key} is not an array")))
}

pub fn exec(c: ExecCmd) -> anyhow::Result<i32> {
    if std::env::var_os("WARDEN_SANDBOX").is_some() {
        // Defence in depth: the policy file is not writable from inside anyway.
        return Err(fail(
            exit::DENIED,
            "exec rules cannot be edited from inside a warden sandbox",
        ));
    }
    match c {
        ExecCmd::Allow { rule } => add("allow", &rule),
        ExecCmd::Deny { rule } => add("deny", &rule),
        ExecCmd::Rm { rule } => {
            let r = normalise(&rule).unwrap_or(rule.clone());
            let changed = edit(|doc| {
                let mut any = false;
                for key in ["allow", "deny"] {
                    let a = list_mut(doc, key)?;
                    let before = a.len();
                    a.retain(|v| {
                        v.as_str() != Some(r.as_str()) && v.as_str() != Some(rule.as_str())
                    });
                    any |= a.len() != before;
                }
                Ok(any)
            })?;
            if changed {
                println!("removed `{r}` from {}", user_policy().display());
                Ok(exit::OK)
            } else {
                eprintln!(
                    "warden exec rm: no rule `{rule}` in {}",
                    user_policy().display()
                );
                Ok(exit::DENIED)
            }
        }
        ExecCmd::Ls { json } => {
            let loaded = super::load_policy(&Default::default(), None)?;
            let rules = rules::from_policy(&loaded.policy, &home_dir())
                .map_err(|e| fail(exit::POLICY, e))?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"mode": loaded.policy.exec.mode, "action": loaded.policy.exec.action,
                        "allow": loaded.policy.exec.allow, "deny": loaded.policy.exec.deny, "resolved": rules.notes})
                );
            } else {
                println!("mode {:?}, action {:?}", rules.mode, rules.action);
                for d in &loaded.policy.exec.deny {
                    println!("deny  {d}");
                }
                for a in &loaded.policy.exec.allow {
                    println!("allow {a}");
                }
                for n in &rules.notes {
                    println!("  {n}");
                }
            }
            Ok(exit::OK)
        }
    }
}

fn add(key: &str, rule: &str) -> anyhow::Result<i32> {
    let r = normalise(rule)?;
    let changed = edit(|doc| {
        let a = list_mut(doc, key)?;
        if a.iter().any(|v| v.as_str() == Some(r.as_str())) {
            return Ok(false);
        }
        a.push(r.as_str());
        Ok(true)
    })?;
    println!(
        "{} exec.{key} `{r}` in {}",
        if changed { "added" } else { "already present:" },
        user_policy().display()
    );
    Ok(exit::OK)
}

/// Returns (allowed, rule, message).
pub fn explain_exec(p: &warden_policy::Policy, f: &Path) -> anyhow::Result<(bool, String, String)> {
    let rules = rules::from_policy(p, &home_dir()).map_err(|e| fail(exit::POLICY, e))?;
    let (h, v) = rules
        .decide_file(f)
        .map_err(|e| fail(exit::INTERNAL, format!("{}: {e}", f.display())))?;
    let msg = format!(
        "exec {} (sha256:{}): {} by rule `{}`: {}{}",
        f.display(),
        identity::hex(&h),
        if v.allowed { "allowed" } else { "denied" },
        v.rule,
        v.reason,
        if v.allowed {
            String::new()
        } else {
            format!("; {}", rules::how_to_allow(&v))
        }
    );
    Ok((v.allowed, v.rule, msg))
}
