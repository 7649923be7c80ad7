//! go-units size parsing: `RAMInBytes` (binary) and `FromHumanSize`
//! (decimal), plus the two pieces of Go behaviour they rest on:
//! `strconv.ParseFloat` and the float-to-`int64` conversion.
//!
//! Upstream: docker/go-units `size.go` v0.5.0 (`parseSize`), golang/go
//! `src/strconv/atof.go` (`ParseFloat`, `readFloat`, `special`, `atofHex`)
//! and `src/strconv/atoi.go` (`underscoreOK`).

use std::fmt;

use crate::gostr::{go_quote, go_to_lower};

/// Parses a size the way go-units `RAMInBytes` does: every unit is a power of
/// 1024, so `"20GB"`, `"20gb"`, `"20G"` and `"20GiB"` are all 20 GiB.
///
/// The grammar, exactly as go-units v0.5.0:
///
/// - The last byte that is a digit, `.` or space splits the text. Without
///   one, the error is `invalid size: '<text>'`. If it is a space, the number
///   is the text before it and the suffix the text after it (so one space
///   may separate number and unit); otherwise the number ends with it.
/// - The number is parsed by Go's `strconv.ParseFloat` ([`parse_go_float`]):
///   signs, exponents, hexadecimal floats (`0x1p3`), digit-separating
///   underscores, and, before a space, `inf` / `nan` are all accepted.
///   Its error text is returned as is. Negative numbers are
///   `invalid size: '<text>'`.
/// - An empty suffix means bytes. A suffix longer than three bytes is
///   `invalid suffix: '<suffix>'`. Otherwise the suffix is lower-cased; `b`
///   alone means bytes; a first letter `k`, `m`, `g`, `t` or `p` selects
///   1024¹ to 1024⁵; a two-byte suffix must end in `b` and a three-byte one
///   in `ib`; anything else is `invalid suffix: '<lower-cased suffix>'`.
/// - The result is the number times the multiplier, converted to `i64` as Go
///   does on amd64 ([`float_to_int64_amd64`]): truncated toward zero, and
///   `i64::MIN` when the product is NaN or does not fit (`"1e300"`,
///   `"inf b"`, `"9e18KB"` all give `-9223372036854775808`).
///
/// # Examples
///
/// ```
/// use reclaim_model::ram_in_bytes;
///
/// assert_eq!(ram_in_bytes("1.5GB")?, 1_610_612_736);
/// assert_eq!(ram_in_bytes("10 KB")?, 10_240);
/// assert_eq!(
///     ram_in_bytes("20XB").unwrap_err().to_string(),
///     "invalid suffix: 'xb'"
/// );
/// # Ok::<(), reclaim_model::SizeError>(())
/// ```
pub fn ram_in_bytes(text: &str) -> Result<i64, SizeError> {
    parse_size(text, 1024)
}

/// Parses a size the way go-units `FromHumanSize` does: the grammar of
/// [`ram_in_bytes`], but every unit is a power of 1000 (`"20GB"` is
/// 20 000 000 000).
pub fn from_human_size(text: &str) -> Result<i64, SizeError> {
    parse_size(text, 1000)
}

/// A size that go-units would reject. [`fmt::Display`] prints the exact
/// upstream error text.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SizeError {
    /// No digit, `.` or space in the text, or a negative number:
    /// `invalid size: '<text>'`.
    #[error("invalid size: '{input}'")]
    InvalidSize {
        /// The whole text as given.
        input: String,
    },
    /// A unit go-units does not know: `invalid suffix: '<suffix>'`. The
    /// suffix is shown as written when it is longer than three bytes and
    /// lower-cased otherwise, as upstream does.
    #[error("invalid suffix: '{suffix}'")]
    InvalidSuffix {
        /// The suffix as upstream prints it.
        suffix: String,
    },
    /// The number part is not a Go float: `strconv.ParseFloat: ...`.
    #[error(transparent)]
    Number(#[from] GoFloatError),
}

/// Why Go's `strconv.ParseFloat` rejected a number. [`fmt::Display`] prints
/// Go's text, e.g. `strconv.ParseFloat: parsing "1.2.3": invalid syntax`.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct GoFloatError {
    /// The text that was parsed.
    pub input: String,
    /// The reason.
    pub kind: GoFloatErrorKind,
}

/// The two reasons Go's `strconv.ParseFloat` gives.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[non_exhaustive]
pub enum GoFloatErrorKind {
    /// The text is not a Go float literal (`invalid syntax`).
    Syntax,
    /// The value is beyond ±`f64::MAX` after rounding (`value out of range`).
    Range,
}

impl fmt::Display for GoFloatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let reason = match self.kind {
            GoFloatErrorKind::Syntax => "invalid syntax",
            GoFloatErrorKind::Range => "value out of range",
        };
        write!(
            f,
            "strconv.ParseFloat: parsing {}: {reason}",
            go_quote(&self.input)
        )
    }
}

impl std::error::Error for GoFloatError {}

/// Go's `strconv.ParseFloat(text, 64)`.
///
/// Accepted syntax: an optional sign; decimal digits with an optional `.`
/// and an optional `e`/`E` exponent; or `0x`/`0X`, hexadecimal digits with
/// an optional `.` and a mandatory `p`/`P` binary exponent; underscores
/// only between digits (or right after a base prefix); and the
/// case-insensitive special values `inf`, `infinity` (optionally signed) and
/// `nan`. No surrounding spaces.
///
/// The value is the correctly rounded `f64` (round half to even), as Go's
/// is. A value whose rounding overflows gives [`GoFloatErrorKind::Range`];
/// an underflow gives zero without error. Decimal exponents saturate the way
/// Go's do (their accumulation stops once they reach 10 000), which matters
/// only for absurd inputs.
pub fn parse_go_float(text: &str) -> Result<f64, GoFloatError> {
    let err = |kind| GoFloatError {
        input: text.to_owned(),
        kind,
    };
    if let Some((value, consumed)) = special_float(text.as_bytes()) {
        return if consumed == text.len() {
            Ok(value)
        } else {
            Err(err(GoFloatErrorKind::Syntax))
        };
    }
    let scan = scan_float(text.as_bytes()).ok_or_else(|| err(GoFloatErrorKind::Syntax))?;
    if scan.consumed != text.len() {
        return Err(err(GoFloatErrorKind::Syntax));
    }
    let value = match scan.mantissa {
        Mantissa::Decimal { digits, point } => {
            if digits.is_empty() {
                0.0
            } else {
                // Rust's parser is correctly rounded; feed it the digits and
                // the (already saturated) exponent in canonical form.
                let canonical = format!("0.{digits}e{point}");
                canonical
                    .parse::<f64>()
                    .map_err(|_| err(GoFloatErrorKind::Syntax))?
            }
        }
        Mantissa::Hex {
            bits,
            exponent,
            truncated,
        } => hex_to_f64(bits, exponent, truncated),
    };
    let value = if scan.negative { -value } else { value };
    if value.is_infinite() {
        return Err(err(GoFloatErrorKind::Range));
    }
    Ok(value)
}

/// Go's conversion `int64(f)` as compiled for amd64 (`CVTTSD2SQ`): the value
/// truncated toward zero, or `i64::MIN` when `f` is NaN or outside
/// `[-2⁶³, 2⁶³)`.
///
/// Go leaves out-of-range conversions implementation-defined; dockerd ships
/// mostly for amd64, so this is the behaviour reproduced. (On arm64 the
/// conversion saturates instead, and NaN gives 0.)
pub fn float_to_int64_amd64(f: f64) -> i64 {
    const LIMIT: f64 = 9_223_372_036_854_775_808.0; // 2^63, exactly representable
    if f.is_nan() || !(-LIMIT..LIMIT).contains(&f) {
        i64::MIN
    } else {
        // In range: `as` truncates toward zero, exactly like the hardware.
        f as i64
    }
}

fn parse_size(text: &str, unit: i64) -> Result<i64, SizeError> {
    let bytes = text.as_bytes();
    let invalid_size = || SizeError::InvalidSize {
        input: text.to_owned(),
    };
    let sep = bytes
        .iter()
        .rposition(|&b| b.is_ascii_digit() || b == b'.' || b == b' ')
        .ok_or_else(invalid_size)?;
    // The separator is ASCII, so both slices fall on character boundaries.
    let (number, suffix) = if bytes[sep] == b' ' {
        (&text[..sep], &text[sep + 1..])
    } else {
        (&text[..=sep], &text[sep + 1..])
    };
    let mut size = parse_go_float(number)?;
    // Upstream rejects negative sizes for backward compatibility; -0 passes.
    if size < 0.0 {
        return Err(invalid_size());
    }
    if suffix.is_empty() {
        return Ok(float_to_int64_amd64(size));
    }
    if suffix.len() > 3 {
        return Err(SizeError::InvalidSuffix {
            suffix: suffix.to_owned(),
        });
    }
    let lower = go_to_lower(suffix);
    let bad_suffix = || SizeError::InvalidSuffix {
        suffix: lower.clone(),
    };
    // Lower-casing can change the byte length; upstream tests the lengths
    // of the lower-cased text, and so does this code.
    let l = lower.as_bytes();
    if l[0] == b'b' {
        return if l.len() > 1 {
            Err(bad_suffix())
        } else {
            Ok(float_to_int64_amd64(size))
        };
    }
    let power = match l[0] {
        b'k' => 1,
        b'm' => 2,
        b'g' => 3,
        b't' => 4,
        b'p' => 5,
        _ => return Err(bad_suffix()),
    };
    size *= unit.pow(power) as f64;
    match l.len() {
        2 if l[1] != b'b' => Err(bad_suffix()),
        3 if &l[1..] != b"ib" => Err(bad_suffix()),
        _ => Ok(float_to_int64_amd64(size)),
    }
}

/// The special values of Go's `special`: an optionally signed `inf` or
/// `infinity`, or an unsigned `nan`, case-insensitively, as a prefix of the
/// input. Returns the value and the number of bytes it spans.
fn special_float(s: &[u8]) -> Option<(f64, usize)> {
    let (sign, rest, sign_len) = match s.first()? {
        b'+' => (1.0, &s[1..], 1),
        b'-' => (-1.0, &s[1..], 1),
        _ => (1.0, s, 0),
    };
    let common = |word: &[u8]| {
        rest.iter()
            .zip(word)
            .take_while(|(a, b)| a.to_ascii_lowercase() == **b)
            .count()
    };
    if matches!(rest.first(), Some(b'i' | b'I')) {
        let n = match common(b"infinity") {
            8 => 8,
            3..=7 => 3,
            _ => return None,
        };
        return Some((sign * f64::INFINITY, sign_len + n));
    }
    if sign_len == 0 && matches!(rest.first(), Some(b'n' | b'N')) && common(b"nan") == 3 {
        return Some((f64::NAN, 3));
    }
    None
}

/// What [`scan_float`] read.
struct FloatScan {
    negative: bool,
    mantissa: Mantissa,
    /// Bytes of the input that form the number.
    consumed: usize,
}

enum Mantissa {
    /// The value is `0.<digits> × 10^point`; `digits` has no leading zeros
    /// and is empty for zero.
    Decimal { digits: String, point: i64 },
    /// The value is `(bits + δ) × 2^exponent`, where `0 < δ < 1` if
    /// `truncated` (non-zero hexadecimal digits were dropped) and `δ = 0`
    /// otherwise.
    Hex {
        bits: u64,
        exponent: i64,
        truncated: bool,
    },
}

/// Go's `readFloat`: recognizes the longest valid prefix of `s`, or `None`
/// when there is none. Underscore placement is checked as `underscoreOK`
/// does.
fn scan_float(s: &[u8]) -> Option<FloatScan> {
    let mut i = 0;
    let mut negative = false;
    match s.first()? {
        b'+' => i += 1,
        b'-' => {
            negative = true;
            i += 1;
        }
        _ => {}
    }
    let hex = i + 2 < s.len() && s[i] == b'0' && s[i + 1].eq_ignore_ascii_case(&b'x');
    if hex {
        i += 2;
    }
    let mut underscores = false;
    let mut saw_dot = false;
    let mut saw_digits = false;
    // Significant digits seen, and the position of the point in them.
    let mut nd: i64 = 0;
    let mut dp: i64 = 0;
    let mut digits = String::new();
    let mut bits: u64 = 0;
    let mut hex_digits_kept = 0u32;
    let mut truncated = false;
    while i < s.len() {
        let c = s[i];
        let value = match c {
            b'_' => {
                underscores = true;
                i += 1;
                continue;
            }
            b'.' => {
                if saw_dot {
                    break;
                }
                saw_dot = true;
                dp = nd;
                i += 1;
                continue;
            }
            b'0'..=b'9' => u64::from(c - b'0'),
            b'a'..=b'f' | b'A'..=b'F' if hex => u64::from(c.to_ascii_lowercase() - b'a' + 10),
            _ => break,
        };
        saw_digits = true;
        i += 1;
        if value == 0 && nd == 0 {
            // Leading zeros only move the point.
            dp -= 1;
            continue;
        }
        nd += 1;
        if hex {
            if hex_digits_kept < 16 {
                bits = bits * 16 + value;
                hex_digits_kept += 1;
            } else if value != 0 {
                truncated = true;
            }
        } else {
            digits.push(char::from(c));
        }
    }
    if !saw_digits {
        return None;
    }
    if !saw_dot {
        dp = nd;
    }
    if hex {
        dp *= 4;
    }
    let exp_char = if hex { b'p' } else { b'e' };
    if i < s.len() && s[i].to_ascii_lowercase() == exp_char {
        i += 1;
        let sign = match s.get(i)? {
            b'+' => {
                i += 1;
                1
            }
            b'-' => {
                i += 1;
                -1
            }
            _ => 1,
        };
        if !s.get(i)?.is_ascii_digit() {
            return None;
        }
        let mut e: i64 = 0;
        while i < s.len() && (s[i].is_ascii_digit() || s[i] == b'_') {
            if s[i] == b'_' {
                underscores = true;
            } else if e < 10_000 {
                e = e * 10 + i64::from(s[i] - b'0');
            }
            i += 1;
        }
        dp += sign * e;
    } else if hex {
        // A hexadecimal mantissa requires a 'p' exponent.
        return None;
    }
    if underscores && !underscores_ok(&s[..i]) {
        return None;
    }
    let mantissa = if hex {
        Mantissa::Hex {
            bits,
            exponent: dp - 4 * i64::from(hex_digits_kept),
            truncated,
        }
    } else {
        Mantissa::Decimal { digits, point: dp }
    };
    Some(FloatScan {
        negative,
        mantissa,
        consumed: i,
    })
}

/// Go's `underscoreOK`: underscores may only separate digits, or follow a
/// base prefix.
fn underscores_ok(s: &[u8]) -> bool {
    #[derive(PartialEq)]
    enum Saw {
        Start,
        Digit,
        Underscore,
        Other,
    }
    let s = match s.first() {
        Some(b'+' | b'-') => &s[1..],
        _ => s,
    };
    let mut saw = Saw::Start;
    let mut i = 0;
    let mut hex = false;
    if s.len() >= 2 && s[0] == b'0' && matches!(s[1].to_ascii_lowercase(), b'b' | b'o' | b'x') {
        i = 2;
        saw = Saw::Digit;
        hex = s[1].eq_ignore_ascii_case(&b'x');
    }
    for &c in &s[i..] {
        if c.is_ascii_digit() || hex && c.is_ascii_hexdigit() {
            saw = Saw::Digit;
        } else if c == b'_' {
            if saw != Saw::Digit {
                return false;
            }
            saw = Saw::Underscore;
        } else {
            if saw == Saw::Underscore {
                return false;
            }
            saw = Saw::Other;
        }
    }
    saw != Saw::Underscore
}

/// Rounds `(bits + δ) × 2^exponent` to the nearest `f64`, ties to even, where
/// `δ` is a non-zero fraction below one if `truncated` and zero otherwise.
/// Overflow gives infinity.
fn hex_to_f64(bits: u64, exponent: i64, truncated: bool) -> f64 {
    if bits == 0 {
        return 0.0;
    }
    // Normalize so that the top bit is bit 63: value = m × 2^(e - 63).
    let shift_left = bits.leading_zeros();
    let m = bits << shift_left;
    let e = exponent - i64::from(shift_left) + 63;
    // Number of low bits of m that do not fit the 53-bit significand; more
    // for subnormal results.
    let drop = if e >= -1022 { 11 } else { 11 + (-1022 - e) };
    if drop > 64 {
        // Below half of the smallest subnormal.
        return 0.0;
    }
    let m = u128::from(m);
    let mut significand = (m >> drop) as u64;
    let rest = m & ((1u128 << drop) - 1);
    let half = 1u128 << (drop - 1);
    let round_up = rest > half || rest == half && (truncated || significand & 1 == 1);
    let mut e = e;
    if round_up {
        significand += 1;
        if significand == 1 << 53 {
            significand >>= 1;
            e += 1;
        }
    }
    if significand >= 1 << 52 {
        // Normal (possibly promoted from subnormal by rounding).
        let e = if e < -1022 { -1022 } else { e };
        let biased = e + 1023;
        if biased >= 2047 {
            return f64::INFINITY;
        }
        f64::from_bits(((biased as u64) << 52) | (significand & ((1 << 52) - 1)))
    } else {
        // Subnormal: the significand counts units of 2^-1074.
        f64::from_bits(significand)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> i64 {
        ram_in_bytes(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    fn err(text: &str) -> String {
        match ram_in_bytes(text) {
            Ok(v) => panic!("{text:?} parsed as {v}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn binary_units_any_case() {
        let gib = 1i64 << 30;
        for text in [
            "20GB", "20gb", "20G", "20g", "20GiB", "20gib", "20 GB", "20 g",
        ] {
            assert_eq!(ok(text), 20 * gib, "{text}");
        }
        assert_eq!(ok("512MB"), 512 << 20);
        assert_eq!(ok("1.5GB"), 1_610_612_736);
        assert_eq!(ok("1024"), 1024);
        assert_eq!(ok("0.5k"), 512);
        assert_eq!(ok("1e3kb"), 1_024_000);
        assert_eq!(ok("2t"), 2 << 40);
        assert_eq!(ok("1p"), 1 << 50);
        assert_eq!(ok("100b"), 100);
        assert_eq!(ok("100B"), 100);
        assert_eq!(ok("10 KB"), 10_240);
        assert_eq!(ok("0"), 0);
        assert_eq!(ok("-0"), 0);
        assert_eq!(ok("0.3"), 0);
        assert_eq!(ok("0.3MB"), 314_572);
        assert_eq!(ok("32.3"), 32);
        assert_eq!(ok(".5k"), 512);
        assert_eq!(ok("5.k"), 5120);
        assert_eq!(ok("+5k"), 5120);
    }

    #[test]
    fn decimal_units() {
        assert_eq!(from_human_size("20GB").unwrap(), 20_000_000_000);
        assert_eq!(from_human_size("1.5kB").unwrap(), 1500);
        assert_eq!(from_human_size("32").unwrap(), 32);
        assert_eq!(from_human_size("1 MiB").unwrap(), 1_000_000);
        assert_eq!(
            from_human_size("1EB").unwrap_err().to_string(),
            "invalid suffix: 'eb'"
        );
    }

    #[test]
    fn error_texts() {
        assert_eq!(err(""), "invalid size: ''");
        assert_eq!(err("GB"), "invalid size: 'GB'");
        assert_eq!(err("-1"), "invalid size: '-1'");
        assert_eq!(err("-1GB"), "invalid size: '-1GB'");
        assert_eq!(err("20XB"), "invalid suffix: 'xb'");
        assert_eq!(err("8EB"), "invalid suffix: 'eb'");
        assert_eq!(err("1KBB"), "invalid suffix: 'kbb'");
        assert_eq!(err("1KBBB"), "invalid suffix: 'KBBB'");
        assert_eq!(err("1 Gigabytes"), "invalid suffix: 'Gigabytes'");
        assert_eq!(err("1bb"), "invalid suffix: 'bb'");
        assert_eq!(err("1kx"), "invalid suffix: 'kx'");
        assert_eq!(err("1kbb"), "invalid suffix: 'kbb'");
        assert_eq!(err("1KiX"), "invalid suffix: 'kix'");
        assert_eq!(
            err("20GB "),
            "strconv.ParseFloat: parsing \"20GB\": invalid syntax"
        );
        assert_eq!(
            err(" 20GB"),
            "strconv.ParseFloat: parsing \" 20\": invalid syntax"
        );
        assert_eq!(
            err("1.2.3"),
            "strconv.ParseFloat: parsing \"1.2.3\": invalid syntax"
        );
        assert_eq!(
            err("1..5k"),
            "strconv.ParseFloat: parsing \"1..5\": invalid syntax"
        );
        assert_eq!(
            err("1  KB"),
            "strconv.ParseFloat: parsing \"1 \": invalid syntax"
        );
        assert_eq!(
            err("1e400"),
            "strconv.ParseFloat: parsing \"1e400\": value out of range"
        );
        assert_eq!(
            err("\t1"),
            "strconv.ParseFloat: parsing \"\\t1\": invalid syntax"
        );
    }

    #[test]
    fn go_float_edge_cases_in_sizes() {
        // Hexadecimal floats are Go float syntax.
        assert_eq!(ok("0x1p3"), 8);
        assert_eq!(ok("0x1.8p1kb"), 3072);
        assert_eq!(
            err("0x10"),
            "strconv.ParseFloat: parsing \"0x10\": invalid syntax"
        );
        // Underscores between digits are accepted by ParseFloat.
        assert_eq!(ok("1_000"), 1000);
        assert_eq!(
            err("1__0"),
            "strconv.ParseFloat: parsing \"1__0\": invalid syntax"
        );
        // Special values reach ParseFloat only through the space form.
        assert_eq!(ok("inf KB"), i64::MIN);
        assert_eq!(ok("nan b"), i64::MIN);
        assert_eq!(ok("Infinity k"), i64::MIN);
        assert_eq!(err("-inf k"), "invalid size: '-inf k'");
        assert_eq!(
            err("+nan k"),
            "strconv.ParseFloat: parsing \"+nan\": invalid syntax"
        );
        // Too large for int64: amd64 conversion gives i64::MIN.
        assert_eq!(ok("1e300"), i64::MIN);
        assert_eq!(ok("9223372036854775807"), i64::MIN);
        assert_eq!(ok("9223372036854774784"), 9_223_372_036_854_774_784);
        assert_eq!(ok("8191PB"), 8191 * (1 << 50));
        assert_eq!(ok("8192PB"), i64::MIN);
        // Underflow is zero, not an error.
        assert_eq!(ok("1e-400"), 0);
    }

    #[test]
    fn suffix_lengths_are_measured_after_lower_casing() {
        // The Kelvin sign lower-cases to an ASCII 'k'.
        assert_eq!(ok("1\u{212a}"), 1024);
        // 'Ⱥ' grows from two to three bytes: "kⱥ" has four bytes, so neither
        // length check applies and upstream accepts it.
        assert_eq!(ok("1k\u{23a}"), 1024);
        assert_eq!(err("1\u{23a}"), "invalid suffix: 'ⱥ'");
        assert_eq!(err("1k\u{130}"), "invalid suffix: 'ki'");
    }

    #[test]
    fn parse_float_syntax() {
        let accepted: &[(&str, f64)] = &[
            ("1", 1.0),
            ("+1", 1.0),
            ("-1.5", -1.5),
            (".5", 0.5),
            ("5.", 5.0),
            ("1e3", 1000.0),
            ("1E+3", 1000.0),
            ("1e-3", 0.001),
            ("007", 7.0),
            ("0.005", 0.005),
            ("1_23.50_0_0e+1_2", 1.235e14),
            ("0x_1_2.3_4_5p+1_2", 74565.0),
            ("0x1p-2", 0.25),
            ("0X1P3", 8.0),
            ("0x.8p1", 1.0),
            ("inf", f64::INFINITY),
            ("-Infinity", f64::NEG_INFINITY),
            ("+INF", f64::INFINITY),
            ("1e-400", 0.0),
            ("0e99999999", 0.0),
            ("4.9406564584124654e-324", 5e-324),
            ("1.7976931348623157e308", f64::MAX),
            ("0x1.fffffffffffffp1023", f64::MAX),
        ];
        for &(text, want) in accepted {
            let got = parse_go_float(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(got.to_bits(), want.to_bits(), "{text}");
        }
        assert!(parse_go_float("nan").unwrap().is_nan());
        assert!(parse_go_float("NaN").unwrap().is_nan());
        let rejected = [
            "",
            " 1",
            "1 ",
            "+",
            "-",
            ".",
            "e5",
            "1e",
            "1e+",
            "1ex",
            "1.5x",
            "0x",
            "0x1",
            "0x1.8",
            "0xp1",
            "1__2",
            "_1",
            "1_",
            "123_.5",
            "123._5",
            "1e_5",
            "1e5_",
            "-_1",
            "0x__1p0",
            "infin",
            "infinityx",
            "+nan",
            "-nan",
            "nanx",
            "in",
            "1,5",
            "١",
        ];
        for text in rejected {
            let e = parse_go_float(text).unwrap_err();
            assert_eq!(e.kind, GoFloatErrorKind::Syntax, "{text}");
        }
        for text in ["1e309", "-1e309", "1.7976931348623159e308", "0x1p1024"] {
            let e = parse_go_float(text).unwrap_err();
            assert_eq!(e.kind, GoFloatErrorKind::Range, "{text}");
        }
    }

    #[test]
    fn parse_float_rounds_correctly() {
        // Halfway cases from Go's atof tests.
        let cases: &[(&str, f64)] = &[
            (
                "1.00000000000000011102230246251565404236316680908203125",
                1.0,
            ),
            (
                "1.00000000000000011102230246251565404236316680908203126",
                1.000_000_000_000_000_2,
            ),
            (
                "1.00000000000000033306690738754696212708950042724609375",
                1.000_000_000_000_000_4,
            ),
            ("0x1.00000000000008p0", 1.0),
            ("0x1.000000000000081p0", 1.000_000_000_000_000_2),
            ("0x1.00000000000018p0", 1.000_000_000_000_000_4),
            ("1090544144181609348671888949248", 1.0905441441816093e30),
            ("1090544144181609348835077142190", 1.0905441441816094e30),
            ("0x1p-1074", 5e-324),
            ("0x1p-1075", 0.0),
            ("0x1.0000001p-1075", 5e-324),
            (
                "0x1.fffffffffffff8p-1023",
                f64::from_bits(0x0010_0000_0000_0000),
            ),
        ];
        for &(text, want) in cases {
            assert_eq!(parse_go_float(text).unwrap(), want, "{text}");
        }
        let long = format!(
            "1.00000000000000011102230246251565404236316680908203125{}1",
            "0".repeat(10_000)
        );
        assert_eq!(parse_go_float(&long).unwrap(), 1.000_000_000_000_000_2);
        let long_hex = format!("0x1.00000000000008{}1p0", "0".repeat(10_000));
        assert_eq!(parse_go_float(&long_hex).unwrap(), 1.000_000_000_000_000_2);
    }

    #[test]
    fn float_to_int_like_amd64() {
        assert_eq!(float_to_int64_amd64(1.9), 1);
        assert_eq!(float_to_int64_amd64(-1.9), -1);
        assert_eq!(float_to_int64_amd64(-(2f64.powi(63))), i64::MIN);
        assert_eq!(float_to_int64_amd64(2f64.powi(63)), i64::MIN);
        assert_eq!(float_to_int64_amd64(f64::NAN), i64::MIN);
        assert_eq!(float_to_int64_amd64(f64::INFINITY), i64::MIN);
        assert_eq!(float_to_int64_amd64(f64::NEG_INFINITY), i64::MIN);
    }

    proptest::proptest! {
        #[test]
        fn never_panics(text in ".{0,40}") {
            let _ = ram_in_bytes(&text);
            let _ = from_human_size(&text);
            let _ = parse_go_float(&text);
        }

        #[test]
        fn integers_round_trip(n in 0i64..(1 << 53), unit in 0usize..6) {
            let suffixes = ["", "k", "MB", "GiB", "t", "PB"];
            let text = format!("{n}{}", suffixes[unit]);
            let want = n as f64 * 1024f64.powi(unit as i32);
            proptest::prop_assert_eq!(ram_in_bytes(&text).unwrap(), float_to_int64_amd64(want));
        }

        #[test]
        fn decimal_floats_match_rust(
            x in proptest::num::f64::POSITIVE
                | proptest::num::f64::NEGATIVE
                | proptest::num::f64::NORMAL
                | proptest::num::f64::SUBNORMAL
                | proptest::num::f64::ZERO
        ) {
            // Rust prints the shortest round-tripping decimal; Go accepts it
            // and must give back the same bits.
            let text = format!("{x:e}");
            proptest::prop_assert_eq!(parse_go_float(&text).unwrap().to_bits(), x.to_bits());
        }
    }
}
