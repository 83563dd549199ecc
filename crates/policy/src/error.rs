//! The errors of the policy crate below [`crate::PolicyError`] (which names the file):
//! [`SectionError`], a setting a section's checks refuse; [`Widens`], the key through which
//! a workspace document would widen the policy; [`RuleError`], a `[network]` or `[exec]`
//! rule entry that does not compile. Display messages are the ones users see (they name
//! the key, the value and the fix); callers match on the variants, never on the text.

use std::path::PathBuf;

/// A setting that a section's semantic checks refuse.
#[derive(Debug, thiserror::Error)]
pub enum SectionError {
    /// Out of range or malformed; the message names the key and how to fix it.
    #[error("{0}")]
    Invalid(String),
    /// A rule entry that does not compile.
    #[error(transparent)]
    Rule(#[from] RuleError),
}

/// The key (`exec.allow`, `risk.weights.x`, ...) through which a workspace document would
/// widen the policy ([`crate::Policy::narrow`] turns it into [`crate::PolicyError::Widening`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` would widen the policy")]
pub struct Widens(pub String);

impl From<&str> for Widens {
    fn from(k: &str) -> Widens {
        Widens(k.to_string())
    }
}

impl From<String> for Widens {
    fn from(k: String) -> Widens {
        Widens(k)
    }
}

/// A `[network]` or `[exec]` rule entry that does not compile, or an `[exec]` rule whose
/// file cannot be identified.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    /// The embedded named-set table does not parse (a build defect).
    #[error("sets.toml: {0}")]
    Sets(String),
    #[error("unknown named set `@{name}` (known: {known})")]
    UnknownSet { name: String, known: String },
    #[error("`{entry}`: only http:// and https:// URLs (or bare hosts) can be network entries")]
    Scheme { entry: String },
    #[error("`{entry}`: a URL with credentials is not a network entry; name the host")]
    Credentials { entry: String },
    #[error("`{entry}`: the URL has no host")]
    NoHost { entry: String },
    /// A host that is spelled as an address but is not one.
    #[error("`{entry}`: {err}")]
    Address { entry: String, err: AddrError },
    #[error("`{entry}`: `{port}` is not a port")]
    Port { entry: String, port: String },
    #[error("`{entry}` would allow every host; name the domains")]
    EveryHost { entry: String },
    #[error("`{entry}`: a wildcard is only allowed as a leading `*.`")]
    Wildcard { entry: String },
    #[error("`{entry}` is not a valid domain pattern")]
    Domain { entry: String },
    #[error("`{entry}` is too broad (a whole top-level domain); name the domains")]
    TooBroad { entry: String },
    /// An entry of `key`, or of a named set `key` names.
    #[error("{key}: {err}")]
    InKey { key: String, err: Box<RuleError> },
    #[error("{key}: empty entry")]
    EmptyEntry { key: String },
    #[error("{key}: empty rule")]
    EmptyRule { key: String },
    #[error("{key}: `{rule}` is not a sha256:<64 hex digits> hash")]
    BadHash { key: String, rule: String },
    #[error("{key}: `{rule}` names no trust index file")]
    NoIndexFile { key: String, rule: String },
    /// A path rule whose file cannot be hashed.
    #[error("{key}: {}: {err}", path.display())]
    Hash {
        key: String,
        path: PathBuf,
        err: std::io::Error,
    },
    /// A trust index that cannot be read. `prefix` is `"exec.allow: "` or empty.
    #[error("{prefix}index {}: {msg}", db.display())]
    Index {
        prefix: String,
        db: PathBuf,
        msg: String,
    },
}

impl RuleError {
    pub(crate) fn in_key(key: &str, err: RuleError) -> RuleError {
        RuleError::InKey {
            key: key.to_string(),
            err: Box::new(err),
        }
    }
}

/// A host spelled as an address that is not a valid one ([`crate::addr::parse_host_ip`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddrError {
    #[error("`{0}`: unbalanced brackets")]
    Brackets(String),
    #[error("`{0}` is not an IPv6 address")]
    NotV6(String),
    #[error("`{0}` ends in a number but is not an IPv4 address")]
    NotV4(String),
}

/// A size ([`crate::ByteSize`]) that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    #[error("size `{0}`: expected a number with an optional K/M/G/T suffix")]
    NotANumber(String),
    #[error("size `{0}`: number too large")]
    NumberTooLarge(String),
    #[error("size `{size}`: unknown suffix `{suffix}` (use K, M, G or T)")]
    Suffix { size: String, suffix: String },
    #[error("size `{0}`: too large")]
    TooLarge(String),
}
