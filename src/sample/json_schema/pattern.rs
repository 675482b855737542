//! A schema `pattern` (an ECMA regex anchored with `^...$`) as a GBNF rule for the JSON string it
//! matches. Only what maps straight onto GBNF is translated: literals, `.`, classes `[...]`,
//! groups (plain or `?:`), alternation and the quantifiers `* + ? {m,n}`. A regex feature with no
//! GBNF counterpart (`\d`, lookaround, anchors inside) makes the whole pattern "any string", with
//! a warning; a pattern that is not a regex at all is an error. This is llama.cpp's subset, so
//! that both accept and refuse the same patterns and write the same rules.
//!
//! The pattern is read byte by byte, as llama.cpp reads it: non-ASCII bytes are literal text.

use super::convert::{build_repetition, Converter};
use std::collections::HashMap;

/// The regex meta characters that cannot start or continue a plain literal run.
fn is_meta(c: u8) -> bool {
    b"|.()[]{}*+?^$".contains(&c)
}

/// Characters whose backslash escape in a regex is the plain character in a GBNF literal.
fn escapes_to_itself(c: u8) -> bool {
    b"^$.[]()|{}*+?".contains(&c)
}

/// The length of a GBNF-compatible escape at `pos` (`\n`, `\xHH`, `\uHHHH`, `\UHHHHHHHH`, `\]`
/// ...), 0 when there is none: these are copied into the grammar as written.
fn gbnf_escape_len(s: &[u8], pos: usize) -> usize {
    if pos + 1 >= s.len() || s[pos] != b'\\' {
        return 0;
    }
    let n_hex = match s[pos + 1] {
        b'x' => 2,
        b'u' => 4,
        b'U' => 8,
        b't' | b'r' | b'n' | b'\\' | b'"' | b'[' | b']' | b'-' => return 2,
        _ => return 0,
    };
    match s.get(pos + 2..pos + 2 + n_hex) {
        Some(hex) if hex.iter().all(u8::is_ascii_hexdigit) => 2 + n_hex,
        _ => 0,
    }
}

/// C++ `std::stoi`: leading space, a sign, decimal digits (trailing text ignored); `None` where
/// it would throw (no digits, or out of `int`).
fn stoi(s: &[u8]) -> Option<i32> {
    let mut i = s.iter().take_while(|c| matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')).count();
    let neg = match s.get(i) {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let digits = &s[i..];
    let n = digits.iter().take_while(|c| c.is_ascii_digit()).count();
    if n == 0 {
        return None;
    }
    let v: i64 = std::str::from_utf8(&digits[..n]).ok()?.parse().ok()?;
    i32::try_from(if neg { -v } else { v }).ok()
}

pub(super) enum PatternError {
    /// A regex, but not one GBNF can express: fall back to any string.
    Unsupported(String),
    /// Not a regex.
    Invalid(String),
}
use PatternError::{Invalid, Unsupported};

/// A piece of a sequence: literal text (still to be quoted, so neighbours can merge) or a rule
/// expression.
enum Piece {
    Lit(Vec<u8>),
    Expr(Vec<u8>),
}

impl Piece {
    fn into_expr(self) -> Vec<u8> {
        match self {
            Piece::Lit(l) => [b"\"".as_slice(), &l, b"\""].concat(),
            Piece::Expr(e) => e,
        }
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

struct Reader<'a> {
    s: &'a [u8],
    i: usize,
    depth: u32,
    name: String,
    /// Repeated sub-expressions (`(ab){2}`) become rules `name-1`, `name-2` ..., one per distinct
    /// expression.
    sub_rules: HashMap<Vec<u8>, String>,
}

/// Deeper group nesting than this is refused.
const MAX_DEPTH: u32 = 100;

impl Converter<'_> {
    /// The rule for a string matching `pattern`, named `name`; an unsupported pattern leaves the
    /// rules as they were and gives the plain string rule instead.
    pub(super) fn visit_pattern(&mut self, pattern: &str, name: &str) -> String {
        let saved = self.rules.clone();
        match self.pattern_rule(pattern, name) {
            Ok(rule) => rule,
            Err(Unsupported(why)) => {
                self.rules = saved;
                self.warnings
                    .push(format!("pattern {pattern} is not supported ({why}), accepting any string"));
                let string = self.add_primitive("string");
                self.add_rule(name, &string)
            }
            Err(Invalid(why)) => {
                self.rules = saved;
                self.errors.push(format!("Invalid pattern {pattern}: {why}"));
                String::new()
            }
        }
    }

    fn pattern_rule(&mut self, pattern: &str, name: &str) -> Result<String, PatternError> {
        let p = pattern.as_bytes();
        if p.len() < 2 || p[0] != b'^' || p[p.len() - 1] != b'$' {
            return Err(Unsupported("not anchored with '^' and '$'".into()));
        }
        let mut r = Reader {
            s: &p[1..p.len() - 1],
            i: 0,
            depth: 0,
            name: name.to_string(),
            sub_rules: HashMap::new(),
        };
        let body = self.sequence(&mut r)?;
        if r.depth != 0 {
            return Err(Invalid("unbalanced parentheses".into()));
        }
        Ok(self.add_rule(name, &format!("\"\\\"\" ({}) \"\\\"\"", text(&body))))
    }

    /// Read up to the `)` closing the current group (or the end), as one GBNF sequence.
    fn sequence(&mut self, r: &mut Reader) -> Result<Vec<u8>, PatternError> {
        let mut seq: Vec<Piece> = Vec::new();
        let s = r.s;
        while r.i < s.len() {
            let c = s[r.i];
            match c {
                b'.' => {
                    let dot = self.add_rule("dot", "[^\\x0A\\x0D]");
                    seq.push(Piece::Expr(dot.into_bytes()));
                    r.i += 1;
                }
                b'(' => {
                    r.i += 1;
                    if s.get(r.i) == Some(&b'?') {
                        if s.get(r.i + 1) != Some(&b':') {
                            // lookaround, named groups, inline flags
                            return Err(Unsupported("unsupported group syntax".into()));
                        }
                        r.i += 2;
                    }
                    r.depth += 1;
                    if r.depth > MAX_DEPTH {
                        return Err(Unsupported("pattern nesting too deep".into()));
                    }
                    let inner = self.sequence(r)?;
                    seq.push(Piece::Expr([b"(".as_slice(), &inner, b")"].concat()));
                }
                b')' => {
                    r.i += 1;
                    if r.depth == 0 {
                        return Err(Invalid("unbalanced parentheses".into()));
                    }
                    r.depth -= 1;
                    return Ok(join(seq));
                }
                b'^' | b'$' => return Err(Unsupported("anchor inside the pattern".into())),
                b'[' => seq.push(Piece::Expr(class(r)?)),
                b'|' => {
                    seq.push(Piece::Expr(b"|".to_vec()));
                    r.i += 1;
                }
                b'*' | b'+' | b'?' => {
                    let last = seq.pop().ok_or_else(|| Invalid("nothing to repeat".into()))?;
                    let mut e = last.into_expr();
                    e.push(c);
                    seq.push(Piece::Expr(e));
                    r.i += 1;
                }
                b'{' => {
                    let (min, max) = braces(r)?;
                    let last = seq.pop().ok_or_else(|| Invalid("nothing to repeat".into()))?;
                    let item = match last {
                        Piece::Lit(l) => format!("\"{}\"", text(&l)),
                        Piece::Expr(e) => {
                            let count = r.sub_rules.len() + 1;
                            match r.sub_rules.get(&e) {
                                Some(id) => id.clone(),
                                None => {
                                    let id = self.add_rule(&format!("{}-{count}", r.name), &text(&e));
                                    r.sub_rules.insert(e, id.clone());
                                    id
                                }
                            }
                        }
                    };
                    seq.push(Piece::Expr(build_repetition(&item, min, max, "").into_bytes()));
                }
                _ => seq.push(Piece::Lit(literal(r, c)?)),
            }
        }
        Ok(join(seq))
    }
}

/// Adjacent literals merge into one quoted string; pieces are separated by spaces.
fn join(seq: Vec<Piece>) -> Vec<u8> {
    let mut parts: Vec<Vec<u8>> = Vec::new();
    let mut lit: Vec<u8> = Vec::new();
    for piece in seq {
        match piece {
            Piece::Lit(l) => lit.extend_from_slice(&l),
            Piece::Expr(e) => {
                if !lit.is_empty() {
                    parts.push(Piece::Lit(std::mem::take(&mut lit)).into_expr());
                }
                parts.push(e);
            }
        }
    }
    if !lit.is_empty() {
        parts.push(Piece::Lit(lit).into_expr());
    }
    parts.join(&b' ')
}

/// A character class, copied as written (GBNF classes read the same), its escapes checked.
fn class(r: &mut Reader) -> Result<Vec<u8>, PatternError> {
    let s = r.s;
    let mut out = vec![b'['];
    r.i += 1;
    while r.i < s.len() && s[r.i] != b']' {
        if s[r.i] == b'\\' {
            let n = gbnf_escape_len(s, r.i);
            if n == 0 {
                let esc = &s[r.i..(r.i + 2).min(s.len())];
                return Err(Unsupported(format!("unsupported escape in character class: {}", text(esc))));
            }
            out.extend_from_slice(&s[r.i..r.i + n]);
            r.i += n;
        } else {
            out.push(s[r.i]);
            r.i += 1;
        }
    }
    if r.i >= s.len() {
        return Err(Invalid("unterminated character class".into()));
    }
    out.push(b']');
    r.i += 1;
    Ok(out)
}

/// `{n}`, `{m,}`, `{,n}` or `{m,n}` → (min, max), `i32::MAX` for no max.
fn braces(r: &mut Reader) -> Result<(i32, i32), PatternError> {
    let s = r.s;
    let start = r.i + 1;
    let Some(len) = s[start..].iter().position(|&c| c == b'}') else {
        return Err(Unsupported("unterminated curly brackets".into()));
    };
    let inner = &s[start..start + len];
    r.i = start + len + 1;
    let nums: Vec<&[u8]> = inner.split(|&c| c == b',').collect();
    let bad = || Unsupported("invalid number in curly brackets".into());
    match nums.as_slice() {
        [n] => {
            let n = stoi(n).ok_or_else(bad)?;
            Ok((n, n))
        }
        [lo, hi] => {
            let lo = if lo.is_empty() { 0 } else { stoi(lo).ok_or_else(bad)? };
            let hi = if hi.is_empty() { i32::MAX } else { stoi(hi).ok_or_else(bad)? };
            Ok((lo, hi))
        }
        _ => Err(Unsupported("wrong number of values in curly brackets".into())),
    }
}

/// A run of literal characters. A character followed by a quantifier is taken alone (so the
/// quantifier applies to it only), except at the start of a run.
fn literal(r: &mut Reader, first: u8) -> Result<Vec<u8>, PatternError> {
    let s = r.s;
    let mut out = Vec::new();
    while r.i < s.len() {
        let c = s[r.i];
        if c == b'\\' {
            if r.i == s.len() - 1 {
                return Err(Invalid("trailing backslash".into()));
            }
            let next = s[r.i + 1];
            if escapes_to_itself(next) {
                out.push(next);
                r.i += 2;
            } else {
                let n = gbnf_escape_len(s, r.i);
                if n == 0 {
                    return Err(Unsupported(format!("unsupported escape: {}", text(&s[r.i..r.i + 2]))));
                }
                out.extend_from_slice(&s[r.i..r.i + n]);
                r.i += n;
            }
        } else if c == b'"' {
            out.extend_from_slice(b"\\\"");
            r.i += 1;
        } else if !is_meta(c)
            && (r.i == s.len() - 1 || out.is_empty() || s[r.i + 1] == b'.' || !is_meta(s[r.i + 1]))
        {
            out.push(c);
            r.i += 1;
        } else {
            break;
        }
    }
    if out.is_empty() {
        // nothing taken: a stray `]` or `}`
        return Err(Unsupported(format!("unsupported character: {}", text(&[first]))));
    }
    Ok(out)
}
