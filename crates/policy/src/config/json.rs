//! A small JSON reader that keeps what Go-compatible decoding needs: every
//! object member in document order (duplicates included), the byte offset of
//! every value and key, and Go's `encoding/json` syntax errors.
//!
//! The grammar is RFC 8259 exactly as Go's scanner accepts it. The tree is
//! stored in an arena and parsed without recursion, so deeply nested input
//! can neither overflow the stack while parsing nor while dropping. Nesting
//! deeper than Go's limit of 10 000 is rejected with Go's message.

use reclaim_model::go_quote;

/// Index of a node in [`Doc::nodes`].
pub(crate) type NodeId = usize;

/// Go's `maxNestingDepth`.
const MAX_DEPTH: usize = 10_000;

/// A parsed document.
#[derive(Debug)]
pub(crate) struct Doc {
    /// All nodes; children come before their parents.
    pub(crate) nodes: Vec<Node>,
    /// The top-level value.
    pub(crate) root: NodeId,
}

/// One JSON value and where it starts and ends (byte offsets into the text
/// given to [`parse`], plus its base offset).
#[derive(Debug)]
pub(crate) struct Node {
    pub(crate) kind: Kind,
    pub(crate) start: usize,
    pub(crate) end: usize,
}

/// The value itself.
#[derive(Debug)]
pub(crate) enum Kind {
    Null,
    Bool(bool),
    Number,
    /// The decoded string (escapes resolved as Go does).
    String(String),
    Array(Vec<NodeId>),
    Object(Vec<Member>),
}

/// One `"key": value` pair of an object.
#[derive(Debug)]
pub(crate) struct Member {
    /// The decoded key.
    pub(crate) key: String,
    /// Byte offset of the key's opening quote.
    pub(crate) key_start: usize,
    pub(crate) value: NodeId,
}

impl Kind {
    /// The name Go's `UnmarshalTypeError` uses for this kind of value.
    pub(crate) fn go_name(&self) -> &'static str {
        match self {
            Kind::Null => "null",
            Kind::Bool(_) => "bool",
            Kind::Number => "number",
            Kind::String(_) => "string",
            Kind::Array(_) => "array",
            Kind::Object(_) => "object",
        }
    }
}

/// A syntax error with Go's message and the byte offset it refers to.
#[derive(Debug)]
pub(crate) struct SyntaxError {
    pub(crate) message: String,
    pub(crate) offset: usize,
}

enum Frame {
    Array {
        start: usize,
        items: Vec<NodeId>,
    },
    Object {
        start: usize,
        members: Vec<Member>,
        key: String,
        key_start: usize,
    },
}

/// Parses `text`, whose first byte is at offset `base` of the original
/// input; all offsets in the result are offsets into the original input.
pub(crate) fn parse(text: &str, base: usize) -> Result<Doc, SyntaxError> {
    let mut parser = Parser {
        bytes: text.as_bytes(),
        pos: 0,
        base,
        nodes: Vec::new(),
    };
    let root = parser.document()?;
    Ok(Doc {
        nodes: parser.nodes,
        root,
    })
}

struct Parser<'a> {
    bytes: &'a [u8],
    pos: usize,
    base: usize,
    nodes: Vec<Node>,
}

impl Parser<'_> {
    fn document(&mut self) -> Result<NodeId, SyntaxError> {
        let mut stack: Vec<Frame> = Vec::new();
        self.skip_space();
        'value: loop {
            // Parse one value, or open a container and parse its first item.
            let mut done = match self.peek()? {
                b'{' => {
                    let start = self.pos;
                    self.depth_check(&stack, b'{')?;
                    self.pos += 1;
                    self.skip_space();
                    if self.peek()? == b'}' {
                        self.pos += 1;
                        self.push(Kind::Object(Vec::new()), start)
                    } else {
                        let (key, key_start) = self.object_key()?;
                        stack.push(Frame::Object {
                            start,
                            members: Vec::new(),
                            key,
                            key_start,
                        });
                        continue 'value;
                    }
                }
                b'[' => {
                    let start = self.pos;
                    self.depth_check(&stack, b'[')?;
                    self.pos += 1;
                    self.skip_space();
                    if self.peek()? == b']' {
                        self.pos += 1;
                        self.push(Kind::Array(Vec::new()), start)
                    } else {
                        stack.push(Frame::Array {
                            start,
                            items: Vec::new(),
                        });
                        continue 'value;
                    }
                }
                _ => self.scalar()?,
            };
            // Attach the finished value to its container; close containers
            // as long as they end here.
            loop {
                self.skip_space();
                match stack.last_mut() {
                    None => {
                        if let Some(&c) = self.bytes.get(self.pos) {
                            return Err(self.invalid(c, "after top-level value"));
                        }
                        return Ok(done);
                    }
                    Some(Frame::Array { items, start }) => {
                        items.push(done);
                        let start = *start;
                        match self.peek()? {
                            b',' => {
                                self.pos += 1;
                                self.skip_space();
                                continue 'value;
                            }
                            b']' => {
                                self.pos += 1;
                                let Some(Frame::Array { items, .. }) = stack.pop() else {
                                    unreachable!("the top frame is an array");
                                };
                                done = self.push(Kind::Array(items), start);
                            }
                            c => return Err(self.invalid(c, "after array element")),
                        }
                    }
                    Some(Frame::Object {
                        members,
                        key,
                        key_start,
                        start,
                    }) => {
                        members.push(Member {
                            key: std::mem::take(key),
                            key_start: *key_start,
                            value: done,
                        });
                        let start = *start;
                        match self.peek()? {
                            b',' => {
                                self.pos += 1;
                                self.skip_space();
                                let (next_key, next_start) = self.object_key()?;
                                if let Some(Frame::Object { key, key_start, .. }) = stack.last_mut()
                                {
                                    *key = next_key;
                                    *key_start = next_start;
                                }
                                continue 'value;
                            }
                            b'}' => {
                                self.pos += 1;
                                let Some(Frame::Object { members, .. }) = stack.pop() else {
                                    unreachable!("the top frame is an object");
                                };
                                done = self.push(Kind::Object(members), start);
                            }
                            c => return Err(self.invalid(c, "after object key:value pair")),
                        }
                    }
                }
            }
        }
    }

    /// Reads `"key"` and the following `:`, leaving the position at the
    /// value.
    fn object_key(&mut self) -> Result<(String, usize), SyntaxError> {
        let c = self.peek()?;
        if c != b'"' {
            return Err(self.invalid(c, "looking for beginning of object key string"));
        }
        let key_start = self.base + self.pos;
        let key = self.string()?;
        self.skip_space();
        let c = self.peek()?;
        if c != b':' {
            return Err(self.invalid(c, "after object key"));
        }
        self.pos += 1;
        self.skip_space();
        Ok((key, key_start))
    }

    fn depth_check(&self, stack: &[Frame], c: u8) -> Result<(), SyntaxError> {
        if stack.len() >= MAX_DEPTH {
            return Err(self.invalid(c, "exceeded max depth"));
        }
        Ok(())
    }

    fn scalar(&mut self) -> Result<NodeId, SyntaxError> {
        let start = self.pos;
        let kind = match self.peek()? {
            b'"' => Kind::String(self.string()?),
            b'-' | b'0'..=b'9' => {
                self.number()?;
                Kind::Number
            }
            b't' => {
                self.literal(b"true")?;
                Kind::Bool(true)
            }
            b'f' => {
                self.literal(b"false")?;
                Kind::Bool(false)
            }
            b'n' => {
                self.literal(b"null")?;
                Kind::Null
            }
            c => return Err(self.invalid(c, "looking for beginning of value")),
        };
        Ok(self.push(kind, start))
    }

    fn literal(&mut self, word: &'static [u8]) -> Result<(), SyntaxError> {
        let name = std::str::from_utf8(word).unwrap_or("");
        self.pos += 1;
        for &want in &word[1..] {
            let c = self.peek()?;
            if c != want {
                let context = format!("in literal {name} (expecting '{}')", char::from(want));
                return Err(self.invalid(c, &context));
            }
            self.pos += 1;
        }
        Ok(())
    }

    fn number(&mut self) -> Result<(), SyntaxError> {
        if self.bytes[self.pos] == b'-' {
            self.pos += 1;
            let c = self.peek()?;
            if !c.is_ascii_digit() {
                return Err(self.invalid(c, "in numeric literal"));
            }
        }
        if self.bytes[self.pos] == b'0' {
            self.pos += 1;
        } else {
            self.digits();
        }
        if self.bytes.get(self.pos) == Some(&b'.') {
            self.pos += 1;
            let c = self.peek()?;
            if !c.is_ascii_digit() {
                return Err(self.invalid(c, "after decimal point in numeric literal"));
            }
            self.digits();
        }
        if matches!(self.bytes.get(self.pos), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek()?, b'+' | b'-') {
                self.pos += 1;
            }
            let c = self.peek()?;
            if !c.is_ascii_digit() {
                return Err(self.invalid(c, "in exponent of numeric literal"));
            }
            self.digits();
        }
        Ok(())
    }

    fn digits(&mut self) {
        while self.bytes.get(self.pos).is_some_and(u8::is_ascii_digit) {
            self.pos += 1;
        }
    }

    /// Reads a string starting at the opening quote and decodes it as Go's
    /// `unquote` does.
    fn string(&mut self) -> Result<String, SyntaxError> {
        self.pos += 1;
        let mut out = String::new();
        let mut run_start = self.pos;
        loop {
            let c = self.peek()?;
            match c {
                b'"' => {
                    out.push_str(self.slice(run_start, self.pos));
                    self.pos += 1;
                    return Ok(out);
                }
                b'\\' => {
                    out.push_str(self.slice(run_start, self.pos));
                    self.pos += 1;
                    self.escape(&mut out)?;
                    run_start = self.pos;
                }
                0..=0x1F => return Err(self.invalid(c, "in string literal")),
                _ => self.pos += 1,
            }
        }
    }

    fn escape(&mut self, out: &mut String) -> Result<(), SyntaxError> {
        let c = self.peek()?;
        self.pos += 1;
        let decoded = match c {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let first = self.hex4()?;
                if (0xD800..0xE000).contains(&first) {
                    // A surrogate: valid only as a high half followed by an
                    // escaped low half; anything else becomes U+FFFD and the
                    // following escape is read on its own.
                    if (0xD800..0xDC00).contains(&first)
                        && let Some(second) = self.peek_escaped_low_surrogate()?
                    {
                        self.pos += 6;
                        let code = 0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00);
                        char::from_u32(code).unwrap_or('\u{FFFD}')
                    } else {
                        '\u{FFFD}'
                    }
                } else {
                    char::from_u32(first).unwrap_or('\u{FFFD}')
                }
            }
            _ => {
                self.pos -= 1;
                return Err(self.invalid(c, "in string escape code"));
            }
        };
        out.push(decoded);
        Ok(())
    }

    fn hex4(&mut self) -> Result<u32, SyntaxError> {
        let mut value = 0u32;
        for _ in 0..4 {
            let c = self.peek()?;
            let digit = char::from(c)
                .to_digit(16)
                .ok_or_else(|| self.invalid(c, "in \\u hexadecimal character escape"))?;
            value = value * 16 + digit;
            self.pos += 1;
        }
        Ok(value)
    }

    /// If the next six bytes are a syntactically valid `\uXXXX` escape of a
    /// low surrogate, its value. Syntax errors in that escape are reported
    /// by the normal path when it is read later.
    fn peek_escaped_low_surrogate(&self) -> Result<Option<u32>, SyntaxError> {
        let rest = &self.bytes[self.pos..];
        if rest.len() < 6 || rest[0] != b'\\' || rest[1] != b'u' {
            return Ok(None);
        }
        let text = std::str::from_utf8(&rest[2..6]).unwrap_or("");
        if text.len() != 4 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(None);
        }
        let value = u32::from_str_radix(text, 16).unwrap_or(0);
        Ok((0xDC00..0xE000).contains(&value).then_some(value))
    }

    fn slice(&self, from: usize, to: usize) -> &str {
        // Runs are cut at ASCII quotes and backslashes, so they fall on
        // character boundaries of the (valid UTF-8) input.
        std::str::from_utf8(&self.bytes[from..to]).unwrap_or("")
    }

    fn skip_space(&mut self) {
        while matches!(self.bytes.get(self.pos), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn peek(&self) -> Result<u8, SyntaxError> {
        self.bytes.get(self.pos).copied().ok_or(SyntaxError {
            message: "unexpected end of JSON input".to_owned(),
            offset: self.base + self.pos,
        })
    }

    fn push(&mut self, kind: Kind, start: usize) -> NodeId {
        self.nodes.push(Node {
            kind,
            start: self.base + start,
            end: self.base + self.pos,
        });
        self.nodes.len() - 1
    }

    /// Go's `invalid character 'x' <context>`; the character is the byte
    /// read as a rune, quoted as Go's `quoteChar` does.
    fn invalid(&self, c: u8, context: &str) -> SyntaxError {
        let quoted = match c {
            b'\'' => "'\\''".to_owned(),
            b'"' => "'\"'".to_owned(),
            _ => {
                let q = go_quote(&char::from(c).to_string());
                format!("'{}'", &q[1..q.len() - 1])
            }
        };
        SyntaxError {
            message: format!("invalid character {quoted} {context}"),
            offset: self.base + self.pos,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(text: &str) -> String {
        match parse(text, 0) {
            Ok(_) => panic!("{text:?} parsed"),
            Err(e) => e.message,
        }
    }

    fn string_value(text: &str) -> String {
        let doc = parse(text, 0).unwrap();
        match &doc.nodes[doc.root].kind {
            Kind::String(s) => s.clone(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn go_syntax_errors() {
        assert_eq!(error("{"), "unexpected end of JSON input");
        assert_eq!(error("{\"a\""), "unexpected end of JSON input");
        assert_eq!(
            error("x"),
            "invalid character 'x' looking for beginning of value"
        );
        assert_eq!(
            error("{,}"),
            "invalid character ',' looking for beginning of object key string"
        );
        assert_eq!(
            error("{\"a\":1,}"),
            "invalid character '}' looking for beginning of object key string"
        );
        assert_eq!(error("{\"a\" 1}"), "invalid character '1' after object key");
        assert_eq!(
            error("{\"a\":1 \"b\":2}"),
            "invalid character '\"' after object key:value pair"
        );
        assert_eq!(error("[1 2]"), "invalid character '2' after array element");
        assert_eq!(
            error("[1,]"),
            "invalid character ']' looking for beginning of value"
        );
        assert_eq!(
            error("{} {}"),
            "invalid character '{' after top-level value"
        );
        assert_eq!(error("01"), "invalid character '1' after top-level value");
        assert_eq!(error("-x"), "invalid character 'x' in numeric literal");
        assert_eq!(
            error("1.x"),
            "invalid character 'x' after decimal point in numeric literal"
        );
        assert_eq!(
            error("1ex"),
            "invalid character 'x' in exponent of numeric literal"
        );
        assert_eq!(error("tru"), "unexpected end of JSON input");
        assert_eq!(
            error("trux"),
            "invalid character 'x' in literal true (expecting 'e')"
        );
        assert_eq!(
            error("nul1"),
            "invalid character '1' in literal null (expecting 'l')"
        );
        assert_eq!(
            error("\"a\tb\""),
            "invalid character '\\t' in string literal"
        );
        assert_eq!(
            error("\"\\x\""),
            "invalid character 'x' in string escape code"
        );
        assert_eq!(
            error("\"\\u12g4\""),
            "invalid character 'g' in \\u hexadecimal character escape"
        );
        assert_eq!(
            error("'a'"),
            "invalid character '\\'' looking for beginning of value"
        );
        // A non-ASCII byte is reported as the rune of its first byte.
        assert_eq!(
            error("é"),
            "invalid character 'Ã' looking for beginning of value"
        );
        assert_eq!(
            error("// c\n{}"),
            "invalid character '/' looking for beginning of value"
        );
    }

    #[test]
    fn depth_limit_and_no_recursion() {
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(parse(&ok, 0).is_ok());
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert_eq!(error(&deep), "invalid character '[' exceeded max depth");
        let objects = "{\"a\":".repeat(MAX_DEPTH) + "1" + &"}".repeat(MAX_DEPTH);
        assert!(parse(&objects, 0).is_ok());
    }

    #[test]
    fn strings_decode_like_go() {
        assert_eq!(string_value(r#""a\"b\\c\/d""#), "a\"b\\c/d");
        assert_eq!(string_value(r#""\b\f\n\r\t""#), "\u{8}\u{c}\n\r\t");
        assert_eq!(string_value(r#""\u0070olicy""#), "policy");
        assert_eq!(string_value(r#""\ud83d\ude00""#), "😀");
        assert_eq!(string_value(r#""\ud83d""#), "\u{FFFD}");
        assert_eq!(string_value(r#""\ude00x""#), "\u{FFFD}x");
        assert_eq!(string_value(r#""\ud83d\u0041""#), "\u{FFFD}A");
        assert_eq!(string_value("\"日本\""), "日本");
    }

    #[test]
    fn members_keep_order_duplicates_and_offsets() {
        let text = "{\"a\": 1, \"a\": [true, null], \"b\": {}}";
        let doc = parse(text, 10).unwrap();
        let Kind::Object(members) = &doc.nodes[doc.root].kind else {
            panic!("not an object");
        };
        let keys: Vec<&str> = members.iter().map(|m| m.key.as_str()).collect();
        assert_eq!(keys, ["a", "a", "b"]);
        assert_eq!(members[1].key_start, 10 + 9);
        let second = &doc.nodes[members[1].value];
        assert_eq!(&text[second.start - 10..second.end - 10], "[true, null]");
        assert_eq!(doc.nodes[doc.root].start, 10);
    }
}
