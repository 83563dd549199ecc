//! The `[env]` section: which environment variables reach the agent.
//!
//! A variable is removed when its name matches any `scrub` glob and no `pass` glob.
//! `scrub` globs match ASCII case-insensitively (`*_TOKEN` scrubs `github_token` and
//! `npm_config__authToken`'s kin alike: tools read secrets under either case); `pass` globs
//! match exactly as written, so passing a name never passes its other spellings.
//! `set` adds or overrides variables after scrubbing.
//!
//! Besides names, one rule looks at values: a variable whose value holds a URL with a
//! password in its userinfo (`scheme://user:pass@host`: `MONGODB_URI`, `REDIS_URL`,
//! `PIP_INDEX_URL`), or an `http(s)`/`ftp` URL whose user name is a token
//! (`https://ghp_...@github.com`: git and HTTP clients send a lone user name as the
//! credential) is scrubbed too, unless a `pass` glob names it ([`EnvSection::scrubbed`]).

use crate::append_unique;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvSection {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pass: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scrub: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub set: BTreeMap<String, String>,
}

impl EnvSection {
    pub(crate) fn validate(&self) -> Result<(), crate::SectionError> {
        for (key, list) in [("env.pass", &self.pass), ("env.scrub", &self.scrub)] {
            for g in list {
                if g.is_empty() || g.contains('=') || g.contains('\0') {
                    return Err(crate::SectionError::Invalid(format!(
                        "{key}: `{}` is not a variable name or glob",
                        g.escape_debug()
                    )));
                }
                if key == "env.pass" && g == "*" {
                    return Err(crate::SectionError::Invalid(
                        "env.pass: `*` would pass every secret; name the variables".into(),
                    ));
                }
            }
        }
        for k in self.set.keys() {
            if k.is_empty() || k.contains('=') || k.contains('\0') {
                return Err(crate::SectionError::Invalid(format!(
                    "env.set: `{}` is not a variable name",
                    k.escape_debug()
                )));
            }
        }
        Ok(())
    }

    pub(crate) fn merge(&mut self, o: &EnvSection) {
        append_unique(&mut self.pass, &o.pass);
        append_unique(&mut self.scrub, &o.scrub);
        for (k, v) in &o.set {
            self.set.insert(k.clone(), v.clone());
        }
    }

    /// Whether `name` is scrubbed; returns the glob that scrubbed it.
    pub fn scrubbed_by(&self, name: &str) -> Option<&str> {
        if self.pass.iter().any(|g| glob_match(g, name)) {
            return None;
        }
        self.scrub
            .iter()
            .find(|g| glob_match_ignore_case(g, name))
            .map(|s| s.as_str())
    }
}

/// The rule name recorded for a variable scrubbed by its value ([`EnvSection::scrubbed`]).
pub const URL_PASSWORD_RULE: &str =
    "value: URL with a password (scheme://user:pass@host, or a token as https://TOKEN@host)";

impl EnvSection {
    /// Whether the variable `name=value` is scrubbed: by a `scrub` glob on its name, or by
    /// its value holding a URL with a password ([`URL_PASSWORD_RULE`]). A `pass` glob on
    /// the name passes it either way. Returns the glob or rule that scrubbed it.
    pub fn scrubbed(&self, name: &str, value: &[u8]) -> Option<&str> {
        if let Some(g) = self.scrubbed_by(name) {
            return Some(g);
        }
        if self.pass.iter().any(|g| glob_match(g, name)) {
            return None;
        }
        if has_url_password(value) {
            return Some(URL_PASSWORD_RULE);
        }
        has_known_token(value).then_some(TOKEN_VALUE_RULE)
    }
}

/// The rule name recorded for a variable scrubbed because its value is a known token format.
pub const TOKEN_VALUE_RULE: &str =
    "value: a known credential format (ghp_, github_pat_, sk-, xoxb-, AKIA, glpat-, ...)";

/// Prefixes of credential formats whose issuers made them recognisable on purpose (GitHub,
/// OpenAI/Anthropic, Slack, AWS access keys, GitLab, Google, npm, PyPI, Hugging Face,
/// Stripe, SendGrid, DigitalOcean, Doppler). A value that starts with one, or holds one after
/// a separator (`Bearer ghp_...`, `token=...`), and continues with at least 16 token
/// characters is a secret whatever the variable is called.
const TOKEN_PREFIXES: &[&str] = &[
    "ghp_",
    "gho_",
    "ghu_",
    "ghs_",
    "ghr_",
    "github_pat_",
    "sk-",
    "sk_live_",
    "sk_test_",
    "rk_live_",
    "xoxb-",
    "xoxp-",
    "xoxa-",
    "xoxs-",
    "xapp-",
    "AKIA",
    "ASIA",
    "glpat-",
    "gldt-",
    "AIza",
    "ya29.",
    "npm_",
    "pypi-",
    "hf_",
    "SG.",
    "dop_v1_",
    "dp.st.",
    "shpat_",
];

/// Whether `value` holds a token of a known format (see [`TOKEN_PREFIXES`]).
pub fn has_known_token(value: &[u8]) -> bool {
    let tokenish = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.');
    let mut i = 0;
    while i < value.len() {
        // A token starts the value or follows a non-token byte.
        if i == 0 || !tokenish(value[i - 1]) {
            let rest = &value[i..];
            for p in TOKEN_PREFIXES {
                if rest.starts_with(p.as_bytes()) {
                    let body = rest[p.len()..].iter().take_while(|&&b| tokenish(b)).count();
                    if body >= 16 {
                        return true;
                    }
                }
            }
        }
        i += 1;
    }
    false
}

/// Whether `value` contains a URL whose userinfo carries a non-empty password
/// (`scheme://user:pass@host`, `redis://:pass@host`). Every `://` in the value is checked
/// (lists of URLs); the authority ends at `/`, `?`, `#`, whitespace, `,` or `;`.
pub fn has_url_password(value: &[u8]) -> bool {
    let mut rest = value;
    while let Some(i) = rest.windows(3).position(|w| w == b"://") {
        let after = &rest[i + 3..];
        let end = after
            .iter()
            .position(|&b| matches!(b, b'/' | b'?' | b'#' | b',' | b';') || b.is_ascii_whitespace())
            .unwrap_or(after.len());
        let authority = &after[..end];
        if let Some(at) = authority.iter().rposition(|&b| b == b'@') {
            let userinfo = &authority[..at];
            if let Some(colon) = userinfo.iter().position(|&b| b == b':') {
                if colon + 1 < userinfo.len() {
                    return true;
                }
            }
            // Attack review 100 (F4): `https://ghp_...@github.com/x`. Git and HTTP clients
            // send a lone user name as the credential, and tokens go there (GitHub's, Azure
            // DevOps' PATs); a plain user name (`https://git@host`, a Bitbucket login) stays.
            let scheme_start = rest[..i]
                .iter()
                .rposition(|&b| !(b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')))
                .map_or(0, |p| p + 1);
            let scheme = rest[scheme_start..i].to_ascii_lowercase();
            let web = [
                &b"http"[..],
                b"https",
                b"ftp",
                b"ftps",
                b"git+https",
                b"git+http",
            ]
            .contains(&scheme.as_slice());
            let user = userinfo.split(|&b| b == b':').next().unwrap_or_default();
            if web && token_like_user(user) {
                return true;
            }
        }
        rest = after;
    }
    false
}

/// A URL's user name that is a token, not a login: a known token prefix, or 20 characters or
/// more mixing letters and digits.
fn token_like_user(user: &[u8]) -> bool {
    const PREFIXES: &[&[u8]] = &[
        b"ghp_",
        b"gho_",
        b"ghu_",
        b"ghs_",
        b"ghr_",
        b"github_pat_",
        b"glpat-",
        b"xoxb-",
        b"xoxp-",
        b"sk-",
    ];
    PREFIXES.iter().any(|p| user.starts_with(p))
        || (user.len() >= 20
            && user.iter().any(u8::is_ascii_digit)
            && user.iter().any(u8::is_ascii_alphabetic))
}

/// Glob with `*` (any run) and `?` (one char), matching the whole string.
pub fn glob_match(pat: &str, s: &str) -> bool {
    glob_bytes(pat.as_bytes(), s.as_bytes())
}

/// [`glob_match`] ignoring ASCII case.
pub fn glob_match_ignore_case(pat: &str, s: &str) -> bool {
    // Compared in place: every variable meets every scrub glob at each session's start.
    glob_bytes_by(pat.as_bytes(), s.as_bytes(), |a, b| {
        a.eq_ignore_ascii_case(&b)
    })
}

fn glob_bytes(p: &[u8], s: &[u8]) -> bool {
    glob_bytes_by(p, s, |a, b| a == b)
}

fn glob_bytes_by(p: &[u8], s: &[u8], eq: impl Fn(u8, u8) -> bool) -> bool {
    let (mut pi, mut si) = (0usize, 0usize);
    let (mut star, mut mark) = (usize::MAX, 0usize);
    while si < s.len() {
        if pi < p.len() && (p[pi] == b'?' || eq(p[pi], s[si])) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = pi;
            pi += 1;
            mark = si;
        } else if star != usize::MAX {
            pi = star + 1;
            mark += 1;
            si = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}
