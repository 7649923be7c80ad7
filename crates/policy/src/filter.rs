//! containerd's filter syntax, as BuildKit uses it to select cache records.
//!
//! A filter string is a comma-separated list of selectors, all of which must
//! match (AND): `field` (presence), `field==value`, `field!=value` or
//! `field~=regex`. A rule carries a list of such strings, any one of which may
//! match (OR); the empty list and the empty string match everything. The
//! parser reproduces containerd's scanner and parser (containerd v2
//! `pkg/filters`, vendored by moby), including its error texts and the
//! positions they mark, so that a rule that fails upstream fails here with the
//! same message.
//!
//! Matching goes through the [`Fields`] trait: the caller says which fields a
//! record has and their text. BuildKit's fields for cache records are
//! implemented in [`crate::prune`].
//!
//! # Regular expressions
//!
//! `~=` compiles its value with the [`regex`] crate. Go's RE2 syntax and the
//! `regex` crate agree on the common ground (literals, classes, repetition,
//! alternation, groups, anchors, `(?i)`, `(?s)`, `(?m)`, `(?U)`, `\pL`), but
//! differ at the edges:
//!
//! - `\d`, `\w`, `\s` and `\b` are ASCII-only in Go and Unicode-aware in
//!   `regex`, so they can match more non-ASCII text here;
//! - Go accepts `\Q...\E` and `\C`, which `regex` rejects (such a filter then
//!   never matches here);
//! - `regex` accepts things Go rejects: the `x` and `u` flags, nested and
//!   set-operation classes (`[a&&b]`, `[a--b]`, `[a[bc]]`, which Go reads
//!   literally), `\<`/`\>`, repetition counts above 1000;
//! - the `regex` crate's size limits may reject very large patterns Go
//!   compiles.
//!
//! As upstream, a value that is not a valid regular expression is not an
//! error: the selector simply never matches.
//!
//! # Example
//!
//! ```
//! use std::borrow::Cow;
//! use reclaim_policy::filter::{Fields, FilterSet};
//!
//! struct Item<'a> { kind: &'a str }
//! impl Fields for Item<'_> {
//!     fn field(&self, path: &[String]) -> Option<Cow<'_, str>> {
//!         (path[0] == "type").then_some(Cow::Borrowed(self.kind))
//!     }
//! }
//!
//! let set = FilterSet::parse_all(&["type==exec.cachemount", "type~=^source\\."])?;
//! assert!(set.matches(&Item { kind: "source.local" }));
//! assert!(!set.matches(&Item { kind: "regular" }));
//!
//! let err = FilterSet::parse_all(&["type=regular"]).unwrap_err();
//! assert_eq!(
//!     err.to_string(),
//!     "filters: parse error: [type >|=|< regular]: unsupported operator \"=\""
//! );
//! # Ok::<(), reclaim_policy::filter::FilterError>(())
//! ```

use std::borrow::Cow;
use std::fmt;
use std::sync::LazyLock;

use regex::Regex;

/// A record's fields as filters see them.
///
/// `field` returns `Some(text)` when the field is present and `None` when it
/// is absent. Absent fields compare as the empty string for `!=` and `~=`,
/// and never match `==` or a presence selector.
pub trait Fields {
    /// The value of the field at `path` (the dotted field path, at least one
    /// element), or `None` when the record has no such field.
    fn field(&self, path: &[String]) -> Option<Cow<'_, str>>;
}

/// A parsed list of filter strings, matched as an OR of its members.
///
/// An empty list matches everything, as does any member that is the empty
/// string.
#[derive(Clone, Debug)]
pub struct FilterSet {
    filters: Vec<Filter>,
}

impl FilterSet {
    /// Parses every string in `filters` (containerd's `ParseAll`).
    ///
    /// Stops at the first string that does not parse and returns its error.
    pub fn parse_all<S: AsRef<str>>(filters: &[S]) -> Result<Self, FilterError> {
        let filters = filters
            .iter()
            .map(|s| Filter::parse(s.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { filters })
    }

    /// True if the set matches every record whatever its fields: the list is
    /// empty or one of its strings is empty.
    pub fn is_always(&self) -> bool {
        self.filters.is_empty() || self.filters.iter().any(Filter::is_always)
    }

    /// True if any member matches `fields` (or the set is empty).
    pub fn matches(&self, fields: &impl Fields) -> bool {
        self.filters.is_empty() || self.filters.iter().any(|f| f.matches(fields))
    }
}

/// One parsed filter string: selectors that must all match.
#[derive(Clone, Debug)]
pub struct Filter {
    /// `None` for the empty string, which matches everything.
    selectors: Option<Vec<Selector>>,
}

impl Filter {
    /// Parses one filter string (containerd's `Parse`). The empty string
    /// matches everything; any other string must be a valid selector list.
    pub fn parse(input: &str) -> Result<Self, FilterError> {
        if input.is_empty() {
            return Ok(Self { selectors: None });
        }
        let mut parser = Parser {
            scanner: Scanner::new(input),
        };
        let selectors = parser.selectors()?;
        Ok(Self {
            selectors: Some(selectors),
        })
    }

    /// True for the empty filter string.
    pub fn is_always(&self) -> bool {
        self.selectors.is_none()
    }

    /// True if every selector matches `fields`.
    pub fn matches(&self, fields: &impl Fields) -> bool {
        match &self.selectors {
            None => true,
            Some(selectors) => selectors.iter().all(|s| s.matches(fields)),
        }
    }
}

/// A filter string that containerd's parser rejects.
///
/// `Display` gives containerd's text, `filters: parse error: <detail>`,
/// where the detail marks the offending byte as `[<before> >|<c>|< <after>]:
/// <message>`, or reads `[<input>]: <message>` when the error is at the end
/// of the input. BuildKit adds `: invalid argument` and its own prefix (see
/// [`crate::prune::PruneError`]).
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[error("filters: parse error: {}", self.detail())]
pub struct FilterError {
    /// The filter string as given.
    pub input: String,
    /// Byte offset of the offending character (`input.len()` for the end).
    pub position: usize,
    /// What went wrong.
    pub kind: FilterErrorKind,
}

impl FilterError {
    /// The part after `parse error: `: the input with the error position
    /// marked, and the message.
    ///
    /// containerd marks a single byte; when that byte is part of a multi-byte
    /// character, the broken character is shown as U+FFFD here (Go would
    /// print the raw bytes).
    pub fn detail(&self) -> String {
        let bytes = self.input.as_bytes();
        if self.position < bytes.len() {
            let before = String::from_utf8_lossy(&bytes[..self.position]);
            let at = String::from_utf8_lossy(&bytes[self.position..=self.position]);
            let after = String::from_utf8_lossy(&bytes[self.position + 1..]);
            format!("[{before} >|{at}|< {after}]: {}", self.kind)
        } else {
            format!("[{}]: {}", self.input, self.kind)
        }
    }
}

/// The message of a [`FilterError`], worded as containerd words it.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum FilterErrorKind {
    /// A field name or quoted field was expected (`a,,b`, `==x`, `a.`).
    #[error("expected field or quoted")]
    ExpectedField,
    /// A `.` between field path elements was not a separator (cannot happen
    /// with the current scanner; kept for completeness).
    #[error("expected a field separator (`.`)")]
    ExpectedFieldSeparator,
    /// Something other than an operator followed a field (`type regular`).
    #[error("expected an operator (\"==\"|\"!=\"|\"~=\")")]
    ExpectedOperator,
    /// A `,` between selectors was not a separator (cannot happen with the
    /// current scanner; kept for completeness).
    #[error("expected a separator")]
    ExpectedSeparator,
    /// An operator was not followed by a value (`inuse==`, `a==,b`).
    #[error("expected value or quoted")]
    ExpectedValue,
    /// A quoted value used `/` or `|` quotes outside a `~=` selector, or a
    /// quoted field used them.
    #[error("invalid quote encountered")]
    InvalidQuote,
    /// The scanner met a character it cannot take: `rune error` (U+FFFD),
    /// `unexpected null`, `quoted literal not terminated`, `illegal escape
    /// sequence` or `illegal numeric escape sequence`.
    #[error("{0}")]
    Scanner(&'static str),
    /// A selector was followed by something other than `,` or the end, such
    /// as a space after a value (`type==regular x`).
    #[error("unexpected input: {0}")]
    UnexpectedInput(String),
    /// A quoted string passed the scanner but is not a valid Go string
    /// literal (`"\400"`).
    #[error("unquoting failed: quote syntax error")]
    Unquote,
    /// A run of `=`, `!` and `~` that is not one of the three operators
    /// (`=`, `===`, `!`).
    #[error("unsupported operator \"{0}\"")]
    UnsupportedOperator(String),
}

/// One `field OP value` or `field` selector.
#[derive(Clone, Debug)]
struct Selector {
    fieldpath: Vec<String>,
    operator: Operator,
    /// The unquoted value; may hold bytes that are not UTF-8 (Go strings
    /// escape `\xff` into a raw byte).
    value: Vec<u8>,
    /// The compiled regular expression for `~=`; `None` if the value does not
    /// compile, in which case the selector never matches.
    regex: Option<Regex>,
}

#[derive(Clone, Copy, Debug, Eq, PartialEq)]
enum Operator {
    Equal,
    Matches,
    NotEqual,
    Present,
}

impl Selector {
    fn matches(&self, fields: &impl Fields) -> bool {
        let field = fields.field(&self.fieldpath);
        match self.operator {
            Operator::Present => field.is_some(),
            Operator::Equal => field.is_some_and(|v| v.as_bytes() == self.value.as_slice()),
            Operator::NotEqual => {
                field.as_deref().unwrap_or("").as_bytes() != self.value.as_slice()
            }
            Operator::Matches => self
                .regex
                .as_ref()
                .is_some_and(|re| re.is_match(field.as_deref().unwrap_or(""))),
        }
    }
}

/// A character read by the scanner, or one of its two special results.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
enum Ch {
    Char(char),
    End,
    Illegal,
}

impl Ch {
    /// The text Go's `string(rune)` gives: the character, or U+FFFD for the
    /// negative pseudo-runes.
    fn text(self) -> String {
        match self {
            Ch::Char(c) => c.to_string(),
            Ch::End | Ch::Illegal => '\u{FFFD}'.to_string(),
        }
    }
}

/// A token kind returned by [`Scanner::scan`].
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
enum Token {
    End,
    Field,
    Illegal,
    Operator,
    Other,
    Quoted,
    Separator,
    Value,
}

/// containerd's filter scanner: a character reader with one character of
/// lookahead and a "value expected" mode switched on by operators.
///
/// `pos` is the start of the character last read and `ppos` the offset just
/// after it. The first error message recorded sticks, even when it was
/// recorded while peeking.
struct Scanner<'a> {
    input: &'a str,
    pos: usize,
    ppos: usize,
    value: bool,
    err: Option<&'static str>,
}

impl<'a> Scanner<'a> {
    fn new(input: &'a str) -> Self {
        Self {
            input,
            pos: 0,
            ppos: 0,
            value: false,
            err: None,
        }
    }

    fn error(&mut self, msg: &'static str) {
        if self.err.is_none() {
            self.err = Some(msg);
        }
    }

    fn next(&mut self) -> Ch {
        if self.pos >= self.input.len() {
            return Ch::End;
        }
        self.pos = self.ppos;
        let Some(c) = self.input[self.ppos..].chars().next() else {
            return Ch::End;
        };
        self.ppos += c.len_utf8();
        if c == char::REPLACEMENT_CHARACTER {
            // Go's decoder cannot tell U+FFFD from a decoding error.
            self.error("rune error");
            return Ch::Illegal;
        }
        if c == '\0' {
            self.error("unexpected null");
            return Ch::Illegal;
        }
        Ch::Char(c)
    }

    fn peek(&mut self) -> Ch {
        let (pos, ppos) = (self.pos, self.ppos);
        let ch = self.next();
        self.pos = pos;
        self.ppos = ppos;
        ch
    }

    /// Reads one token; returns its start offset, kind and text.
    fn scan(&mut self) -> (usize, Token, &'a str) {
        let mut ch = self.next();
        let mut pos = self.pos;
        loop {
            let Ch::Char(c) = ch else {
                let token = if ch == Ch::End {
                    Token::End
                } else {
                    Token::Illegal
                };
                return (self.pos, token, "");
            };
            if is_quote(c) {
                let ok = self.scan_quoted(c);
                let text = &self.input[pos..self.ppos];
                return (pos, if ok { Token::Quoted } else { Token::Illegal }, text);
            }
            if is_separator(c) {
                self.value = false;
                return (pos, Token::Separator, &self.input[pos..self.ppos]);
            }
            if is_operator(c) {
                while matches!(self.peek(), Ch::Char('=' | '!' | '~')) {
                    self.next();
                }
                self.value = true;
                return (pos, Token::Operator, &self.input[pos..self.ppos]);
            }
            if c.is_whitespace() {
                ch = self.next();
                pos = self.pos;
                continue;
            }
            if self.value {
                while is_value_char(self.peek()) {
                    self.next();
                }
                self.value = false;
                return (pos, Token::Value, &self.input[pos..self.ppos]);
            }
            if is_field_char(c) {
                while matches!(self.peek(), Ch::Char(c) if is_field_char(c)) {
                    self.next();
                }
                return (pos, Token::Field, &self.input[pos..self.ppos]);
            }
            return (self.pos, Token::Other, "");
        }
    }

    /// Consumes a quoted literal whose opening `quote` was just read. Returns
    /// false (with the error recorded) if it is unterminated or has a bad
    /// escape; in the latter case the literal is still read to its end.
    fn scan_quoted(&mut self, quote: char) -> bool {
        let mut legal = true;
        let mut ch = self.next();
        while ch != Ch::Char(quote) {
            match ch {
                Ch::Char('\n') | Ch::End | Ch::Illegal => {
                    self.error("quoted literal not terminated");
                    return false;
                }
                Ch::Char('\\') => {
                    let (after, ok) = self.scan_escape(quote);
                    ch = after;
                    legal &= ok;
                }
                Ch::Char(_) => ch = self.next(),
            }
        }
        legal
    }

    /// Reads an escape sequence after a backslash; returns the character
    /// after it and whether the escape was legal.
    fn scan_escape(&mut self, quote: char) -> (Ch, bool) {
        let ch = self.next();
        match ch {
            Ch::Char('a' | 'b' | 'f' | 'n' | 'r' | 't' | 'v' | '\\') => (self.next(), true),
            Ch::Char(c) if c == quote => (self.next(), true),
            Ch::Char('0'..='7') => self.scan_digits(ch, 8, 3),
            Ch::Char('x') => {
                let first = self.next();
                self.scan_digits(first, 16, 2)
            }
            Ch::Char('u') => {
                let first = self.next();
                self.scan_digits(first, 16, 4)
            }
            Ch::Char('U') => {
                let first = self.next();
                self.scan_digits(first, 16, 8)
            }
            _ => {
                self.error("illegal escape sequence");
                (ch, false)
            }
        }
    }

    fn scan_digits(&mut self, mut ch: Ch, base: u32, mut n: u32) -> (Ch, bool) {
        while n > 0 && digit_value(ch) < base {
            ch = self.next();
            n -= 1;
        }
        if n > 0 {
            self.error("illegal numeric escape sequence");
            return (ch, false);
        }
        (ch, true)
    }
}

fn digit_value(ch: Ch) -> u32 {
    match ch {
        Ch::Char(c @ '0'..='9') => c as u32 - '0' as u32,
        Ch::Char(c @ 'a'..='f') => c as u32 - 'a' as u32 + 10,
        Ch::Char(c @ 'A'..='F') => c as u32 - 'A' as u32 + 10,
        _ => 16,
    }
}

fn is_field_char(c: char) -> bool {
    c == '_' || c.is_ascii_alphanumeric()
}

fn is_operator(c: char) -> bool {
    matches!(c, '=' | '!' | '~')
}

fn is_quote(c: char) -> bool {
    matches!(c, '/' | '|' | '"')
}

fn is_separator(c: char) -> bool {
    matches!(c, ',' | '.')
}

/// Characters that may continue an unquoted value: anything graphic (Go's
/// `unicode.IsGraphic`: letters, marks, numbers, punctuation, symbols and
/// space separators) except `,` and white space.
fn is_value_char(ch: Ch) -> bool {
    let Ch::Char(c) = ch else {
        return false;
    };
    if c == ',' || c.is_whitespace() {
        return false;
    }
    if c.is_ascii() {
        return c.is_ascii_graphic();
    }
    static GRAPHIC: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"^[\p{L}\p{M}\p{N}\p{P}\p{S}\p{Zs}]$").expect("static class compiles")
    });
    let mut buf = [0u8; 4];
    GRAPHIC.is_match(c.encode_utf8(&mut buf))
}

/// containerd's recursive-descent parser over the scanner.
struct Parser<'a> {
    scanner: Scanner<'a>,
}

impl Parser<'_> {
    fn error(&self, position: usize, kind: FilterErrorKind) -> FilterError {
        FilterError {
            input: self.scanner.input.to_owned(),
            position,
            kind,
        }
    }

    fn scanner_error(&self, position: usize) -> FilterError {
        self.error(
            position,
            FilterErrorKind::Scanner(self.scanner.err.unwrap_or("")),
        )
    }

    fn selectors(&mut self) -> Result<Vec<Selector>, FilterError> {
        let mut selectors = vec![self.selector()?];
        loop {
            match self.scanner.peek() {
                Ch::Char(',') => {
                    let (pos, token, _) = self.scanner.scan();
                    if token != Token::Separator {
                        return Err(self.error(pos, FilterErrorKind::ExpectedSeparator));
                    }
                    selectors.push(self.selector()?);
                }
                Ch::End => return Ok(selectors),
                other => {
                    return Err(self.error(
                        self.scanner.ppos,
                        FilterErrorKind::UnexpectedInput(other.text()),
                    ));
                }
            }
        }
    }

    fn selector(&mut self) -> Result<Selector, FilterError> {
        let fieldpath = self.fieldpath()?;
        if matches!(self.scanner.peek(), Ch::Char(',') | Ch::End) {
            return Ok(Selector {
                fieldpath,
                operator: Operator::Present,
                value: Vec::new(),
                regex: None,
            });
        }
        let operator = self.operator()?;
        let value = self.value(operator == Operator::Matches)?;
        let regex = if operator == Operator::Matches {
            std::str::from_utf8(&value)
                .ok()
                .and_then(|pattern| Regex::new(pattern).ok())
        } else {
            None
        };
        Ok(Selector {
            fieldpath,
            operator,
            value,
            regex,
        })
    }

    fn fieldpath(&mut self) -> Result<Vec<String>, FilterError> {
        let mut path = vec![self.field()?];
        while self.scanner.peek() == Ch::Char('.') {
            let (pos, token, _) = self.scanner.scan();
            if token != Token::Separator {
                return Err(self.error(pos, FilterErrorKind::ExpectedFieldSeparator));
            }
            path.push(self.field()?);
        }
        Ok(path)
    }

    fn field(&mut self) -> Result<String, FilterError> {
        let (pos, token, text) = self.scanner.scan();
        match token {
            Token::Field => Ok(text.to_owned()),
            Token::Quoted => {
                let bytes = self.unquote(pos, text, false)?;
                // A field name with bytes that are not UTF-8 cannot name any
                // field; the replacement keeps it distinct from every name.
                Ok(String::from_utf8_lossy(&bytes).into_owned())
            }
            Token::Illegal => Err(self.scanner_error(pos)),
            _ => Err(self.error(pos, FilterErrorKind::ExpectedField)),
        }
    }

    fn operator(&mut self) -> Result<Operator, FilterError> {
        let (pos, token, text) = self.scanner.scan();
        match token {
            Token::Operator => match text {
                "==" => Ok(Operator::Equal),
                "!=" => Ok(Operator::NotEqual),
                "~=" => Ok(Operator::Matches),
                _ => Err(self.error(pos, FilterErrorKind::UnsupportedOperator(text.to_owned()))),
            },
            Token::Illegal => Err(self.scanner_error(pos)),
            _ => Err(self.error(pos, FilterErrorKind::ExpectedOperator)),
        }
    }

    fn value(&mut self, allow_alt_quotes: bool) -> Result<Vec<u8>, FilterError> {
        let (pos, token, text) = self.scanner.scan();
        match token {
            Token::Value | Token::Field => Ok(text.as_bytes().to_vec()),
            Token::Quoted => self.unquote(pos, text, allow_alt_quotes),
            Token::Illegal => Err(self.scanner_error(pos)),
            _ => Err(self.error(pos, FilterErrorKind::ExpectedValue)),
        }
    }

    fn unquote(
        &self,
        pos: usize,
        text: &str,
        allow_alt_quotes: bool,
    ) -> Result<Vec<u8>, FilterError> {
        if !allow_alt_quotes && !text.starts_with(['"', '\'']) {
            return Err(self.error(pos, FilterErrorKind::InvalidQuote));
        }
        unquote(text.as_bytes()).ok_or_else(|| self.error(pos, FilterErrorKind::Unquote))
    }
}

/// Go's `strconv.Unquote`, extended (as containerd does) to accept `/` and
/// `|` as double-quote-like delimiters. Returns the raw bytes, which need not
/// be UTF-8 (`\xff`, `\377`), or `None` on a syntax error.
fn unquote(s: &[u8]) -> Option<Vec<u8>> {
    let n = s.len();
    if n < 2 {
        return None;
    }
    let quote = s[0];
    if quote != s[n - 1] {
        return None;
    }
    let mut body = &s[1..n - 1];
    if quote == b'`' {
        if body.contains(&b'`') {
            return None;
        }
        return Some(body.iter().copied().filter(|&b| b != b'\r').collect());
    }
    if !matches!(quote, b'"' | b'\'' | b'|' | b'/') || body.contains(&b'\n') {
        return None;
    }
    if !body.contains(&b'\\') && !body.contains(&quote) && quote != b'\'' {
        return Some(body.to_vec());
    }
    let mut out = Vec::with_capacity(body.len());
    while !body.is_empty() {
        let (value, multibyte, rest) = unquote_char(body, quote)?;
        body = rest;
        if value < 0x80 || !multibyte {
            // Single bytes (`\xff`, `\377`) are kept raw, as Go does.
            out.push(value as u8);
        } else {
            let c = char::from_u32(value).unwrap_or(char::REPLACEMENT_CHARACTER);
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        }
        if quote == b'\'' && !body.is_empty() {
            return None;
        }
    }
    Some(out)
}

/// Decodes the first character or escape of `s`; returns its value, whether
/// it stands for a character (rather than a single byte), and the rest.
fn unquote_char(s: &[u8], quote: u8) -> Option<(u32, bool, &[u8])> {
    let c = s[0];
    if c == quote {
        return None;
    }
    if c >= 0x80 {
        // The input came from a `str`, so it is valid UTF-8 here.
        let len = match c {
            0xF0.. => 4,
            0xE0.. => 3,
            _ => 2,
        };
        let text = std::str::from_utf8(&s[..len.min(s.len())]).ok()?;
        let ch = text.chars().next()?;
        return Some((ch as u32, true, &s[len..]));
    }
    if c != b'\\' {
        return Some((u32::from(c), false, &s[1..]));
    }
    if s.len() <= 1 {
        return None;
    }
    let esc = s[1];
    let rest = &s[2..];
    let simple = |v: u8| Some((u32::from(v), false, rest));
    match esc {
        b'a' => simple(0x07),
        b'b' => simple(0x08),
        b'f' => simple(0x0C),
        b'n' => simple(b'\n'),
        b'r' => simple(b'\r'),
        b't' => simple(b'\t'),
        b'v' => simple(0x0B),
        b'\\' => simple(b'\\'),
        b'x' | b'u' | b'U' => {
            let digits = match esc {
                b'x' => 2,
                b'u' => 4,
                _ => 8,
            };
            if rest.len() < digits {
                return None;
            }
            let mut v: u32 = 0;
            for &d in &rest[..digits] {
                v = (v << 4) | (d as char).to_digit(16)?;
            }
            if esc == b'x' {
                return Some((v, false, &rest[digits..]));
            }
            if v > char::MAX as u32 {
                return None;
            }
            Some((v, true, &rest[digits..]))
        }
        b'0'..=b'7' => {
            if rest.len() < 2 {
                return None;
            }
            let mut v = u32::from(esc - b'0');
            for &d in &rest[..2] {
                if !(b'0'..=b'7').contains(&d) {
                    return None;
                }
                v = (v << 3) | u32::from(d - b'0');
            }
            if v > 255 {
                return None;
            }
            Some((v, false, &rest[2..]))
        }
        b'\'' | b'"' | b'|' | b'/' => {
            if esc != quote {
                return None;
            }
            simple(esc)
        }
        _ => None,
    }
}

impl fmt::Display for Operator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Operator::Equal => "==",
            Operator::Matches => "~=",
            Operator::NotEqual => "!=",
            Operator::Present => "?",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record with a fixed set of fields; absent fields are not listed.
    struct Rec(Vec<(&'static str, &'static str)>);

    impl Fields for Rec {
        fn field(&self, path: &[String]) -> Option<Cow<'_, str>> {
            self.0
                .iter()
                .find(|(k, _)| *k == path[0])
                .map(|(_, v)| Cow::Borrowed(*v))
        }
    }

    fn rec() -> Rec {
        Rec(vec![
            ("id", "abc123"),
            ("type", "exec.cachemount"),
            ("description", "mount / from exec"),
            ("mutable", ""),
            ("private", ""),
        ])
    }

    fn err(input: &str) -> String {
        Filter::parse(input).unwrap_err().to_string()
    }

    fn matches(input: &str) -> bool {
        Filter::parse(input).unwrap().matches(&rec())
    }

    #[test]
    fn operators_and_presence() {
        assert!(matches("type==exec.cachemount"));
        assert!(!matches("type==regular"));
        assert!(matches("type!=regular"));
        assert!(matches("mutable"));
        assert!(!matches("shared"));
        assert!(matches("private,mutable"));
        assert!(!matches("private,shared"));
        // `==` on a flag field compares against its empty value.
        assert!(!matches("mutable==true"));
        assert!(matches("mutable!=true"));
        // Absent fields read as "" for `!=` and never match `==`.
        assert!(matches("shared!=true"));
        assert!(!matches("parent==abc"));
        assert!(matches("parent!=abc"));
        assert!(!matches("nosuch"));
    }

    #[test]
    fn regex_is_an_unanchored_search() {
        assert!(matches("id~=c12"));
        assert!(matches("id~=^abc"));
        assert!(!matches("id~=^bc"));
        assert!(matches("type~=/cache/"));
        assert!(matches("type~=|^exec|"));
        assert!(matches(r#"id~="[0-9]+$""#));
        // An absent field is searched as "".
        assert!(matches("parent~=^$"));
        // An invalid expression never matches, not even with `!=`-like intent.
        assert!(!matches("id~=("));
        assert!(!matches("id~=[a"));
    }

    #[test]
    fn spaces_around_operators_and_selectors() {
        assert!(matches("type == exec.cachemount"));
        assert!(matches("  type==exec.cachemount,  mutable"));
        // White space may precede a field or surround an operator, but not
        // follow a value or a presence selector.
        assert!(Filter::parse("mutable ,type==x").is_err());
        assert_eq!(
            err("type==regular x"),
            "filters: parse error: [type==regular >| |< x]: unexpected input:  "
        );
        assert_eq!(
            err("type==exec.cachemount "),
            "filters: parse error: [type==exec.cachemount >| |< ]: unexpected input:  "
        );
    }

    #[test]
    fn quoted_values() {
        assert!(matches(r#"description=="mount / from exec""#));
        assert!(matches(r#""type"==exec.cachemount"#));
        assert!(matches(r#"description~="from\x20exec""#));
        assert_eq!(
            err("description==/x/"),
            "filters: parse error: [description== >|/|< x/]: invalid quote encountered"
        );
        assert_eq!(
            err(r#"a=="abc"#),
            "filters: parse error: [a== >|\"|< abc]: quoted literal not terminated"
        );
        assert_eq!(
            err(r#"a=="\q""#),
            "filters: parse error: [a== >|\"|< \\q\"]: illegal escape sequence"
        );
        assert_eq!(
            err(r#"a=="\1""#),
            "filters: parse error: [a== >|\"|< \\1\"]: illegal numeric escape sequence"
        );
        assert_eq!(
            err(r#"a=="\400""#),
            "filters: parse error: [a== >|\"|< \\400\"]: unquoting failed: quote syntax error"
        );
        // A value that unquotes to bytes that are not UTF-8 equals nothing.
        assert!(!Filter::parse(r#"id=="\xff""#).unwrap().matches(&rec()));
        assert!(Filter::parse(r#"id!="\xff""#).unwrap().matches(&rec()));
    }

    #[test]
    fn upstream_error_texts() {
        assert_eq!(
            err("inuse=="),
            "filters: parse error: [inuse==]: expected value or quoted"
        );
        assert_eq!(
            err("type===regular"),
            "filters: parse error: [type >|=|< ==regular]: unsupported operator \"===\""
        );
        assert_eq!(
            err("type==source.local,type=exec.cachemount,type=source.git.checkout"),
            "filters: parse error: [type==source.local,type >|=|< exec.cachemount,type=source.git.checkout]: unsupported operator \"=\""
        );
        assert_eq!(
            err("description=foo bar"),
            "filters: parse error: [description >|=|< foo bar]: unsupported operator \"=\""
        );
        assert_eq!(
            err("type regular"),
            "filters: parse error: [type  >|r|< egular]: expected an operator (\"==\"|\"!=\"|\"~=\")"
        );
        assert_eq!(
            err("a,"),
            "filters: parse error: [a,]: expected field or quoted"
        );
        assert_eq!(
            err(" "),
            "filters: parse error: [ ]: expected field or quoted"
        );
        assert_eq!(
            err("a==,b"),
            "filters: parse error: [a== >|,|< b]: expected value or quoted"
        );
        assert_eq!(
            err("-a"),
            "filters: parse error: [ >|-|< a]: expected field or quoted"
        );
        assert_eq!(
            err("a."),
            "filters: parse error: [a.]: expected field or quoted"
        );
        assert_eq!(
            err("a\0"),
            "filters: parse error: [a >|\0|< ]: unexpected null"
        );
        assert_eq!(
            err("a==b\0"),
            "filters: parse error: [a==b >|\0|< ]: unexpected input: \u{FFFD}"
        );
        assert_eq!(
            err("/x/==a"),
            "filters: parse error: [ >|/|< x/==a]: invalid quote encountered"
        );
    }

    #[test]
    fn dotted_paths_use_the_first_element() {
        // The prune adaptor only looks at the first path element; the parser
        // keeps the whole path.
        let f = Filter::parse("type.anything==exec.cachemount").unwrap();
        assert!(f.matches(&rec()));
        let sel = &f.selectors.as_ref().unwrap()[0];
        assert_eq!(
            sel.fieldpath,
            vec!["type".to_owned(), "anything".to_owned()]
        );
        assert_eq!(sel.operator.to_string(), "==");
    }

    #[test]
    fn values_may_contain_dots_and_punctuation() {
        let f = Filter::parse("description==a.b:c/d@e").unwrap();
        let sel = &f.selectors.as_ref().unwrap()[0];
        assert_eq!(sel.value, b"a.b:c/d@e");
        // Non-ASCII graphic characters continue a value; a format character
        // (U+200B, zero width space) ends it.
        let f = Filter::parse("description==héllo").unwrap();
        assert_eq!(f.selectors.as_ref().unwrap()[0].value, "héllo".as_bytes());
        assert!(Filter::parse("description==a\u{200B}b").is_err());
    }

    #[test]
    fn sets_are_or_of_ands() {
        let set =
            FilterSet::parse_all(&["type==regular", "type==exec.cachemount,mutable"]).unwrap();
        assert!(set.matches(&rec()));
        let set = FilterSet::parse_all(&["type==regular", "type==exec.cachemount,shared"]).unwrap();
        assert!(!set.matches(&rec()));
        let empty: [&str; 0] = [];
        assert!(FilterSet::parse_all(&empty).unwrap().is_always());
        assert!(FilterSet::parse_all(&[""]).unwrap().is_always());
        assert!(
            FilterSet::parse_all(&["type==regular", ""])
                .unwrap()
                .matches(&rec())
        );
        assert!(
            !FilterSet::parse_all(&["type==regular"])
                .unwrap()
                .is_always()
        );
        // The first bad string stops parsing.
        let e = FilterSet::parse_all(&["type==regular", "x=", "y="]).unwrap_err();
        assert_eq!(e.input, "x=");
        assert_eq!(e.position, 1);
    }

    #[test]
    fn unquote_follows_go() {
        assert_eq!(unquote(br#""a\tb""#), Some(b"a\tb".to_vec()));
        assert_eq!(unquote(br#""\u00e9""#), Some("é".as_bytes().to_vec()));
        assert_eq!(
            unquote(br#""\ud800""#),
            Some("\u{FFFD}".as_bytes().to_vec())
        );
        assert_eq!(unquote(br#""\377""#), Some(vec![0xFF]));
        assert_eq!(unquote(br#"/a\/b/"#), Some(b"a/b".to_vec()));
        assert_eq!(unquote(br#"/a\"b/"#), None);
        assert_eq!(unquote(br#""\U00110000""#), None);
        assert_eq!(unquote(b"\"a"), None);
        assert_eq!(unquote(b"'ab'"), None);
        assert_eq!(unquote(b"'a'"), Some(b"a".to_vec()));
    }
}
