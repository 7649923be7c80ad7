//! dockerd's `until` / `unused-for` filter values: moby's `timestamp.Parse`.
//!
//! Upstream: moby/moby `daemon/internal/timestamp/timestamp.go` (`Parse`,
//! `parseTimestamp`) and the parts of golang/go `src/time/format.go`
//! (`parse`, `getnum`, `parseNanoseconds`, `ParseError`) that its layouts
//! exercise. See docs/daemon-json.md for the upstream versions compared.

use std::fmt;

use crate::gostr::{go_quote, go_quote_rune, time_quote};
use crate::{Civil, Duration, Timestamp, parse_go_duration};

/// Parses an `until` / `unused-for` value relative to `now`, as moby's
/// `timestamp.Parse(value, now)` does on a daemon whose local time zone is
/// UTC. See [`parse_until_with_offset`] for other zones.
///
/// # Examples
///
/// ```
/// use reclaim_model::{parse_until, Timestamp};
///
/// let now = Timestamp::parse_rfc3339("2024-01-31T00:00:00Z")?;
/// assert_eq!(parse_until("24h", now)?.to_string(), "2024-01-30T00:00:00Z");
/// assert_eq!(parse_until("2024-01-01", now)?.to_string(), "2024-01-01T00:00:00Z");
/// assert_eq!(parse_until("0", now)?, Timestamp::UNIX_EPOCH);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn parse_until(value: &str, now: Timestamp) -> Result<Timestamp, UntilError> {
    parse_until_with_offset(value, now, 0)
}

/// Parses an `until` / `unused-for` value as moby's `timestamp.Parse`, for a
/// daemon whose local zone is `utc_offset_secs` seconds east of UTC at
/// `now` (moby pins the zone offset in effect at `now`, it does not look up
/// daylight saving time for the parsed date).
///
/// The forms, tried in this order:
///
/// 1. Blank after trimming white space: `failed to parse value as time or
///    duration: value is empty`.
/// 2. A Go duration ([`parse_go_duration`]) other than exactly `"0"`: the
///    result is `now - duration` (so `"-0"`, `"0s"` give `now`).
/// 3. An RFC 3339-like timestamp: a date `YYYY-MM-DD`, optionally
///    `THH`, `THH:MM` or `THH:MM:SS`, an optional fraction, and a zone `Z`
///    or `±HH:MM`. Values that contain no `z`, `Z` or `+` and not exactly
///    three `-` are read in the local zone. The layout is chosen from the
///    characters present, as moby does; Go's `time.Parse` errors are
///    returned as is when the value contains a `-`.
/// 4. Otherwise, Unix seconds with an optional `.fraction` (at most 20
///    fraction digits, truncated to nanoseconds). `"0"` is the epoch.
///
/// All error texts are upstream's, e.g. for `7d`:
/// `failed to parse value as time or duration: invalid seconds "7d": invalid syntax`.
pub fn parse_until_with_offset(
    value: &str,
    now: Timestamp,
    utc_offset_secs: i32,
) -> Result<Timestamp, UntilError> {
    if value.trim().is_empty() {
        return Err(UntilError::Empty);
    }
    if value != "0"
        && let Ok(d) = parse_go_duration(value)
    {
        // Go negates the duration with wrap-around: -MIN stays MIN.
        return Ok(now.add(Duration::from_nanos(d.as_nanos().wrapping_neg())));
    }
    let in_local = !value.contains(['z', 'Z', '+']) && value.matches('-').count() != 3;
    let layout = choose_layout(value, in_local);
    let default_offset = if in_local { utc_offset_secs } else { 0 };
    match go_time_parse(layout, value, default_offset) {
        Ok(t) => Ok(t),
        Err(e) if value.contains('-') => Err(UntilError::Time(Box::new(e))),
        Err(_) => parse_unix(value),
    }
}

/// A value dockerd's `until` / `unused-for` filter rejects.
/// [`fmt::Display`] prints moby's exact error text.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum UntilError {
    /// Blank value: `failed to parse value as time or duration: value is
    /// empty`.
    #[error("failed to parse value as time or duration: value is empty")]
    Empty,
    /// A value with a `-` that Go's `time.Parse` rejected; the error is Go's
    /// `parsing time ...` text, unwrapped.
    #[error(transparent)]
    Time(Box<GoTimeError>),
    /// Not a number of seconds:
    /// `failed to parse value as time or duration: invalid seconds "<s>": invalid syntax`
    /// (or `value out of range`).
    #[error(
        "failed to parse value as time or duration: invalid seconds {}: {}",
        go_quote(seconds),
        if *out_of_range { "value out of range" } else { "invalid syntax" }
    )]
    Seconds {
        /// The text before the first `.`.
        seconds: String,
        /// The number overflows `i64` (instead of being malformed).
        out_of_range: bool,
    },
    /// More than 20 fraction digits.
    #[error(
        "failed to parse value as time or duration: invalid nanoseconds: length {length} exceeds maximum 20"
    )]
    FractionTooLong {
        /// Number of bytes after the first `.`.
        length: usize,
    },
    /// A fraction byte that is not a digit.
    #[error(
        "failed to parse value as time or duration: invalid nanoseconds: invalid character {} at position {position}",
        go_quote_rune(char::from(*byte))
    )]
    FractionCharacter {
        /// The offending byte.
        byte: u8,
        /// Its byte index within the fraction.
        position: usize,
    },
}

/// An error of Go's `time.Parse`, printed exactly as Go prints it:
/// `parsing time "<value>" as "<layout>": cannot parse "<rest>" as "<element>"`,
/// or `parsing time "<value>": <reason>` (`month out of range`,
/// `day out of range`, `extra text: "<rest>"`, ...).
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct GoTimeError {
    /// The Go layout that was tried (e.g. `2006-01-02T15:04:05Z07:00`).
    pub layout: &'static str,
    /// The value that was parsed.
    pub value: String,
    detail: TimeErrorDetail,
}

#[derive(Clone, Debug, Eq, PartialEq)]
enum TimeErrorDetail {
    CannotParse {
        value_elem: String,
        layout_elem: &'static str,
    },
    Message(String),
}

impl fmt::Display for GoTimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.detail {
            TimeErrorDetail::CannotParse {
                value_elem,
                layout_elem,
            } => write!(
                f,
                "parsing time {} as {}: cannot parse {} as {}",
                time_quote(&self.value),
                time_quote(self.layout),
                time_quote(value_elem),
                time_quote(layout_elem)
            ),
            TimeErrorDetail::Message(message) => {
                write!(f, "parsing time {}{message}", time_quote(&self.value))
            }
        }
    }
}

impl std::error::Error for GoTimeError {}

/// moby's choice of Go layout for a value that is not a duration.
fn choose_layout(value: &str, in_local: bool) -> &'static Layout {
    if value.contains('.') {
        return if in_local {
            &RFC3339_NANO_LOCAL
        } else {
            &RFC3339_NANO
        };
    }
    if value.contains('T') {
        let mut colons = value.matches(':').count();
        // A numeric zone offset carries one colon of its own.
        if !in_local && !value.contains(['z', 'Z']) && colons > 0 {
            colons -= 1;
        }
        return match (in_local, colons) {
            (true, 0) => &HOUR_LOCAL,
            (true, 1) => &MINUTE_LOCAL,
            (true, _) => &RFC3339_LOCAL,
            (false, 0) => &HOUR_ZONE,
            (false, 1) => &MINUTE_ZONE,
            (false, _) => &RFC3339,
        };
    }
    if in_local { &DATE_LOCAL } else { &DATE_ZONE }
}

/// moby's `parseTimestamp`: Unix seconds with an optional fraction.
fn parse_unix(value: &str) -> Result<Timestamp, UntilError> {
    let (seconds_text, fraction) = match value.split_once('.') {
        Some((s, n)) => (s, Some(n)),
        None => (value, None),
    };
    let seconds = go_parse_i64(seconds_text).map_err(|out_of_range| UntilError::Seconds {
        seconds: seconds_text.to_owned(),
        out_of_range,
    })?;
    let fraction = match fraction {
        None | Some("" | "0" | "000000000") => return Ok(Timestamp::from_unix(seconds, 0)),
        Some(n) => n,
    };
    if fraction.len() > 20 {
        return Err(UntilError::FractionTooLong {
            length: fraction.len(),
        });
    }
    if let Some((position, &byte)) = fraction
        .as_bytes()
        .iter()
        .enumerate()
        .find(|(_, b)| !b.is_ascii_digit())
    {
        return Err(UntilError::FractionCharacter { byte, position });
    }
    let nanos = fraction
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(9)
        .fold(0u32, |acc, b| acc * 10 + u32::from(b - b'0'));
    Ok(Timestamp::from_unix(seconds, nanos))
}

/// Go's `strconv.ParseInt(s, 10, 64)`: `Err(false)` for a syntax error,
/// `Err(true)` for out of range. As in Go, whichever problem comes first
/// while scanning wins.
fn go_parse_i64(s: &str) -> Result<i64, bool> {
    let (negative, digits) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() {
        return Err(false);
    }
    let mut n: u64 = 0;
    for b in digits.bytes() {
        if !b.is_ascii_digit() {
            return Err(false);
        }
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(b - b'0')))
            .ok_or(true)?;
    }
    if negative {
        if n > 1 << 63 {
            return Err(true);
        }
        Ok((n as i64).wrapping_neg())
    } else {
        i64::try_from(n).map_err(|_| true)
    }
}

/// One element of a Go layout.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
enum Std {
    /// `2006`
    LongYear,
    /// `01`
    ZeroMonth,
    /// `02`
    ZeroDay,
    /// `15`
    Hour,
    /// `04`
    ZeroMinute,
    /// `05`
    ZeroSecond,
    /// `.999999999`
    FracSecond9,
    /// `Z07:00`
    IsoColonTz,
}

impl Std {
    fn text(self) -> &'static str {
        match self {
            Std::LongYear => "2006",
            Std::ZeroMonth => "01",
            Std::ZeroDay => "02",
            Std::Hour => "15",
            Std::ZeroMinute => "04",
            Std::ZeroSecond => "05",
            Std::FracSecond9 => ".999999999",
            Std::IsoColonTz => "Z07:00",
        }
    }
}

/// A Go layout as the literal text before each element.
struct Layout {
    text: &'static str,
    chunks: &'static [(&'static str, Std)],
}

const DATE: [(&str, Std); 3] = [
    ("", Std::LongYear),
    ("-", Std::ZeroMonth),
    ("-", Std::ZeroDay),
];

macro_rules! layout {
    ($text:literal, $($extra:expr),*) => {
        Layout {
            text: $text,
            chunks: &[DATE[0], DATE[1], DATE[2], $($extra),*],
        }
    };
}

static RFC3339_NANO_LOCAL: Layout = layout!(
    "2006-01-02T15:04:05.999999999",
    ("T", Std::Hour),
    (":", Std::ZeroMinute),
    (":", Std::ZeroSecond),
    ("", Std::FracSecond9)
);
static RFC3339_NANO: Layout = layout!(
    "2006-01-02T15:04:05.999999999Z07:00",
    ("T", Std::Hour),
    (":", Std::ZeroMinute),
    (":", Std::ZeroSecond),
    ("", Std::FracSecond9),
    ("", Std::IsoColonTz)
);
static HOUR_LOCAL: Layout = layout!("2006-01-02T15", ("T", Std::Hour));
static MINUTE_LOCAL: Layout = layout!("2006-01-02T15:04", ("T", Std::Hour), (":", Std::ZeroMinute));
static RFC3339_LOCAL: Layout = layout!(
    "2006-01-02T15:04:05",
    ("T", Std::Hour),
    (":", Std::ZeroMinute),
    (":", Std::ZeroSecond)
);
static HOUR_ZONE: Layout = layout!(
    "2006-01-02T15Z07:00",
    ("T", Std::Hour),
    ("", Std::IsoColonTz)
);
static MINUTE_ZONE: Layout = layout!(
    "2006-01-02T15:04Z07:00",
    ("T", Std::Hour),
    (":", Std::ZeroMinute),
    ("", Std::IsoColonTz)
);
static RFC3339: Layout = layout!(
    "2006-01-02T15:04:05Z07:00",
    ("T", Std::Hour),
    (":", Std::ZeroMinute),
    (":", Std::ZeroSecond),
    ("", Std::IsoColonTz)
);
static DATE_LOCAL: Layout = Layout {
    text: "2006-01-02",
    chunks: &DATE,
};
static DATE_ZONE: Layout = layout!("2006-01-02Z07:00", ("", Std::IsoColonTz));

/// Go's `getnum`: one or two leading digits (exactly two if `fixed`).
fn getnum(s: &str, fixed: bool) -> Option<(i64, &str)> {
    let b = s.as_bytes();
    let digit = |i: usize| {
        b.get(i)
            .filter(|c| c.is_ascii_digit())
            .map(|c| i64::from(c - b'0'))
    };
    let first = digit(0)?;
    match digit(1) {
        Some(second) => Some((first * 10 + second, &s[2..])),
        None if fixed => None,
        None => Some((first, &s[1..])),
    }
}

/// Go's `time.Parse` / `time.ParseInLocation` restricted to the elements of
/// moby's layouts. Values without a zone are read at `default_offset`
/// seconds east of UTC.
fn go_time_parse(
    layout: &'static Layout,
    value: &str,
    default_offset: i32,
) -> Result<Timestamp, GoTimeError> {
    let fail = |detail| GoTimeError {
        layout: layout.text,
        value: value.to_owned(),
        detail,
    };
    let cannot = |rest: &str, elem: &'static str| {
        fail(TimeErrorDetail::CannotParse {
            value_elem: rest.to_owned(),
            layout_elem: elem,
        })
    };
    let message = |m: String| fail(TimeErrorDetail::Message(m));

    let (mut year, mut month, mut day) = (0i64, -1i64, -1i64);
    let (mut hour, mut minute, mut second, mut nanos) = (0i64, 0i64, 0i64, 0u32);
    let mut zone: Option<i64> = None;
    let mut rest = value;
    for (index, &(prefix, std)) in layout.chunks.iter().enumerate() {
        // Literal prefix (Go's `skip`; these layouts have no spaces).
        match rest.strip_prefix(prefix) {
            Some(r) => rest = r,
            None => return Err(cannot(rest, prefix)),
        }
        let hold = rest;
        let mut range_error: Option<&str> = None;
        let mut bad = false;
        match std {
            Std::LongYear => {
                let b = rest.as_bytes();
                if b.len() < 4 || !b[0].is_ascii_digit() {
                    bad = true;
                } else {
                    // The first byte is a digit, so four bytes are ASCII
                    // only if they are all digits; Go's atoi fails otherwise.
                    match rest
                        .get(..4)
                        .filter(|p| p.bytes().all(|c| c.is_ascii_digit()))
                    {
                        Some(p) => {
                            year = p.parse().unwrap_or(0);
                            rest = &rest[4..];
                        }
                        None => bad = true,
                    }
                }
            }
            Std::ZeroMonth => match getnum(rest, true) {
                Some((m, r)) => {
                    month = m;
                    rest = r;
                    if !(1..=12).contains(&m) {
                        range_error = Some("month");
                    }
                }
                None => bad = true,
            },
            Std::ZeroDay => match getnum(rest, true) {
                Some((d, r)) => {
                    day = d;
                    rest = r;
                }
                None => bad = true,
            },
            Std::Hour => match getnum(rest, false) {
                Some((h, r)) => {
                    hour = h;
                    rest = r;
                    if h >= 24 {
                        range_error = Some("hour");
                    }
                }
                None => bad = true,
            },
            Std::ZeroMinute => match getnum(rest, true) {
                Some((m, r)) => {
                    minute = m;
                    rest = r;
                    if m >= 60 {
                        range_error = Some("minute");
                    }
                }
                None => bad = true,
            },
            Std::ZeroSecond => match getnum(rest, true) {
                Some((s, r)) => {
                    second = s;
                    rest = r;
                    if s >= 60 {
                        range_error = Some("second");
                    } else {
                        let b = rest.as_bytes();
                        let next_is_fraction = layout
                            .chunks
                            .get(index + 1)
                            .is_some_and(|&(_, next)| next == Std::FracSecond9);
                        if b.len() >= 2
                            && matches!(b[0], b'.' | b',')
                            && b[1].is_ascii_digit()
                            && !next_is_fraction
                        {
                            // A fraction the layout does not mention is
                            // still accepted after the seconds.
                            let n = 1 + b[1..].iter().take_while(|c| c.is_ascii_digit()).count();
                            nanos = fraction_nanos(&b[..n]);
                            rest = &rest[n..];
                        }
                    }
                }
                None => bad = true,
            },
            Std::FracSecond9 => {
                let b = rest.as_bytes();
                if b.len() >= 2 && matches!(b[0], b'.' | b',') && b[1].is_ascii_digit() {
                    let n = 1 + b[1..].iter().take_while(|c| c.is_ascii_digit()).count();
                    nanos = fraction_nanos(&b[..n]);
                    rest = &rest[n..];
                }
            }
            Std::IsoColonTz => {
                if let Some(r) = rest.strip_prefix('Z') {
                    rest = r;
                    zone = Some(0);
                } else {
                    let b = rest.as_bytes();
                    if b.len() < 6 || b[3] != b':' {
                        bad = true;
                    } else {
                        // As Go does: the minutes are read only if the hours
                        // were, a failed read counts as zero for the range
                        // checks, and a range error wins over a syntax error.
                        let hh = getnum2(&b[1..3]);
                        let mm = hh.and(getnum2(&b[4..6]));
                        let (h, m) = (hh.unwrap_or(0), mm.unwrap_or(0));
                        bad = mm.is_none();
                        if h > 24 {
                            range_error = Some("time zone offset hour");
                        }
                        if m > 60 {
                            range_error = Some("time zone offset minute");
                        }
                        let offset = (h * 60 + m) * 60;
                        match b[0] {
                            b'+' => zone = Some(offset),
                            b'-' => zone = Some(-offset),
                            _ => bad = true,
                        }
                        // Six valid bytes are ASCII; otherwise the element
                        // failed and the rest is not used again.
                        if let Some(r) = rest.get(6..) {
                            rest = r;
                        }
                    }
                }
            }
        }
        if let Some(what) = range_error {
            return Err(message(format!(": {what} out of range")));
        }
        if bad {
            return Err(cannot(hold, std.text()));
        }
    }
    if !rest.is_empty() {
        return Err(message(format!(": extra text: {}", time_quote(rest))));
    }
    let civil = Civil {
        year,
        month,
        day,
        hour,
        minute,
        second,
    };
    let secs = civil
        .to_unix_secs()
        .ok_or_else(|| message(": day out of range".to_owned()))?;
    let offset = zone.unwrap_or(i64::from(default_offset));
    Ok(Timestamp::from_unix(secs - offset, nanos))
}

/// Two ASCII digits (Go's `getnum(s, true)` on a two-byte slice).
fn getnum2(b: &[u8]) -> Option<i64> {
    match b {
        [a, c] if a.is_ascii_digit() && c.is_ascii_digit() => {
            Some(i64::from(a - b'0') * 10 + i64::from(c - b'0'))
        }
        _ => None,
    }
}

/// Go's `parseNanoseconds`: the digits after the separator, truncated to
/// nine and scaled to nanoseconds.
fn fraction_nanos(with_separator: &[u8]) -> u32 {
    with_separator[1..]
        .iter()
        .copied()
        .chain(std::iter::repeat(b'0'))
        .take(9)
        .fold(0u32, |acc, b| acc * 10 + u32::from(b - b'0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        Timestamp::parse_rfc3339("2024-01-31T00:00:00Z").unwrap()
    }

    fn at(text: &str) -> String {
        parse_until(text, now())
            .unwrap_or_else(|e| panic!("{text:?}: {e}"))
            .to_string()
    }

    fn err(text: &str) -> String {
        match parse_until(text, now()) {
            Ok(t) => panic!("{text:?} parsed as {t}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn durations_are_relative_to_now() {
        assert_eq!(at("24h"), "2024-01-30T00:00:00Z");
        assert_eq!(at("2200h"), "2023-10-31T08:00:00Z");
        assert_eq!(at("1h30m15s"), "2024-01-30T22:29:45Z");
        assert_eq!(at("-1h"), "2024-01-31T01:00:00Z");
        assert_eq!(at("1.5h"), "2024-01-30T22:30:00Z");
        // "0" is special-cased to the epoch; the other zero spellings are
        // durations.
        assert_eq!(at("0"), "1970-01-01T00:00:00Z");
        assert_eq!(at("-0"), "2024-01-31T00:00:00Z");
        assert_eq!(at("0s"), "2024-01-31T00:00:00Z");
    }

    #[test]
    fn rfc3339_like_forms() {
        assert_eq!(at("2024-01-01"), "2024-01-01T00:00:00Z");
        assert_eq!(at("2024-01-01T10"), "2024-01-01T10:00:00Z");
        assert_eq!(at("2024-01-01T10:30"), "2024-01-01T10:30:00Z");
        assert_eq!(at("2024-01-01T10:30:15"), "2024-01-01T10:30:15Z");
        assert_eq!(at("2024-01-01T10:30:15.5"), "2024-01-01T10:30:15.5Z");
        assert_eq!(at("2024-01-01T10:30:15,25"), "2024-01-01T10:30:15.25Z");
        assert_eq!(at("2024-01-01T10:30:15Z"), "2024-01-01T10:30:15Z");
        assert_eq!(
            at("2024-01-01T10:30:15.123456789Z"),
            "2024-01-01T10:30:15.123456789Z"
        );
        assert_eq!(
            at("2024-01-01T10:30:15.1234567891Z"),
            "2024-01-01T10:30:15.123456789Z"
        );
        assert_eq!(at("2024-01-01T10:30:15+02:00"), "2024-01-01T08:30:15Z");
        assert_eq!(at("2024-01-01T10:30:15-02:00"), "2024-01-01T12:30:15Z");
        assert_eq!(at("2024-01-01T10:30+02:00"), "2024-01-01T08:30:00Z");
        assert_eq!(at("2024-01-01T10Z"), "2024-01-01T10:00:00Z");
        assert_eq!(at("2024-01-01T1Z"), "2024-01-01T01:00:00Z");
        assert_eq!(at("2024-01-01Z"), "2024-01-01T00:00:00Z");
        assert_eq!(at("2024-01-01+01:00"), "2023-12-31T23:00:00Z");
        assert_eq!(at("2024-01-01T10:30:15.5+01:00"), "2024-01-01T09:30:15.5Z");
        // Go accepts zone offsets up to 24:60.
        assert_eq!(at("2024-01-01T10:00:00+24:00"), "2023-12-31T10:00:00Z");
        assert_eq!(at("0000-01-01"), "0000-01-01T00:00:00Z");
    }

    #[test]
    fn local_zone_offset() {
        let t = parse_until_with_offset("2024-01-01T10:00", now(), 3600).unwrap();
        assert_eq!(t.to_string(), "2024-01-01T09:00:00Z");
        let t = parse_until_with_offset("2024-01-01", now(), -5 * 3600).unwrap();
        assert_eq!(t.to_string(), "2024-01-01T05:00:00Z");
        // An explicit zone ignores the local one.
        let t = parse_until_with_offset("2024-01-01T10:00:00Z", now(), 3600).unwrap();
        assert_eq!(t.to_string(), "2024-01-01T10:00:00Z");
        // Unix seconds are zone-less.
        let t = parse_until_with_offset("1704067200", now(), 3600).unwrap();
        assert_eq!(t.to_string(), "2024-01-01T00:00:00Z");
    }

    #[test]
    fn unix_seconds() {
        assert_eq!(at("1704067200"), "2024-01-01T00:00:00Z");
        assert_eq!(at("1704067200.5"), "2024-01-01T00:00:00.5Z");
        assert_eq!(at("1704067200.000000001"), "2024-01-01T00:00:00.000000001Z");
        assert_eq!(
            at("1704067200.12345678901234567890"),
            "2024-01-01T00:00:00.123456789Z"
        );
        assert_eq!(at("1704067200."), "2024-01-01T00:00:00Z");
        assert_eq!(at("+5"), "1970-01-01T00:00:05Z");
        assert_eq!(at("00"), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn error_texts() {
        assert_eq!(
            err(""),
            "failed to parse value as time or duration: value is empty"
        );
        assert_eq!(
            err("  "),
            "failed to parse value as time or duration: value is empty"
        );
        assert_eq!(
            err("7d"),
            r#"failed to parse value as time or duration: invalid seconds "7d": invalid syntax"#
        );
        assert_eq!(
            err(" 24h"),
            r#"failed to parse value as time or duration: invalid seconds " 24h": invalid syntax"#
        );
        assert_eq!(
            err("99999999999999999999"),
            r#"failed to parse value as time or duration: invalid seconds "99999999999999999999": value out of range"#
        );
        assert_eq!(
            err("1.5e9"),
            "failed to parse value as time or duration: invalid nanoseconds: invalid character 'e' at position 1"
        );
        assert_eq!(
            err("1.2.3"),
            "failed to parse value as time or duration: invalid nanoseconds: invalid character '.' at position 1"
        );
        assert_eq!(
            err("1.123456789012345678901"),
            "failed to parse value as time or duration: invalid nanoseconds: length 21 exceeds maximum 20"
        );
        assert_eq!(
            err("2024-13-01"),
            r#"parsing time "2024-13-01": month out of range"#
        );
        assert_eq!(
            err("2023-02-29"),
            r#"parsing time "2023-02-29": day out of range"#
        );
        assert_eq!(
            err("2024-01-01T24"),
            r#"parsing time "2024-01-01T24": hour out of range"#
        );
        assert_eq!(
            err("2024-01-01T10:60"),
            r#"parsing time "2024-01-01T10:60": minute out of range"#
        );
        assert_eq!(
            err("2024-01-01T10:00:60"),
            r#"parsing time "2024-01-01T10:00:60": second out of range"#
        );
        assert_eq!(
            err("2024-1-01"),
            r#"parsing time "2024-1-01" as "2006-01-02": cannot parse "1-01" as "01""#
        );
        assert_eq!(
            err("2024-01/01"),
            r#"parsing time "2024-01/01" as "2006-01-02": cannot parse "/01" as "-""#
        );
        assert_eq!(
            err("2024/01/01"),
            r#"failed to parse value as time or duration: invalid seconds "2024/01/01": invalid syntax"#
        );
        assert_eq!(
            err("2024-01-01 10:00"),
            r#"parsing time "2024-01-01 10:00": extra text: " 10:00""#
        );
        assert_eq!(
            err("2024-01-01T10:00:00z"),
            r#"parsing time "2024-01-01T10:00:00z" as "2006-01-02T15:04:05Z07:00": cannot parse "z" as "Z07:00""#
        );
        assert_eq!(
            err("2024-01-01T10:00:00+25:00"),
            r#"parsing time "2024-01-01T10:00:00+25:00": time zone offset hour out of range"#
        );
        assert_eq!(
            err("2024-01-01T10:00:00+0100"),
            r#"parsing time "2024-01-01T10:00:00+0100" as "2006-01-02T15:04Z07:00": cannot parse ":00+0100" as "Z07:00""#
        );
        assert_eq!(
            err("2024-01-01.5"),
            r#"parsing time "2024-01-01.5" as "2006-01-02T15:04:05.999999999": cannot parse ".5" as "T""#
        );
        assert_eq!(
            err("20x4-01-01"),
            r#"parsing time "20x4-01-01" as "2006-01-02": cannot parse "20x4-01-01" as "2006""#
        );
        assert_eq!(
            err("2024-01-01T"),
            r#"parsing time "2024-01-01T" as "2006-01-02T15": cannot parse "" as "15""#
        );
        assert_eq!(
            err("2024-01-01-0"),
            r#"parsing time "2024-01-01-0" as "2006-01-02Z07:00": cannot parse "-0" as "Z07:00""#
        );
        assert_eq!(
            err("-5"),
            r#"parsing time "-5" as "2006-01-02": cannot parse "-5" as "2006""#
        );
        assert_eq!(
            err("2024-01-01T10:00:00é"),
            r#"parsing time "2024-01-01T10:00:00\xc3\xa9": extra text: "\xc3\xa9""#
        );
    }

    #[test]
    fn extreme_durations_wrap_like_go() {
        // -MIN wraps to MIN, so the instant is MIN nanoseconds after now.
        let t = parse_until("-2562047h47m16.854775808s", now()).unwrap();
        assert_eq!(t, now().add(Duration::MIN));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(text in ".{0,40}") {
            let _ = parse_until(&text, now());
        }

        #[test]
        fn never_panics_on_date_like_text(text in "[0-9]{0,5}[-T:.,zZ+ 0-9]{0,30}") {
            let _ = parse_until_with_offset(&text, now(), 7200);
        }

        #[test]
        fn rfc3339_round_trips(secs in -62_135_596_800i64..253_402_300_799, nanos in 0u32..1_000_000_000) {
            let t = Timestamp::from_unix(secs, nanos);
            proptest::prop_assert_eq!(parse_until(&t.to_string(), now()), Ok(t));
        }

        #[test]
        fn unix_seconds_round_trip(secs in 0i64..i64::MAX, nanos in 0u32..1_000_000_000) {
            let text = format!("{secs}.{nanos:09}");
            proptest::prop_assert_eq!(parse_until(&text, now()), Ok(Timestamp::from_unix(secs, nanos)));
        }
    }
}
