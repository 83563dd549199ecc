//! The `[network]` policy compiled to host rules: exact names, `*.suffix` wildcards,
//! optional ports, IP literals (any spelling, see [`crate::addr`]), URL entries reduced to
//! their authority, and named sets (`@github`, from `sets.toml`). Deny wins, then allow, then
//! `ask` (a human answers each such connection, see `warden-session`'s approvals). Pure and
//! fast: the proxy (`warden-proxy`, which re-exports this module as `rules`) and the
//! tool-call gate (WebFetch) share [`NetRules::decide_host`]. Every entry is compiled when a
//! policy file is parsed, so a bad pattern is an error with the file's line and column.

use crate::network::NetworkSection;
use crate::RuleError;
use std::net::IpAddr;

/// `sets.toml`, converted to JSON at build time (`build.rs`).
const SETS_JSON: &str = include_str!(concat!(env!("OUT_DIR"), "/sets.json"));

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
    /// Not allowed, but named by `[network] ask`: a human may admit this one connection
    /// (or the session's connections to exactly this host:port). `allowed` is false.
    pub ask: bool,
    pub rule: String,
    pub reason: String,
}

#[derive(Debug, Clone, Default)]
pub struct NetRules {
    allow: Vec<Rule>,
    deny: Vec<Rule>,
    ask: Vec<Rule>,
}

#[cfg(test)]
pub(crate) fn named_set_for_test(name: &str) -> Result<Vec<String>, RuleError> {
    named_set(name)
}

fn named_set(name: &str) -> Result<Vec<String>, RuleError> {
    type Table = serde_json::Map<String, serde_json::Value>;
    static TABLE: std::sync::OnceLock<Result<Table, serde_json::Error>> =
        std::sync::OnceLock::new();
    let t = TABLE
        .get_or_init(|| serde_json::from_str(SETS_JSON))
        .as_ref()
        .map_err(|e| RuleError::Sets(e.to_string()))?;
    match t.get(name) {
        Some(serde_json::Value::Array(a)) => Ok(a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect()),
        _ => {
            let known: Vec<&String> = t.keys().collect();
            Err(RuleError::UnknownSet {
                name: name.to_string(),
                known: known
                    .iter()
                    .map(|k| format!("@{k}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            })
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
pub fn parse_rule(entry: &str, source: &str) -> Result<Rule, RuleError> {
    let e = crate::network::entry_authority(entry)?
        .trim()
        .to_ascii_lowercase();
    let (host, port) = match e.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') || h.ends_with(']') => {
            let port: u16 = p.parse().map_err(|_| RuleError::Port {
                entry: entry.to_string(),
                port: p.to_string(),
            })?;
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
    // Any spelling of an address (`127.1`, `0x7f.1`, `[fe80::1%25eth0]`) is that address.
    if let Some(ip) = parse_host_ip(&host).map_err(|err| RuleError::Address {
        entry: entry.to_string(),
        err,
    })? {
        return Ok(Rule {
            pattern: Pattern::Ip(ip),
            port,
            source: source.to_string(),
        });
    }
    if host == "*" {
        return Err(RuleError::EveryHost {
            entry: entry.to_string(),
        });
    }
    let (pattern, name) = match host.strip_prefix("*.") {
        Some(rest) => (Pattern::Suffix(rest.to_string()), rest),
        None => (Pattern::Exact(host.clone()), host.as_str()),
    };
    if name.contains('*') {
        return Err(RuleError::Wildcard {
            entry: entry.to_string(),
        });
    }
    let labels: Vec<&str> = name.split('.').collect();
    if !labels.iter().all(|l| valid_label(l)) {
        return Err(RuleError::Domain {
            entry: entry.to_string(),
        });
    }
    if matches!(pattern, Pattern::Suffix(_)) && labels.len() < 2 {
        return Err(RuleError::TooBroad {
            entry: entry.to_string(),
        });
    }
    Ok(Rule {
        pattern,
        port,
        source: source.to_string(),
    })
}

fn expand(list: &[String], key: &str) -> Result<Vec<Rule>, RuleError> {
    let mut out = Vec::new();
    for entry in list {
        if let Some(set) = entry.strip_prefix('@') {
            for d in named_set(set).map_err(|e| RuleError::in_key(key, e))? {
                out.push(
                    parse_rule(&d, &format!("{key}:@{set}"))
                        .map_err(|e| RuleError::in_key(&format!("{key}: @{set}"), e))?,
                );
            }
        } else {
            out.push(
                parse_rule(entry, &format!("{key}:{entry}"))
                    .map_err(|e| RuleError::in_key(key, e))?,
            );
        }
    }
    Ok(out)
}

impl Rule {
    /// `ip`: the host parsed as an address (then only address rules can match it).
    fn matches(&self, host: &str, ip: Option<IpAddr>, port: u16) -> bool {
        self.matches_as(host, ip, port, false)
    }

    /// [`Rule::matches`] for a deny rule: addresses compare in their [`deny_form`].
    fn denies(&self, host: &str, ip: Option<IpAddr>, port: u16) -> bool {
        self.matches_as(host, ip, port, true)
    }

    fn matches_as(&self, host: &str, ip: Option<IpAddr>, port: u16, deny: bool) -> bool {
        if self.port.is_some_and(|p| p != port) {
            return false;
        }
        match (&self.pattern, ip) {
            (Pattern::Ip(want), Some(got)) if deny => deny_form(*want) == deny_form(got),
            (Pattern::Ip(want), Some(got)) => *want == got,
            (Pattern::Ip(_), None) | (_, Some(_)) => false,
            (Pattern::Exact(h), None) => h == host,
            (Pattern::Suffix(s), None) => {
                host.len() > s.len() + 1
                    && host.ends_with(s.as_str())
                    && host.as_bytes()[host.len() - s.len() - 1] == b'.'
            }
        }
    }

    /// The host loopback port this rule names, if it names one (`127.0.0.1:4000`,
    /// `localhost:4000`, `[::1]:4000`): the sandbox's loopback forwards that port to it.
    pub fn loopback_port(&self) -> Option<(u16, LoopbackTarget)> {
        let port = self.port?;
        match &self.pattern {
            Pattern::Ip(ip) if ip.is_loopback() => Some((port, LoopbackTarget::Ip(*ip))),
            Pattern::Exact(h) if h == "localhost" => Some((port, LoopbackTarget::Localhost)),
            _ => None,
        }
    }
}

/// Where a forwarded loopback port goes on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoopbackTarget {
    Ip(IpAddr),
    /// `localhost`: 127.0.0.1, then ::1.
    Localhost,
}

impl LoopbackTarget {
    pub fn addrs(&self, port: u16) -> Vec<std::net::SocketAddr> {
        match self {
            LoopbackTarget::Ip(ip) => vec![std::net::SocketAddr::new(*ip, port)],
            LoopbackTarget::Localhost => vec![
                std::net::SocketAddr::from(([127, 0, 0, 1], port)),
                std::net::SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port)),
            ],
        }
    }
    pub fn host(&self) -> String {
        match self {
            LoopbackTarget::Ip(ip) => ip.to_string(),
            LoopbackTarget::Localhost => "localhost".into(),
        }
    }
}

pub use crate::addr::{classify, embedded_v4, is_special, parse_host_ip, Special};

/// An address as a deny rule sees it: one that embeds an IPv4 address (`::ffff:a.b.c.d`,
/// NAT64, 6to4) is that IPv4 address, so no spelling of a denied host gets past the rule
/// (attack review 75: a name resolving to `::ffff:` + a denied address reached it). Allow
/// rules compare exactly: what they admit is never widened.
fn deny_form(ip: IpAddr) -> IpAddr {
    embedded_v4(&ip).map_or(ip, IpAddr::V4)
}

impl NetRules {
    /// Host loopback ports named by allow rules (and not denied): each is forwarded from the
    /// sandbox's loopback to the host's.
    pub fn loopback_ports(&self) -> Vec<(u16, LoopbackTarget)> {
        let mut v: Vec<(u16, LoopbackTarget)> = Vec::new();
        for r in &self.allow {
            if let Some((port, t)) = r.loopback_port() {
                // Every address it would reach, too: a deny rule naming one wins.
                let denied = t
                    .addrs(port)
                    .iter()
                    .any(|a| self.address_denied(&a.ip(), port).is_some());
                if self.decide_host(&t.host(), port).allowed
                    && !denied
                    && !v.iter().any(|(p, _)| *p == port)
                {
                    v.push((port, t));
                }
            }
        }
        v
    }

    pub fn from_section(n: &NetworkSection) -> Result<NetRules, RuleError> {
        Ok(NetRules {
            allow: expand(&n.allow, "network.allow")?,
            deny: expand(&n.deny, "network.deny")?,
            ask: expand(&n.ask, "network.ask")?,
        })
    }

    /// Decides on a host name (or IP literal) and port, before any resolution.
    pub fn decide_host(&self, host: &str, port: u16) -> HostDecision {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let ip = match parse_host_ip(&host) {
            Ok(ip) => ip,
            Err(e) => {
                return HostDecision {
                    allowed: false,
                    ask: false,
                    rule: "network.address_spelling".into(),
                    reason: format!("{e}; name hosts by DNS name or a plain address"),
                }
            }
        };
        if let Some(r) = self.deny.iter().find(|r| r.denies(&host, ip, port)) {
            return HostDecision {
                allowed: false,
                ask: false,
                rule: r.source.clone(),
                reason: format!("{host}:{port} is denied by `{}`", r.source),
            };
        }
        match self.allow.iter().find(|r| r.matches(&host, ip, port)) {
            Some(r) => HostDecision {
                allowed: true,
                ask: false,
                rule: r.source.clone(),
                reason: format!("allowed by `{}`", r.source),
            },
            None if self.ask.iter().any(|r| r.matches(&host, ip, port)) => {
                let r = self.ask.iter().find(|r| r.matches(&host, ip, port));
                let src = r.map(|r| r.source.clone()).unwrap_or_default();
                HostDecision {
                    allowed: false,
                    ask: true,
                    reason: format!("{host}:{port} needs a human's approval (`{src}`)"),
                    rule: src,
                }
            }
            None => {
                let reason = match ip {
                    Some(ip) => {
                        let class = classify(&ip).map(|c| format!(", {c},")).unwrap_or_default();
                        let bare = host.trim_start_matches('[').trim_end_matches(']');
                        let written = if ip.to_string() == bare {
                            String::new()
                        } else {
                            format!(" (written `{host}`)")
                        };
                        let at = std::net::SocketAddr::new(ip, port);
                        format!(
                            "the IP address {at}{written}{class} is not in the network allowlist"
                        )
                    }
                    None => format!("the host {host}:{port} is not in the network allowlist"),
                };
                HostDecision {
                    allowed: false,
                    ask: false,
                    rule: "network.default".into(),
                    reason,
                }
            }
        }
    }

    /// Whether a resolved address may be used: never one a deny rule names (an address rule,
    /// or `localhost` for the loopback addresses), whatever name led to it; special addresses
    /// need an allow rule naming them. A `localhost` rule names the loopback addresses.
    /// (`allow = ["localhost:4000"]` with `deny = ["127.0.0.1"]` reached 127.0.0.1:4000
    /// through the name: a name never matches an address rule.)
    pub fn address_ok(&self, ip: &IpAddr, port: u16) -> bool {
        self.address_denied(ip, port).is_none()
            && (!is_special(ip) || Self::names_address(&self.allow, ip, port).is_some())
    }

    /// [`Self::address_ok`] for a connection to an `ask` host, which a human sees with its
    /// resolved addresses before answering: an `ask` rule naming the address also counts
    /// (only for such connections, never for allowed hosts). Deny rules still win.
    pub fn address_ok_for_ask(&self, ip: &IpAddr, port: u16) -> bool {
        self.address_ok(ip, port)
            || (self.address_denied(ip, port).is_none()
                && Self::names_address(&self.ask, ip, port).is_some())
    }

    /// The deny rule that names this resolved address (in any spelling, [`deny_form`]), if
    /// one does.
    pub fn address_denied(&self, ip: &IpAddr, port: u16) -> Option<&str> {
        Self::names_address_as(&self.deny, ip, port, deny_form)
    }

    fn names_address<'a>(rules: &'a [Rule], ip: &IpAddr, port: u16) -> Option<&'a str> {
        Self::names_address_as(rules, ip, port, |ip| ip)
    }

    /// The first of `rules` naming `ip` (an address rule, or `localhost` for loopback), both
    /// sides compared in the form `form` gives.
    fn names_address_as<'a>(
        rules: &'a [Rule],
        ip: &IpAddr,
        port: u16,
        form: fn(IpAddr) -> IpAddr,
    ) -> Option<&'a str> {
        let ip = form(*ip);
        rules
            .iter()
            .find(|r| {
                r.port.is_none_or(|p| p == port)
                    && (matches!(r.pattern, Pattern::Ip(want) if form(want) == ip)
                        || (ip.is_loopback() && r.pattern == Pattern::Exact("localhost".into())))
            })
            .map(|r| r.source.as_str())
    }
}

/// Compiles one entry of `key` (`network.allow`, ...) on its own; a named set is expanded.
pub fn check_entry(key: &str, entry: &str) -> Result<(), RuleError> {
    expand(&[entry.to_string()], key).map(|_| ())
}

/// Validates a `[network]` section (used at policy-check time).
pub fn validate(n: &NetworkSection) -> Result<(), RuleError> {
    NetRules::from_section(n).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    fn rules(allow: &[&str], deny: &[&str]) -> NetRules {
        NetRules::from_section(&NetworkSection {
            allow: allow.iter().map(|s| s.to_string()).collect(),
            deny: deny.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
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
                ..Default::default()
            })
            .unwrap_err()
            .to_string();
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
    #[test]
    fn address_rules_match_every_spelling_and_name_loopback_ports() {
        let r = rules(
            &[
                "0x7f.1:4000",
                "localhost:11434",
                "[::1]:8080",
                "example.org:4000",
            ],
            &[],
        );
        for h in [
            "127.0.0.1",
            "2130706433",
            "0177.0.0.1",
            "127.1",
            "0x7f000001",
        ] {
            assert!(r.decide_host(h, 4000).allowed, "{h}");
            assert!(!r.decide_host(h, 4001).allowed, "{h}");
        }
        assert!(r.decide_host("[::1]", 8080).allowed);
        assert!(!r.decide_host("[::1]", 4000).allowed);
        let d = r.decide_host("1.2.3.999", 80);
        assert_eq!(d.rule, "network.address_spelling", "{d:?}");
        let mut ports: Vec<u16> = r.loopback_ports().iter().map(|(p, _)| *p).collect();
        ports.sort();
        assert_eq!(ports, vec![4000, 8080, 11434]);
        // Deny wins: a denied loopback port is not forwarded.
        let r = rules(&["127.0.0.1:4000"], &["127.0.0.1"]);
        assert!(r.loopback_ports().is_empty());
        // A localhost rule names the loopback addresses (for the proxy path too).
        let r = rules(&["localhost:11434"], &[]);
        assert!(r.address_ok(&"127.0.0.1".parse().unwrap(), 11434));
        assert!(r.address_ok(&"::1".parse().unwrap(), 11434));
        assert!(!r.address_ok(&"127.0.0.1".parse().unwrap(), 80));
        assert!(!r.address_ok(&"10.0.0.1".parse().unwrap(), 11434));
        for bad in ["example.123", "1.2.3.4.5", "0x1g.1"] {
            assert!(
                NetRules::from_section(&NetworkSection {
                    allow: vec![bad.into()],
                    ..Default::default()
                })
                .is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn ask_rules_come_after_deny_and_allow() {
        let r = NetRules::from_section(&NetworkSection {
            allow: vec!["api.example.com".into()],
            deny: vec!["bad.example.com".into()],
            ask: vec!["*.example.com".into(), "127.0.0.1:8080".into()],
        })
        .unwrap();
        let d = r.decide_host("api.example.com", 443);
        assert!(d.allowed && !d.ask, "{d:?}");
        let d = r.decide_host("bad.example.com", 443);
        assert!(!d.allowed && !d.ask, "{d:?}");
        let d = r.decide_host("x.example.com", 443);
        assert!(
            !d.allowed && d.ask && d.rule == "network.ask:*.example.com",
            "{d:?}"
        );
        let d = r.decide_host("example.org", 443);
        assert!(!d.allowed && !d.ask, "{d:?}");
        // An ask rule naming an address admits it only for ask connections.
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        assert!(!r.address_ok(&lo, 8080));
        assert!(r.address_ok_for_ask(&lo, 8080));
        assert!(!r.address_ok_for_ask(&lo, 8081));
        assert!(NetRules::from_section(&NetworkSection {
            ask: vec!["*".into()],
            ..Default::default()
        })
        .unwrap_err()
        .to_string()
        .contains("network.ask"));
    }

    /// A deny rule naming an address wins over every name that leads to it: the proxy's
    /// check of resolved addresses and the loopback gateway's ports (attack review 74:
    /// `localhost:4000` reached a denied 127.0.0.1:4000 through both).
    #[test]
    fn an_address_deny_rule_wins_over_a_name_that_resolves_to_it() {
        let lo4: IpAddr = "127.0.0.1".parse().unwrap();
        let lo6: IpAddr = "::1".parse().unwrap();
        let r = rules(&["localhost:4000", "api.example:443"], &["127.0.0.1"]);
        assert!(r.decide_host("localhost", 4000).allowed, "the name itself");
        assert!(!r.address_ok(&lo4, 4000));
        assert_eq!(r.address_denied(&lo4, 4000), Some("network.deny:127.0.0.1"));
        assert!(r.address_ok(&lo6, 4000), "::1 is not denied");
        assert!(r.loopback_ports().is_empty(), "{:?}", r.loopback_ports());
        // An ordinary public address stays usable; a denied one is not, even for ask.
        let public: IpAddr = "93.184.215.14".parse().unwrap();
        assert!(r.address_ok(&public, 443));
        let r = rules(&["localhost:4000"], &["93.184.215.14", "localhost:5000"]);
        assert!(!r.address_ok(&public, 443));
        assert!(!r.address_ok_for_ask(&public, 443));
        assert!(
            !r.address_ok(&lo4, 5000),
            "a `localhost` deny rule names loopback"
        );
        assert_eq!(r.loopback_ports().len(), 1);
        // Every spelling that embeds a denied IPv4 address is denied (attack review 75), in
        // both directions; allow rules stay exact.
        let r = rules(&["a.test:8088"], &["11.22.33.44", "::ffff:5.6.7.8"]);
        for spelled in [
            "11.22.33.44",
            "::ffff:11.22.33.44",
            "64:ff9b::b16:212c",
            "2002:b16:212c::1",
            "5.6.7.8",
        ] {
            let ip: IpAddr = spelled.parse().unwrap();
            assert!(r.address_denied(&ip, 8088).is_some(), "{spelled}");
            assert!(!r.address_ok(&ip, 8088), "{spelled}");
            let lit = if ip.is_ipv6() {
                format!("[{spelled}]")
            } else {
                spelled.to_string()
            };
            let d = r.decide_host(&lit, 8088);
            assert!(
                !d.allowed && d.rule.starts_with("network.deny"),
                "{lit}: {d:?}"
            );
        }
        let r = rules(&["localhost:4000"], &["localhost"]);
        let mapped_lo: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert!(r.address_denied(&mapped_lo, 4000).is_some());
        let r = rules(&["11.22.33.44"], &[]);
        let mapped: IpAddr = "::ffff:11.22.33.44".parse().unwrap();
        assert!(
            !r.decide_host("[::ffff:11.22.33.44]", 80).allowed,
            "allow stays exact"
        );
        assert!(r.address_denied(&mapped, 80).is_none());
    }
}
