//! Event time: parsing RFC 3339 timestamps and human durations, and formatting them back.
//!
//! All times inside driftwatch are integer milliseconds since the Unix epoch (UTC). Parsing is
//! hand-written because it sits on the hot path of every event and must reject absurd values
//! with a precise reason instead of panicking.

use std::fmt;

/// Milliseconds since the Unix epoch, UTC.
pub type Millis = i64;

/// Earliest event time accepted: 2000-01-01T00:00:00Z. Anything earlier is treated as a
/// broken clock or a unit mistake (seconds sent as milliseconds), not as real traffic.
pub const MIN_EVENT_MS: Millis = 946_684_800_000;
/// Latest event time accepted: 2100-01-01T00:00:00Z.
pub const MAX_EVENT_MS: Millis = 4_102_444_800_000;

/// Why a timestamp was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampError {
    /// Not RFC 3339.
    Syntax,
    /// Well-formed but outside 2000-01-01 .. 2100-01-01.
    OutOfRange,
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Inverse of [`days_from_civil`].
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

fn digits(b: &[u8], at: usize, n: usize) -> Option<i64> {
    let s = b.get(at..at + n)?;
    let mut v = 0i64;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + i64::from(c - b'0');
    }
    Some(v)
}

/// Parses an RFC 3339 date-time (`2025-11-24T16:27:41.120Z`, `…+01:00`, any number of
/// fraction digits, `T`/`t`/space separator) into epoch milliseconds, inside the plausible
/// range of event times.
pub fn parse_rfc3339(s: &str) -> Result<Millis, TimestampError> {
    check_range(parse_rfc3339_unbounded(s)?)
}

/// Parses an RFC 3339 timestamp of any year 0000–9999 to epoch milliseconds.
pub fn parse_rfc3339_unbounded(s: &str) -> Result<Millis, TimestampError> {
    let b = s.as_bytes();
    let syntax = TimestampError::Syntax;
    let year = digits(b, 0, 4).ok_or(syntax)?;
    let month = digits(b, 5, 2).ok_or(syntax)?;
    let day = digits(b, 8, 2).ok_or(syntax)?;
    let hour = digits(b, 11, 2).ok_or(syntax)?;
    let minute = digits(b, 14, 2).ok_or(syntax)?;
    let second = digits(b, 17, 2).ok_or(syntax)?;
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return Err(syntax);
    }
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return Err(syntax);
    }
    let mut i = 19;
    let mut millis = 0i64;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 3 {
                millis = millis * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        let n = i - start;
        if n == 0 {
            return Err(syntax);
        }
        for _ in n..3 {
            millis *= 10;
        }
    }
    let offset_min = match b.get(i) {
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(&sign @ (b'+' | b'-')) if i + 6 == b.len() && b[i + 3] == b':' => {
            let oh = digits(b, i + 1, 2).ok_or(syntax)?;
            let om = digits(b, i + 4, 2).ok_or(syntax)?;
            if oh > 23 || om > 59 {
                return Err(syntax);
            }
            let o = oh * 60 + om;
            if sign == b'-' {
                -o
            } else {
                o
            }
        }
        _ => return Err(syntax),
    };
    // A leap second is folded onto the following second.
    let secs = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset_min * 60;
    Ok(secs * 1000 + millis)
}

/// Accepts epoch milliseconds only inside the plausible range.
pub fn check_range(ms: Millis) -> Result<Millis, TimestampError> {
    if (MIN_EVENT_MS..MAX_EVENT_MS).contains(&ms) {
        Ok(ms)
    } else {
        Err(TimestampError::OutOfRange)
    }
}

/// Formats epoch milliseconds as RFC 3339 UTC with millisecond precision.
pub fn format_rfc3339(ms: Millis) -> String {
    Rfc3339(ms).to_string()
}

/// Display adapter for [`format_rfc3339`].
#[derive(Debug, Clone, Copy)]
pub struct Rfc3339(pub Millis);

impl fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0;
        let days = ms.div_euclid(86_400_000);
        let rem = ms.rem_euclid(86_400_000);
        let (y, m, d) = civil_from_days(days);
        let h = rem / 3_600_000;
        let mi = (rem / 60_000) % 60;
        let s = (rem / 1000) % 60;
        let milli = rem % 1000;
        write!(f, "{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{milli:03}Z")
    }
}

/// Why a duration was rejected; each message quotes the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Digits only, or nothing at all.
    #[error("`{input}` has no unit (use ms, s, m, h, d or w)")]
    NoUnit {
        /// The duration as given (trimmed).
        input: String,
    },
    /// The unit is not preceded by a whole number.
    #[error("`{input}` does not start with a whole number")]
    NotANumber {
        /// The duration as given (trimmed).
        input: String,
    },
    /// The unit is none of ms, s, m, min, h, d, w.
    #[error("`{input}` has unknown unit `{unit}` (use ms, s, m, h, d or w)")]
    UnknownUnit {
        /// The duration as given (trimmed).
        input: String,
        /// What follows the number.
        unit: String,
    },
    /// More milliseconds than an `i64` holds.
    #[error("`{input}` is too long")]
    TooLong {
        /// The duration as given (trimmed).
        input: String,
    },
}

/// Parses a human duration: an integer followed by `ms`, `s`, `m`, `h`, `d` or `w`
/// (`"30s"`, `"10m"`, `"6h"`, `"7d"`). Returns milliseconds.
pub fn parse_duration(s: &str) -> Result<Millis, DurationError> {
    let s = s.trim();
    let input = || s.to_owned();
    let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(|| DurationError::NoUnit { input: input() })?;
    let (num, unit) = s.split_at(split);
    let n: i64 = num.parse().map_err(|_| DurationError::NotANumber { input: input() })?;
    let mult = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" | "min" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 7 * 86_400_000,
        _ => return Err(DurationError::UnknownUnit { input: input(), unit: unit.to_owned() }),
    };
    n.checked_mul(mult).ok_or_else(|| DurationError::TooLong { input: input() })
}

/// Formats milliseconds as the shortest exact human duration (`600000` → `"10m"`).
pub fn format_duration(ms: Millis) -> String {
    for (unit, mult) in [("w", 604_800_000), ("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)] {
        if ms != 0 && ms % mult == 0 {
            return format!("{}{unit}", ms / mult);
        }
    }
    format!("{ms}ms")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_utc_and_offsets() {
        assert_eq!(parse_rfc3339("2025-11-24T16:27:41.120Z"), Ok(1_764_001_661_120));
        assert_eq!(parse_rfc3339("2025-11-24T17:27:41.12+01:00"), Ok(1_764_001_661_120));
        assert_eq!(parse_rfc3339("2025-11-24t16:27:41.120999z"), Ok(1_764_001_661_120));
        assert_eq!(parse_rfc3339("2025-11-24 16:27:41Z"), Ok(1_764_001_661_000));
    }

    #[test]
    fn rejects_bad_syntax_and_absurd_dates() {
        for s in [
            "",
            "2025-11-24",
            "2025-13-01T00:00:00Z",
            "2025-02-30T00:00:00Z",
            "2025-11-24T16:27:41",
            "2025-11-24T16:27:41.Z",
            "2025-11-24T25:00:00Z",
        ] {
            assert_eq!(parse_rfc3339(s), Err(TimestampError::Syntax), "{s}");
        }
        assert_eq!(parse_rfc3339("1969-12-31T23:59:59Z"), Err(TimestampError::OutOfRange));
        assert_eq!(parse_rfc3339("3025-01-01T00:00:00Z"), Err(TimestampError::OutOfRange));
    }

    #[test]
    fn formats_round_trip() {
        for ms in [MIN_EVENT_MS, 1_764_001_661_120, 4_000_000_000_123] {
            assert_eq!(parse_rfc3339(&format_rfc3339(ms)), Ok(ms));
        }
        assert_eq!(format_rfc3339(1_764_001_661_120), "2025-11-24T16:27:41.120Z");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10m"), Ok(600_000));
        assert_eq!(parse_duration("500ms"), Ok(500));
        assert_eq!(parse_duration("2w"), Ok(1_209_600_000));
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("ten minutes").is_err());
        // The messages users see.
        let msg = |s: &str| parse_duration(s).err().map(|e| e.to_string());
        assert_eq!(msg(" 10 ").as_deref(), Some("`10` has no unit (use ms, s, m, h, d or w)"));
        assert_eq!(msg("m").as_deref(), Some("`m` does not start with a whole number"));
        assert_eq!(msg("3y").as_deref(), Some("`3y` has unknown unit `y` (use ms, s, m, h, d or w)"));
        assert_eq!(msg("99999999999999999w").as_deref(), Some("`99999999999999999w` is too long"));
        assert_eq!(format_duration(600_000), "10m");
        assert_eq!(format_duration(90_000), "90s");
    }
}

/// Serde for epoch milliseconds written as RFC 3339 UTC with millisecond precision:
/// `#[serde(with = "crate::time::rfc3339")]`.
pub mod rfc3339 {
    use serde::{de::Error as _, Deserialize, Deserializer, Serializer};

    use super::{parse_rfc3339_unbounded, Millis, Rfc3339};

    /// Writes `ms` as `2025-11-24T16:27:41.120Z`.
    pub fn serialize<S: Serializer>(ms: &Millis, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&Rfc3339(*ms))
    }

    /// Reads any RFC 3339 date-time of the years 0000–9999.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Millis, D::Error> {
        let s = String::deserialize(d)?;
        parse_rfc3339_unbounded(&s).map_err(|_| D::Error::custom(format!("`{s}` is not an RFC 3339 date-time")))
    }
}
