//! Following generated text through a grammar, as llama.cpp does it: the state is a set of
//! pushdown stacks of positions in the rules, each stack's top a terminal (a character set or a
//! token) that may come next; an empty stack means the grammar may end. Text is taken one code
//! point at a time, and a token may stop inside a UTF-8 sequence: the state then carries the
//! partial sequence, and a candidate token is kept if some completion of it could match.

use super::{Element, Grammar};
use crate::TokenId;
use std::collections::HashSet;
use std::sync::Arc;

/// A UTF-8 sequence cut short: the bits so far and how many continuation bytes are still due
/// (-1: the bytes were not valid UTF-8). llama.cpp's `llama_partial_utf8`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PartialUtf8 {
    pub value: u32,
    pub n_remain: i32,
}

/// Decode `bytes` after `start`, appending the complete code points to `out`, and return the
/// sequence left open at the end, as llama.cpp decodes token pieces: continuation bytes are only
/// checked while finishing `start`; a byte that cannot begin a sequence drops everything decoded
/// and yields `n_remain = -1`.
pub fn decode_utf8(bytes: &[u8], start: PartialUtf8, out: &mut Vec<u32>) -> PartialUtf8 {
    // Sequence length by the lead byte's high bits; 0 marks a continuation byte.
    const LEN_BY_HIGH_BITS: [i32; 16] = [1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 2, 2, 3, 4];
    let out_start = out.len();
    let mut value = start.value;
    let mut n_remain = start.n_remain;
    let mut i = 0;
    while i < bytes.len() && n_remain > 0 {
        let b = bytes[i];
        if b >> 6 != 2 {
            out.truncate(out_start);
            return PartialUtf8 { value: 0, n_remain: -1 };
        }
        value = (value << 6) + u32::from(b & 0x3F);
        i += 1;
        n_remain -= 1;
    }
    if start.n_remain > 0 && n_remain == 0 {
        out.push(value);
    }
    while i < bytes.len() {
        let first = bytes[i];
        n_remain = LEN_BY_HIGH_BITS[usize::from(first >> 4)] - 1;
        if n_remain < 0 {
            out.truncate(out_start);
            return PartialUtf8 { value: 0, n_remain };
        }
        value = u32::from(first) & ((1u32 << (7 - n_remain)) - 1);
        i += 1;
        while i < bytes.len() && n_remain > 0 {
            value = (value << 6) + u32::from(bytes[i] & 0x3F);
            i += 1;
            n_remain -= 1;
        }
        if n_remain == 0 {
            out.push(value);
        }
    }
    PartialUtf8 { value, n_remain }
}

/// The text cannot continue any stack of the grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the grammar cannot take this text here")]
pub struct Refused;

/// A position in the rules: element `at` of rule `rule`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Pos {
    rule: u32,
    at: u32,
}

impl Pos {
    fn next(self) -> Pos {
        Pos { rule: self.rule, at: self.at + 1 }
    }
}

pub type Stack = Vec<Pos>;

/// A token under test: its index in the candidate list, its code points (those before `at`
/// already matched), and the partial sequence it ends in.
#[derive(Debug, Clone, Copy)]
pub(super) struct Candidate<'a> {
    pub index: usize,
    pub cps: &'a [u32],
    pub at: usize,
    pub partial: PartialUtf8,
    pub id: TokenId,
}

impl<'a> Candidate<'a> {
    pub fn new(index: usize, cps: &'a [u32], partial: PartialUtf8, id: TokenId) -> Candidate<'a> {
        Candidate { index, cps, at: 0, partial, id }
    }

    fn rest(&self) -> &'a [u32] {
        self.cps.get(self.at..).unwrap_or_default()
    }
}

/// Where the text generated so far has left the grammar.
#[derive(Debug, Clone)]
pub struct GrammarState {
    grammar: Arc<Grammar>,
    stacks: Vec<Stack>,
    partial: PartialUtf8,
}

impl GrammarState {
    /// The state before any text: one stack per alternative of `root`, advanced to terminals.
    pub fn new(grammar: Arc<Grammar>) -> GrammarState {
        let mut stacks = Vec::new();
        let root = Pos { rule: grammar.root(), at: 0 };
        for start in alternative_starts(&grammar, root) {
            let stack = if element(&grammar, start).ends_sequence() { Vec::new() } else { vec![start] };
            advance_stack(&grammar, stack, &mut stacks);
        }
        GrammarState { grammar, stacks, partial: PartialUtf8::default() }
    }

    pub fn grammar(&self) -> &Grammar {
        &self.grammar
    }

    pub fn stacks(&self) -> &[Stack] {
        &self.stacks
    }

    pub fn partial(&self) -> PartialUtf8 {
        self.partial
    }

    /// Some stack is empty: the text so far is a whole sentence of the grammar.
    pub fn can_end(&self) -> bool {
        self.stacks.iter().any(Vec::is_empty)
    }

    /// Take a token's piece (llama.cpp's `llama_grammar_accept_token`). With `token: None` the
    /// piece is plain text (`llama_grammar_accept_str`): a stack waiting for a token survives
    /// only an empty text. Err when no stack survives; the state is then left as it was.
    pub fn accept_token(&mut self, token: Option<TokenId>, piece: &[u8]) -> Result<(), Refused> {
        // llama.cpp decodes the piece as a C string.
        let piece = piece.split(|&b| b == 0).next().unwrap_or_default();
        let mut cps = Vec::with_capacity(piece.len());
        let partial = decode_utf8(piece, self.partial, &mut cps);
        let g = &*self.grammar;
        let mut survivors: Vec<Stack> = Vec::with_capacity(self.stacks.len());
        for stack in &self.stacks {
            let Some(&top) = stack.last() else { continue };
            match (element(g, top), token) {
                (e @ (Element::Token(_) | Element::TokenNot(_)), Some(id)) => {
                    if match_token(e, id) {
                        let mut next = stack[..stack.len() - 1].to_vec();
                        if !element(g, top.next()).ends_sequence() {
                            next.push(top.next());
                        }
                        advance_stack(g, next, &mut survivors);
                    }
                }
                _ => {
                    let mut current = vec![stack.clone()];
                    for &cp in &cps {
                        let mut next = Vec::new();
                        for s in &current {
                            accept_char(g, s, cp, &mut next);
                        }
                        current = next;
                        if current.is_empty() {
                            break;
                        }
                    }
                    for s in current {
                        if !survivors.contains(&s) {
                            survivors.push(s);
                        }
                    }
                }
            }
        }
        if survivors.is_empty() {
            return Err(Refused);
        }
        self.stacks = survivors;
        self.partial = partial;
        Ok(())
    }

    /// Take plain text (no token elements match it), keeping the state when it is refused.
    pub fn accept_text(&mut self, text: &[u8]) -> Result<(), Refused> {
        self.accept_token(None, text)
    }

    /// The candidates no stack can take (llama.cpp's `llama_grammar_reject_candidates`).
    pub(super) fn reject<'a>(&self, candidates: &[Candidate<'a>]) -> Vec<Candidate<'a>> {
        reject_all(&self.grammar, &self.stacks, candidates)
    }
}

/// The element at `pos`; an end for a position outside the rules (which a compiled grammar
/// never produces).
fn element(g: &Grammar, pos: Pos) -> Element {
    g.rules().get(pos.rule as usize).and_then(|r| r.get(pos.at as usize)).copied().unwrap_or(Element::End)
}

/// The first position of each alternative of the rule starting at `start`.
fn alternative_starts(g: &Grammar, start: Pos) -> Vec<Pos> {
    let mut starts = vec![start];
    let mut pos = start;
    loop {
        match element(g, pos) {
            Element::End => return starts,
            Element::Alt => {
                pos = pos.next();
                starts.push(pos);
            }
            _ => pos = pos.next(),
        }
    }
}

/// Expand `stack` into the stacks whose top is a terminal (or that are empty), adding those not
/// yet in `out` (llama.cpp's `llama_grammar_advance_stack`).
fn advance_stack(g: &Grammar, stack: Stack, out: &mut Vec<Stack>) {
    let mut todo = vec![stack];
    let mut seen: HashSet<Stack> = HashSet::new();
    while let Some(current) = todo.pop() {
        if seen.contains(&current) {
            continue;
        }
        seen.insert(current.clone());
        let Some(&top) = current.last() else {
            if !out.contains(&current) {
                out.push(current);
            }
            continue;
        };
        match element(g, top) {
            Element::RuleRef(rule) => {
                let below = &current[..current.len() - 1];
                for alt in alternative_starts(g, Pos { rule, at: 0 }) {
                    let mut next = below.to_vec();
                    if !element(g, top.next()).ends_sequence() {
                        next.push(top.next());
                    }
                    if !element(g, alt).ends_sequence() {
                        next.push(alt);
                    }
                    todo.push(next);
                }
            }
            Element::Char(_)
            | Element::CharNot(_)
            | Element::CharAny
            | Element::Token(_)
            | Element::TokenNot(_) => {
                if !out.contains(&current) {
                    out.push(current);
                }
            }
            // A stack never rests on the end of an alternative or inside a character set.
            Element::End | Element::Alt | Element::CharRangeUpper(_) | Element::CharAlt(_) => {}
        }
    }
}

/// Whether `chr` is in the character set at `pos`, and the position after the set.
fn match_char(g: &Grammar, mut pos: Pos, chr: u32) -> (bool, Pos) {
    let positive = !matches!(element(g, pos), Element::CharNot(_));
    let mut found = false;
    loop {
        let item = element(g, pos);
        if let Element::CharRangeUpper(upper) = element(g, pos.next()) {
            found |= char_value(item).is_some_and(|low| low <= chr && chr <= upper);
            pos = pos.next().next();
        } else if item == Element::CharAny {
            found = true;
            pos = pos.next();
        } else {
            found |= char_value(item) == Some(chr);
            pos = pos.next();
        }
        if !matches!(element(g, pos), Element::CharAlt(_)) {
            return (found == positive, pos);
        }
    }
}

fn char_value(e: Element) -> Option<u32> {
    match e {
        Element::Char(c) | Element::CharNot(c) | Element::CharAlt(c) | Element::CharRangeUpper(c) => Some(c),
        _ => None,
    }
}

/// Whether some completion of the partial sequence could fall in the character set at `pos`.
fn match_partial_char(g: &Grammar, mut pos: Pos, partial: PartialUtf8) -> bool {
    let positive = !matches!(element(g, pos), Element::CharNot(_));
    let PartialUtf8 { value, n_remain } = partial;
    // An invalid sequence, or a 7-bit character spread over two bytes (overlong).
    if n_remain < 0 || (n_remain == 1 && value < 2) {
        return false;
    }
    let shift = (n_remain * 6) as u32;
    let mut low = value << shift;
    let high = low | ((1u32 << shift) - 1);
    if low == 0 {
        // The shortest encodings of this many bytes start there (overlong ones are excluded).
        match n_remain {
            2 => low = 1 << 11,
            3 => low = 1 << 16,
            _ => {}
        }
    }
    loop {
        let item = element(g, pos);
        if let Element::CharRangeUpper(upper) = element(g, pos.next()) {
            if char_value(item).is_some_and(|first| first <= high && low <= upper) {
                return positive;
            }
            pos = pos.next().next();
        } else if item == Element::CharAny {
            return true;
        } else {
            if char_value(item).is_some_and(|c| low <= c && c <= high) {
                return positive;
            }
            pos = pos.next();
        }
        if !matches!(element(g, pos), Element::CharAlt(_)) {
            return !positive;
        }
    }
}

fn match_token(e: Element, id: TokenId) -> bool {
    match e {
        Element::Token(t) => t == id,
        Element::TokenNot(t) => t != id,
        _ => false,
    }
}

/// The stacks `stack` becomes after `chr`, added to `out`.
fn accept_char(g: &Grammar, stack: &[Pos], chr: u32, out: &mut Vec<Stack>) {
    let Some(&top) = stack.last() else { return };
    if matches!(element(g, top), Element::Token(_) | Element::TokenNot(_)) {
        return;
    }
    let (matched, after) = match_char(g, top, chr);
    if matched {
        let mut next = stack[..stack.len() - 1].to_vec();
        if !element(g, after).ends_sequence() {
            next.push(after);
        }
        advance_stack(g, next, out);
    }
}

/// The candidates every stack rejects: each stack in turn filters what the previous ones left.
fn reject_all<'a>(g: &Grammar, stacks: &[Stack], candidates: &[Candidate<'a>]) -> Vec<Candidate<'a>> {
    let Some((first, rest)) = stacks.split_first() else {
        // No stack at all: nothing can come next.
        return candidates.to_vec();
    };
    if candidates.is_empty() {
        return Vec::new();
    }
    let mut rejects = reject_for_stack(g, first, candidates);
    for stack in rest {
        rejects = reject_for_stack(g, stack, &rejects);
    }
    rejects
}

/// The candidates one stack rejects (llama.cpp's `llama_grammar_reject_candidates_for_stack`):
/// match each candidate's next code point against the stack's top, then the survivors' rest
/// against the stacks that follow.
fn reject_for_stack<'a>(g: &Grammar, stack: &[Pos], candidates: &[Candidate<'a>]) -> Vec<Candidate<'a>> {
    let mut rejects = Vec::with_capacity(candidates.len());
    let Some(&top) = stack.last() else {
        // The grammar has ended here: only a token with nothing left fits.
        rejects.extend(candidates.iter().filter(|c| !c.rest().is_empty() || c.partial.n_remain != 0));
        return rejects;
    };
    let top_element = element(g, top);
    if matches!(top_element, Element::Token(_) | Element::TokenNot(_)) {
        for c in candidates {
            let rejected = if c.rest().is_empty() {
                // Its characters were all taken by the char rules before: fine unless it ends in
                // a partial sequence.
                c.partial.n_remain != 0
            } else {
                !match_token(top_element, c.id)
            };
            if rejected {
                rejects.push(*c);
            }
        }
        return rejects;
    }
    let mut next_candidates = Vec::with_capacity(candidates.len());
    for c in candidates {
        match c.rest().first() {
            None => {
                if c.partial.n_remain != 0 && !match_partial_char(g, top, c.partial) {
                    rejects.push(*c);
                }
            }
            Some(&cp) => {
                if match_char(g, top, cp).0 {
                    next_candidates.push(Candidate { at: c.at + 1, ..*c });
                } else {
                    rejects.push(*c);
                }
            }
        }
    }
    if next_candidates.is_empty() {
        return rejects;
    }
    let after = match_char(g, top, 0).1;
    let mut stack_after = stack[..stack.len() - 1].to_vec();
    if !element(g, after).ends_sequence() {
        stack_after.push(after);
    }
    let mut next_stacks = Vec::new();
    advance_stack(g, stack_after, &mut next_stacks);
    // Rejected further on: handed back as they came in, since the caller's next stack matches
    // them from this code point again.
    rejects.extend(
        reject_all(g, &next_stacks, &next_candidates).into_iter().map(|c| Candidate { at: c.at - 1, ..c }),
    );
    rejects
}
