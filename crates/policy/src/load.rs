//! Layering of policy documents into the effective policy.
//!
//! 1. the base profile: `--profile`, else the user file's `extends`, else `generic`
//!    (profiles may `extends` each other);
//! 2. `/etc/warden/policy.toml` (machine, root-owned), then `~/.config/warden/policy.toml`
//!    (user), then `--policy FILE`: each merged over the base (they may widen);
//! 3. `<workspace>/.warden.toml`: untrusted, it may only narrow ([`Policy::narrow`]).
//!
//! Environment variables never change the policy, and the user file lives outside every
//! path the sandbox can write.

use crate::{Policy, PolicyError, DEFAULT_PROFILE};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    pub profile: Option<String>,
    pub policy_file: Option<PathBuf>,
    pub workspace: Option<PathBuf>,
    pub home: PathBuf,
    /// Skip `/etc/warden/policy.toml` and `~/.config/warden/policy.toml` (tests, `policy show --builtin`).
    pub skip_machine_and_user: bool,
}

#[derive(Debug, Clone)]
pub struct Source {
    pub kind: &'static str,
    pub origin: String,
}

#[derive(Debug, Clone)]
pub struct Loaded {
    pub policy: Policy,
    pub profile: String,
    pub sources: Vec<Source>,
}

impl Loaded {
    /// The files this policy was read from (every source but the built-in profiles), as
    /// absolute paths with symlinks resolved; one that cannot be resolved any more is left
    /// out.
    /// The policy files named through a symlink, as given (made absolute against the
    /// current directory): the link itself cannot be locked, so one inside a writable root
    /// could be swapped for the next session.
    pub fn linked_files(&self) -> Vec<PathBuf> {
        let cwd = std::env::current_dir().unwrap_or_default();
        self.sources
            .iter()
            .filter(|s| !s.origin.starts_with("builtin:"))
            .map(|s| cwd.join(&s.origin))
            .filter(|p| std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink()))
            .collect()
    }

    pub fn files(&self) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = self
            .sources
            .iter()
            .filter(|s| !s.origin.starts_with("builtin:"))
            .filter_map(|s| std::fs::canonicalize(&s.origin).ok())
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

pub const SYSTEM_POLICY: &str = "/etc/warden/policy.toml";
pub const WORKSPACE_POLICY: &str = ".warden.toml";

pub fn user_policy_path(home: &Path) -> PathBuf {
    home.join(".config/warden/policy.toml")
}

fn read(path: &Path) -> Result<Option<String>, PolicyError> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(PolicyError::Io {
            file: path.to_path_buf(),
            err,
        }),
    }
}

/// Parses a file (which must exist).
pub fn parse_file(path: &Path) -> Result<Policy, PolicyError> {
    let text = read(path)?.ok_or_else(|| PolicyError::Io {
        file: path.to_path_buf(),
        err: std::io::Error::from(std::io::ErrorKind::NotFound),
    })?;
    Policy::parse(&text, &path.display().to_string())
}

/// Resolves a profile (built-in name or path) with its `extends` chain.
pub fn resolve_profile(
    name: &str,
    relative_to: Option<&Path>,
    sources: &mut Vec<Source>,
) -> Result<Policy, PolicyError> {
    resolve_inner(name, relative_to, sources, 0)
}

fn resolve_inner(
    name: &str,
    rel: Option<&Path>,
    sources: &mut Vec<Source>,
    depth: usize,
) -> Result<Policy, PolicyError> {
    if depth > 8 {
        return Err(PolicyError::Cycle(name.to_string()));
    }
    let (doc, origin, dir) = if let Some(doc) = Policy::builtin(name) {
        (doc?, format!("builtin:{name}"), None)
    } else if name.contains('/') || name.ends_with(".toml") {
        let p = match rel {
            Some(d) if !Path::new(name).is_absolute() => d.join(name),
            _ => PathBuf::from(name),
        };
        let doc = parse_file(&p)?;
        (
            doc,
            p.display().to_string(),
            p.parent().map(Path::to_path_buf),
        )
    } else {
        return Err(PolicyError::UnknownProfile(name.to_string()));
    };
    let mut base = match &doc.extends {
        Some(parent) => resolve_inner(parent, dir.as_deref(), sources, depth + 1)?,
        None => Policy::default(),
    };
    base.merge(&doc);
    sources.push(Source {
        kind: "profile",
        origin,
    });
    Ok(base)
}

/// Builds the effective policy.
pub fn load(opts: &LoadOptions) -> Result<Loaded, PolicyError> {
    let mut sources = Vec::new();
    let mut overlays: Vec<(Policy, PathBuf, &'static str)> = Vec::new();
    if !opts.skip_machine_and_user {
        for (path, kind) in [
            (PathBuf::from(SYSTEM_POLICY), "system"),
            (user_policy_path(&opts.home), "user"),
        ] {
            if let Some(text) = read(&path)? {
                overlays.push((
                    Policy::parse(&text, &path.display().to_string())?,
                    path,
                    kind,
                ));
            }
        }
    }
    if let Some(p) = &opts.policy_file {
        overlays.push((parse_file(p)?, p.clone(), "file"));
    }
    // The base profile: explicit flag, else the last overlay that names one, else default.
    let (profile, rel) = match &opts.profile {
        Some(p) => (p.clone(), None),
        None => overlays
            .iter()
            .rev()
            .find_map(|(d, path, _)| {
                d.extends
                    .clone()
                    .map(|e| (e, path.parent().map(Path::to_path_buf)))
            })
            .unwrap_or_else(|| (DEFAULT_PROFILE.to_string(), None)),
    };
    let mut policy = resolve_profile(&profile, rel.as_deref(), &mut sources)?;
    for (doc, path, kind) in &overlays {
        policy.merge(doc);
        sources.push(Source {
            kind,
            origin: path.display().to_string(),
        });
    }
    if let Some(ws) = &opts.workspace {
        let path = ws.join(WORKSPACE_POLICY);
        if let Some(text) = read(&path)? {
            let origin = path.display().to_string();
            let doc = Policy::parse(&text, &origin)?;
            policy.narrow(&doc, &origin)?;
            sources.push(Source {
                kind: "workspace (narrow only)",
                origin,
            });
        }
    }
    policy.extends = None;
    policy
        .advisor
        .check_effective(&policy.env.pass)
        .map_err(|err| PolicyError::Invalid {
            file: "effective policy".into(),
            err,
        })?;
    Ok(Loaded {
        policy,
        profile,
        sources,
    })
}
