//! Go's `strconv.ParseInt(s, 0, 32)` and `strconv.Quote`, as the kubelet's
//! command-line parser (spf13/pflag) applies them to `int32` flags.
//!
//! pflag's `int32` flag type calls `strconv.ParseInt(value, 0, 32)`, so the
//! kubelet accepts `0x10`, `0o17`, `017` (octal), `0b101` and digit
//! separators such as `1_000`, and rejects anything outside the `int32`
//! range. Error texts are Go's, byte for byte.

use std::fmt::Write as _;

/// Why Go's `strconv.ParseInt` rejected a string.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub(crate) enum GoIntError {
    /// Not an integer literal (`invalid syntax`).
    Syntax,
    /// An integer literal outside the requested range (`value out of range`).
    Range,
}

impl GoIntError {
    /// Go's `*strconv.NumError` text for `ParseInt` on `input`.
    pub(crate) fn go_text(self, input: &str) -> String {
        let reason = match self {
            Self::Syntax => "invalid syntax",
            Self::Range => "value out of range",
        };
        format!("strconv.ParseInt: parsing {}: {reason}", go_quote(input))
    }
}

/// Parses `s` as Go's `strconv.ParseInt(s, 0, 32)` does.
pub(crate) fn parse_go_int32(s: &str) -> Result<i32, GoIntError> {
    if s.is_empty() {
        return Err(GoIntError::Syntax);
    }
    let (negative, digits) = match s.as_bytes()[0] {
        b'+' => (false, &s[1..]),
        b'-' => (true, &s[1..]),
        _ => (false, s),
    };
    let magnitude = parse_go_uint(digits, 32)?;
    let cutoff = 1u64 << 31;
    if !negative && magnitude >= cutoff {
        return Err(GoIntError::Range);
    }
    if negative && magnitude > cutoff {
        return Err(GoIntError::Range);
    }
    let value = if negative {
        -(magnitude as i64)
    } else {
        magnitude as i64
    };
    // The range checks above guarantee the value fits.
    Ok(value as i32)
}

/// Go's `strconv.ParseUint(s, 0, bits)`: base prefixes, a leading `0` for
/// octal, and `_` separators where Go's literal syntax allows them.
fn parse_go_uint(s: &str, bits: u32) -> Result<u64, GoIntError> {
    let bytes = s.as_bytes();
    if bytes.is_empty() {
        return Err(GoIntError::Syntax);
    }
    let (base, body): (u64, &[u8]) = if bytes[0] == b'0' {
        match bytes.get(1).map(u8::to_ascii_lowercase) {
            Some(b'b') if bytes.len() >= 3 => (2, &bytes[2..]),
            Some(b'o') if bytes.len() >= 3 => (8, &bytes[2..]),
            Some(b'x') if bytes.len() >= 3 => (16, &bytes[2..]),
            _ => (8, &bytes[1..]),
        }
    } else {
        (10, bytes)
    };
    let cutoff = u64::MAX / base + 1;
    let max_value = if bits >= 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    };
    let mut underscores = false;
    let mut n: u64 = 0;
    for &c in body {
        let digit = match c {
            b'_' => {
                underscores = true;
                continue;
            }
            b'0'..=b'9' => u64::from(c - b'0'),
            _ if c.is_ascii_alphabetic() => u64::from(c.to_ascii_lowercase() - b'a') + 10,
            _ => return Err(GoIntError::Syntax),
        };
        if digit >= base {
            return Err(GoIntError::Syntax);
        }
        if n >= cutoff {
            return Err(GoIntError::Range);
        }
        n *= base;
        let next = n.wrapping_add(digit);
        if next < n || next > max_value {
            return Err(GoIntError::Range);
        }
        n = next;
    }
    if underscores && !underscores_ok(s) {
        return Err(GoIntError::Syntax);
    }
    Ok(n)
}

/// Go's rule for `_` in integer literals: only between digits, or between a
/// base prefix and a digit.
fn underscores_ok(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    // `saw` is the class of the previous character: `^` start, `0` digit or
    // base prefix, `_` underscore, `!` anything else.
    let mut saw = b'^';
    let mut hex = false;
    if b.len() >= 2 && b[0] == b'0' && matches!(b[1].to_ascii_lowercase(), b'b' | b'o' | b'x') {
        i = 2;
        saw = b'0';
        hex = b[1].eq_ignore_ascii_case(&b'x');
    }
    while i < b.len() {
        let c = b[i];
        i += 1;
        if c.is_ascii_digit() || (hex && matches!(c.to_ascii_lowercase(), b'a'..=b'f')) {
            saw = b'0';
            continue;
        }
        if c == b'_' {
            if saw != b'0' {
                return false;
            }
            saw = b'_';
            continue;
        }
        if saw == b'_' {
            return false;
        }
        saw = b'!';
    }
    saw != b'_'
}

/// Go's `strconv.Quote` (and so `%q`) for a valid UTF-8 string.
///
/// Printable characters are kept; `"` and `\` are escaped; control
/// characters use `\a`, `\b`, `\f`, `\n`, `\r`, `\t`, `\v`, `\xHH`, and other
/// non-printable characters `\uHHHH` or `\UHHHHHHHH`. Go's notion of
/// "printable" (Unicode categories L, M, N, P, S plus the ASCII space) is
/// approximated by excluding control, non-ASCII space and common format
/// characters, which covers every character a flag value realistically holds.
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            _ if is_go_printable(c) => out.push(c),
            _ if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            _ if (c as u32) < 0x1_0000 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            _ => {
                let _ = write!(out, "\\U{:08x}", c as u32);
            }
        }
    }
    out.push('"');
    out
}

fn is_go_printable(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    // Format characters (category Cf) and the private-use and
    // noncharacter planes are not printable for Go.
    !matches!(c as u32,
        0xad | 0x600..=0x605 | 0x61c | 0x6dd | 0x70f | 0x180e | 0x200b..=0x200f
        | 0x202a..=0x202e | 0x2060..=0x2064 | 0x2066..=0x206f | 0xfeff
        | 0xfff9..=0xfffb | 0xe000..=0xf8ff | 0xf_0000..=0x10_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_go_integer_literals() {
        let cases: &[(&str, i32)] = &[
            ("0", 0),
            ("1", 1),
            ("-1", -1),
            ("+7", 7),
            ("010", 8),
            ("0x10", 16),
            ("0X1f", 31),
            ("0o17", 15),
            ("0b101", 5),
            ("1_000", 1000),
            ("0x_ff", 255),
            ("2147483647", i32::MAX),
            ("-2147483648", i32::MIN),
        ];
        for &(text, want) in cases {
            assert_eq!(parse_go_int32(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn rejects_what_go_rejects() {
        for bad in [
            "", "-", "+", "--1", "1.5", "abc", "08", "0x", "0b2", "1__0", "_1", "1_", " 1", "1e3",
        ] {
            assert_eq!(parse_go_int32(bad), Err(GoIntError::Syntax), "{bad:?}");
        }
        for big in [
            "2147483648",
            "-2147483649",
            "99999999999999999999",
            "0x100000000",
        ] {
            assert_eq!(parse_go_int32(big), Err(GoIntError::Range), "{big:?}");
        }
    }

    #[test]
    fn error_text_matches_go() {
        assert_eq!(
            GoIntError::Syntax.go_text("abc"),
            "strconv.ParseInt: parsing \"abc\": invalid syntax"
        );
        assert_eq!(
            GoIntError::Range.go_text("-2147483649"),
            "strconv.ParseInt: parsing \"-2147483649\": value out of range"
        );
    }

    #[test]
    fn quote_escapes_like_go() {
        assert_eq!(go_quote("plain"), "\"plain\"");
        assert_eq!(go_quote("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(go_quote("tab\there\n"), "\"tab\\there\\n\"");
        assert_eq!(go_quote("\u{1}\u{7f}"), "\"\\x01\\x7f\"");
        assert_eq!(go_quote("é ü"), "\"é ü\"");
        assert_eq!(go_quote("\u{200b}"), "\"\\u200b\"");
        assert_eq!(go_quote("\u{f0000}"), "\"\\U000f0000\"");
    }
}
