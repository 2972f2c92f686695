//! RFC 3339 timestamps as Alertmanager and the Docker Engine API write them
//! (`2024-05-01T12:00:00.123456789Z`, `…+02:00`), parsed to and formatted
//! from Unix nanoseconds. Parsing is pure, with no clock involved.

use std::time::{SystemTime, UNIX_EPOCH};

/// Nanoseconds since the Unix epoch (negative before 1970).
pub type UnixNanos = i128;

/// Go's zero `time.Time`, which Alertmanager writes as `endsAt` of firing alerts.
pub const GO_ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// Now, in Unix nanoseconds.
pub fn now_nanos() -> UnixNanos {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn digits(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Parses an RFC 3339 timestamp (`T` or space separator, optional fraction of
/// up to 9 digits, `Z` or `±hh:mm`). `None` when it is not one.
pub fn parse_rfc3339(s: &str) -> Option<UnixNanos> {
    let s = s.trim();
    if !s.is_ascii() || s.len() < 20 {
        return None;
    }
    let (date, rest) = (s.get(0..10)?, s.get(10..)?);
    let sep = rest.as_bytes()[0];
    if !matches!(sep, b'T' | b't' | b' ') {
        return None;
    }
    let rest = &rest[1..];
    let b = date.as_bytes();
    if b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let year = digits(&date[0..4])? as i64;
    let month = digits(&date[5..7])?;
    let day = digits(&date[8..10])?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let t = rest.get(0..8)?;
    let tb = t.as_bytes();
    if tb[2] != b':' || tb[5] != b':' {
        return None;
    }
    let (hh, mm, ss) = (digits(&t[0..2])?, digits(&t[3..5])?, digits(&t[6..8])?);
    if hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    let mut rest = &rest[8..];
    let mut nanos: i128 = 0;
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return None;
        }
        let f = &frac[..n];
        let mut padded = f.chars().take(9).collect::<String>();
        while padded.len() < 9 {
            padded.push('0');
        }
        nanos = padded.parse::<i128>().ok()?;
        rest = &frac[n..];
    }
    let offset_secs: i64 = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let o = rest.get(1..)?;
            if o.len() != 5 || o.as_bytes()[2] != b':' {
                return None;
            }
            let (oh, om) = (digits(&o[0..2])? as i64, digits(&o[3..5])? as i64);
            sign * (oh * 3600 + om * 60)
        }
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hh as i64 * 3600 + mm as i64 * 60 + ss as i64 - offset_secs;
    Some(secs as i128 * 1_000_000_000 + nanos)
}

/// Formats Unix nanoseconds as RFC 3339 UTC with milliseconds.
pub fn format_rfc3339(t: UnixNanos) -> String {
    let secs = t.div_euclid(1_000_000_000) as i64;
    let millis = (t.rem_euclid(1_000_000_000) / 1_000_000) as u32;
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_alertmanager_and_docker_forms() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339("2024-05-01T12:00:00.5Z"),
            Some(1_714_564_800 * 1_000_000_000 + 500_000_000)
        );
        assert_eq!(
            parse_rfc3339("2024-05-01T14:00:00.000000001+02:00"),
            Some(1_714_564_800 * 1_000_000_000 + 1)
        );
        // Docker's nanosecond form.
        assert_eq!(
            parse_rfc3339("2026-11-25T13:23:51.123456789Z"),
            Some(1_795_613_031 * 1_000_000_000 + 123_456_789)
        );
        let zero = parse_rfc3339(GO_ZERO_TIME).unwrap();
        assert!(zero < 0);
    }

    #[test]
    fn rejects_garbage() {
        for s in [
            "",
            "yesterday",
            "2024-13-01T00:00:00Z",
            "2024-05-01T12:00:00",
            "2024-05-01T12:00:00.Z",
            "2024-05-01T12:00:00+0200",
        ] {
            assert_eq!(parse_rfc3339(s), None, "{s}");
        }
    }

    #[test]
    fn formats_round_trip() {
        let t = parse_rfc3339("2026-11-25T13:23:51.123Z").unwrap();
        assert_eq!(format_rfc3339(t), "2026-11-25T13:23:51.123Z");
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00.000Z");
    }
}
