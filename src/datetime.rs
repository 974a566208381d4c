//! XEP-0082 date-times: formatting Unix time as `YYYY-MM-DDThh:mm:ss[.sss]Z` and parsing
//! what clients send (any offset, optional fraction). Pure arithmetic, no clock.

/// Days since 1970-01-01 of a civil date (Howard Hinnant's days-from-civil).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DDTHH:MM:SSZ` for seconds since the epoch.
pub fn format_utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// XEP-0082 DateTime with milliseconds, for archive and delay stamps.
pub fn format_ms(unix_ms: u64) -> String {
    let base = format_utc(unix_ms / 1000);
    let ms = unix_ms % 1000;
    if ms == 0 {
        return base;
    }
    format!("{}.{ms:03}Z", base.trim_end_matches('Z'))
}

fn digits(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Parses an XEP-0082 DateTime (`CCYY-MM-DDThh:mm:ss[.sss]TZD`) into Unix milliseconds.
pub fn parse_ms(s: &str) -> Option<u64> {
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-');
    let (y, m, day) = (digits(d.next()?)?, digits(d.next()?)?, digits(d.next()?)?);
    if d.next().is_some() || date.len() != 10 || !(1..=12).contains(&m) || !(1..=31).contains(&day)
    {
        return None;
    }
    let (clock, offset_secs) = if let Some(c) = time.strip_suffix('Z') {
        (c, 0i64)
    } else {
        let pos = time.rfind(['+', '-'])?;
        let (c, tz) = time.split_at(pos);
        let sign = if tz.starts_with('-') { -1 } else { 1 };
        let (hh, mm) = tz.get(1..)?.split_once(':')?;
        let (hh, mm) = (digits(hh)?, digits(mm)?);
        if hh > 23 || mm > 59 {
            return None;
        }
        (c, sign * (i64::from(hh) * 3600 + i64::from(mm) * 60))
    };
    let (hms, frac) = match clock.split_once('.') {
        Some((h, f)) => (h, Some(f)),
        None => (clock, None),
    };
    let mut t = hms.split(':');
    let (hh, mi, ss) = (digits(t.next()?)?, digits(t.next()?)?, digits(t.next()?)?);
    if t.next().is_some() || hms.len() != 8 || hh > 23 || mi > 59 || ss > 60 {
        return None;
    }
    let ms = match frac {
        None => 0,
        Some(f) if !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()) => {
            let mut v = 0u64;
            for (i, b) in f.bytes().take(3).enumerate() {
                v += u64::from(b - b'0') * [100, 10, 1][i];
            }
            v
        }
        Some(_) => return None,
    };
    let days = days_from_civil(i64::from(y), m, day);
    let secs =
        days * 86_400 + i64::from(hh) * 3600 + i64::from(mi) * 60 + i64::from(ss) - offset_secs;
    u64::try_from(secs).ok()?.checked_mul(1000)?.checked_add(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(format_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format_ms(1_795_000_000_123), "2026-11-18T11:06:40.123Z");
    }

    #[test]
    fn parses_xep_0082_forms() {
        assert_eq!(parse_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_ms("2026-11-18T11:06:40.123Z"),
            Some(1_795_000_000_123)
        );
        assert_eq!(
            parse_ms("2026-11-18T12:06:40+01:00"),
            Some(1_795_000_000_000)
        );
        assert_eq!(
            parse_ms("2026-11-18T10:06:40.5-01:00"),
            Some(1_795_000_000_500)
        );
        for bad in [
            "",
            "2026-11-18",
            "2026-13-01T00:00:00Z",
            "2026-11-18T25:00:00Z",
            "2026-11-18T11:06Z",
            "x",
        ] {
            assert_eq!(parse_ms(bad), None, "{bad}");
        }
        for t in [0u64, 951_782_400_000, 1_795_000_000_123] {
            assert_eq!(parse_ms(&format_ms(t)), Some(t));
        }
    }
}
