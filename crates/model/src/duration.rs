//! Go's `time.ParseDuration`.
//!
//! Upstream: golang/go `src/time/format.go` (`ParseDuration`, `leadingInt`,
//! `leadingFraction`, `unitMap`, `quote`).

use crate::Duration;
use crate::gostr::time_quote;

/// Parses a duration exactly as Go's `time.ParseDuration` does.
///
/// A duration is an optionally signed sequence of decimal numbers, each with
/// an optional fraction and a unit: `ns`, `us`, `µs` (U+00B5), `μs`
/// (U+03BC), `ms`, `s`, `m` or `h`. There is no day unit. `"0"`, `"+0"`
/// and `"-0"` are the only unit-less values. Repeated and out-of-order
/// units add up (`"1h1h"` is two hours).
///
/// Fractions are converted as Go does, through `float64` and truncation, so
/// `"1.5h"` is exactly 90 minutes and `"0.1ns"` is zero. Values beyond
/// `i64` nanoseconds (about 292 years) are rejected, except that
/// `"-9223372036854775808ns"` is accepted. Go's arithmetic is reproduced
/// including its wrap-around: `"9223372036854775808ns9223372036854775808ns"`
/// is zero in Go, and here.
///
/// # Errors
///
/// Go's texts: `time: invalid duration "<text>"`,
/// `time: missing unit in duration "<text>"` and
/// `time: unknown unit "<unit>" in duration "<text>"`.
///
/// # Examples
///
/// ```
/// use reclaim_model::{parse_go_duration, Duration};
///
/// assert_eq!(parse_go_duration("1h30m")?, Duration::from_secs(5400));
/// assert_eq!(parse_go_duration(".5h")?, Duration::from_secs(1800));
/// assert_eq!(
///     parse_go_duration("7d").unwrap_err().to_string(),
///     r#"time: unknown unit "d" in duration "7d""#
/// );
/// # Ok::<(), reclaim_model::DurationError>(())
/// ```
pub fn parse_go_duration(text: &str) -> Result<Duration, DurationError> {
    const LIMIT: u64 = 1 << 63;
    let invalid = || DurationError::Invalid {
        input: text.to_owned(),
    };
    let mut s = text.as_bytes();
    let mut negative = false;
    if let Some(&c @ (b'-' | b'+')) = s.first() {
        negative = c == b'-';
        s = &s[1..];
    }
    if s == b"0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    let mut total: u64 = 0;
    while !s.is_empty() {
        if !(s[0] == b'.' || s[0].is_ascii_digit()) {
            return Err(invalid());
        }
        let before = s.len();
        let (mut value, rest) = leading_int(s).ok_or_else(invalid)?;
        s = rest;
        let had_integer = before != s.len();
        let mut fraction = 0u64;
        let mut scale = 1.0f64;
        let mut had_fraction = false;
        if s.first() == Some(&b'.') {
            s = &s[1..];
            let before = s.len();
            let (f, sc, rest) = leading_fraction(s);
            fraction = f;
            scale = sc;
            s = rest;
            had_fraction = before != s.len();
        }
        if !had_integer && !had_fraction {
            return Err(invalid());
        }
        let unit_len = s
            .iter()
            .position(|&c| c == b'.' || c.is_ascii_digit())
            .unwrap_or(s.len());
        if unit_len == 0 {
            return Err(DurationError::MissingUnit {
                input: text.to_owned(),
            });
        }
        let (unit_bytes, rest) = s.split_at(unit_len);
        s = rest;
        let unit = unit_nanos(unit_bytes).ok_or_else(|| DurationError::UnknownUnit {
            // The unit ends at an ASCII byte or at the end, so it is whole
            // characters.
            unit: String::from_utf8_lossy(unit_bytes).into_owned(),
            input: text.to_owned(),
        })?;
        if value > LIMIT / unit {
            return Err(invalid());
        }
        value *= unit;
        if fraction > 0 {
            // Go computes this in float64 to stay exact for fractions of
            // hours; the product is below one unit, so it fits.
            value += (fraction as f64 * (unit as f64 / scale)) as u64;
            if value > LIMIT {
                return Err(invalid());
            }
        }
        // Go adds in uint64 and only then checks, so a sum of two 2^63
        // values wraps to zero and passes.
        total = total.wrapping_add(value);
        if total > LIMIT {
            return Err(invalid());
        }
    }
    if negative {
        // total <= 2^63, so the conversion wraps only for 2^63 -> i64::MIN,
        // whose negation is itself, as in Go.
        return Ok(Duration::from_nanos((total as i64).wrapping_neg()));
    }
    if total > LIMIT - 1 {
        return Err(invalid());
    }
    Ok(Duration::from_nanos(total as i64))
}

/// A string Go's `time.ParseDuration` rejects. [`std::fmt::Display`] prints
/// Go's exact error text, quoting the input as Go's `time` package does
/// (non-ASCII bytes as `\xHH`).
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum DurationError {
    /// Malformed or out of range: `time: invalid duration "<text>"`.
    #[error("time: invalid duration {}", time_quote(input))]
    Invalid {
        /// The whole text.
        input: String,
    },
    /// A number without a unit: `time: missing unit in duration "<text>"`.
    #[error("time: missing unit in duration {}", time_quote(input))]
    MissingUnit {
        /// The whole text.
        input: String,
    },
    /// A unit Go does not know (`d`, `w`, `sec`, `h `, ...):
    /// `time: unknown unit "<unit>" in duration "<text>"`.
    #[error(
        "time: unknown unit {} in duration {}",
        time_quote(unit),
        time_quote(input)
    )]
    UnknownUnit {
        /// The unit as written.
        unit: String,
        /// The whole text.
        input: String,
    },
}

fn unit_nanos(unit: &[u8]) -> Option<u64> {
    Some(match unit {
        b"ns" => 1,
        b"us" | b"\xc2\xb5s" | b"\xce\xbcs" => 1_000,
        b"ms" => 1_000_000,
        b"s" => 1_000_000_000,
        b"m" => 60_000_000_000,
        b"h" => 3_600_000_000_000,
        _ => return None,
    })
}

/// Go's `leadingInt`: the leading decimal digits, or `None` on overflow
/// past 2^63.
fn leading_int(s: &[u8]) -> Option<(u64, &[u8])> {
    const LIMIT: u64 = 1 << 63;
    let mut x: u64 = 0;
    let mut i = 0;
    while i < s.len() && s[i].is_ascii_digit() {
        if x > LIMIT / 10 {
            return None;
        }
        x = x * 10 + u64::from(s[i] - b'0');
        if x > LIMIT {
            return None;
        }
        i += 1;
    }
    Some((x, &s[i..]))
}

/// Go's `leadingFraction`: the leading digits as an integer and a float
/// scale; precision stops accumulating, without error, once it would
/// overflow.
fn leading_fraction(s: &[u8]) -> (u64, f64, &[u8]) {
    let mut x: u64 = 0;
    let mut scale = 1.0f64;
    let mut overflow = false;
    let mut i = 0;
    while i < s.len() && s[i].is_ascii_digit() {
        if !overflow {
            if x > (i64::MAX as u64) / 10 {
                overflow = true;
            } else {
                let y = x * 10 + u64::from(s[i] - b'0');
                if y > 1 << 63 {
                    overflow = true;
                } else {
                    x = y;
                    scale *= 10.0;
                }
            }
        }
        i += 1;
    }
    (x, scale, &s[i..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(text: &str) -> i64 {
        parse_go_duration(text)
            .unwrap_or_else(|e| panic!("{text:?}: {e}"))
            .as_nanos()
    }

    fn e(text: &str) -> String {
        match parse_go_duration(text) {
            Ok(v) => panic!("{text:?} parsed as {v}"),
            Err(e) => e.to_string(),
        }
    }

    const S: i64 = 1_000_000_000;
    const H: i64 = 3600 * S;

    #[test]
    fn go_forms() {
        // Cases from Go's parseDurationTests.
        assert_eq!(d("0"), 0);
        assert_eq!(d("+0"), 0);
        assert_eq!(d("-0"), 0);
        assert_eq!(d("5s"), 5 * S);
        assert_eq!(d("30s"), 30 * S);
        assert_eq!(d("1478s"), 1478 * S);
        assert_eq!(d("-5s"), -5 * S);
        assert_eq!(d("+5s"), 5 * S);
        assert_eq!(d("-0s"), 0);
        assert_eq!(d("+0s"), 0);
        assert_eq!(d("5.0s"), 5 * S);
        assert_eq!(d("5.6s"), 5 * S + 600_000_000);
        assert_eq!(d("5.s"), 5 * S);
        assert_eq!(d(".5s"), S / 2);
        assert_eq!(d("1.0s"), S);
        assert_eq!(d("1.00s"), S);
        assert_eq!(d("1.004s"), S + 4_000_000);
        assert_eq!(d("1.0040s"), S + 4_000_000);
        assert_eq!(d("100.00100s"), 100 * S + 1_000_000);
        assert_eq!(d("10ns"), 10);
        assert_eq!(d("11us"), 11_000);
        assert_eq!(d("12µs"), 12_000);
        assert_eq!(d("12μs"), 12_000);
        assert_eq!(d("13ms"), 13_000_000);
        assert_eq!(d("14s"), 14 * S);
        assert_eq!(d("15m"), 15 * 60 * S);
        assert_eq!(d("16h"), 16 * H);
        assert_eq!(d("3h30m"), 3 * H + 30 * 60 * S);
        assert_eq!(d("10.5s4m"), 4 * 60 * S + 10 * S + S / 2);
        assert_eq!(d("-2m3.4s"), -(2 * 60 * S + 3 * S + 400_000_000));
        assert_eq!(
            d("1h2m3s4ms5us6ns"),
            H + 2 * 60 * S + 3 * S + 4_000_000 + 5_000 + 6
        );
        assert_eq!(
            d("39h9m14.425s"),
            39 * H + 9 * 60 * S + 14 * S + 425_000_000
        );
        assert_eq!(d("52763797000ns"), 52_763_797_000);
        assert_eq!(d("0.3333333333333333333h"), 20 * 60 * S);
        assert_eq!(d("9007199254740993ns"), (1 << 53) + 1);
        assert_eq!(d("9223372036854775807ns"), i64::MAX);
        assert_eq!(d("9223372036854775.807us"), i64::MAX);
        assert_eq!(d("9223372036s854ms775us807ns"), i64::MAX);
        assert_eq!(d("-9223372036854775808ns"), i64::MIN);
        assert_eq!(d("-9223372036854775.808us"), i64::MIN);
        assert_eq!(d("-9223372036s854ms775us808ns"), i64::MIN);
        assert_eq!(d("-2562047h47m16.854775808s"), i64::MIN);
        assert_eq!(d("0.100000000000000000000h"), 6 * 60 * S);
        assert_eq!(
            d("0.830103483285477580700h"),
            49 * 60 * S + 48 * S + 372_539_827
        );
        assert_eq!(d("168h"), 168 * H);
        assert_eq!(d("1.5h"), 90 * 60 * S);
        assert_eq!(d(".5h"), H / 2);
        assert_eq!(d("-1h"), -H);
        assert_eq!(d("300ms"), 300_000_000);
        assert_eq!(d("1h1h"), 2 * H);
        assert_eq!(d("1m1h"), H + 60 * S);
        assert_eq!(d("0.1ns"), 0);
        // Go's uint64 sum wraps before its overflow check.
        assert_eq!(d("9223372036854775808ns9223372036854775808ns"), 0);
    }

    #[test]
    fn go_rejections() {
        assert_eq!(e(""), r#"time: invalid duration """#);
        assert_eq!(e("3"), r#"time: missing unit in duration "3""#);
        assert_eq!(e("1"), r#"time: missing unit in duration "1""#);
        assert_eq!(e("1."), r#"time: missing unit in duration "1.""#);
        assert_eq!(e("00"), r#"time: missing unit in duration "00""#);
        assert_eq!(e("-"), r#"time: invalid duration "-""#);
        assert_eq!(e("s"), r#"time: invalid duration "s""#);
        assert_eq!(e("."), r#"time: invalid duration ".""#);
        assert_eq!(e("-."), r#"time: invalid duration "-.""#);
        assert_eq!(e(".s"), r#"time: invalid duration ".s""#);
        assert_eq!(e("+.s"), r#"time: invalid duration "+.s""#);
        assert_eq!(e("1d"), r#"time: unknown unit "d" in duration "1d""#);
        assert_eq!(e("7d"), r#"time: unknown unit "d" in duration "7d""#);
        assert_eq!(
            e("1h 30m"),
            r#"time: unknown unit "h " in duration "1h 30m""#
        );
        assert_eq!(e(" 1h"), r#"time: invalid duration " 1h""#);
        assert_eq!(e("1hx"), r#"time: unknown unit "hx" in duration "1hx""#);
        assert_eq!(e("3000000h"), r#"time: invalid duration "3000000h""#);
        assert_eq!(
            e("9223372036854775808ns"),
            r#"time: invalid duration "9223372036854775808ns""#
        );
        assert_eq!(
            e("9223372036854775.808us"),
            r#"time: invalid duration "9223372036854775.808us""#
        );
        assert_eq!(
            e("9223372036854ms775us808ns"),
            r#"time: invalid duration "9223372036854ms775us808ns""#
        );
        assert_eq!(
            e("-9223372036854775809ns"),
            r#"time: invalid duration "-9223372036854775809ns""#
        );
        assert_eq!(
            e("99999999999999999999s"),
            r#"time: invalid duration "99999999999999999999s""#
        );
        // Non-ASCII bytes are quoted the way Go's time package does.
        assert_eq!(
            e("1µx"),
            r#"time: unknown unit "\xc2\xb5x" in duration "1\xc2\xb5x""#
        );
        assert_eq!(e("1\"s"), r#"time: unknown unit "\"s" in duration "1\"s""#);
    }

    proptest::proptest! {
        #[test]
        fn never_panics(text in ".{0,32}") {
            let _ = parse_go_duration(&text);
        }

        #[test]
        fn never_panics_on_duration_like_text(text in "[-+]?[0-9.]{0,22}(ns|us|µs|ms|s|m|h|d)?([0-9.]{0,22}(ns|us|ms|s|m|h))*") {
            let _ = parse_go_duration(&text);
        }

        #[test]
        fn display_round_trips(nanos in proptest::num::i64::ANY) {
            let duration = Duration::from_nanos(nanos);
            proptest::prop_assert_eq!(parse_go_duration(&duration.to_string()), Ok(duration));
        }
    }
}
