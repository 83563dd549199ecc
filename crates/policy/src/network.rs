//! The `[network]` section: per-domain egress allowlist enforced by warden's proxy
//! (`warden-proxy`); its entries are compiled to host rules by [`crate::netrules`]. Entries may be written as URLs
//! (`http://github.com`, `https://x.com:8443/path`): [`entry_authority`] reduces them to
//! the `host[:port]` the proxy decides on (a path cannot be enforced on a TLS tunnel).

use crate::append_unique;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSection {
    /// Domains (`*.github.com`, `example.org:8443`) or named sets (`@anthropic`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
    /// Deny wins over allow.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<String>,
    /// Hosts (same patterns as `allow`) that are neither allowed nor denied: a connection
    /// waits for a human's answer (`warden approve`, or Ctrl-] on the `warden run`
    /// terminal); no answer within `[approvals] timeout_secs` is a deny. Deny and allow
    /// win over ask. Only the user's own policy may add entries: a workspace file that
    /// names a new one is refused (it would widen the policy).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ask: Vec<String>,
}

impl NetworkSection {
    pub(crate) fn validate(&self) -> Result<(), crate::SectionError> {
        for (key, list) in [
            ("network.allow", &self.allow),
            ("network.deny", &self.deny),
            ("network.ask", &self.ask),
        ] {
            for r in list {
                if r.trim().is_empty() {
                    return Err(crate::RuleError::EmptyEntry {
                        key: key.to_string(),
                    }
                    .into());
                }
                crate::netrules::check_entry(key, r)?;
            }
        }
        Ok(())
    }

    pub(crate) fn merge(&mut self, o: &NetworkSection) {
        append_unique(&mut self.allow, &o.allow);
        append_unique(&mut self.deny, &o.deny);
        append_unique(&mut self.ask, &o.ask);
    }

    pub(crate) fn narrow(&mut self, o: &NetworkSection) -> Result<(), crate::Widens> {
        if o.allow.iter().any(|a| !self.allow.contains(a)) {
            return Err("network.allow".into());
        }
        // An ask turns a default deny into a question to the human: a widening.
        if o.ask.iter().any(|a| !self.ask.contains(a)) {
            return Err("network.ask".into());
        }
        append_unique(&mut self.deny, &o.deny);
        Ok(())
    }
}

/// The `host[:port]` of an entry: the entry itself, or the authority of a URL entry
/// (`https://x.com:8443/path` → `x.com:8443`; `http://github.com` → `github.com`, any port
/// the host rules allow, as for a bare host). URLs with credentials are refused.
pub fn entry_authority(entry: &str) -> Result<std::borrow::Cow<'_, str>, crate::RuleError> {
    let e = entry.trim();
    let Some((scheme, rest)) = e.split_once("://") else {
        return Ok(std::borrow::Cow::Borrowed(e));
    };
    if !matches!(scheme.to_ascii_lowercase().as_str(), "http" | "https") {
        return Err(crate::RuleError::Scheme {
            entry: entry.to_string(),
        });
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        return Err(crate::RuleError::Credentials {
            entry: entry.to_string(),
        });
    }
    if authority.is_empty() {
        return Err(crate::RuleError::NoHost {
            entry: entry.to_string(),
        });
    }
    Ok(std::borrow::Cow::Owned(authority.to_string()))
}
