//! The `[network]` policy as host rules: exact names, `*.suffix` wildcards, optional ports,
//! IP literals, and named sets (`@github`, from `sets.toml`). Deny wins. Pure and fast:
//! the tool-call gate uses the same [`NetRules::decide_host`] for WebFetch.

use std::net::IpAddr;
use warden_policy::network::NetworkSection;

const SETS: &str = include_str!("../sets.toml");

#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    Exact(String),
    /// `*.example.com`: any name strictly below `example.com`.
    Suffix(String),
    Ip(IpAddr),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pattern: Pattern,
    port: Option<u16>,
    /// The text as written (with the set it came from).
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostDecision {
    pub allowed: bool,
    pub rule: String,
    pub reason: String,
}

#[derive(Debug, Clone, Default)]
pub struct NetRules {
    allow: Vec<Rule>,
    deny: Vec<Rule>,
}

fn named_set(name: &str) -> Result<Vec<String>, String> {
    let t: toml::Table = SETS.parse().map_err(|e| format!("sets.toml: {e}"))?;
    match t.get(name) {
        Some(toml::Value::Array(a)) => Ok(a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect()),
        _ => {
            let known: Vec<&String> = t.keys().collect();
            Err(format!(
                "unknown named set `@{name}` (known: {})",
                known
                    .iter()
                    .map(|k| format!("@{k}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        }
    }
}

fn valid_label(l: &str) -> bool {
    !l.is_empty()
        && l.len() <= 63
        && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !l.starts_with('-')
        && !l.ends_with('-')
}

/// Parses one entry. `broad_ok`: allow `*` and one-label wildcards (`*.com`).
pub fn parse_rule(entry: &str, source: &str) -> Result<Rule, String> {
    let e = warden_policy::network::entry_authority(entry)?
        .trim()
        .to_ascii_lowercase();
    let (host, port) = match e.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') || h.ends_with(']') => {
            let port: u16 = p
                .parse()
                .map_err(|_| format!("`{entry}`: `{p}` is not a port"))?;
            (
                h.trim_start_matches('[').trim_end_matches(']').to_string(),
                Some(port),
            )
        }
        _ => (
            e.trim_start_matches('[').trim_end_matches(']').to_string(),
            None,
        ),
    };
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(Rule {
            pattern: Pattern::Ip(ip),
            port,
            source: source.to_string(),
        });
    }
    if host == "*" {
        return Err(format!(
            "`{entry}` would allow every host; name the domains"
        ));
    }
    let (pattern, name) = match host.strip_prefix("*.") {
        Some(rest) => (Pattern::Suffix(rest.to_string()), rest),
        None => (Pattern::Exact(host.clone()), host.as_str()),
    };
    if name.contains('*') {
        return Err(format!(
            "`{entry}`: a wildcard is only allowed as a leading `*.`"
        ));
    }
    let labels: Vec<&str> = name.split('.').collect();
    if !labels.iter().all(|l| valid_label(l)) {
        return Err(format!("`{entry}` is not a valid domain pattern"));
    }
    if matches!(pattern, Pattern::Suffix(_)) && labels.len() < 2 {
        return Err(format!(
            "`{entry}` is too broad (a whole top-level domain); name the domains"
        ));
    }
    Ok(Rule {
        pattern,
        port,
        source: source.to_string(),
    })
}

fn expand(list: &[String], key: &str) -> Result<Vec<Rule>, String> {
    let mut out = Vec::new();
    for entry in list {
        if let Some(set) = entry.strip_prefix('@') {
            for d in named_set(set).map_err(|e| format!("{key}: {e}"))? {
                out.push(
                    parse_rule(&d, &format!("{key}:@{set}"))
                        .map_err(|e| format!("{key}: @{set}: {e}"))?,
                );
            }
        } else {
            out.push(
                parse_rule(entry, &format!("{key}:{entry}")).map_err(|e| format!("{key}: {e}"))?,
            );
        }
    }
    Ok(out)
}

impl Rule {
    fn matches(&self, host: &str, port: u16) -> bool {
        if self.port.is_some_and(|p| p != port) {
            return false;
        }
        match &self.pattern {
            Pattern::Exact(h) => h == host,
            Pattern::Suffix(s) => {
                host.len() > s.len() + 1
                    && host.ends_with(s.as_str())
                    && host.as_bytes()[host.len() - s.len() - 1] == b'.'
            }
            Pattern::Ip(ip) => {
                host.trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<IpAddr>()
                    .ok()
                    == Some(*ip)
            }
        }
    }
}

/// Addresses that are refused unless a rule names the address itself: loopback, private,
/// link-local, CGNAT, unique-local, unspecified, multicast, and cloud metadata endpoints.
pub fn is_special(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v) => {
            let o = v.octets();
            v.is_loopback() || v.is_private() || v.is_link_local() || v.is_unspecified() || v.is_multicast() || v.is_broadcast()
                || (o[0] == 100 && (64..128).contains(&o[1])) // CGNAT 100.64/10
                || o[0] == 0
        }
        IpAddr::V6(v) => {
            let s = v.segments();
            v.is_loopback() || v.is_unspecified() || v.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local (incl. fd00:ec2::254)
                || (s[0] & 0xffc0) == 0xfe80 // link-local
                || v.to_ipv4_mapped().is_some_and(|m| is_special(&IpAddr::V4(m)))
        }
    }
}

impl NetRules {
    pub fn from_section(n: &NetworkSection) -> Result<NetRules, String> {
        Ok(NetRules {
            allow: expand(&n.allow, "network.allow")?,
            deny: expand(&n.deny, "network.deny")?,
        })
    }

    /// Decides on a host name (or IP literal) and port, before any resolution.
    pub fn decide_host(&self, host: &str, port: u16) -> HostDecision {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        if let Some(r) = self.deny.iter().find(|r| r.matches(&host, port)) {
            return HostDecision {
                allowed: false,
                rule: r.source.clone(),
                reason: format!("{host}:{port} is denied by `{}`", r.source),
            };
        }
        match self.allow.iter().find(|r| r.matches(&host, port)) {
            Some(r) => HostDecision {
                allowed: true,
                rule: r.source.clone(),
                reason: format!("allowed by `{}`", r.source),
            },
            None => {
                let what = if host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<IpAddr>()
                    .is_ok()
                {
                    "IP address"
                } else {
                    "host"
                };
                HostDecision {
                    allowed: false,
                    rule: "network.default".into(),
                    reason: format!("the {what} {host}:{port} is not in the network allowlist"),
                }
            }
        }
    }

    /// Whether a resolved address may be used: special addresses need a rule naming them.
    pub fn address_ok(&self, ip: &IpAddr, port: u16) -> bool {
        !is_special(ip)
            || self
                .allow
                .iter()
                .any(|r| r.pattern == Pattern::Ip(*ip) && r.port.is_none_or(|p| p == port))
    }
}

/// Validates a `[network]` section (used at policy-check time).
pub fn validate(n: &NetworkSection) -> Result<(), String> {
    NetRules::from_section(n).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    fn rules(allow: &[&str], deny: &[&str]) -> NetRules {
        NetRules::from_section(&NetworkSection {
            allow: allow.iter().map(|s| s.to_string()).collect(),
            deny: deny.iter().map(|s| s.to_string()).collect(),
        })
        .unwrap()
    }
    #[test]
    fn matching_and_deny_wins() {
        let r = rules(
            &["@github", "example.org:8443", "*.corp.example"],
            &["gist.github.com"],
        );
        assert!(r.decide_host("github.com", 443).allowed);
        assert!(r.decide_host("api.github.com", 443).allowed);
        assert!(!r.decide_host("gist.github.com", 443).allowed);
        assert!(r.decide_host("example.org", 8443).allowed);
        assert!(!r.decide_host("example.org", 443).allowed);
        assert!(r.decide_host("a.b.corp.example", 80).allowed);
        assert!(!r.decide_host("corp.example", 80).allowed);
        assert!(!r.decide_host("evilcorp.example", 80).allowed);
        assert!(!r.decide_host("1.2.3.4", 80).allowed);
        assert!(r.decide_host("api.github.com.", 443).allowed);
    }
    #[test]
    fn bad_patterns_are_precise_errors() {
        for (p, want) in [
            ("*", "every host"),
            ("*.com", "too broad"),
            ("exa mple.com", "not a valid"),
            ("foo.*.com", "leading"),
            ("a.com:99999", "not a port"),
            ("@nope", "unknown named set"),
        ] {
            let e = NetRules::from_section(&NetworkSection {
                allow: vec![p.into()],
                deny: vec![],
            })
            .unwrap_err();
            assert!(e.contains(want), "{p}: {e}");
        }
    }
    #[test]
    fn special_addresses() {
        for a in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.1.1",
            "172.16.0.1",
            "169.254.169.254",
            "100.64.0.1",
            "::1",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:127.0.0.1",
            "0.0.0.0",
        ] {
            assert!(is_special(&a.parse().unwrap()), "{a}");
        }
        for a in ["8.8.8.8", "2606:4700::1111"] {
            assert!(!is_special(&a.parse().unwrap()), "{a}");
        }
        let r = rules(&["127.0.0.1", "test.local"], &[]);
        assert!(r.address_ok(&"127.0.0.1".parse().unwrap(), 80));
        assert!(!r.address_ok(&"10.0.0.1".parse().unwrap(), 80));
    }
}
