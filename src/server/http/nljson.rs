//! The text of the error nlohmann::json (llama-server's JSON library) gives for a body it cannot
//! parse, so that a bad body gets llama-server's message word for word: a syntax check that
//! reads the bytes as nlohmann's lexer and parser read them (the same tokens, the same line and
//! column, the same "last read" text) and builds no value.

/// nlohmann's `what()` for `bytes` (`json::parse` strict, no comments), or `None` when it parses.
pub fn parse_error(bytes: &[u8]) -> Option<String> {
    let mut p = Parser { lx: Lexer::new(bytes), last: Tok::Uninitialized };
    p.parse().err()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    Uninitialized,
    True,
    False,
    Null,
    Str,
    Number,
    BeginArray,
    BeginObject,
    EndArray,
    EndObject,
    NameSep,
    ValueSep,
    ParseError,
    End,
    LiteralOrValue,
    /// A float that does not fit a double (nlohmann's out_of_range.406).
    Overflow,
}

fn tok_name(t: Tok) -> &'static str {
    match t {
        Tok::Uninitialized => "<uninitialized>",
        Tok::True => "true literal",
        Tok::False => "false literal",
        Tok::Null => "null literal",
        Tok::Str => "string literal",
        Tok::Number | Tok::Overflow => "number literal",
        Tok::BeginArray => "'['",
        Tok::BeginObject => "'{'",
        Tok::EndArray => "']'",
        Tok::EndObject => "'}'",
        Tok::NameSep => "':'",
        Tok::ValueSep => "','",
        Tok::ParseError => "<parse error>",
        Tok::End => "end of input",
        Tok::LiteralOrValue => "'[', '{', or a literal",
    }
}

const CONTROL_NAMES: [&str; 32] = [
    "NUL", "SOH", "STX", "ETX", "EOT", "ENQ", "ACK", "BEL", "BS", "HT", "LF", "VT", "FF", "CR", "SO", "SI",
    "DLE", "DC1", "DC2", "DC3", "DC4", "NAK", "SYN", "ETB", "CAN", "EM", "SUB", "ESC", "FS", "GS", "RS",
    "US",
];

struct Lexer<'a> {
    input: &'a [u8],
    next: usize,
    /// The character read last (`None`: end of input).
    current: Option<u8>,
    next_unget: bool,
    chars_read_total: usize,
    chars_read_current_line: usize,
    lines_read: usize,
    /// What nlohmann calls the token string: everything read since the last string or number
    /// began (structural characters and literals do not reset it).
    token_string: Vec<u8>,
    error_message: String,
}

impl<'a> Lexer<'a> {
    fn new(input: &'a [u8]) -> Lexer<'a> {
        Lexer {
            input,
            next: 0,
            current: None,
            next_unget: false,
            chars_read_total: 0,
            chars_read_current_line: 0,
            lines_read: 0,
            token_string: Vec::new(),
            error_message: String::new(),
        }
    }

    fn get(&mut self) -> Option<u8> {
        self.chars_read_total += 1;
        self.chars_read_current_line += 1;
        if self.next_unget {
            self.next_unget = false;
        } else {
            self.current = self.input.get(self.next).copied();
            if self.current.is_some() {
                self.next += 1;
            }
        }
        if let Some(c) = self.current {
            self.token_string.push(c);
            if c == b'\n' {
                self.lines_read += 1;
                self.chars_read_current_line = 0;
            }
        }
        self.current
    }

    fn unget(&mut self) {
        self.next_unget = true;
        self.chars_read_total -= 1;
        if self.chars_read_current_line == 0 {
            self.lines_read = self.lines_read.saturating_sub(1);
        } else {
            self.chars_read_current_line -= 1;
        }
        if self.current.is_some() {
            self.token_string.pop();
        }
    }

    fn reset(&mut self) {
        self.token_string.clear();
        if let Some(c) = self.current {
            self.token_string.push(c);
        }
    }

    fn fail(&mut self, message: impl Into<String>) -> Tok {
        self.error_message = message.into();
        Tok::ParseError
    }

    fn position(&self) -> String {
        format!(" at line {}, column {}", self.lines_read + 1, self.chars_read_current_line)
    }

    fn token_string(&self) -> String {
        let mut out = Vec::new();
        for &c in &self.token_string {
            if c <= 0x1f {
                out.extend_from_slice(format!("<U+{c:04X}>").as_bytes());
            } else {
                out.push(c);
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    fn scan(&mut self) -> Tok {
        if self.chars_read_total == 0 {
            // the byte order mark
            if self.get() == Some(0xef) {
                if !(self.get() == Some(0xbb) && self.get() == Some(0xbf)) {
                    return self.fail("invalid BOM; must be 0xEF 0xBB 0xBF if given");
                }
            } else {
                self.unget();
            }
        }
        loop {
            self.get();
            if !matches!(self.current, Some(b' ' | b'\t' | b'\n' | b'\r')) {
                break;
            }
        }
        match self.current {
            Some(b'[') => Tok::BeginArray,
            Some(b']') => Tok::EndArray,
            Some(b'{') => Tok::BeginObject,
            Some(b'}') => Tok::EndObject,
            Some(b':') => Tok::NameSep,
            Some(b',') => Tok::ValueSep,
            Some(b't') => self.literal(b"true", Tok::True),
            Some(b'f') => self.literal(b"false", Tok::False),
            Some(b'n') => self.literal(b"null", Tok::Null),
            Some(b'"') => self.string(),
            Some(b'-' | b'0'..=b'9') => self.number(),
            None | Some(0) => Tok::End,
            Some(_) => self.fail("invalid literal"),
        }
    }

    fn literal(&mut self, text: &[u8], tok: Tok) -> Tok {
        for &want in &text[1..] {
            if self.get() != Some(want) {
                return self.fail("invalid literal");
            }
        }
        tok
    }

    fn codepoint(&mut self) -> Option<u32> {
        let mut cp = 0;
        for _ in 0..4 {
            let d = (self.get()? as char).to_digit(16)?;
            cp = cp * 16 + d;
        }
        Some(cp)
    }

    fn string(&mut self) -> Tok {
        self.reset();
        loop {
            let Some(c) = self.get() else { return self.fail("invalid string: missing closing quote") };
            match c {
                b'"' => return Tok::Str,
                b'\\' => match self.get() {
                    Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {}
                    Some(b'u') => {
                        let Some(cp) = self.codepoint() else {
                            return self.fail("invalid string: '\\u' must be followed by 4 hex digits");
                        };
                        if (0xd800..=0xdbff).contains(&cp) {
                            if self.get() == Some(b'\\') && self.get() == Some(b'u') {
                                let Some(cp2) = self.codepoint() else {
                                    return self
                                        .fail("invalid string: '\\u' must be followed by 4 hex digits");
                                };
                                if !(0xdc00..=0xdfff).contains(&cp2) {
                                    return self.fail(
                                        "invalid string: surrogate U+D800..U+DBFF must be followed by U+DC00..U+DFFF",
                                    );
                                }
                            } else {
                                return self.fail(
                                    "invalid string: surrogate U+D800..U+DBFF must be followed by U+DC00..U+DFFF",
                                );
                            }
                        } else if (0xdc00..=0xdfff).contains(&cp) {
                            return self
                                .fail("invalid string: surrogate U+DC00..U+DFFF must follow U+D800..U+DBFF");
                        }
                    }
                    _ => return self.fail("invalid string: forbidden character after backslash"),
                },
                0x00..=0x1f => {
                    let short = match c {
                        0x08 => " or \\b",
                        0x09 => " or \\t",
                        0x0a => " or \\n",
                        0x0c => " or \\f",
                        0x0d => " or \\r",
                        _ => "",
                    };
                    let name = CONTROL_NAMES[c as usize];
                    return self.fail(format!(
                        "invalid string: control character U+{c:04X} ({name}) must be escaped to \\u{c:04X}{short}"
                    ));
                }
                0x20..=0x7f => {}
                _ => {
                    let ranges: &[(u8, u8)] = match c {
                        0xc2..=0xdf => &[(0x80, 0xbf)],
                        0xe0 => &[(0xa0, 0xbf), (0x80, 0xbf)],
                        0xe1..=0xec | 0xee..=0xef => &[(0x80, 0xbf), (0x80, 0xbf)],
                        0xed => &[(0x80, 0x9f), (0x80, 0xbf)],
                        0xf0 => &[(0x90, 0xbf), (0x80, 0xbf), (0x80, 0xbf)],
                        0xf1..=0xf3 => &[(0x80, 0xbf), (0x80, 0xbf), (0x80, 0xbf)],
                        0xf4 => &[(0x80, 0x8f), (0x80, 0xbf), (0x80, 0xbf)],
                        _ => return self.fail("invalid string: ill-formed UTF-8 byte"),
                    };
                    for &(lo, hi) in ranges {
                        if !self.get().is_some_and(|b| (lo..=hi).contains(&b)) {
                            return self.fail("invalid string: ill-formed UTF-8 byte");
                        }
                    }
                }
            }
        }
    }

    fn number(&mut self) -> Tok {
        self.reset();
        let digit = |c: Option<u8>| c.is_some_and(|c| c.is_ascii_digit());
        let mut float = false;
        // the integer part
        let mut c = self.current;
        if c == Some(b'-') {
            c = self.get();
            if !digit(c) {
                return self.fail("invalid number; expected digit after '-'");
            }
        }
        if c != Some(b'0') {
            while digit(self.get()) {}
        } else {
            self.get();
        }
        if self.current == Some(b'.') {
            float = true;
            if !digit(self.get()) {
                return self.fail("invalid number; expected digit after '.'");
            }
            while digit(self.get()) {}
        }
        if matches!(self.current, Some(b'e' | b'E')) {
            float = true;
            let mut c = self.get();
            if matches!(c, Some(b'+' | b'-')) {
                c = self.get();
                if !digit(c) {
                    return self.fail("invalid number; expected digit after exponent sign");
                }
            } else if !digit(c) {
                return self.fail("invalid number; expected '+', '-', or digit after exponent");
            }
            while digit(self.get()) {}
        }
        self.unget();
        if float {
            let text = String::from_utf8_lossy(&self.token_string).into_owned();
            if !text.parse::<f64>().is_ok_and(f64::is_finite) {
                return Tok::Overflow;
            }
        }
        Tok::Number
    }
}

struct Parser<'a> {
    lx: Lexer<'a>,
    last: Tok,
}

impl Parser<'_> {
    fn token(&mut self) -> Tok {
        self.last = self.lx.scan();
        self.last
    }

    fn error(&self, expected: Tok, context: &str) -> String {
        let mut msg = format!("syntax error while parsing {context} - ");
        if self.last == Tok::ParseError {
            msg += &format!("{}; last read: '{}'", self.lx.error_message, self.lx.token_string());
        } else {
            msg += &format!("unexpected {}", tok_name(self.last));
        }
        if expected != Tok::Uninitialized {
            msg += &format!("; expected {}", tok_name(expected));
        }
        self.wrap(&msg)
    }

    fn wrap(&self, msg: &str) -> String {
        format!("[json.exception.parse_error.101] parse error{}: {msg}", self.lx.position())
    }

    /// An object key and its `:`, after `{` or `,`.
    fn key(&mut self) -> Result<(), String> {
        if self.last != Tok::Str {
            return Err(self.error(Tok::Str, "object key"));
        }
        if self.token() != Tok::NameSep {
            return Err(self.error(Tok::NameSep, "object separator"));
        }
        Ok(())
    }

    fn parse(&mut self) -> Result<(), String> {
        self.token();
        // true: inside an array; false: inside an object
        let mut states: Vec<bool> = Vec::new();
        let mut skip_to_state = false;
        loop {
            if !skip_to_state {
                match self.last {
                    Tok::BeginObject => {
                        if self.token() != Tok::EndObject {
                            self.key()?;
                            states.push(false);
                            self.token();
                            continue;
                        }
                    }
                    Tok::BeginArray => {
                        if self.token() != Tok::EndArray {
                            states.push(true);
                            continue;
                        }
                    }
                    Tok::Overflow => {
                        return Err(format!(
                            "[json.exception.out_of_range.406] number overflow parsing '{}'",
                            self.lx.token_string()
                        ))
                    }
                    Tok::True | Tok::False | Tok::Null | Tok::Str | Tok::Number => {}
                    Tok::ParseError => return Err(self.error(Tok::Uninitialized, "value")),
                    Tok::End if self.lx.chars_read_total == 1 => {
                        return Err(self.wrap(
                            "attempting to parse an empty input; check that your input string or stream contains the expected JSON",
                        ))
                    }
                    _ => return Err(self.error(Tok::LiteralOrValue, "value")),
                }
            }
            skip_to_state = false;
            let Some(&in_array) = states.last() else {
                // the top value is complete: nothing may follow it
                if self.token() != Tok::End {
                    return Err(self.error(Tok::End, "value"));
                }
                return Ok(());
            };
            if in_array {
                if self.token() == Tok::ValueSep {
                    self.token();
                    continue;
                }
                if self.last == Tok::EndArray {
                    states.pop();
                    skip_to_state = true;
                    continue;
                }
                return Err(self.error(Tok::EndArray, "array"));
            }
            if self.token() == Tok::ValueSep {
                self.token();
                self.key()?;
                self.token();
                continue;
            }
            if self.last == Tok::EndObject {
                states.pop();
                skip_to_state = true;
                continue;
            }
            return Err(self.error(Tok::EndObject, "object"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_error;

    #[test]
    fn messages_are_nlohmanns() {
        // What nlohmann::json 3.x (llama.cpp's vendor/nlohmann/json.hpp) says for each input.
        let cases: &[(&[u8], &str)] = &[
            (b"{\"prompt\": \"The capital\",", "[json.exception.parse_error.101] parse error at line 1, column 26: syntax error while parsing object key - unexpected end of input; expected string literal"),
            (b"{\"messages\": [}", "[json.exception.parse_error.101] parse error at line 1, column 15: syntax error while parsing value - unexpected '}'; expected '[', '{', or a literal"),
            (b"", "[json.exception.parse_error.101] parse error at line 1, column 1: attempting to parse an empty input; check that your input string or stream contains the expected JSON"),
            (b"{\"a\": tru}", "[json.exception.parse_error.101] parse error at line 1, column 10: syntax error while parsing value - invalid literal; last read: '\"a\": tru}'"),
            (b"{\"a\": 1} x", "[json.exception.parse_error.101] parse error at line 1, column 10: syntax error while parsing value - invalid literal; last read: '1} x'; expected end of input"),
            (b"{\"a\"\n 1}", "[json.exception.parse_error.101] parse error at line 2, column 2: syntax error while parsing object separator - unexpected number literal; expected ':'"),
            (b"[1,]", "[json.exception.parse_error.101] parse error at line 1, column 4: syntax error while parsing value - unexpected ']'; expected '[', '{', or a literal"),
            (b"\"a\nb\"", "[json.exception.parse_error.101] parse error at line 2, column 0: syntax error while parsing value - invalid string: control character U+000A (LF) must be escaped to \\u000A or \\n; last read: '\"a<U+000A>'"),
            (b"-x", "[json.exception.parse_error.101] parse error at line 1, column 2: syntax error while parsing value - invalid number; expected digit after '-'; last read: '-x'"),
            (b"{\"a\":\"\\ud800x\"}", "[json.exception.parse_error.101] parse error at line 1, column 13: syntax error while parsing value - invalid string: surrogate U+D800..U+DBFF must be followed by U+DC00..U+DFFF; last read: '\"\\ud800x'"),
            (b"{\"a\":\"\\q\"}", "[json.exception.parse_error.101] parse error at line 1, column 8: syntax error while parsing value - invalid string: forbidden character after backslash; last read: '\"\\q'"),
            (b"  \x00", "[json.exception.parse_error.101] parse error at line 1, column 3: syntax error while parsing value - unexpected end of input; expected '[', '{', or a literal"),
            (b"[1.]", "[json.exception.parse_error.101] parse error at line 1, column 4: syntax error while parsing value - invalid number; expected digit after '.'; last read: '1.]'"),
            (b"[1e+]", "[json.exception.parse_error.101] parse error at line 1, column 5: syntax error while parsing value - invalid number; expected digit after exponent sign; last read: '1e+]'"),
            (b"[1ex]", "[json.exception.parse_error.101] parse error at line 1, column 4: syntax error while parsing value - invalid number; expected '+', '-', or digit after exponent; last read: '1ex'"),
            (b"{\"a\":1,}", "[json.exception.parse_error.101] parse error at line 1, column 8: syntax error while parsing object key - unexpected '}'; expected string literal"),
            (b"{\"a\":1 \"b\"}", "[json.exception.parse_error.101] parse error at line 1, column 10: syntax error while parsing object - unexpected string literal; expected '}'"),
            (b"[01]", "[json.exception.parse_error.101] parse error at line 1, column 3: syntax error while parsing array - unexpected number literal; expected ']'"),
            (b"[nul", "[json.exception.parse_error.101] parse error at line 1, column 5: syntax error while parsing value - invalid literal; last read: '[nul'"),
            (b"   ", "[json.exception.parse_error.101] parse error at line 1, column 4: syntax error while parsing value - unexpected end of input; expected '[', '{', or a literal"),
            (b"{\"a\": [1, 2", "[json.exception.parse_error.101] parse error at line 1, column 12: syntax error while parsing array - unexpected end of input; expected ']'"),
            (b"{\"a\": \"x\\u12\"}", "[json.exception.parse_error.101] parse error at line 1, column 13: syntax error while parsing value - invalid string: '\\u' must be followed by 4 hex digits; last read: '\"x\\u12\"'"),
            (b"[-]", "[json.exception.parse_error.101] parse error at line 1, column 3: syntax error while parsing value - invalid number; expected digit after '-'; last read: '-]'"),
            (b"{\"a\":1}\n\n]", "[json.exception.parse_error.101] parse error at line 3, column 1: syntax error while parsing value - unexpected ']'; expected end of input"),
            (b"{\"a\":\"\\udc00\"}", "[json.exception.parse_error.101] parse error at line 1, column 12: syntax error while parsing value - invalid string: surrogate U+DC00..U+DFFF must follow U+D800..U+DBFF; last read: '\"\\udc00'"),
            (b"{\"a\":\"\x01\"}", "[json.exception.parse_error.101] parse error at line 1, column 7: syntax error while parsing value - invalid string: control character U+0001 (SOH) must be escaped to \\u0001; last read: '\"<U+0001>'"),
            (b"{\"a\":\"\xe2\x82\"}", "[json.exception.parse_error.101] parse error at line 1, column 9: syntax error while parsing value - invalid string: ill-formed UTF-8 byte; last read: '\"\u{fffd}\"'"),
            (b"[1e999]", "[json.exception.out_of_range.406] number overflow parsing '1e999'"),
        ];
        for (input, want) in cases {
            let got = parse_error(input).unwrap_or_default();
            assert_eq!(&got, want, "input {:?}", String::from_utf8_lossy(input));
        }
        let ok: [&[u8]; 4] = [
            b"{}",
            b" [1, -2.5e3, \"\\u00e9\\ud83e\\udd99\", true, null, {\"a\": []}, 0, -0.0] ",
            "\"\u{e9}\"".as_bytes(),
            b"{\"a\":1}\x00x",
        ];
        for input in ok {
            assert_eq!(parse_error(input), None, "{:?}", String::from_utf8_lossy(input));
        }
    }
}
