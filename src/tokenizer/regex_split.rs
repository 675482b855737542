//! Pre-tokenizer patterns that llama.cpp runs through `std::regex` rather than a hand-written
//! scanner, run here through `fancy-regex` on the same transformed text llama.cpp matches:
//!
//! - A pattern that names a Unicode class (`\p{L}`, `\p{N}`, `\p{P}`, `\p{M}`, `\p{S}`, and `\p{Lu}`
//!   `\p{Ll}` `\p{Lt}` `\p{Lm}` `\p{Lo}`, which all mean "letter") is matched against a *collapsed*
//!   text: ASCII stays as it is, non-ASCII white space becomes U+000B, and every other non-ASCII
//!   character becomes one stand-in per class (U+00D1 number, U+00D2 letter, U+00D3 punctuation,
//!   U+00D4 mark, U+00D5 symbol, U+00D0 anything else). Each `\p{..}` becomes "its stand-in or its
//!   ASCII members". So case classes cannot tell non-ASCII upper from lower case, and `[^a-z]`
//!   matches every non-ASCII letter: that is what llama.cpp does, and so what is done here.
//! - Any other pattern is matched against the code points themselves, with non-ASCII white space
//!   turned into U+000B (std::regex's `\s` knows only ASCII white space).
//!
//! The pattern is translated from ECMAScript syntax to fancy-regex syntax: `\s`, `\d`, `\w` keep
//! their ASCII meanings, and every literal inside a bracket class is written as `\x{..}` so that
//! no character means something else to the Rust parser (`&&`, `--`, `~~`, nested `[`).
//! Each piece is matched on its own (lookaheads and `$` see the piece's end as the text's end);
//! matches and the stretches between them become pieces.

use super::unicode::{class_of, is_whitespace, CharClass, MAX_CODEPOINT};
use fancy_regex::{Regex, RegexBuilder};
use std::fmt::Write as _;
use std::ops::Range;

/// A compiled pattern and the text form it is matched against.
pub struct PatternSplit {
    regex: Regex,
    collapsed: bool,
}

/// Class names llama.cpp collapses, with the stand-in of each.
const CLASS_NAMES: &[(&str, char)] = &[
    ("N", '\u{D1}'),
    ("L", '\u{D2}'),
    ("P", '\u{D3}'),
    ("M", '\u{D4}'),
    ("S", '\u{D5}'),
    ("Lu", '\u{D2}'),
    ("Ll", '\u{D2}'),
    ("Lt", '\u{D2}'),
    ("Lm", '\u{D2}'),
    ("Lo", '\u{D2}'),
];
const OTHER_STAND_IN: char = '\u{D0}';
const WHITESPACE_STAND_IN: char = '\u{0B}';
const SURROGATE_STAND_IN: char = '\u{E000}';

/// The ASCII members of a collapsed class (as llama.cpp lists them).
fn ascii_members(stand_in: char) -> &'static [(u8, u8)] {
    match stand_in {
        '\u{D1}' => &[(b'0', b'9')],
        '\u{D2}' => &[(b'A', b'Z'), (b'a', b'z')],
        '\u{D3}' => &[
            (b'!', b'#'),
            (b'%', b'*'),
            (b',', b'/'),
            (b':', b';'),
            (b'?', b'@'),
            (b'[', b']'),
            (b'_', b'_'),
            (b'{', b'{'),
            (b'}', b'}'),
        ],
        '\u{D5}' => &[
            (b'$', b'$'),
            (b'+', b'+'),
            (b'<', b'>'),
            (b'^', b'^'),
            (b'`', b'`'),
            (b'|', b'|'),
            (b'~', b'~'),
        ],
        _ => &[],
    }
}

/// Whether llama.cpp would match `pattern` on the collapsed text.
fn uses_collapsed_classes(pattern: &str) -> bool {
    CLASS_NAMES.iter().any(|(name, _)| pattern.contains(&format!("\\p{{{name}}}")))
}

fn stand_in_of(cpt: u32) -> char {
    if is_whitespace(cpt) {
        return WHITESPACE_STAND_IN;
    }
    match class_of(cpt) {
        CharClass::Number => '\u{D1}',
        CharClass::Letter => '\u{D2}',
        CharClass::Punctuation => '\u{D3}',
        CharClass::Mark => '\u{D4}',
        CharClass::Symbol => '\u{D5}',
        _ => OTHER_STAND_IN,
    }
}

#[derive(Debug)]
pub struct PatternError(pub String);

impl PatternSplit {
    pub fn new(pattern: &str) -> Result<PatternSplit, PatternError> {
        let collapsed = uses_collapsed_classes(pattern);
        if collapsed && !pattern.is_ascii() {
            // llama.cpp refuses this combination too.
            return Err(PatternError(format!("pattern mixes Unicode classes and non-ASCII text: {pattern}")));
        }
        let translated = translate(pattern, collapsed)?;
        let regex = RegexBuilder::new(&translated)
            .backtrack_limit(100_000_000)
            .build()
            .map_err(|e| PatternError(format!("{pattern}: {e}")))?;
        Ok(PatternSplit { regex, collapsed })
    }

    /// The text this pattern is matched against, one character per code point, and the byte
    /// offset of each code point in it (plus the end).
    pub fn prepare(&self, cpts: &[u32]) -> Prepared {
        let mut text = String::with_capacity(cpts.len() + cpts.len() / 4);
        let mut offsets = Vec::with_capacity(cpts.len() + 1);
        for &cpt in cpts {
            offsets.push(text.len());
            let c = if cpt < 0x80 {
                cpt as u8 as char
            } else if self.collapsed {
                stand_in_of(cpt)
            } else if is_whitespace(cpt) {
                WHITESPACE_STAND_IN
            } else {
                // A surrogate (the lenient decoder accepts them) cannot be in a `str`; U+E000 stands
                // for it, which every class range of every pattern treats alike (checked by a test).
                char::from_u32(cpt).filter(|_| cpt <= MAX_CODEPOINT).unwrap_or(SURROGATE_STAND_IN)
            };
            text.push(c);
        }
        offsets.push(text.len());
        Prepared { text, offsets }
    }

    /// Split one piece (code-point range) into matches and the stretches between them.
    pub fn split(&self, prepared: &Prepared, piece: Range<usize>, out: &mut Vec<Range<usize>>) {
        let base = prepared.offsets[piece.start];
        let hay = &prepared.text[base..prepared.offsets[piece.end]];
        let to_index = |byte: usize| prepared.offsets.partition_point(|&o| o < base + byte);
        let mut prev = piece.start;
        let mut from = 0;
        while from <= hay.len() {
            let Ok(Some(m)) = self.regex.find_from_pos(hay, from) else { break };
            let (start, end) = (to_index(m.start()), to_index(m.end()));
            if start > prev {
                out.push(prev..start);
            }
            if end > start {
                out.push(start..end);
            }
            prev = end;
            from = if m.end() > m.start() {
                m.end()
            } else {
                // An empty match: search again one character further on.
                match hay[m.end()..].chars().next() {
                    Some(c) => m.end() + c.len_utf8(),
                    None => break,
                }
            };
        }
        if piece.end > prev {
            out.push(prev..piece.end);
        }
    }
}

pub struct Prepared {
    text: String,
    offsets: Vec<usize>,
}

/// One element of a bracket class.
enum ClassItem {
    Range(u32, u32),
    /// Already in Rust syntax (`\S`, ...).
    Raw(&'static str),
}

fn push_cpt(out: &mut String, cpt: u32) {
    let _ = write!(out, "\\x{{{cpt:X}}}");
}

const WHITESPACE_ITEMS: [(u32, u32); 2] = [(0x09, 0x0D), (0x20, 0x20)];

fn translate(pattern: &str, collapsed: bool) -> Result<String, PatternError> {
    let chars: Vec<char> = pattern.chars().collect();
    let err = |what: &str| PatternError(format!("{pattern}: {what}"));
    let mut out = String::with_capacity(pattern.len() * 2);
    let mut i = 0;
    let write_class = |out: &mut String, negated: bool, items: &[ClassItem]| {
        out.push('[');
        if negated {
            out.push('^');
        }
        for item in items {
            match *item {
                ClassItem::Range(a, b) => {
                    push_cpt(out, a);
                    if b != a {
                        out.push('-');
                        push_cpt(out, b);
                    }
                }
                ClassItem::Raw(s) => out.push_str(s),
            }
        }
        out.push(']');
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\\' => {
                let (items, used) = escape_items(&chars[i..], collapsed).ok_or_else(|| err("bad escape"))?;
                match items {
                    Escape::Items(items, negated) => write_class(&mut out, negated, &items),
                    Escape::Verbatim(s) => out.push_str(&s),
                }
                i += used;
            }
            '[' => {
                i += 1;
                let negated = chars.get(i) == Some(&'^');
                if negated {
                    i += 1;
                }
                let mut items = Vec::new();
                loop {
                    let Some(&c) = chars.get(i) else { return Err(err("unclosed class")) };
                    if c == ']' {
                        i += 1;
                        break;
                    }
                    let (first, used) = class_atom(&chars[i..], collapsed).ok_or_else(|| err("bad class"))?;
                    i += used;
                    match first {
                        Atom::Cpt(lo)
                            if chars.get(i) == Some(&'-') && chars.get(i + 1).is_some_and(|&n| n != ']') =>
                        {
                            let (last, used) =
                                class_atom(&chars[i + 1..], collapsed).ok_or_else(|| err("bad range"))?;
                            let Atom::Cpt(hi) = last else { return Err(err("range to a class")) };
                            if hi < lo {
                                return Err(err("reversed range"));
                            }
                            items.push(ClassItem::Range(lo, hi));
                            i += 1 + used;
                        }
                        Atom::Cpt(cpt) => items.push(ClassItem::Range(cpt, cpt)),
                        Atom::Items(more) => items.extend(more),
                    }
                }
                write_class(&mut out, negated, &items);
            }
            c if !c.is_ascii() => {
                push_cpt(&mut out, c as u32);
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Ok(out)
}

enum Escape {
    /// A class: its items and whether it is negated.
    Items(Vec<ClassItem>, bool),
    Verbatim(String),
}

enum Atom {
    Cpt(u32),
    Items(Vec<ClassItem>),
}

/// `\p{..}` at the start of `chars`: the class items and the length used.
fn unicode_class(chars: &[char], collapsed: bool) -> Option<(Vec<ClassItem>, usize)> {
    let close = chars.iter().position(|&c| c == '}')?;
    let name: String = chars[3..close].iter().collect();
    let &(_, stand_in) = CLASS_NAMES.iter().find(|(n, _)| *n == name)?;
    if !collapsed {
        return None;
    }
    let mut items = vec![ClassItem::Range(stand_in as u32, stand_in as u32)];
    items.extend(ascii_members(stand_in).iter().map(|&(a, b)| ClassItem::Range(a as u32, b as u32)));
    Some((items, close + 1))
}

/// A backslash escape outside a class.
fn escape_items(chars: &[char], collapsed: bool) -> Option<(Escape, usize)> {
    let ws = || WHITESPACE_ITEMS.iter().map(|&(a, b)| ClassItem::Range(a, b)).collect::<Vec<_>>();
    let next = *chars.get(1)?;
    Some(match next {
        'p' => {
            let (items, used) = unicode_class(chars, collapsed)?;
            (Escape::Items(items, false), used)
        }
        's' => (Escape::Items(ws(), false), 2),
        'S' => (Escape::Items(ws(), true), 2),
        'd' => (Escape::Items(vec![ClassItem::Range(0x30, 0x39)], false), 2),
        'D' => (Escape::Items(vec![ClassItem::Range(0x30, 0x39)], true), 2),
        'w' | 'W' => {
            let items = vec![
                ClassItem::Range(0x30, 0x39),
                ClassItem::Range(0x41, 0x5A),
                ClassItem::Range(0x5F, 0x5F),
                ClassItem::Range(0x61, 0x7A),
            ];
            (Escape::Items(items, next == 'W'), 2)
        }
        'b' => (Escape::Verbatim("(?-u:\\b)".into()), 2),
        'B' => (Escape::Verbatim("(?-u:\\B)".into()), 2),
        _ => {
            let (cpt, used) = simple_escape(chars)?;
            let mut s = String::new();
            push_cpt(&mut s, cpt);
            (Escape::Verbatim(s), used)
        }
    })
}

/// One element inside a bracket class.
fn class_atom(chars: &[char], collapsed: bool) -> Option<(Atom, usize)> {
    if chars[0] != '\\' {
        return Some((Atom::Cpt(chars[0] as u32), 1));
    }
    let next = *chars.get(1)?;
    Some(match next {
        'p' => {
            let (items, used) = unicode_class(chars, collapsed)?;
            (Atom::Items(items), used)
        }
        's' => (Atom::Items(WHITESPACE_ITEMS.iter().map(|&(a, b)| ClassItem::Range(a, b)).collect()), 2),
        'S' => (Atom::Items(vec![ClassItem::Raw("\\S")]), 2),
        'd' => (Atom::Items(vec![ClassItem::Range(0x30, 0x39)]), 2),
        'D' => (Atom::Items(vec![ClassItem::Raw("\\D")]), 2),
        _ => {
            let (cpt, used) = simple_escape(chars)?;
            (Atom::Cpt(cpt), used)
        }
    })
}

/// `\r`, `\n`, `\t`, `\f`, `\v`, `\0`, `\xHH`, `\uHHHH`, or an escaped punctuation character.
fn simple_escape(chars: &[char]) -> Option<(u32, usize)> {
    let next = *chars.get(1)?;
    let hex = |n: usize| -> Option<(u32, usize)> {
        let digits: String = chars.get(2..2 + n)?.iter().collect();
        Some((u32::from_str_radix(&digits, 16).ok()?, 2 + n))
    };
    Some(match next {
        'r' => (0x0D, 2),
        'n' => (0x0A, 2),
        't' => (0x09, 2),
        'f' => (0x0C, 2),
        'v' => (0x0B, 2),
        '0' => (0, 2),
        'x' => hex(2)?,
        'u' => hex(4)?,
        c if !c.is_ascii_alphanumeric() => (c as u32, 2),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(pattern: &str, text: &str) -> Vec<String> {
        let p = PatternSplit::new(pattern).unwrap();
        let cpts: Vec<u32> = text.chars().map(|c| c as u32).collect();
        let prepared = p.prepare(&cpts);
        let mut out = Vec::new();
        p.split(&prepared, 0..cpts.len(), &mut out);
        out.into_iter().map(|r| cpts[r].iter().filter_map(|&c| char::from_u32(c)).collect()).collect()
    }

    #[test]
    fn translation_escapes_class_literals() {
        assert_eq!(translate(r"[a-z&&]", false).unwrap(), r"[\x{61}-\x{7A}\x{26}\x{26}]");
        assert_eq!(translate(r"\s+(?!\S)", false).unwrap(), r"[\x{9}-\x{D}\x{20}]+(?![^\x{9}-\x{D}\x{20}])");
        assert_eq!(translate(r"\p{N}", true).unwrap(), r"[\x{D1}\x{30}-\x{39}]");
    }

    #[test]
    fn collapsed_classes_lose_non_ascii_case() {
        // Tekken's case split: for ASCII "HelloWorld" splits at the capital; for non-ASCII letters
        // every letter is "not a-z" and "not A-Z", so "ÉcoleÉté" stays one word.
        let tekken = r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
        assert_eq!(split(tekken, "HelloWorld 12"), ["Hello", "World", " ", "1", "2"]);
        assert_eq!(split(tekken, "ÉcoleÉté"), ["ÉcoleÉté"]);
    }

    #[test]
    fn surrogate_stand_in_is_faithful_for_every_pattern() {
        use super::super::pretokenize::{PreConfig, Split, KNOWN_NAMES};
        for name in KNOWN_NAMES {
            for step in PreConfig::from_name(name).unwrap().steps {
                if let Split::Regex(pattern) = step {
                    assert!(surrogates_and_stand_in_agree(pattern), "{name}: {pattern}");
                }
            }
        }
    }

    /// Every `\x{..}-\x{..}` range of a pattern holds all of the surrogates and U+E000, or none.
    fn surrogates_and_stand_in_agree(pattern: &str) -> bool {
        let translated = translate(pattern, uses_collapsed_classes(pattern)).unwrap();
        let hex = |s: &str| u32::from_str_radix(s, 16).unwrap();
        let parts: Vec<&str> = translated.split("\\x{").collect();
        parts.windows(2).all(|w| {
            let (Some(lo), Some(rest)) = (w[0].split('}').next(), w[1].split_once('}')) else { return true };
            if !w[0].ends_with("}-") || lo.is_empty() || !lo.chars().all(|c| c.is_ascii_hexdigit()) {
                return true;
            }
            let (lo, hi) = (hex(lo), hex(rest.0));
            let holds = |c: u32| lo <= c && c <= hi;
            let any_surrogate = lo <= 0xDFFF && hi >= 0xD800;
            let all_surrogates = holds(0xD800) && holds(0xDFFF);
            any_surrogate == all_surrogates && all_surrogates == holds(0xE000)
        })
    }

    #[test]
    fn empty_matches_cut_the_piece() {
        assert_eq!(split(r"(?=(\d{3})+(?!\d))", "1234567"), ["1", "234", "567"]);
        assert_eq!(split(r"\s+$", "ab  "), ["ab", "  "]);
    }
}
