//! The `[advisor]` section: an optional second model consulted by the gate about grey tool
//! calls (`warden-advisor` owns the consultation and converts this section into its
//! `AdvisorConfig`; the field names are the same).
//!
//! Every key here is a trust decision: where tool calls are sent, with which key, and what
//! the advisor may resolve. So a workspace `.warden.toml` (agent-writable) may set none of
//! them, not even `enabled = false` (turning the advisor off loosens the gate). Checks that
//! need every layer ([`AdvisorSection::check_effective`]: an enabled advisor names an
//! endpoint and a model; its key variable is not one the sandbox receives through
//! `env.pass`) run on the effective policy in [`crate::load`].

use serde::{Deserialize, Serialize};

/// The built-in grey classes (kept equal to `warden_advisor::GreyClass::builtin`; a test
/// in warden-advisor checks it).
pub const BUILTIN_CLASSES: &[&str] = &[
    "secret_in_args",
    "network_send",
    "unknown_mcp",
    "force_push",
    "history_rewrite",
    "destructive_files",
];

/// Longest consultation deadline accepted (the agent's own hook timeout must stay above).
pub const MAX_TIMEOUT_MS: u64 = 30_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AdvisorApi {
    Anthropic,
    Openai,
}

/// What the gate answers when the advisor was consulted and gave no usable answer
/// (unreachable, timeout, error, malformed reply, rate limit) for a call the rules did not
/// deny. Default `ask` (a human decides; headless, a deny).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    Deny,
    Ask,
}

/// A policy grey class (`[[advisor.classes]]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdvisorClass {
    pub name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub programs: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args_contain: Vec<String>,
}

/// `[advisor]`. Every key optional so files can be layered (scalars override, classes
/// append); unset keys take warden-advisor's defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdvisorSection {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<AdvisorApi>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The NAME of the supervisor's environment variable holding the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_env: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub classes: Vec<AdvisorClass>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_resolution: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_cache: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_error: Option<OnError>,
}

impl AdvisorSection {
    pub fn is_enabled(&self) -> bool {
        self.enabled == Some(true)
    }

    /// The keys this document sets, as `advisor.<key>` (for the workspace refusal).
    pub fn keys_set(&self) -> Vec<&'static str> {
        let mut k = Vec::new();
        let opt = [
            ("advisor.enabled", self.enabled.is_some()),
            ("advisor.endpoint", self.endpoint.is_some()),
            ("advisor.api", self.api.is_some()),
            ("advisor.model", self.model.is_some()),
            ("advisor.key_env", self.key_env.is_some()),
            ("advisor.timeout_ms", self.timeout_ms.is_some()),
            ("advisor.classes", !self.classes.is_empty()),
            ("advisor.allow_resolution", self.allow_resolution.is_some()),
            ("advisor.disk_cache", self.disk_cache.is_some()),
            ("advisor.ca_file", self.ca_file.is_some()),
            ("advisor.on_error", self.on_error.is_some()),
        ];
        for (name, set) in opt {
            if set {
                k.push(name);
            }
        }
        k
    }

    /// Per-document checks (those that need every layer are in [`Self::check_effective`]).
    pub fn validate(&self) -> Result<(), crate::SectionError> {
        if let Some(e) = &self.endpoint {
            if !(e.starts_with("http://") || e.starts_with("https://")) || e.len() > 2048 {
                return Err(crate::SectionError::Invalid(format!(
                    "advisor.endpoint `{}` must be an http:// or https:// URL",
                    e.escape_debug()
                )));
            }
        }
        if let Some(m) = &self.model {
            if m.is_empty() || m.len() > 256 || m.chars().any(char::is_control) {
                return Err(crate::SectionError::Invalid(format!(
                    "advisor.model `{}` must be a model name (1 to 256 printable characters)",
                    m.escape_debug()
                )));
            }
        }
        if let Some(t) = self.timeout_ms {
            if t == 0 || t > MAX_TIMEOUT_MS {
                return Err(crate::SectionError::Invalid(format!(
                    "advisor.timeout_ms = {t} is outside 1..={MAX_TIMEOUT_MS}"
                )));
            }
        }
        if let Some(k) = &self.key_env {
            let ok = !k.is_empty()
                && k.chars().enumerate().all(|(i, c)| {
                    c == '_' || c.is_ascii_uppercase() || (i > 0 && c.is_ascii_digit())
                });
            if !ok {
                return Err(crate::SectionError::Invalid(format!(
                    "advisor.key_env `{}` must be the NAME of an environment variable ([A-Z_][A-Z0-9_]*), not the key itself",
                    k.escape_debug()
                )));
            }
        }
        for c in &self.classes {
            let ok = !c.name.is_empty()
                && c.name.len() <= 32
                && c.name
                    .chars()
                    .all(|ch| ch == '_' || ch.is_ascii_lowercase() || ch.is_ascii_digit())
                && !BUILTIN_CLASSES.contains(&c.name.as_str());
            if !ok {
                return Err(crate::SectionError::Invalid(format!(
                    "advisor.classes: name `{}` must be [a-z0-9_]{{1,32}} and not a built-in class ({})",
                    c.name.escape_debug(),
                    BUILTIN_CLASSES.join(", ")
                )));
            }
            if c.tools.is_empty() && c.programs.is_empty() && c.args_contain.is_empty() {
                return Err(crate::SectionError::Invalid(format!(
                    "advisor.classes `{}` has no tools, programs or args_contain: it would match every call",
                    c.name
                )));
            }
        }
        if let Some(list) = &self.allow_resolution {
            for a in list {
                if !BUILTIN_CLASSES.contains(&a.as_str())
                    && !self.classes.iter().any(|c| &c.name == a)
                {
                    return Err(crate::SectionError::Invalid(format!(
                        "advisor.allow_resolution names `{}`, which is neither a built-in class ({}) nor a class of this file",
                        a.escape_debug(),
                        BUILTIN_CLASSES.join(", ")
                    )));
                }
            }
        }
        Ok(())
    }

    pub(crate) fn merge(&mut self, o: &AdvisorSection) {
        macro_rules! over {
            ($($f:ident),*) => {$( if o.$f.is_some() { self.$f = o.$f.clone(); } )*};
        }
        over!(
            enabled,
            endpoint,
            api,
            model,
            key_env,
            timeout_ms,
            allow_resolution,
            disk_cache,
            ca_file,
            on_error
        );
        for c in &o.classes {
            self.classes.retain(|x| x.name != c.name);
            self.classes.push(c.clone());
        }
    }

    /// Checks on the effective policy: an enabled advisor names an endpoint and a model,
    /// and its key cannot reach the sandbox through `env.pass` (the supervisor scrubs it
    /// anyway; a policy that says the opposite is refused rather than half-applied).
    pub fn check_effective(&self, env_pass: &[String]) -> Result<(), crate::SectionError> {
        if self.is_enabled() {
            for (k, v) in [("endpoint", &self.endpoint), ("model", &self.model)] {
                if v.as_deref().unwrap_or("").is_empty() {
                    return Err(crate::SectionError::Invalid(format!(
                        "[advisor] is enabled but advisor.{k} is not set (set it in ~/.config/warden/policy.toml, or set advisor.enabled = false)"
                    )));
                }
            }
        }
        if let Some(k) = self.key_env.as_deref().filter(|k| !k.is_empty()) {
            if let Some(g) = env_pass.iter().find(|g| crate::env::glob_match(g, k)) {
                return Err(crate::SectionError::Invalid(format!(
                    "advisor.key_env `{k}` would be passed into the sandbox by env.pass `{g}`: the agent must never see the advisor's key; give the advisor a variable of its own (e.g. key_env = \"WARDEN_ADVISOR_KEY\") or remove `{g}` from env.pass"
                )));
            }
        }
        Ok(())
    }
}
