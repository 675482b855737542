//! GBNF text → rules, following llama.cpp's grammar parser so that the same text gives the same
//! rules under the same ids: names are numbered in order of first mention, every group and
//! repetition becomes a helper rule named after the rule it is in (`root_4`), and `S{m,n}` is
//! rewritten as `m` copies of `S` followed by a chain of optional helpers.
//!
//! Syntax: `name ::= alternatives` rules, one per line (a line may continue after `|` and inside
//! parentheses); `"literal"`, `[class]` / `[^class]` with ranges, `.`, `(groups)`, rule
//! references, `*` `+` `?` `{m}` `{m,}` `{m,n}`, tokens `<[id]>` `<text>` and their negation
//! `!<...>`, `#` comments. Escapes: `\xHH` `\uHHHH` `\UHHHHHHHH` `\t` `\r` `\n` `\\` `\"` `\[`
//! `\]` `\-`. Rule names are letters, digits and `-`.

use super::{Element, GrammarError, TokenizeFn};
use crate::TokenId;
use std::collections::HashMap;

/// llama.cpp's limit on repetition counts and on the rules a nested repetition multiplies into.
const MAX_REPETITIONS: u64 = 2000;

/// The parser's output: rules by id (all defined) and every id's name.
#[derive(Debug)]
pub(super) struct Parsed {
    pub rules: Vec<Vec<Element>>,
    pub names: Vec<String>,
    symbols: HashMap<Vec<u8>, u32>,
}

impl Parsed {
    pub fn symbol(&self, name: &str) -> Option<u32> {
        self.symbols.get(name.as_bytes()).copied()
    }
}

pub(super) fn parse(src: &[u8], tokenize: Option<TokenizeFn<'_>>) -> Result<Parsed, GrammarError> {
    let mut p = Parser { src, tokenize, symbols: HashMap::new(), names: Vec::new(), rules: Vec::new() };
    let mut pos = p.space(0, true);
    while pos < src.len() {
        pos = p.rule(pos)?;
    }
    p.check_defined()?;
    Ok(Parsed { rules: p.rules, names: p.names, symbols: p.symbols })
}

fn is_word_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'-'
}

struct Parser<'a> {
    src: &'a [u8],
    tokenize: Option<TokenizeFn<'a>>,
    /// Rule names as written → id. Helper rules get ids and names but no entry here, so a user
    /// rule can never be mistaken for one.
    symbols: HashMap<Vec<u8>, u32>,
    names: Vec<String>,
    /// By id; an empty rule is one referenced but not (yet) defined.
    rules: Vec<Vec<Element>>,
}

impl Parser<'_> {
    /// The byte at `pos`, 0 past the end (the parser reads the text as a C string).
    fn at(&self, pos: usize) -> u8 {
        self.src.get(pos).copied().unwrap_or(0)
    }

    /// Line and column (in characters) of a byte offset, both from 1.
    fn place(&self, pos: usize) -> (usize, usize) {
        let before = &self.src[..pos.min(self.src.len())];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let line_start = before.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let column = before[line_start..].iter().filter(|&&b| b & 0xC0 != 0x80).count() + 1;
        (line, column)
    }

    fn error(&self, pos: usize, what: impl Into<String>) -> GrammarError {
        let pos = pos.min(self.src.len());
        let (line, column) = self.place(pos);
        let rest = &self.src[pos..];
        let rest = &rest[..rest.iter().position(|&b| b == b'\n' || b == b'\r').unwrap_or(rest.len())];
        let near = if pos >= self.src.len() {
            " (end of input)".to_string()
        } else {
            let shown: String = String::from_utf8_lossy(rest).chars().take(24).collect();
            format!(": {shown:?}")
        };
        GrammarError::Syntax { what: what.into(), line, column, near }
    }

    fn new_id(&mut self, name: String) -> u32 {
        let id = self.names.len() as u32;
        self.names.push(name);
        id
    }

    /// The id of a named rule, numbering it at its first mention.
    fn symbol_id(&mut self, name: &[u8]) -> u32 {
        if let Some(&id) = self.symbols.get(name) {
            return id;
        }
        let id = self.new_id(String::from_utf8_lossy(name).into_owned());
        self.symbols.insert(name.to_vec(), id);
        id
    }

    /// A fresh id for a helper rule of `base`, named `base_ID` as llama.cpp names it.
    fn helper_id(&mut self, base: &str) -> u32 {
        let id = self.names.len();
        self.new_id(format!("{base}_{id}"))
    }

    fn add_rule(&mut self, id: u32, rule: Vec<Element>) {
        let id = id as usize;
        if self.rules.len() <= id {
            self.rules.resize(id + 1, Vec::new());
        }
        self.rules[id] = rule;
    }

    /// Skip blanks and `#` comments, and line breaks where `newline_ok`.
    fn space(&self, mut pos: usize, newline_ok: bool) -> usize {
        loop {
            match self.at(pos) {
                b' ' | b'\t' => pos += 1,
                b'\r' | b'\n' if newline_ok => pos += 1,
                b'#' => {
                    while !matches!(self.at(pos), 0 | b'\r' | b'\n') {
                        pos += 1;
                    }
                }
                _ => return pos,
            }
        }
    }

    fn name_end(&self, start: usize) -> Result<usize, GrammarError> {
        let mut pos = start;
        while is_word_char(self.at(pos)) {
            pos += 1;
        }
        if pos == start {
            return Err(self.error(start, "expecting a rule name"));
        }
        Ok(pos)
    }

    fn integer(&self, start: usize) -> Result<(u64, usize), GrammarError> {
        let mut pos = start;
        let mut value: u64 = 0;
        while self.at(pos).is_ascii_digit() {
            let digit = u64::from(self.at(pos) - b'0');
            value = value
                .checked_mul(10)
                .and_then(|v| v.checked_add(digit))
                .ok_or_else(|| self.error(start, "integer too large"))?;
            pos += 1;
        }
        if pos == start {
            return Err(self.error(start, "expecting an integer"));
        }
        Ok((value, pos))
    }

    /// `name ::= alternatives` and the line break after it.
    fn rule(&mut self, start: usize) -> Result<usize, GrammarError> {
        let name_end = self.name_end(start)?;
        let mut pos = self.space(name_end, false);
        let name = String::from_utf8_lossy(&self.src[start..name_end]).into_owned();
        let id = self.symbol_id(&self.src[start..name_end]);
        if !self.src[pos..].starts_with(b"::=") {
            return Err(self.error(pos, "expecting ::="));
        }
        pos = self.space(pos + 3, true);
        pos = self.alternates(pos, &name, id, false)?;
        match self.at(pos) {
            b'\r' => pos += if self.at(pos + 1) == b'\n' { 2 } else { 1 },
            b'\n' => pos += 1,
            0 => {}
            _ => return Err(self.error(pos, "expecting newline or end")),
        }
        Ok(self.space(pos, true))
    }

    fn alternates(
        &mut self,
        pos: usize,
        rule_name: &str,
        id: u32,
        nested: bool,
    ) -> Result<usize, GrammarError> {
        let mut rule = Vec::new();
        let mut pos = self.sequence(pos, rule_name, &mut rule, nested)?;
        while self.at(pos) == b'|' {
            rule.push(Element::Alt);
            pos = self.space(pos + 1, true);
            pos = self.sequence(pos, rule_name, &mut rule, nested)?;
        }
        rule.push(Element::End);
        self.add_rule(id, rule);
        Ok(pos)
    }

    /// One alternative: items and their repetition operators, up to `|`, `)`, a line break or
    /// anything else that cannot start an item.
    fn sequence(
        &mut self,
        mut pos: usize,
        rule_name: &str,
        rule: &mut Vec<Element>,
        nested: bool,
    ) -> Result<usize, GrammarError> {
        // Where the last item starts in `rule` (what an operator repeats), and how many rules it
        // spans (bounds nested repetitions as llama.cpp bounds them).
        let mut item_start = rule.len();
        let mut item_rules: u64 = 1;
        loop {
            let c = self.at(pos);
            match c {
                b'"' => {
                    let open = pos;
                    pos += 1;
                    item_start = rule.len();
                    item_rules = 1;
                    while self.at(pos) != b'"' {
                        if pos >= self.src.len() {
                            return Err(self.error(open, "unterminated string literal"));
                        }
                        let (ch, next) = self.char_at(pos)?;
                        rule.push(Element::Char(ch));
                        pos = next;
                    }
                    pos = self.space(pos + 1, nested);
                }
                b'[' => {
                    let open = pos;
                    pos += 1;
                    let negated = self.at(pos) == b'^';
                    if negated {
                        pos += 1;
                    }
                    item_start = rule.len();
                    item_rules = 1;
                    while self.at(pos) != b']' {
                        if pos >= self.src.len() {
                            return Err(self.error(open, "unterminated character class"));
                        }
                        let (ch, next) = self.char_at(pos)?;
                        pos = next;
                        rule.push(match (item_start < rule.len(), negated) {
                            (true, _) => Element::CharAlt(ch),
                            (false, true) => Element::CharNot(ch),
                            (false, false) => Element::Char(ch),
                        });
                        if self.at(pos) == b'-' && self.at(pos + 1) != b']' {
                            if pos + 1 >= self.src.len() {
                                return Err(self.error(open, "unterminated character class"));
                            }
                            let (upper, next) = self.char_at(pos + 1)?;
                            pos = next;
                            rule.push(Element::CharRangeUpper(upper));
                        }
                    }
                    pos = self.space(pos + 1, nested);
                }
                b'<' | b'!' => {
                    let (element, next) = self.token(pos)?;
                    item_start = rule.len();
                    item_rules = 1;
                    rule.push(element);
                    pos = self.space(next, nested);
                }
                c if is_word_char(c) => {
                    let end = self.name_end(pos)?;
                    let id = self.symbol_id(&self.src[pos..end]);
                    pos = self.space(end, nested);
                    item_start = rule.len();
                    item_rules = 1;
                    rule.push(Element::RuleRef(id));
                }
                b'(' => {
                    let open = pos;
                    pos = self.space(pos + 1, true);
                    let ids_before = self.names.len() as u64;
                    let group = self.helper_id(rule_name);
                    pos = self.alternates(pos, rule_name, group, true)?;
                    item_rules = (self.names.len() as u64 - ids_before).max(1);
                    item_start = rule.len();
                    rule.push(Element::RuleRef(group));
                    if self.at(pos) != b')' {
                        let (line, column) = self.place(open);
                        return Err(self.error(
                            pos,
                            format!("expecting ')' to close the group at line {line}, column {column}"),
                        ));
                    }
                    pos = self.space(pos + 1, nested);
                }
                b'.' => {
                    item_start = rule.len();
                    item_rules = 1;
                    rule.push(Element::CharAny);
                    pos = self.space(pos + 1, nested);
                }
                b'*' | b'+' | b'?' => {
                    let (min, max) = match c {
                        b'*' => (0, None),
                        b'+' => (1, None),
                        _ => (0, Some(1)),
                    };
                    let op = pos;
                    pos = self.space(pos + 1, nested);
                    let repeat = Repeat { min, max, at: op };
                    item_rules = self.repeat(rule, item_start, item_rules, rule_name, repeat)?;
                }
                b'{' => {
                    let op = pos;
                    let (min, max, next) = self.braces(pos, nested)?;
                    pos = next;
                    let repeat = Repeat { min, max, at: op };
                    item_rules = self.repeat(rule, item_start, item_rules, rule_name, repeat)?;
                }
                _ => return Ok(pos),
            }
        }
    }

    /// `{m}`, `{m,}` or `{m,n}` at `open`: the bounds (None = no maximum) and where it ends.
    fn braces(&self, open: usize, nested: bool) -> Result<(u64, Option<u64>, usize), GrammarError> {
        let mut pos = self.space(open + 1, nested);
        if !self.at(pos).is_ascii_digit() {
            return Err(self.error(pos, "expecting an integer"));
        }
        let (min, end) = self.integer(pos)?;
        pos = self.space(end, nested);
        let max = match self.at(pos) {
            b'}' => Some(min),
            b',' => {
                pos = self.space(pos + 1, nested);
                let mut max = None;
                if self.at(pos).is_ascii_digit() {
                    let (n, end) = self.integer(pos)?;
                    max = Some(n);
                    pos = self.space(end, nested);
                }
                if self.at(pos) != b'}' {
                    return Err(self.error(pos, "expecting '}'"));
                }
                max
            }
            _ => return Err(self.error(pos, "expecting ',' or '}'")),
        };
        pos = self.space(pos + 1, nested);
        if min > MAX_REPETITIONS {
            return Err(
                self.error(open, format!("repetition count {min} is above the limit of {MAX_REPETITIONS}"))
            );
        }
        // As llama.cpp: a maximum above the limit means no maximum.
        let max = max.filter(|&m| m <= MAX_REPETITIONS);
        if let Some(m) = max {
            if m < min {
                return Err(
                    self.error(open, format!("repetition {{{min},{m}}} has its maximum below its minimum"))
                );
            }
        }
        Ok((min, max, pos))
    }

    /// Rewrite the item at `rule[item_start..]` for a repetition; returns the item's new rule
    /// span. `S{m,n}` → `S`×m then `S'(n-m)` with `S'(x) ::= S S'(x-1) |` and `S'(1) ::= S |`;
    /// `S{m,}` → `S`×m then `S'` with `S' ::= S S' |`.
    fn repeat(
        &mut self,
        rule: &mut Vec<Element>,
        item_start: usize,
        item_rules: u64,
        rule_name: &str,
        r: Repeat,
    ) -> Result<u64, GrammarError> {
        if item_start == rule.len() {
            return Err(self.error(r.at, "expecting an item before the repetition operator"));
        }
        let item: Vec<Element> = rule[item_start..].to_vec();
        let total = match r.max {
            Some(m) if m > 0 => m,
            _ if r.min > 0 => r.min,
            _ => 1,
        };
        if item_rules * total > MAX_REPETITIONS {
            return Err(self.error(
                r.at,
                format!("nested repetitions make more than {MAX_REPETITIONS} rules; reduce the counts or the rule's complexity"),
            ));
        }
        if r.min == 0 {
            rule.truncate(item_start);
        } else {
            for _ in 1..r.min {
                rule.extend_from_slice(&item);
            }
        }
        let n_optional = r.max.map_or(1, |m| m - r.min);
        let mut last_helper = 0;
        for i in 0..n_optional {
            let id = self.helper_id(rule_name);
            let mut helper = item.clone();
            if r.max.is_none() {
                helper.push(Element::RuleRef(id));
            } else if i > 0 {
                helper.push(Element::RuleRef(last_helper));
            }
            helper.push(Element::Alt);
            helper.push(Element::End);
            self.add_rule(id, helper);
            last_helper = id;
        }
        if n_optional > 0 {
            rule.push(Element::RuleRef(last_helper));
        }
        Ok(item_rules * total)
    }

    /// `<[id]>`, `<text>`, or either negated with `!`.
    fn token(&self, start: usize) -> Result<(Element, usize), GrammarError> {
        let negated = self.at(start) == b'!';
        let open = if negated { start + 1 } else { start };
        if self.at(open) != b'<' {
            return Err(self.error(open, "expecting '<'"));
        }
        let make = |id: TokenId| if negated { Element::TokenNot(id) } else { Element::Token(id) };
        let mut pos = open + 1;
        if self.at(pos) == b'[' {
            let (id, end) = self.integer(pos + 1)?;
            let id = TokenId::try_from(id).map_err(|_| self.error(pos + 1, "token id too large"))?;
            pos = end;
            if self.at(pos) != b']' {
                return Err(self.error(pos, "expecting ']'"));
            }
            if self.at(pos + 1) != b'>' {
                return Err(self.error(pos + 1, "expecting '>'"));
            }
            return Ok((make(id), pos + 2));
        }
        while !matches!(self.at(pos), 0 | b'>') {
            pos += 1;
        }
        if self.at(pos) != b'>' {
            return Err(self.error(open, "expecting '>' to close the token"));
        }
        pos += 1;
        let text = &self.src[open..pos];
        let shown = String::from_utf8_lossy(text);
        let Some(tokenize) = self.tokenize else {
            return Err(self.error(open, format!("token {shown} needs a vocabulary")));
        };
        match tokenize(text).as_slice() {
            [id] => Ok((make(*id), pos)),
            _ => Err(self.error(open, format!("invalid token {shown}: it is not exactly one token"))),
        }
    }

    /// One character of a literal or class: an escape or a UTF-8 sequence.
    fn char_at(&self, pos: usize) -> Result<(u32, usize), GrammarError> {
        match self.at(pos) {
            b'\\' => match self.at(pos + 1) {
                b'x' => self.hex(pos + 2, 2),
                b'u' => self.hex(pos + 2, 4),
                b'U' => self.hex(pos + 2, 8),
                b't' => Ok(('\t' as u32, pos + 2)),
                b'r' => Ok(('\r' as u32, pos + 2)),
                b'n' => Ok(('\n' as u32, pos + 2)),
                c @ (b'\\' | b'"' | b'[' | b']' | b'-') => Ok((u32::from(c), pos + 2)),
                _ => Err(self.error(pos, "unknown escape")),
            },
            0 if pos >= self.src.len() => Err(self.error(pos, "unexpected end of input")),
            _ => Ok(self.utf8_at(pos)),
        }
    }

    fn hex(&self, start: usize, digits: usize) -> Result<(u32, usize), GrammarError> {
        let mut value: u32 = 0;
        for pos in start..start + digits {
            let digit = (self.at(pos) as char)
                .to_digit(16)
                .ok_or_else(|| self.error(start - 2, format!("expecting {digits} hex digits")))?;
            value = (value << 4) | digit;
        }
        Ok((value, start + digits))
    }

    /// llama.cpp's lenient decoder for the grammar text: the lead byte's high bits give the
    /// length, continuation bits are taken without checking, and the text's end stops it.
    fn utf8_at(&self, pos: usize) -> (u32, usize) {
        const LEN_BY_HIGH_BITS: [usize; 16] = [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4];
        let first = self.at(pos);
        let len = LEN_BY_HIGH_BITS[usize::from(first >> 4)];
        let mut value = u32::from(first) & ((1u32 << (8 - len)) - 1);
        let mut next = pos + 1;
        while next < pos + len && next < self.src.len() {
            value = (value << 6) + (u32::from(self.at(next)) & 0x3F);
            next += 1;
        }
        (value, next)
    }

    /// Every rule that is referenced is defined (llama.cpp's check after parsing).
    fn check_defined(&self) -> Result<(), GrammarError> {
        let undefined =
            |id: usize| GrammarError::UndefinedRule(self.names.get(id).cloned().unwrap_or_default());
        for (id, rule) in self.rules.iter().enumerate() {
            if rule.is_empty() {
                return Err(undefined(id));
            }
            for e in rule {
                if let Element::RuleRef(r) = *e {
                    let r = r as usize;
                    if self.rules.get(r).is_none_or(Vec::is_empty) {
                        return Err(undefined(r));
                    }
                }
            }
        }
        Ok(())
    }
}

/// A repetition operator: its bounds and where it is in the text.
#[derive(Debug, Clone, Copy)]
struct Repeat {
    min: u64,
    max: Option<u64>,
    at: usize,
}
