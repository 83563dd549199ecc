//! # warden-advisor
//!
//! Owns the optional advisor: a separate model's second opinion on tool calls in the grey
//! zone between the gate's exact rules and the kernel layers (issue 16). It is off by
//! default and, when on, can only tighten or resolve grey cases:
//!
//! - [`class`]: which calls are grey ([`grey_class`], [`Classifier`]) — destructive file
//!   operations on many files, force pushes, history rewrites, network sends of workspace
//!   content, secret-looking arguments, unknown MCP tools, plus policy classes. Pure and
//!   cheap; a call that is not grey never reaches the advisor.
//! - [`combine()`]: the only place an advisor verdict changes the gate's answer. A rules
//!   `deny` stays `deny`; a grey `ask` becomes `allow` only for classes the policy lets
//!   resolve (never `secret_in_args` / `network_send` by default); the advisor may always
//!   tighten; a timeout, error or unparseable answer is `ask`.
//! - [`Advisor`]: the consultation (supervisor side, outside the sandbox): the fixed system
//!   prompt and the call plus context delimited as untrusted data ([`prompt`]), the
//!   Anthropic Messages or OpenAI Chat Completions request with a hard deadline
//!   ([`client`]), the cache keyed by SHA-256 of call and context ([`cache`]), and an audit
//!   record per consultation (`warden_event::Decision`, layer gate, rule `advisor.<class>`,
//!   which the risk engine already scores).
//! - [`transcript`]: the user's recent prompts from the agent's transcript, read beneath a
//!   root with `openat2`, bounded, as untrusted text.
//! - [`channel`]: the bounded request/response the hook (inside the sandbox, no key) sends
//!   to the supervisor (outside, with the key), which serves it.
//! - [`hook::decide`]: the hook's side in one call (classify, consult over the inherited
//!   channel only for a grey call the rules did not deny, combine; no usable answer takes
//!   the policy's `on_error`, default `ask`: a human decides; headless, a deny).
//! - [`session::Wiring`]: the supervisor's side in `warden run` (key taken out of warden's
//!   environment and scrubbed from the sandbox's, socket pair at fd 101, server thread,
//!   recent-decisions sink).
//! - [`RecentDecisions`]: a `warden_event::Sink` keeping warden's own recent decisions for
//!   the prompt.
//!
//! What it cannot do, by construction: override a rules `deny`; loosen anything but a grey
//! `ask`; loosen a highest-risk class unless the user listed it in `allow_resolution`. A
//! prompt injection that fully controls the advisor's answer can therefore at most turn a
//! grey `ask` of a resolvable class into `allow` (or make things stricter).

// No unwrap on input-dependent paths in library code; tests may (clippy.toml).
#![warn(clippy::unwrap_used)]

pub mod cache;
pub mod channel;
pub mod class;
pub mod client;
pub mod combine;
pub mod config;
pub mod hook;
pub mod prompt;
pub mod session;
pub mod transcript;

pub use class::{grey_class, grey_classes, Classifier, Grey, GreyClass, ToolCall};
pub use combine::{combine, AdvisorVerdict, Answer, FinalAnswer, RulesAnswer, Source};
pub use config::{AdvisorConfig, Api, ClassRule, ConfigError};
pub use prompt::Context;

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use warden_event::{Decision, Layer, Verdict};

/// Consultations allowed in a burst; the bucket refills at one per second. Beyond it the
/// answer is `ask` without contacting the model: the agent cannot run up the bill.
pub const MAX_BURST: u32 = 30;

/// The variable `key_env` names is unset or empty in warden's environment: every
/// consultation is then an error (`advisor.on_error`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the advisor key variable {0} is not set in warden's environment")]
pub struct MissingKey(pub String);

/// The advisor, as the supervisor holds it (with the key, outside the sandbox).
pub struct Advisor {
    cfg: AdvisorConfig,
    classifier: Classifier,
    key: Result<Option<String>, MissingKey>,
    roots: Result<client::Roots, client::RootsError>,
    cache: cache::Cache,
    bucket: Mutex<warden_proto::rate::TokenBucket>,
    nonce_secret: [u8; 16],
}

impl std::fmt::Debug for Advisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Advisor")
            .field("endpoint", &self.cfg.endpoint)
            .field("model", &self.cfg.model)
            .field(
                "key",
                &self.key.as_ref().map(|k| k.as_ref().map(|_| "<set>")),
            )
            .finish()
    }
}

fn random16() -> [u8; 16] {
    let mut b = [0u8; 16];
    // SAFETY: getrandom into a buffer of its length.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n != b.len() as isize {
        // Weak fallback: the nonce only has to be unguessable by the data's author within
        // one session; time and pid still differ per process.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        b.copy_from_slice(&(t ^ ((std::process::id() as u128) << 64)).to_le_bytes());
    }
    b
}

impl Advisor {
    /// Builds the advisor from the policy section, reading the key from the supervisor's
    /// environment variable named by `key_env` (an unset variable is reported per
    /// consultation as an error, i.e. `ask`).
    pub fn from_config(cfg: &AdvisorConfig) -> Result<Advisor, ConfigError> {
        cfg.validate()?;
        let key = if cfg.key_env.is_empty() {
            Ok(None)
        } else {
            match std::env::var(&cfg.key_env) {
                Ok(k) if !k.is_empty() => Ok(Some(k)),
                _ => Err(MissingKey(cfg.key_env.clone())),
            }
        };
        let roots = match &cfg.ca_file {
            Some(p) => client::load_roots(p),
            None => Ok(None),
        };
        Ok(Advisor {
            roots,
            cfg: cfg.clone(),
            classifier: Classifier::from_config(cfg),
            key,
            cache: cache::Cache::memory(cache::MEMORY_ENTRIES),
            bucket: Mutex::new(warden_proto::rate::TokenBucket::new(1, MAX_BURST)),
            nonce_secret: random16(),
        })
    }

    /// Sets the key directly (tests; a supervisor that got it another way).
    pub fn with_key(mut self, key: Option<String>) -> Advisor {
        self.key = Ok(key);
        self
    }

    /// Adds the on-disk cache in `dir` (under the user's state dir), when the policy asks.
    pub fn with_disk_cache(mut self, dir: &std::path::Path) -> std::io::Result<Advisor> {
        if self.cfg.disk_cache {
            self.cache =
                std::mem::replace(&mut self.cache, cache::Cache::memory(1)).with_disk(dir)?;
        }
        Ok(self)
    }

    /// MCP tool globs the policy knows (`[gate] mcp_allow`, `mcp_deny`).
    pub fn with_known_mcp(mut self, globs: impl IntoIterator<Item = String>) -> Advisor {
        self.classifier = self.classifier.with_known_mcp(globs);
        self
    }

    /// Replaces the rate limit (tests, benchmarks).
    pub fn with_rate(self, per_s: u32, burst: u32) -> Advisor {
        if let Ok(mut b) = self.bucket.lock() {
            *b = warden_proto::rate::TokenBucket::new(per_s, burst);
        }
        self
    }

    pub fn config(&self) -> &AdvisorConfig {
        &self.cfg
    }

    pub fn classifier(&self) -> &Classifier {
        &self.classifier
    }

    pub fn cache_len(&self) -> usize {
        self.cache.len()
    }

    /// Consults the advisor about a grey call and records the consultation. Never fails:
    /// every problem is a verdict of `ask` with [`Source`] saying why.
    pub fn consult(
        &self,
        call: &ToolCall,
        grey: &Grey,
        rules: &RulesAnswer,
        ctx: &Context,
    ) -> AdvisorVerdict {
        self.consult_as(call, grey, rules, ctx, "")
    }

    fn consult_as(
        &self,
        call: &ToolCall,
        grey: &Grey,
        rules: &RulesAnswer,
        ctx: &Context,
        agent_session: &str,
    ) -> AdvisorVerdict {
        let started = Instant::now();
        let (v, key) = self.consult_inner(call, grey, rules, ctx, started);
        self.audit(call, grey, rules, &v, &key, agent_session)
            .emit();
        v
    }

    /// The audit record of one consultation.
    pub fn audit(
        &self,
        call: &ToolCall,
        grey: &Grey,
        rules: &RulesAnswer,
        v: &AdvisorVerdict,
        cache_key: &str,
        agent_session: &str,
    ) -> Decision {
        let mut d = Decision::new(
            Layer::Gate,
            "advisor",
            call.summary(),
            grey.rule(),
            v.verdict.verdict(),
            v.reason.clone(),
        )
        .with("tool", call.tool.as_str())
        .with("classes", grey.names())
        .with("source", v.source.as_str())
        .with("cache_hit", v.cache_hit())
        .with("model", self.cfg.model.as_str())
        .with("api", self.cfg.api.as_str())
        .with("latency_ms", v.latency_ms)
        .with("prompt_sha256", v.prompt_sha256.as_str())
        .with("cache_key", cache_key)
        .with("rules_answer", rules.answer.as_str())
        .with("rules_rule", rules.rule.as_str())
        .with("may_resolve_to_allow", grey.may_resolve_to_allow);
        if !agent_session.is_empty() {
            d = d.with("agent_session", agent_session);
        }
        d
    }

    fn consult_inner(
        &self,
        call: &ToolCall,
        grey: &Grey,
        rules: &RulesAnswer,
        ctx: &Context,
        started: Instant,
    ) -> (AdvisorVerdict, String) {
        let ctx = ctx.bounded();
        let key_ctx = Context {
            user_prompts: ctx.user_prompts.clone(),
            recent_decisions: Vec::new(),
        };
        let ck = prompt::cache_key(
            &self.cfg.endpoint,
            &self.cfg.model,
            self.cfg.api,
            call,
            grey,
            rules,
            &key_ctx,
        );
        let ms = |s: Instant| s.elapsed().as_millis() as u64;
        let with_meta = |mut v: AdvisorVerdict, sha: &str| {
            v.model = self.cfg.model.clone();
            v.latency_ms = ms(started);
            v.prompt_sha256 = sha.to_string();
            v
        };
        if !self.cfg.enabled {
            return (
                with_meta(
                    AdvisorVerdict::fallback(Source::Refused, "the advisor is off"),
                    "",
                ),
                ck,
            );
        }
        if let Some(e) = self.cache.get(&ck) {
            let v = AdvisorVerdict {
                verdict: e.verdict,
                reason: e.reason,
                source: Source::Cache,
                model: e.model,
                latency_ms: ms(started),
                prompt_sha256: e.prompt_sha256,
            };
            return (v, ck);
        }
        let nonce = prompt::sha256_hex(&[&self.nonce_secret, ck.as_bytes()]);
        let nonce = &nonce[..24];
        let user = prompt::user_message(call, grey, rules, &ctx, nonce);
        let body = prompt::request_body(self.cfg.api, &self.cfg.model, &user);
        let sha = prompt::sha256_hex(&[body.to_string().as_bytes()]);
        let allowed = self.bucket.lock().map(|mut b| b.take()).unwrap_or(false);
        if !allowed {
            return (
                with_meta(
                    AdvisorVerdict::fallback(
                        Source::Refused,
                        format!("advisor rate limit (a burst of {MAX_BURST}, then one per second) reached"),
                    ),
                    &sha,
                ),
                ck,
            );
        }
        let key = match &self.key {
            Ok(k) => k.as_deref(),
            Err(e) => {
                return (
                    with_meta(AdvisorVerdict::fallback(Source::Error, e.to_string()), &sha),
                    ck,
                )
            }
        };
        let roots = match &self.roots {
            Ok(r) => r,
            Err(e) => {
                return (
                    with_meta(AdvisorVerdict::fallback(Source::Error, e.to_string()), &sha),
                    ck,
                )
            }
        };
        let deadline = Duration::from_millis(self.cfg.timeout_ms);
        let text = client::post_json_with(
            &self.cfg.endpoint,
            self.cfg.api,
            key,
            &body,
            deadline,
            roots,
        );
        let v = match text {
            Err(client::HttpError::Timeout(t)) => AdvisorVerdict::fallback(
                Source::Timeout,
                format!("the advisor did not answer within {t} ms"),
            ),
            Err(e) => AdvisorVerdict::fallback(Source::Error, format!("advisor error: {e}")),
            Ok(body) => match prompt::response_text(self.cfg.api, &body)
                .and_then(|t| prompt::parse_answer(&t))
            {
                Ok((a, reason)) => AdvisorVerdict {
                    verdict: a,
                    reason,
                    source: Source::Model,
                    model: String::new(),
                    latency_ms: 0,
                    prompt_sha256: String::new(),
                },
                Err(e) => AdvisorVerdict::fallback(
                    Source::Malformed,
                    format!("the advisor's answer was not usable: {e}"),
                ),
            },
        };
        let v = with_meta(v, &sha);
        if v.source == Source::Model {
            self.cache.put(
                &ck,
                cache::Entry {
                    verdict: v.verdict,
                    reason: v.reason.clone(),
                    model: v.model.clone(),
                    prompt_sha256: sha.clone(),
                    ts_ms: warden_event::now_ms(),
                },
            );
        }
        (v, ck)
    }
}

/// warden's own recent decisions (a `warden_event::Sink` the supervisor registers), one line
/// each, for the advisor's prompt. Observations, non-gate allows and the hook's duplicate of
/// an advisor answer are skipped.
pub struct RecentDecisions {
    lines: Mutex<VecDeque<String>>,
    cap: usize,
}

impl RecentDecisions {
    pub fn new(cap: usize) -> RecentDecisions {
        RecentDecisions {
            lines: Mutex::new(VecDeque::new()),
            cap: cap.max(1),
        }
    }

    pub fn snapshot(&self) -> Vec<String> {
        self.lines
            .lock()
            .map(|l| l.iter().cloned().collect())
            .unwrap_or_default()
    }

    pub fn push(&self, line: String) {
        if let Ok(mut l) = self.lines.lock() {
            l.push_back(line);
            while l.len() > self.cap {
                l.pop_front();
            }
        }
    }
}

impl warden_event::Sink for RecentDecisions {
    fn decision(&self, d: &Decision) {
        // Observations (post-tool events), allows of the kernel-side layers (every exec
        // and connection: noise that would push the telling lines out of the window), and
        // the hook's own record of an applied advisor answer (the consultation record
        // carries it) are not kept.
        if d.verdict == Verdict::Observe
            || (d.verdict == Verdict::Allow && d.layer != Layer::Gate)
            || d.rule == "advisor"
        {
            return;
        }
        self.push(prompt::one_line(
            &format!(
                "{} {:?} {} {}: {}",
                d.verdict.as_str(),
                d.layer,
                d.rule,
                prompt::clip(&d.what, 120),
                prompt::clip(&d.reason, 120)
            ),
            prompt::MAX_DECISION_BYTES,
        ));
    }
}
