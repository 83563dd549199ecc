//! The `[advisor]` policy section ([`AdvisorConfig`]) and its validation.
//!
//! This section may only come from the user's own policy (`~/.config/warden/policy.toml` or a
//! built-in profile), never from a workspace policy: a workspace file is agent-writable, and
//! whoever sets `endpoint` or `allow_resolution` decides where tool calls are sent and which
//! grey classes may resolve to `allow`. The policy loader must treat every key here as
//! widening.

use serde::{Deserialize, Serialize};

/// What the gate answers when a consultation gave no usable answer (defined with the
/// policy section it is read from).
pub use warden_policy::advisor::OnError;

/// Which wire shape the endpoint speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Api {
    /// Anthropic Messages API (`POST …/v1/messages`).
    #[default]
    Anthropic,
    /// OpenAI Chat Completions (`POST …/v1/chat/completions`): OpenAI, ollama, llama.cpp
    /// server, vLLM, LiteLLM.
    Openai,
}

impl Api {
    pub fn as_str(self) -> &'static str {
        match self {
            Api::Anthropic => "anthropic",
            Api::Openai => "openai",
        }
    }
}

/// A grey class the policy adds. It matches a call when every non-empty list matches:
/// the tool name against `tools` (globs with `*` and `?`), some simple command's program
/// (basename) against `programs`, and some argument or string value containing one of
/// `args_contain`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ClassRule {
    /// `[a-z0-9_]{1,32}`, not a built-in class name. Audited as rule `advisor.<name>`.
    pub name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub programs: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args_contain: Vec<String>,
}

/// `[advisor]`. Off by default; nothing is ever sent anywhere unless `enabled = true`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdvisorConfig {
    #[serde(default)]
    pub enabled: bool,
    /// Full URL of the messages / chat-completions endpoint, `http://` or `https://`.
    /// Reached from the supervisor, outside the sandbox, with no proxy and no redirects.
    #[serde(default)]
    pub endpoint: String,
    #[serde(default)]
    pub api: Api,
    #[serde(default)]
    pub model: String,
    /// The NAME of an environment variable of the supervisor that holds the API key
    /// (e.g. `ANTHROPIC_API_KEY`). Never the key itself. Empty: no key (local servers).
    /// `warden run` must scrub this variable from the sandbox's environment.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub key_env: String,
    /// Deadline for one consultation, from request to parsed answer. Past it: `ask`.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Extra grey classes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub classes: Vec<ClassRule>,
    /// Classes whose `ask` the advisor may resolve to `allow`. Default: the built-in
    /// lower-risk classes. `secret_in_args` and `network_send` are left out by default
    /// (listing them is an explicit, audited choice of the user).
    #[serde(default = "default_allow_resolution")]
    pub allow_resolution: Vec<String>,
    /// Also cache answers on disk (under the user's state dir, chosen by the caller).
    #[serde(default)]
    pub disk_cache: bool,
    /// A PEM bundle of root certificates for an `https` endpoint (e.g.
    /// `/etc/ssl/certs/ca-certificates.crt` for the system's roots, or a corporate CA).
    /// Unset: Mozilla's roots, built in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// The gate's answer when the advisor was consulted (a grey call the rules did not
    /// deny) and gave no usable answer: unreachable, timeout, HTTP or key error, malformed
    /// reply, rate limit. `deny` (default) or `ask`. A rules `deny` always stands.
    #[serde(default = "default_on_error")]
    pub on_error: OnError,
}

/// A timeout, an error or an unusable answer leaves the call to a human (`ask`; headless,
/// that is a deny), as the issue asks; `on_error = "deny"` denies at once.
fn default_on_error() -> OnError {
    OnError::Ask
}

pub const DEFAULT_TIMEOUT_MS: u64 = 3000;
/// Longest deadline accepted: the agent's own hook timeout must stay above it.
pub const MAX_TIMEOUT_MS: u64 = 30_000;

fn default_timeout_ms() -> u64 {
    DEFAULT_TIMEOUT_MS
}

/// Classes whose grey `ask` the advisor may resolve into `allow` by default: local,
/// recoverable operations. Off by default for the highest-risk classes, where a transcript
/// the agent wrote could talk the advisor into an exfiltration: network sends of workspace
/// content, secret-looking arguments, unknown MCP tools (their arguments can carry files).
fn default_allow_resolution() -> Vec<String> {
    ["destructive_files", "force_push", "history_rewrite"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

impl Default for AdvisorConfig {
    fn default() -> Self {
        AdvisorConfig {
            enabled: false,
            endpoint: String::new(),
            api: Api::Anthropic,
            model: String::new(),
            key_env: String::new(),
            timeout_ms: DEFAULT_TIMEOUT_MS,
            classes: Vec::new(),
            allow_resolution: default_allow_resolution(),
            disk_cache: false,
            ca_file: None,
            on_error: OnError::Ask,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("[advisor] is enabled but `{0}` is empty")]
    Missing(&'static str),
    #[error("[advisor] endpoint `{0}` must start with http:// or https://")]
    Endpoint(String),
    #[error("[advisor] timeout_ms = {0} is outside 1..={MAX_TIMEOUT_MS}")]
    Timeout(u64),
    #[error("[advisor] key_env `{0}` is not an environment variable name ([A-Z_][A-Z0-9_]*)")]
    KeyEnv(String),
    #[error("[advisor] class name `{0}` must be [a-z0-9_]{{1,32}} and not a built-in class")]
    ClassName(String),
    #[error(
        "[advisor] class `{0}` has no tools, programs or args_contain: it would match every call"
    )]
    ClassEmpty(String),
    #[error(
        "[advisor] allow_resolution names `{0}`, which is neither a built-in nor a policy class"
    )]
    UnknownClass(String),
    #[error("[advisor] key_env `{0}` is passed into the sandbox by env.pass `{1}`: the advisor needs its own key that the agent never sees (e.g. key_env = \"WARDEN_ADVISOR_KEY\")")]
    KeyVisible(String, String),
    #[error("[advisor] section does not convert: {0}")]
    Section(String),
}

impl AdvisorConfig {
    /// The effective policy's `[advisor]` section as the advisor's configuration (the
    /// field names are the same; unset keys take the defaults above), validated.
    pub fn from_policy(s: &warden_policy::advisor::AdvisorSection) -> Result<Self, ConfigError> {
        let v = serde_json::to_value(s).map_err(|e| ConfigError::Section(e.to_string()))?;
        let cfg: AdvisorConfig =
            serde_json::from_value(v).map_err(|e| ConfigError::Section(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks the section. A disabled section is still checked, so a typo is found early.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.enabled {
            if self.endpoint.is_empty() {
                return Err(ConfigError::Missing("endpoint"));
            }
            if self.model.is_empty() {
                return Err(ConfigError::Missing("model"));
            }
        }
        let scheme_ok =
            self.endpoint.starts_with("http://") || self.endpoint.starts_with("https://");
        if !self.endpoint.is_empty() && !scheme_ok {
            return Err(ConfigError::Endpoint(self.endpoint.clone()));
        }
        if self.timeout_ms == 0 || self.timeout_ms > MAX_TIMEOUT_MS {
            return Err(ConfigError::Timeout(self.timeout_ms));
        }
        if !self.key_env.is_empty() {
            let ok =
                self.key_env.chars().enumerate().all(|(i, c)| {
                    c == '_' || c.is_ascii_uppercase() || (i > 0 && c.is_ascii_digit())
                });
            if !ok {
                return Err(ConfigError::KeyEnv(self.key_env.clone()));
            }
        }
        for c in &self.classes {
            let ok = !c.name.is_empty()
                && c.name.len() <= 32
                && c.name
                    .chars()
                    .all(|ch| ch == '_' || ch.is_ascii_lowercase() || ch.is_ascii_digit())
                && crate::class::GreyClass::builtin(&c.name).is_none();
            if !ok {
                return Err(ConfigError::ClassName(c.name.clone()));
            }
            if c.tools.is_empty() && c.programs.is_empty() && c.args_contain.is_empty() {
                return Err(ConfigError::ClassEmpty(c.name.clone()));
            }
        }
        for a in &self.allow_resolution {
            if crate::class::GreyClass::builtin(a).is_none()
                && !self.classes.iter().any(|c| &c.name == a)
            {
                return Err(ConfigError::UnknownClass(a.clone()));
            }
        }
        Ok(())
    }

    /// Checks that the key cannot reach the sandbox through the policy's `[env] pass`
    /// globs (the Claude and Codex profiles pass their own API keys to the agent; the
    /// advisor must use a different variable). `warden run` must in addition always remove
    /// `key_env` from the sandbox's environment, whatever `[env] scrub` says.
    pub fn check_key_isolation(&self, env_pass: &[String]) -> Result<(), ConfigError> {
        if self.key_env.is_empty() {
            return Ok(());
        }
        match env_pass
            .iter()
            .find(|g| crate::class::glob_match(g, &self.key_env))
        {
            Some(g) => Err(ConfigError::KeyVisible(self.key_env.clone(), g.clone())),
            None => Ok(()),
        }
    }
}
