//! Timestamps as the access log writes them (`2026-11-28T04:47:22.123456Z`), as seconds since
//! the Unix epoch, and back. No time zone but UTC, no leap seconds: what the log holds.

/// Seconds since 1970-01-01T00:00:00Z of an RFC 3339 UTC timestamp (`Z`, fraction optional), or
/// of a date alone (`2026-11-28`, its midnight). `None` when it is neither.
pub fn parse(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let year = digits(&b[0..4])?;
    let month = digits(&b[5..7])?;
    let day = digits(&b[8..10])?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let days = days_from_civil(year, month, day);
    if b.len() == 10 {
        return Some(days * 86_400);
    }
    if b.len() < 20 || !matches!(b[10], b'T' | b't' | b' ') || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (h, m, s) = (digits(&b[11..13])?, digits(&b[14..16])?, digits(&b[17..19])?);
    if h > 23 || m > 59 || s > 60 {
        return None;
    }
    let rest = &b[19..];
    let rest = match rest.first() {
        Some(b'.') => {
            let n = rest[1..].iter().take_while(|c| c.is_ascii_digit()).count();
            &rest[1 + n..]
        }
        _ => rest,
    };
    if rest != b"Z" && rest != b"z" {
        return None;
    }
    Some(days * 86_400 + h * 3600 + m * 60 + s)
}

fn digits(b: &[u8]) -> Option<i64> {
    b.iter().try_fold(0i64, |n, &c| c.is_ascii_digit().then(|| n * 10 + i64::from(c - b'0')))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day number (days since 1970-01-01): `(year, month, day)`.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { yoe + era * 400 + 1 } else { yoe + era * 400 }, m, d)
}

/// `2026-11-28T04:00:00Z`: seconds since the epoch as RFC 3339, UTC.
pub fn format(seconds: i64) -> String {
    let (y, mo, d) = civil_from_days(seconds.div_euclid(86_400));
    let s = seconds.rem_euclid(86_400);
    format!("{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}Z", s / 3600, s % 3600 / 60, s % 60)
}

/// `2026-11-28`: the date of seconds since the epoch.
pub fn format_date(seconds: i64) -> String {
    format(seconds)[..10].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_what_is_not_a_timestamp() {
        assert_eq!(parse("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse("2026-11-28T04:47:22.123456Z"), Some(1_795_841_242));
        assert_eq!(format(1_795_841_242), "2026-11-28T04:47:22Z");
        assert_eq!(parse("2026-11-28"), Some(1_795_824_000));
        assert_eq!(format_date(1_795_841_242), "2026-11-28");
        assert_eq!(parse("2024-02-29T23:59:59Z").map(format).as_deref(), Some("2024-02-29T23:59:59Z"));
        for bad in ["", "2026-13-01", "2026-11-28T04:47:22+01:00", "2026-11-28T25:00:00Z", "yesterday"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
