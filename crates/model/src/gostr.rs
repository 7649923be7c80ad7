//! Go's string quoting and case mapping, for error texts that must match
//! upstream byte for byte.
//!
//! Upstream error messages embed user input through Go's `strconv.Quote`
//! (`%q`), `strconv.QuoteRune` (`%q` of a byte or rune) and the `time`
//! package's private `quote`; keys and suffixes are lower-cased with
//! `strings.ToLower`. The functions here reproduce those on Rust strings.
//!
//! Unicode tables: printability comes from the `unicode-general-category`
//! crate and case mapping from the standard library, so characters whose
//! properties changed between the Unicode version of Go and that of Rust may
//! be quoted or lower-cased differently. Every character that appears in
//! realistic input (ASCII, Latin-1, common scripts) behaves identically.

use unicode_general_category::{GeneralCategory, get_general_category};

const LOWER_HEX: &[u8; 16] = b"0123456789abcdef";

/// Go's `strconv.Quote`: a double-quoted Go string literal.
///
/// Printable characters (Go's `strconv.IsPrint`) are kept as they are;
/// `"` and `\` are backslash-escaped; the usual control characters become
/// `\a \b \f \n \r \t \v`; other control characters below U+0080 become
/// `\xHH`, and every other non-printable character `\uHHHH` or
/// `\UHHHHHHHH`.
pub fn go_quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        push_escaped(&mut out, c, '"');
    }
    out.push('"');
    out
}

/// Go's `strconv.QuoteRune`: a single-quoted Go character literal.
///
/// The same escapes as [`go_quote`], except that `'` is escaped and `"` is
/// not. `fmt`'s `%q` verb applied to a byte `b` prints
/// `go_quote_rune(char::from(b))`.
pub fn go_quote_rune(c: char) -> String {
    let mut out = String::with_capacity(8);
    out.push('\'');
    push_escaped(&mut out, c, '\'');
    out.push('\'');
    out
}

/// Go's `strings.ToLower`: maps every character through Go's
/// `unicode.ToLower`, the one-to-one simple lower-case mapping.
///
/// This differs from [`str::to_lowercase`] for `İ` (U+0130), which becomes a
/// plain `i`, and for a final capital sigma, which becomes `σ`, not `ς`.
pub fn go_to_lower(text: &str) -> String {
    if text.is_ascii() {
        return text.to_ascii_lowercase();
    }
    text.chars().map(simple_lower).collect()
}

/// Go's `unicode.ToLower` for one character (the simple case mapping).
pub(crate) fn simple_lower(c: char) -> char {
    if c == '\u{130}' {
        return 'i';
    }
    let mut lower = c.to_lowercase();
    match (lower.next(), lower.next()) {
        (Some(single), None) => single,
        _ => c,
    }
}

/// Go's `strconv.IsPrint`: letters, marks, numbers, punctuation, symbols and
/// the ASCII space.
pub(crate) fn is_print(c: char) -> bool {
    let code = u32::from(c);
    if code <= 0xFF {
        return (0x20..=0x7E).contains(&code) || (0xA1..=0xFF).contains(&code) && code != 0xAD;
    }
    !matches!(
        get_general_category(c),
        GeneralCategory::Control
            | GeneralCategory::Format
            | GeneralCategory::Surrogate
            | GeneralCategory::PrivateUse
            | GeneralCategory::Unassigned
            | GeneralCategory::SpaceSeparator
            | GeneralCategory::LineSeparator
            | GeneralCategory::ParagraphSeparator
    )
}

/// The private `quote` of Go's `time` package, used in duration and
/// timestamp errors: every byte of a non-ASCII character and every control
/// character below U+0020 becomes `\xHH`; `"` and `\` are escaped.
pub(crate) fn time_quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        if !c.is_ascii() || c < ' ' {
            let mut buf = [0u8; 4];
            for &byte in c.encode_utf8(&mut buf).as_bytes() {
                push_hex_byte(&mut out, "\\x", byte);
            }
        } else {
            if c == '"' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        }
    }
    out.push('"');
    out
}

fn push_escaped(out: &mut String, c: char, quote: char) {
    if c == quote || c == '\\' {
        out.push('\\');
        out.push(c);
        return;
    }
    if is_print(c) {
        out.push(c);
        return;
    }
    match c {
        '\u{7}' => out.push_str("\\a"),
        '\u{8}' => out.push_str("\\b"),
        '\u{c}' => out.push_str("\\f"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\u{b}' => out.push_str("\\v"),
        _ => {
            let code = u32::from(c);
            if code < 0x20 || code == 0x7F {
                // The match above guarantees the value fits one byte.
                push_hex_byte(out, "\\x", code as u8);
            } else if code < 0x10000 {
                out.push_str("\\u");
                push_hex_digits(out, code, 4);
            } else {
                out.push_str("\\U");
                push_hex_digits(out, code, 8);
            }
        }
    }
}

fn push_hex_byte(out: &mut String, prefix: &str, byte: u8) {
    out.push_str(prefix);
    out.push(char::from(LOWER_HEX[usize::from(byte >> 4)]));
    out.push(char::from(LOWER_HEX[usize::from(byte & 0xF)]));
}

fn push_hex_digits(out: &mut String, value: u32, digits: u32) {
    for i in (0..digits).rev() {
        let nibble = (value >> (4 * i)) & 0xF;
        out.push(char::from(LOWER_HEX[nibble as usize]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_matches_go() {
        // Expected values are Go's strconv.Quote outputs.
        let cases = [
            ("abc", r#""abc""#),
            ("a\"b\\c", r#""a\"b\\c""#),
            ("\t\n\r\u{7}\u{8}\u{c}\u{b}", r#""\t\n\r\a\b\f\v""#),
            ("\u{0}\u{1f}\u{7f}", r#""\x00\x1f\x7f""#),
            ("é日本", "\"é日本\""),
            ("\u{a0}\u{ad}\u{85}", r#""\u00a0\u00ad\u0085""#),
            ("\u{200b}\u{feff}", r#""\u200b\ufeff""#),
            ("\u{e000}", r#""\ue000""#),
            ("\u{10ffff}", r#""\U0010ffff""#),
            ("😀", "\"😀\""),
            ("'", "\"'\""),
        ];
        for (input, want) in cases {
            assert_eq!(go_quote(input), want, "{input:?}");
        }
    }

    #[test]
    fn quote_rune_matches_go() {
        assert_eq!(go_quote_rune('x'), "'x'");
        assert_eq!(go_quote_rune('\''), r"'\''");
        assert_eq!(go_quote_rune('"'), "'\"'");
        assert_eq!(go_quote_rune('\\'), r"'\\'");
        assert_eq!(go_quote_rune('\n'), r"'\n'");
        assert_eq!(go_quote_rune('\u{0}'), r"'\x00'");
        // A byte 0xC3 printed with %q is the rune U+00C3.
        assert_eq!(go_quote_rune(char::from(0xC3u8)), "'Ã'");
        assert_eq!(go_quote_rune(char::from(0x80u8)), r"'\u0080'");
        assert_eq!(go_quote_rune(char::from(0xA0u8)), r"'\u00a0'");
    }

    #[test]
    fn time_quote_escapes_every_non_ascii_byte() {
        assert_eq!(time_quote("1µs"), r#""1\xc2\xb5s""#);
        assert_eq!(time_quote("a\"b"), r#""a\"b""#);
        assert_eq!(time_quote("\t"), r#""\x09""#);
        assert_eq!(time_quote("\u{7f}"), "\"\u{7f}\"");
    }

    #[test]
    fn lower_uses_simple_mapping() {
        assert_eq!(go_to_lower("GiB"), "gib");
        assert_eq!(go_to_lower("İD"), "id");
        assert_eq!(go_to_lower("\u{212a}"), "k");
        assert_eq!(go_to_lower("ΣΑΣ"), "σασ");
        assert_eq!(go_to_lower("Ⱥ"), "ⱥ");
    }
}
