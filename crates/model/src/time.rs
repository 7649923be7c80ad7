//! Instants and signed durations with nanosecond resolution.
//!
//! Both types mirror Go's `time` package closely enough that arithmetic done
//! by upstream (BuildKit, dockerd, the kubelet) can be reproduced exactly:
//! [`Duration`] is a signed count of nanoseconds that saturates like Go's
//! `time.Duration` does in `Time.Sub`, and [`Timestamp`] covers any instant a
//! Go `time.Time` can hold, including instants before 1970.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

const NANOS_PER_SEC: i128 = 1_000_000_000;

/// A signed span of time in nanoseconds, with Go's `time.Duration` range and
/// formatting.
///
/// Arithmetic saturates at [`Duration::MIN`] and [`Duration::MAX`], as Go's
/// `Time.Sub` does. [`fmt::Display`] prints Go's `Duration.String()` form
/// (`1h0m0s`, `1.5s`, `300ms`, `0s`), which upstream error messages embed.
#[derive(Clone, Copy, Debug, Default, Eq, Hash, Ord, PartialEq, PartialOrd)]
pub struct Duration(i64);

impl Duration {
    /// The longest representable duration, about 292 years.
    pub const MAX: Self = Self(i64::MAX);
    /// The most negative representable duration.
    pub const MIN: Self = Self(i64::MIN);
    /// A zero-length duration.
    pub const ZERO: Self = Self(0);

    /// A duration of `nanos` nanoseconds.
    pub const fn from_nanos(nanos: i64) -> Self {
        Self(nanos)
    }

    /// A duration of `secs` seconds, saturating on overflow.
    pub const fn from_secs(secs: i64) -> Self {
        Self(secs.saturating_mul(NANOS_PER_SEC as i64))
    }

    /// A duration of `hours` hours, saturating on overflow.
    pub const fn from_hours(hours: i64) -> Self {
        Self::from_secs(hours.saturating_mul(3600))
    }

    /// The duration in nanoseconds.
    pub const fn as_nanos(self) -> i64 {
        self.0
    }

    /// The duration in whole seconds, truncated toward zero (Go's
    /// `Duration.Seconds` without the fraction).
    pub const fn as_secs(self) -> i64 {
        self.0 / NANOS_PER_SEC as i64
    }

    /// True for a zero-length duration.
    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// True for a negative duration.
    pub const fn is_negative(self) -> bool {
        self.0 < 0
    }

    /// `self + rhs`, saturating.
    pub const fn saturating_add(self, rhs: Self) -> Self {
        Self(self.0.saturating_add(rhs.0))
    }

    /// `self - rhs`, saturating.
    pub const fn saturating_sub(self, rhs: Self) -> Self {
        Self(self.0.saturating_sub(rhs.0))
    }

    /// Converts from a standard (unsigned) duration, saturating at
    /// [`Duration::MAX`].
    pub fn from_std(d: std::time::Duration) -> Self {
        Self(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
    }

    /// Converts to a standard duration; negative durations become zero.
    pub fn to_std(self) -> std::time::Duration {
        std::time::Duration::from_nanos(u64::try_from(self.0).unwrap_or(0))
    }
}

impl fmt::Display for Duration {
    /// Go's `time.Duration.String()`: `72h3m0.5s`, `1.5s`, `300ms`, `1µs`,
    /// `0s`. Sub-second durations use the largest unit below a second that
    /// keeps the integer part non-zero; longer ones always print `h`, `m`
    /// and `s` from the first non-zero unit on.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let negative = self.0 < 0;
        // `unsigned_abs` handles `i64::MIN` without overflow.
        let mut u = self.0.unsigned_abs();
        let sign = if negative { "-" } else { "" };
        if u == 0 {
            return f.write_str("0s");
        }
        if u < 1_000_000_000 {
            let (unit, scale): (&str, u64) = if u < 1_000 {
                ("ns", 1)
            } else if u < 1_000_000 {
                ("µs", 1_000)
            } else {
                ("ms", 1_000_000)
            };
            return write!(f, "{sign}{}{unit}", fixed_point(u, scale));
        }
        let secs_part = u % 60_000_000_000;
        u /= 60_000_000_000;
        let mut out = String::new();
        if u > 0 {
            let minutes = u % 60;
            let hours = u / 60;
            if hours > 0 {
                out.push_str(&format!("{hours}h"));
            }
            out.push_str(&format!("{minutes}m"));
        }
        out.push_str(&fixed_point(secs_part, 1_000_000_000));
        out.push('s');
        write!(f, "{sign}{out}")
    }
}

/// Formats `value / scale` with the fraction's trailing zeros removed, as Go's
/// `fmtFrac` + `fmtInt` do.
fn fixed_point(value: u64, scale: u64) -> String {
    let int = value / scale;
    let frac = value % scale;
    if frac == 0 {
        return int.to_string();
    }
    let digits = scale.trailing_zeros_base10();
    let mut frac_text = format!("{frac:0width$}", width = digits as usize);
    while frac_text.ends_with('0') {
        frac_text.pop();
    }
    format!("{int}.{frac_text}")
}

trait TrailingZerosBase10 {
    fn trailing_zeros_base10(self) -> u32;
}

impl TrailingZerosBase10 for u64 {
    fn trailing_zeros_base10(mut self) -> u32 {
        let mut n = 0;
        while self >= 10 && self.is_multiple_of(10) {
            self /= 10;
            n += 1;
        }
        n
    }
}

/// An instant in UTC with nanosecond resolution, counted from the Unix epoch.
///
/// Instants before 1970 are negative. The range is far wider than any real
/// clock (it covers Go's zero time, year 1), so conversions from upstream
/// timestamps never fail for range reasons.
///
/// Serialized as an RFC 3339 string in UTC with up to nine fractional digits
/// (`2024-06-01T00:00:00.5Z`), the form Docker's API and the vectors use.
#[derive(Clone, Copy, Debug, Default, Eq, Hash, Ord, PartialEq, PartialOrd)]
pub struct Timestamp(i128);

impl Timestamp {
    /// The Unix epoch, 1970-01-01T00:00:00Z.
    pub const UNIX_EPOCH: Self = Self(0);

    /// The instant `nanos` nanoseconds after the Unix epoch.
    pub const fn from_unix_nanos(nanos: i128) -> Self {
        Self(nanos)
    }

    /// The instant `secs` seconds after the Unix epoch.
    pub const fn from_unix_secs(secs: i64) -> Self {
        Self(secs as i128 * NANOS_PER_SEC)
    }

    /// The instant `secs` seconds plus `nanos` nanoseconds after the epoch.
    pub const fn from_unix(secs: i64, nanos: u32) -> Self {
        Self(secs as i128 * NANOS_PER_SEC + nanos as i128)
    }

    /// Nanoseconds since the Unix epoch.
    pub const fn unix_nanos(self) -> i128 {
        self.0
    }

    /// Whole seconds since the Unix epoch, rounded toward negative infinity.
    pub const fn unix_secs(self) -> i64 {
        self.0.div_euclid(NANOS_PER_SEC) as i64
    }

    /// The nanosecond within the second, `0..1_000_000_000`.
    pub const fn subsec_nanos(self) -> u32 {
        self.0.rem_euclid(NANOS_PER_SEC) as u32
    }

    /// `self - earlier` as a [`Duration`], saturating like Go's `Time.Sub`.
    pub const fn saturating_duration_since(self, earlier: Self) -> Duration {
        let d = self.0 - earlier.0;
        if d > i64::MAX as i128 {
            Duration::MAX
        } else if d < i64::MIN as i128 {
            Duration::MIN
        } else {
            Duration(d as i64)
        }
    }

    /// `self + d` (Go's `Time.Add`; never overflows in this range).
    pub const fn add(self, d: Duration) -> Self {
        Self(self.0 + d.0 as i128)
    }

    /// `self - d`.
    pub const fn sub(self, d: Duration) -> Self {
        Self(self.0 - d.0 as i128)
    }

    /// Parses an RFC 3339 timestamp: `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`.
    ///
    /// The `T` may also be a lowercase `t` or a space, the `Z` a lowercase
    /// `z`; the fraction has one to nine digits. This is the strict form used
    /// by snapshot files and Docker's API; dockerd's more lenient `until`
    /// forms are parsed by [`crate::parse_until`].
    pub fn parse_rfc3339(text: &str) -> Result<Self, TimestampError> {
        let err = || TimestampError {
            input: text.to_owned(),
        };
        let b = text.as_bytes();
        if b.len() < 20 {
            return Err(err());
        }
        let num = |range: std::ops::Range<usize>| -> Result<i64, TimestampError> {
            let s = &b[range];
            if s.iter().all(u8::is_ascii_digit) {
                Ok(s.iter().fold(0i64, |acc, d| acc * 10 + i64::from(d - b'0')))
            } else {
                Err(err())
            }
        };
        let year = num(0..4)?;
        let month = num(5..7)?;
        let day = num(8..10)?;
        let hour = num(11..13)?;
        let minute = num(14..16)?;
        let second = num(17..19)?;
        if b[4] != b'-'
            || b[7] != b'-'
            || !matches!(b[10], b'T' | b't' | b' ')
            || b[13] != b':'
            || b[16] != b':'
        {
            return Err(err());
        }
        let mut i = 19;
        let mut nanos = 0u32;
        if b[i] == b'.' {
            i += 1;
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            let digits = i - start;
            if digits == 0 || digits > 9 {
                return Err(err());
            }
            nanos = num(start..i)? as u32 * 10u32.pow((9 - digits) as u32);
        }
        let offset_secs = match b.get(i..) {
            Some([b'Z' | b'z']) => 0,
            Some([sign @ (b'+' | b'-'), h1, h2, b':', m1, m2]) => {
                let digits = [*h1, *h2, *m1, *m2];
                if !digits.iter().all(u8::is_ascii_digit) {
                    return Err(err());
                }
                let oh = i64::from((h1 - b'0') * 10 + (h2 - b'0'));
                let om = i64::from((m1 - b'0') * 10 + (m2 - b'0'));
                if oh > 23 || om > 59 {
                    return Err(err());
                }
                let off = oh * 3600 + om * 60;
                if *sign == b'-' { -off } else { off }
            }
            _ => return Err(err()),
        };
        let civil = Civil {
            year,
            month,
            day,
            hour,
            minute,
            second,
        };
        let secs = civil.to_unix_secs().ok_or_else(err)? - offset_secs;
        Ok(Self::from_unix(secs, nanos))
    }
}

/// A calendar date and wall-clock time in the proleptic Gregorian calendar.
///
/// Only used for conversions; fields are validated by [`Civil::to_unix_secs`].
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Civil {
    /// Year, e.g. 2024.
    pub year: i64,
    /// Month, 1..=12.
    pub month: i64,
    /// Day of the month, 1..=31 (checked against the month's length).
    pub day: i64,
    /// Hour, 0..=23.
    pub hour: i64,
    /// Minute, 0..=59.
    pub minute: i64,
    /// Second, 0..=59 (leap seconds are rejected, as Go does).
    pub second: i64,
}

impl Civil {
    /// Seconds since the Unix epoch for this civil time taken as UTC, or
    /// `None` if a field is out of range (month 13, April 31, hour 24, ...).
    pub fn to_unix_secs(self) -> Option<i64> {
        if !(1..=12).contains(&self.month)
            || self.day < 1
            || self.day > days_in_month(self.year, self.month)
            || !(0..24).contains(&self.hour)
            || !(0..60).contains(&self.minute)
            || !(0..60).contains(&self.second)
        {
            return None;
        }
        let days = days_from_civil(self.year, self.month, self.day);
        Some(days * 86_400 + self.hour * 3600 + self.minute * 60 + self.second)
    }

    /// The civil time (UTC) of `secs` seconds after the Unix epoch.
    pub fn from_unix_secs(secs: i64) -> Self {
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        Self {
            year,
            month,
            day,
            hour: rem / 3600,
            minute: rem % 3600 / 60,
            second: rem % 60,
        }
    }
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date. Works on 400-year
/// eras, which repeat exactly, with March as the first month so that the leap
/// day falls at the end of the shifted year.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y.rem_euclid(400);
    let shifted_month = (month + 9) % 12; // March = 0
    let day_of_year = (153 * shifted_month + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

impl fmt::Display for Timestamp {
    /// RFC 3339 in UTC with the fraction's trailing zeros removed (Go's
    /// `time.RFC3339Nano` layout): `2024-06-01T00:00:00Z`,
    /// `2024-06-01T00:00:00.5Z`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = i64::try_from(self.0.div_euclid(NANOS_PER_SEC)).unwrap_or(i64::MAX);
        let c = Civil::from_unix_secs(secs);
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            c.year, c.month, c.day, c.hour, c.minute, c.second
        )?;
        let nanos = self.subsec_nanos();
        if nanos != 0 {
            let mut frac = format!("{nanos:09}");
            while frac.ends_with('0') {
                frac.pop();
            }
            write!(f, ".{frac}")?;
        }
        f.write_str("Z")
    }
}

impl FromStr for Timestamp {
    type Err = TimestampError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse_rfc3339(s)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::parse_rfc3339(&text).map_err(serde::de::Error::custom)
    }
}

/// A string that is not an RFC 3339 timestamp.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[error("invalid RFC 3339 timestamp {input:?}: expected YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM)")]
pub struct TimestampError {
    /// The text that failed to parse.
    pub input: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_duration_strings() {
        let cases: &[(i64, &str)] = &[
            (0, "0s"),
            (1, "1ns"),
            (1_100, "1.1µs"),
            (2_200_000, "2.2ms"),
            (300_000_000, "300ms"),
            (1_500_000_000, "1.5s"),
            (3_600_000_000_000, "1h0m0s"),
            (4_200_000_000_000 + 500_000_000, "1h10m0.5s"),
            (-90_000_000_000, "-1m30s"),
            (259_380_500_000_000, "72h3m0.5s"),
            (i64::MIN, "-2562047h47m16.854775808s"),
            (i64::MAX, "2562047h47m16.854775807s"),
        ];
        for &(nanos, want) in cases {
            assert_eq!(Duration::from_nanos(nanos).to_string(), want, "{nanos}");
        }
    }

    #[test]
    fn rfc3339_round_trips() {
        for text in [
            "1970-01-01T00:00:00Z",
            "2024-02-29T23:59:59.123456789Z",
            "0001-01-01T00:00:00Z",
            "1969-12-31T23:59:59.5Z",
            "2262-04-11T23:47:16Z",
            "9999-12-31T23:59:59Z",
        ] {
            let t = Timestamp::parse_rfc3339(text).unwrap();
            assert_eq!(t.to_string(), text);
        }
    }

    #[test]
    fn rfc3339_offsets_and_errors() {
        let t = Timestamp::parse_rfc3339("2024-01-01T02:00:00+02:00").unwrap();
        assert_eq!(t, Timestamp::parse_rfc3339("2024-01-01T00:00:00Z").unwrap());
        assert_eq!(t.unix_secs(), 1_704_067_200);
        for bad in [
            "2024-01-01",
            "2024-13-01T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2024-01-01T24:00:00Z",
            "2024-01-01T00:00:00",
            "2024-01-01T00:00:00.Z",
            "2024-01-01T00:00:00.1234567890Z",
            "2024-01-01T00:00:00+0200",
        ] {
            assert!(Timestamp::parse_rfc3339(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sub_saturates_like_go() {
        let far = Timestamp::parse_rfc3339("9999-01-01T00:00:00Z").unwrap();
        assert_eq!(
            Timestamp::UNIX_EPOCH.saturating_duration_since(far),
            Duration::MIN
        );
        assert_eq!(
            far.saturating_duration_since(Timestamp::UNIX_EPOCH),
            Duration::MAX
        );
    }

    proptest::proptest! {
        #[test]
        fn civil_round_trip(secs in -100_000_000_000i64..100_000_000_000) {
            let c = Civil::from_unix_secs(secs);
            proptest::prop_assert_eq!(c.to_unix_secs(), Some(secs));
        }
    }
}
