//! UTC time formatting and the `--since` grammar (no time-zone database: everything is UTC).

/// Days since 1970-01-01 for a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719468;
    let era = if z >= 0 { z } else { z - 146096 } / 146097;
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// `2026-12-01T10:23:16.123Z`.
pub fn fmt_utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let milli = ms.rem_euclid(1000);
    let (y, mo, d) = civil_from_days(secs.div_euclid(86400));
    let s = secs.rem_euclid(86400);
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{milli:03}Z",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// `2026-12-01 10:23:16` (UTC, for humans).
pub fn fmt_short(ms: i64) -> String {
    let full = fmt_utc(ms);
    format!("{} {}", &full[..10], &full[11..19])
}

/// A `--since` value in none of the accepted forms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "cannot read time `{0}`: use a duration (90s, 15m, 2h, 7d), a UTC date \
     (2026-12-01), a UTC date and time (2026-12-01T10:00:30Z) or Unix milliseconds"
)]
pub struct TimeError(pub String);

/// Parses a `--since` value into Unix milliseconds. Accepted forms: a duration back from
/// `now_ms` (`90s`, `15m`, `2h`, `7d`), a UTC date (`2026-12-01`), a UTC date and time
/// (`2026-12-01T10:00`, `2026-12-01T10:00:30`, optionally with `Z` or a space instead of
/// `T`), or a bare integer of Unix milliseconds.
pub fn parse_since(s: &str, now_ms: i64) -> Result<i64, TimeError> {
    let s = s.trim();
    let err = || TimeError(s.to_string());
    if s.is_empty() {
        return Err(err());
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse::<i64>().map_err(|_| err());
    }
    if let Some(unit) = s.chars().last().filter(|c| "smhd".contains(*c)) {
        let num = &s[..s.len() - 1];
        if !num.is_empty() && num.bytes().all(|b| b.is_ascii_digit()) {
            let n: i64 = num.parse().map_err(|_| err())?;
            let mul = match unit {
                's' => 1_000,
                'm' => 60_000,
                'h' => 3_600_000,
                _ => 86_400_000,
            };
            return Ok(now_ms.saturating_sub(n.saturating_mul(mul)));
        }
    }
    let s = s.strip_suffix('Z').unwrap_or(s);
    let (date, time) = match s.find(['T', ' ']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let num = |x: &str, len: usize| -> Result<i64, TimeError> {
        if x.len() == len && x.bytes().all(|b| b.is_ascii_digit()) {
            x.parse().map_err(|_| err())
        } else {
            Err(err())
        }
    };
    let dp: Vec<&str> = date.split('-').collect();
    if dp.len() != 3 {
        return Err(err());
    }
    let (y, m, d) = (num(dp[0], 4)?, num(dp[1], 2)?, num(dp[2], 2)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return Err(err());
    }
    let mut secs = days_from_civil(y, m, d) * 86400;
    if let Some(t) = time {
        let tp: Vec<&str> = t.split(':').collect();
        if tp.len() < 2 || tp.len() > 3 {
            return Err(err());
        }
        let h = num(tp[0], 2)?;
        let mi = num(tp[1], 2)?;
        let sec = if tp.len() == 3 { num(tp[2], 2)? } else { 0 };
        if h > 23 || mi > 59 || sec > 60 {
            return Err(err());
        }
        secs += h * 3600 + mi * 60 + sec;
    }
    Ok(secs * 1000)
}

pub fn now_ms() -> i64 {
    i64::try_from(warden_event::now_ms()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses_utc() {
        assert_eq!(fmt_utc(0), "1970-01-01T00:00:00.000Z");
        let t = parse_since("2026-12-01T10:23:16Z", 0).unwrap();
        assert_eq!(fmt_utc(t + 5), "2026-12-01T10:23:16.005Z");
        assert_eq!(parse_since("2026-12-01", 0).unwrap() % 86_400_000, 0);
        assert_eq!(
            parse_since("2h", 10_000_000).unwrap(),
            10_000_000 - 7_200_000
        );
        assert_eq!(parse_since("1234", 0).unwrap(), 1234);
        for bad in [
            "",
            "yesterday",
            "2026-13-01",
            "2026-12-01T25:00",
            "h",
            "-5m",
        ] {
            assert!(parse_since(bad, 0).is_err(), "{bad}");
        }
        for ms in [0i64, 951_782_400_000, 4_102_444_800_123] {
            assert_eq!(
                parse_since(&fmt_utc(ms)[..19], 0).unwrap(),
                ms / 1000 * 1000
            );
        }
    }
}
