//! Address classes and address spellings.
//!
//! [`classify`] names the special-purpose range an address falls in (the IANA IPv4 and IPv6
//! special-purpose registries, multicast, reserved space, and everything outside IPv6 global
//! unicast `2000::/3`); the proxy refuses those unless a rule names the address. Addresses
//! that embed an IPv4 address are judged by it: IPv4-mapped `::ffff:0:0/96`, NAT64
//! `64:ff9b::/96` (RFC 6052; it reaches 169.254.169.254 where a NAT64 gateway exists) and
//! 6to4 `2002::/16`. The NAT64 local-use prefix `64:ff9b:1::/48` (RFC 8215) embeds IPv4 at
//! a position the local network chooses, so it is refused whole; so is `2001::/23`
//! (Teredo `2001::/32` carries its client's IPv4 address XOR-obfuscated).
//!
//! [`parse_host_ip`] reads a host the way curl and glibc's `inet_aton` do, so no spelling
//! hides an address: `2130706433`, `0177.0.0.1`, `0x7f.1`, `127.1`, bracketed IPv6 and zone
//! ids (`[fe80::1%25eth0]`). A name whose last label is numeric but which is no address is
//! an error, never a DNS lookup (the WHATWG URL rule).

use crate::AddrError;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A special-purpose range an address was found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Special {
    /// The range, as `a.b.c.d/n` or `x::/n`.
    pub range: &'static str,
    pub name: &'static str,
    /// The IPv4 address an IPv6 address embeds, when that is what was judged.
    pub via: Option<Ipv4Addr>,
}

impl std::fmt::Display for Special {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.via {
            Some(v4) => write!(f, "{} ({}, embedding {v4})", self.name, self.range),
            None => write!(f, "{} ({})", self.name, self.range),
        }
    }
}

/// (base, prefix length, range text, name).
pub const SPECIAL_V4: &[(u32, u8, &str, &str)] = &[
    (0x0000_0000, 8, "0.0.0.0/8", "\"this network\""),
    (0x0a00_0000, 8, "10.0.0.0/8", "private-use"),
    (
        0x6440_0000,
        10,
        "100.64.0.0/10",
        "shared address space (CGNAT)",
    ),
    (0x7f00_0000, 8, "127.0.0.0/8", "loopback"),
    (
        0xa9fe_0000,
        16,
        "169.254.0.0/16",
        "link-local (cloud metadata)",
    ),
    (0xac10_0000, 12, "172.16.0.0/12", "private-use"),
    (0xc000_0000, 24, "192.0.0.0/24", "IETF protocol assignments"),
    (
        0xc000_0200,
        24,
        "192.0.2.0/24",
        "documentation (TEST-NET-1)",
    ),
    (0xc01f_c400, 24, "192.31.196.0/24", "AS112-v4"),
    (0xc034_c100, 24, "192.52.193.0/24", "AMT"),
    (
        0xc058_6300,
        24,
        "192.88.99.0/24",
        "deprecated 6to4 relay anycast",
    ),
    (0xc0a8_0000, 16, "192.168.0.0/16", "private-use"),
    (
        0xc0af_3000,
        24,
        "192.175.48.0/24",
        "AS112 direct delegation",
    ),
    (0xc612_0000, 15, "198.18.0.0/15", "benchmarking"),
    (
        0xc633_6400,
        24,
        "198.51.100.0/24",
        "documentation (TEST-NET-2)",
    ),
    (
        0xcb00_7100,
        24,
        "203.0.113.0/24",
        "documentation (TEST-NET-3)",
    ),
    (0xe000_0000, 4, "224.0.0.0/4", "multicast"),
    (0xffff_ffff, 32, "255.255.255.255/32", "limited broadcast"),
    (0xf000_0000, 4, "240.0.0.0/4", "reserved"),
];

/// How an IPv6 range is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum V6Kind {
    /// Refused whole.
    Refuse,
    /// Judged by the IPv4 address in its last 32 bits.
    EmbedsLast32,
    /// 6to4: judged by the IPv4 address in bits 16..48.
    Embeds6to4,
}

/// (base, prefix length, range text, name, kind). First match wins.
pub const SPECIAL_V6: &[(u128, u8, &str, &str, V6Kind)] = &[
    (0, 128, "::/128", "unspecified", V6Kind::Refuse),
    (1, 128, "::1/128", "loopback", V6Kind::Refuse),
    (
        0,
        96,
        "::/96",
        "IPv4-compatible (deprecated)",
        V6Kind::Refuse,
    ),
    (
        0xffff_0000_0000,
        96,
        "::ffff:0:0/96",
        "IPv4-mapped",
        V6Kind::EmbedsLast32,
    ),
    (
        0xffff_0000_0000_0000,
        96,
        "::ffff:0:0:0/96",
        "IPv4-translated (SIIT)",
        V6Kind::Refuse,
    ),
    (
        0x0064_ff9b << 96,
        96,
        "64:ff9b::/96",
        "NAT64 well-known prefix",
        V6Kind::EmbedsLast32,
    ),
    (
        0x0064_ff9b_0001 << 80,
        48,
        "64:ff9b:1::/48",
        "NAT64 local-use prefix",
        V6Kind::Refuse,
    ),
    (
        0x0100 << 112,
        64,
        "100::/64",
        "discard-only",
        V6Kind::Refuse,
    ),
    (
        0x2001 << 112,
        32,
        "2001::/32",
        "Teredo (embeds an obfuscated IPv4 client)",
        V6Kind::Refuse,
    ),
    (
        0x2001 << 112,
        23,
        "2001::/23",
        "IETF protocol assignments",
        V6Kind::Refuse,
    ),
    (
        0x2001_0db8 << 96,
        32,
        "2001:db8::/32",
        "documentation",
        V6Kind::Refuse,
    ),
    (0x2002 << 112, 16, "2002::/16", "6to4", V6Kind::Embeds6to4),
    (
        0x2620_004f_8000 << 80,
        48,
        "2620:4f:8000::/48",
        "AS112-v6",
        V6Kind::Refuse,
    ),
    (
        0x3fff << 112,
        20,
        "3fff::/20",
        "documentation",
        V6Kind::Refuse,
    ),
    (
        0x5f00 << 112,
        16,
        "5f00::/16",
        "segment routing (SRv6) SIDs",
        V6Kind::Refuse,
    ),
    (0xfc00 << 112, 7, "fc00::/7", "unique-local", V6Kind::Refuse),
    (0xfe80 << 112, 10, "fe80::/10", "link-local", V6Kind::Refuse),
    (
        0xfec0 << 112,
        10,
        "fec0::/10",
        "site-local (deprecated)",
        V6Kind::Refuse,
    ),
    (0xff00 << 112, 8, "ff00::/8", "multicast", V6Kind::Refuse),
];

fn in_v4(a: u32, base: u32, len: u8) -> bool {
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    a & mask == base
}

fn in_v6(a: u128, base: u128, len: u8) -> bool {
    let mask = if len == 0 {
        0
    } else {
        u128::MAX << (128 - len)
    };
    a & mask == base
}

fn classify_v4(v: Ipv4Addr) -> Option<Special> {
    let a = u32::from(v);
    SPECIAL_V4
        .iter()
        .find(|(b, l, _, _)| in_v4(a, *b, *l))
        .map(|&(_, _, range, name)| Special {
            range,
            name,
            via: None,
        })
}

fn classify_v6(v: Ipv6Addr) -> Option<Special> {
    let a = u128::from(v);
    for &(base, len, range, name, kind) in SPECIAL_V6 {
        if !in_v6(a, base, len) {
            continue;
        }
        let embedded = match kind {
            V6Kind::Refuse => {
                return Some(Special {
                    range,
                    name,
                    via: None,
                })
            }
            V6Kind::EmbedsLast32 => Ipv4Addr::from(a as u32),
            V6Kind::Embeds6to4 => Ipv4Addr::from((a >> 80) as u32),
        };
        return classify_v4(embedded).map(|inner| Special {
            range,
            name: inner.name,
            via: Some(embedded),
        });
    }
    // Everything outside global unicast 2000::/3 is unallocated or special.
    if !in_v6(a, 0x2000 << 112, 3) {
        return Some(Special {
            range: "outside 2000::/3",
            name: "not global unicast",
            via: None,
        });
    }
    None
}

/// The IPv4 address an IPv6 address embeds (IPv4-mapped and -compatible, NAT64, 6to4: the
/// ranges [`classify`] judges by the IPv4 inside), or `None`.
pub fn embedded_v4(ip: &IpAddr) -> Option<Ipv4Addr> {
    let IpAddr::V6(v) = ip else { return None };
    let a = u128::from(*v);
    SPECIAL_V6
        .iter()
        .find(|(base, len, ..)| in_v6(a, *base, *len))
        .and_then(|&(.., kind)| match kind {
            V6Kind::Refuse => None,
            V6Kind::EmbedsLast32 => Some(Ipv4Addr::from(a as u32)),
            V6Kind::Embeds6to4 => Some(Ipv4Addr::from((a >> 80) as u32)),
        })
}

/// The special-purpose range of `ip`, or `None` for an ordinary global address.
pub fn classify(ip: &IpAddr) -> Option<Special> {
    match ip {
        IpAddr::V4(v) => classify_v4(*v),
        IpAddr::V6(v) => classify_v6(*v),
    }
}

/// Addresses refused unless a rule names the address itself.
pub fn is_special(ip: &IpAddr) -> bool {
    classify(ip).is_some()
}

/// One `inet_aton` part: `0x` hex, leading-`0` octal, else decimal.
fn aton_part(p: &str) -> Option<u64> {
    if p.is_empty() {
        return None;
    }
    let (digits, radix) = if let Some(h) = p.strip_prefix("0x").or_else(|| p.strip_prefix("0X")) {
        if h.is_empty() {
            return Some(0); // "0x" alone is zero (WHATWG, curl)
        }
        (h, 16)
    } else if p.len() > 1 && p.starts_with('0') {
        (&p[1..], 8)
    } else {
        (p, 10)
    };
    if digits.len() > 20 {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

/// Whether a label looks like a number (then the host must be an IPv4 address).
fn numeric_label(l: &str) -> bool {
    !l.is_empty()
        && (l.bytes().all(|b| b.is_ascii_digit())
            || l.strip_prefix("0x")
                .or_else(|| l.strip_prefix("0X"))
                .is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit())))
}

fn parse_v4_any(host: &str) -> Result<Option<Ipv4Addr>, AddrError> {
    let h = host.strip_suffix('.').unwrap_or(host);
    let parts: Vec<&str> = h.split('.').collect();
    let Some(last) = parts.last() else {
        return Ok(None);
    };
    if !numeric_label(last) {
        return Ok(None);
    }
    let bad = || AddrError::NotV4(host.to_string());
    if parts.len() > 4 {
        return Err(bad());
    }
    let nums: Vec<u64> = parts
        .iter()
        .map(|p| aton_part(p))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(bad)?;
    let (init, last) = nums.split_at(nums.len() - 1);
    if init.iter().any(|&n| n > 255) {
        return Err(bad());
    }
    let room = 8 * (5 - nums.len() as u32);
    if room < 64 && last[0] >= 1u64 << room {
        return Err(bad());
    }
    let mut v: u64 = last[0];
    for (i, &n) in init.iter().enumerate() {
        v |= n << (8 * (3 - i as u32));
    }
    Ok(Some(Ipv4Addr::from(v as u32)))
}

/// Parses a host (as found in a URL, `CONNECT` target or SOCKS request) as an address, in
/// any spelling curl or `inet_aton` would accept. `Ok(None)`: a name, to be resolved.
pub fn parse_host_ip(host: &str) -> Result<Option<IpAddr>, AddrError> {
    let h = host.trim();
    let (inner, bracketed) = match h.strip_prefix('[') {
        Some(r) => (
            r.strip_suffix(']')
                .ok_or_else(|| AddrError::Brackets(host.to_string()))?,
            true,
        ),
        None => (h, false),
    };
    if bracketed || inner.contains(':') {
        // A zone id (`%eth0`, URL-encoded `%25eth0`) names an interface, not another address.
        let addr = inner.split('%').next().unwrap_or(inner);
        return addr
            .parse::<Ipv6Addr>()
            .map(|v| Some(IpAddr::V6(v)))
            .map_err(|_| AddrError::NotV6(host.to_string()));
    }
    Ok(parse_v4_any(inner)?.map(IpAddr::V4))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(a: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(a))
    }
    fn v6(a: u128) -> IpAddr {
        IpAddr::V6(Ipv6Addr::from(a))
    }
    fn range_of(ip: &IpAddr) -> Option<&'static str> {
        classify(ip).map(|s| s.range)
    }

    /// Every IPv4 range: first, last and middle address are in it; the addresses just
    /// outside are not (they may be in a neighbouring range, named differently).
    #[test]
    fn v4_table_first_last_inside_outside() {
        for &(base, len, range, _) in SPECIAL_V4 {
            let size = 1u64 << (32 - len);
            let last = (base as u64 + size - 1) as u32;
            let mid = (base as u64 + size / 2) as u32;
            // 255.255.255.255 is listed before 240/4, which contains it.
            let want = |a: u32| {
                if a == u32::MAX {
                    "255.255.255.255/32"
                } else {
                    range
                }
            };
            for a in [base, last, mid] {
                assert_eq!(range_of(&v4(a)), Some(want(a)), "{} in {range}", v4(a));
            }
            if base > 0 {
                assert_ne!(
                    range_of(&v4(base - 1)),
                    Some(range),
                    "{} outside {range}",
                    v4(base - 1)
                );
            }
            if last < u32::MAX && range != "240.0.0.0/4" {
                assert_ne!(
                    range_of(&v4(last + 1)),
                    Some(range),
                    "{} outside {range}",
                    v4(last + 1)
                );
            }
        }
    }

    /// Every IPv6 range likewise; ranges that embed IPv4 are tested with a special IPv4
    /// address inside (refused) and a public one (allowed) at the same position.
    #[test]
    fn v6_table_first_last_inside_outside() {
        let meta = u32::from(Ipv4Addr::new(169, 254, 169, 254)) as u128;
        let public = u32::from(Ipv4Addr::new(8, 8, 8, 8)) as u128;
        for &(base, len, range, _, kind) in SPECIAL_V6 {
            let host_bits = 128 - len as u32;
            let span = if host_bits == 128 {
                u128::MAX
            } else {
                (1u128 << host_bits) - 1
            };
            let last = base + span;
            let mid = base + span / 2 + 1;
            let probes: Vec<u128> = match kind {
                V6Kind::Refuse => vec![base, last, mid.min(last)],
                V6Kind::EmbedsLast32 => {
                    assert!(!is_special(&v6(base | public)), "{range} embedding 8.8.8.8");
                    vec![base | meta, base | 0x7f00_0001, base]
                }
                V6Kind::Embeds6to4 => {
                    assert!(
                        !is_special(&v6(base | (public << 80))),
                        "{range} embedding 8.8.8.8"
                    );
                    vec![
                        base | (meta << 80),
                        base | (0x0a00_0001 << 80) | 0xffff,
                        base,
                    ]
                }
            };
            for a in probes {
                let got = classify(&v6(a));
                assert!(got.is_some(), "{} in {range}", v6(a));
                let got = got.unwrap();
                // A range listed earlier may be more specific (Teredo inside 2001::/23).
                let earlier = SPECIAL_V6
                    .iter()
                    .take_while(|e| e.2 != range)
                    .any(|e| e.2 == got.range && in_v6(a, e.0, e.1));
                assert!(
                    got.range == range || earlier,
                    "{} in {range}: got {}",
                    v6(a),
                    got.range
                );
            }
            if base > 0 {
                assert_ne!(
                    range_of(&v6(base - 1)),
                    Some(range),
                    "{} outside {range}",
                    v6(base - 1)
                );
            }
            if last < u128::MAX {
                assert_ne!(
                    range_of(&v6(last + 1)),
                    Some(range),
                    "{} outside {range}",
                    v6(last + 1)
                );
            }
        }
    }

    #[test]
    fn ordinary_addresses_pass() {
        for a in [
            "8.8.8.8",
            "1.1.1.1",
            "9.255.255.255",
            "11.0.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.1.255",
            "192.0.3.0",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
            "2606:4700::1111",
            "2001:200::1",
            "2a00:1450::1",
            "::ffff:8.8.8.8",
            "64:ff9b::8.8.8.8",
            "2002:0808:0808::1",
        ] {
            assert!(!is_special(&a.parse().unwrap()), "{a}");
        }
    }

    #[test]
    fn named_examples() {
        for (a, want) in [
            ("64:ff9b::169.254.169.254", "64:ff9b::/96"),
            ("64:ff9b::a9fe:a9fe", "64:ff9b::/96"),
            ("64:ff9b:1::a9fe:a9fe", "64:ff9b:1::/48"),
            ("2002:a9fe:a9fe::", "2002::/16"),
            ("2002:7f00:1::1", "2002::/16"),
            ("::ffff:127.0.0.1", "::ffff:0:0/96"),
            ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "2001::/32"),
            ("198.18.0.1", "198.18.0.0/15"),
            ("198.19.255.255", "198.18.0.0/15"),
            ("240.0.0.1", "240.0.0.0/4"),
            ("fd00:ec2::254", "fc00::/7"),
            ("4000::1", "outside 2000::/3"),
        ] {
            assert_eq!(range_of(&a.parse().unwrap()), Some(want), "{a}");
        }
        let s = classify(&"64:ff9b::a9fe:a9fe".parse().unwrap()).unwrap();
        assert_eq!(s.via, Some(Ipv4Addr::new(169, 254, 169, 254)));
        assert!(s.to_string().contains("embedding 169.254.169.254"), "{s}");
    }

    #[test]
    fn spellings_like_curl_and_inet_aton() {
        let lo = Some("127.0.0.1".parse::<IpAddr>().unwrap());
        for h in [
            "127.0.0.1",
            "2130706433",
            "0177.0.0.1",
            "0x7f.1",
            "0x7f000001",
            "127.1",
            "127.0.1",
            "0x7F.0.0.0x1",
            "017700000001",
            "127.0.0.1.",
        ] {
            assert_eq!(parse_host_ip(h).unwrap(), lo, "{h}");
        }
        assert_eq!(
            parse_host_ip("[fe80::1%25eth0]").unwrap(),
            Some("fe80::1".parse().unwrap())
        );
        assert_eq!(
            parse_host_ip("fe80::1%eth0").unwrap(),
            Some("fe80::1".parse().unwrap())
        );
        assert_eq!(
            parse_host_ip("[::1]").unwrap(),
            Some("::1".parse().unwrap())
        );
        assert_eq!(
            parse_host_ip("[::ffff:7f00:1]").unwrap(),
            Some("::ffff:127.0.0.1".parse().unwrap())
        );
        assert_eq!(
            parse_host_ip("0").unwrap(),
            Some("0.0.0.0".parse().unwrap())
        );
        for name in [
            "github.com",
            "a1.example",
            "1a.example",
            "x.0xg",
            "localhost",
        ] {
            assert_eq!(parse_host_ip(name).unwrap(), None, "{name}");
        }
        // Numeric-looking but no address: an error, never a DNS lookup.
        for bad in [
            "1.2.3.4.5",
            "256.1.1.1",
            "1.2.3.256",
            "4294967296",
            "08.1.1.1",
            "example.123",
            "0x1g.1",
            "x.0x",
            "[::1",
            "[1.2.3.4]",
            "::zz",
            "99999999999999999999999",
        ] {
            assert!(parse_host_ip(bad).is_err(), "{bad}");
        }
    }
}
