//! GBNF grammars, as llama.cpp constrains sampling with them (`--grammar`, `--grammar-file`, the
//! server's `grammar` field).
//!
//! [`Grammar::parse`] compiles the text into llama.cpp's rule form (a flat element list per rule,
//! repetitions rewritten into helper rules, with the same rule numbering), refusing what llama.cpp
//! refuses: syntax errors, undefined rules, a missing `root`, left recursion. A [`GrammarSampler`]
//! then follows the text generated so far as a set of pushdown stacks over those rules and tells
//! which tokens may come next; the [`SamplerChain`](super::SamplerChain) uses it the way
//! llama.cpp's `common_sampler_sample` does (sample freely, and mask and sample again only when the
//! pick does not fit).

mod matcher;
mod parse;
mod vocab;

#[cfg(test)]
mod tests;

pub use matcher::{decode_utf8, GrammarState, PartialUtf8, Refused};
pub use vocab::GrammarVocab;

use super::stages::Candidates;
use crate::TokenId;
use std::sync::Arc;

/// One element of a compiled rule (llama.cpp's `llama_grammar_element`). A rule is a list of
/// alternatives separated by [`Element::Alt`] and closed by [`Element::End`]; a character set is a
/// `Char`/`CharNot`/`CharAny` followed by its `CharRangeUpper`/`CharAlt` modifiers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Element {
    End,
    Alt,
    RuleRef(u32),
    /// A code point (a literal, or the first item of a `[...]` class).
    Char(u32),
    /// The first item of a `[^...]` class.
    CharNot(u32),
    /// Makes the preceding item an inclusive range ending here (`[a-z]`).
    CharRangeUpper(u32),
    /// One more item of the class being built (`[ab]`, `[a-zA]`).
    CharAlt(u32),
    /// `.`
    CharAny,
    /// `<[id]>` or `<text>`: exactly this token.
    Token(TokenId),
    /// `!<[id]>`: any token but this one.
    TokenNot(TokenId),
}

impl Element {
    /// The end of one alternative.
    fn ends_sequence(self) -> bool {
        matches!(self, Element::End | Element::Alt)
    }
}

/// Why a grammar text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrammarError {
    /// The text does not parse; `near` quotes the text where it stopped.
    #[error("{what} at line {line}, column {column}{near}")]
    Syntax { what: String, line: usize, column: usize, near: String },
    #[error("undefined rule '{0}'")]
    UndefinedRule(String),
    #[error("the grammar defines no rules")]
    NoRules,
    #[error("the grammar has no 'root' rule")]
    MissingRoot,
    #[error("left recursion in rule '{0}' (llama.cpp refuses left-recursive grammars too)")]
    LeftRecursion(String),
}

/// A generated token the grammar cannot take (llama.cpp aborts there; rs-llama stops with this).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AcceptError {
    #[error("the grammar cannot continue with token {id} ({piece:?})")]
    Rejected { id: TokenId, piece: String },
    #[error("end of generation (token {0}) before the grammar is complete")]
    EndTooEarly(TokenId),
}

/// A compiled grammar: rules by id (ids as llama.cpp numbers them), their names, the start rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grammar {
    rules: Vec<Vec<Element>>,
    names: Vec<String>,
    root: u32,
}

/// Tokenizes the text of a `<token>` reference (`add_special` off, `parse_special` on).
pub type TokenizeFn<'a> = &'a dyn Fn(&[u8]) -> Vec<TokenId>;

impl Grammar {
    /// Compile GBNF text with `root` as the start rule. `tokenize` resolves `<token>` references
    /// (without it they are an error; `<[id]>` needs none). The text ends at a NUL byte, as
    /// llama.cpp reads it as a C string.
    pub fn parse(text: &[u8], tokenize: Option<TokenizeFn<'_>>) -> Result<Grammar, GrammarError> {
        let text = text.split(|&b| b == 0).next().unwrap_or_default();
        let parsed = parse::parse(text, tokenize)?;
        if parsed.rules.is_empty() {
            return Err(GrammarError::NoRules);
        }
        let root = parsed.symbol("root").ok_or(GrammarError::MissingRoot)?;
        let grammar = Grammar { rules: parsed.rules, names: parsed.names, root };
        if let Some(rule) = grammar.left_recursive_rule() {
            return Err(GrammarError::LeftRecursion(grammar.name(rule).to_string()));
        }
        Ok(grammar)
    }

    /// The rules by id.
    pub fn rules(&self) -> &[Vec<Element>] {
        &self.rules
    }

    /// A rule's name (`root`, or `root_3` for a helper rule made from a group or repetition).
    pub fn name(&self, rule: u32) -> &str {
        self.names.get(rule as usize).map_or("?", String::as_str)
    }

    pub fn root(&self) -> u32 {
        self.root
    }

    /// llama.cpp's left-recursion check, over every rule (reachable from `root` or not): a rule
    /// that can reach itself through leftmost references, where a reference is skipped over when
    /// its rule has an alternative that is empty as written. Returns the rule met again.
    fn left_recursive_rule(&self) -> Option<u32> {
        let n = self.rules.len();
        let mut done = vec![false; n];
        let mut in_progress = vec![false; n];
        let mut may_be_empty = vec![false; n];
        for start in 0..n {
            if !done[start] {
                let found = self.left_recursion_from(start, &mut done, &mut in_progress, &mut may_be_empty);
                if found.is_some() {
                    return found;
                }
            }
        }
        None
    }

    fn left_recursion_from(
        &self,
        rule: usize,
        done: &mut [bool],
        in_progress: &mut [bool],
        may_be_empty: &mut [bool],
    ) -> Option<u32> {
        if in_progress[rule] {
            return Some(rule as u32);
        }
        if done[rule] {
            // Explored before without meeting a rule in progress; nothing new can come of it.
            return None;
        }
        in_progress[rule] = true;
        let elements = &self.rules[rule];
        let mut at_start = true;
        for e in elements {
            if e.ends_sequence() {
                if at_start {
                    may_be_empty[rule] = true;
                    break;
                }
                at_start = true;
            } else {
                at_start = false;
            }
        }
        let mut leftmost = true;
        for e in elements {
            match *e {
                Element::RuleRef(r) if leftmost => {
                    let r = r as usize;
                    if r < self.rules.len() {
                        let found = self.left_recursion_from(r, done, in_progress, may_be_empty);
                        if found.is_some() {
                            return found;
                        }
                        leftmost = may_be_empty[r];
                    }
                }
                e if e.ends_sequence() => leftmost = true,
                _ => leftmost = false,
            }
        }
        in_progress[rule] = false;
        done[rule] = true;
        None
    }
}

/// The grammar stage of a sampler: the matcher's state plus the vocabulary's pieces.
#[derive(Debug, Clone)]
pub struct GrammarSampler {
    state: GrammarState,
    vocab: Arc<GrammarVocab>,
}

impl GrammarSampler {
    /// The sampler for `text`, or `None` for an empty text (llama.cpp: no grammar at all).
    /// `<token>` references are tokenized with `tokenize`.
    pub fn from_text(
        text: &str,
        vocab: Arc<GrammarVocab>,
        tokenize: TokenizeFn<'_>,
    ) -> Result<Option<GrammarSampler>, GrammarError> {
        if text.is_empty() {
            return Ok(None);
        }
        let grammar = Grammar::parse(text.as_bytes(), Some(tokenize))?;
        Ok(Some(GrammarSampler::new(Arc::new(grammar), vocab)))
    }

    pub fn new(grammar: Arc<Grammar>, vocab: Arc<GrammarVocab>) -> GrammarSampler {
        GrammarSampler { state: GrammarState::new(grammar), vocab }
    }

    pub fn state(&self) -> &GrammarState {
        &self.state
    }

    /// Whether `id` may come next (llama.cpp's check of the freely sampled token).
    pub fn allows(&self, id: TokenId) -> bool {
        if self.vocab.is_eog(id) {
            return self.state.can_end();
        }
        let piece = self.vocab.piece(id);
        if piece.is_empty() {
            return false;
        }
        let mut scratch = Vec::new();
        let (cps, partial) = self.decoded(id, piece, &mut scratch);
        let cand = matcher::Candidate::new(0, cps, partial, id);
        self.state.reject(&[cand]).is_empty()
    }

    /// Set every candidate the grammar does not allow to -inf (llama.cpp's grammar sampler):
    /// end-of-generation tokens unless the grammar may end here, empty pieces always.
    pub fn apply(&self, cur: &mut Candidates) {
        let allow_eog = self.state.can_end();
        // Pieces decode on their own unless the last accepted token stopped inside a UTF-8
        // sequence; only then is each piece decoded again, continuing that sequence.
        let continuing = self.state.partial().n_remain > 0;
        let mut flat = Vec::new();
        let mut spans = Vec::new();
        let mut checked: Vec<(usize, TokenId)> = Vec::with_capacity(cur.len());
        for (index, c) in cur.data.iter_mut().enumerate() {
            if self.vocab.is_eog(c.id) {
                if !allow_eog {
                    c.logit = f32::NEG_INFINITY;
                }
            } else if self.vocab.piece(c.id).is_empty() {
                c.logit = f32::NEG_INFINITY;
            } else {
                checked.push((index, c.id));
                if continuing {
                    let begin = flat.len();
                    let partial = decode_utf8(self.vocab.piece(c.id), self.state.partial(), &mut flat);
                    spans.push((begin, flat.len(), partial));
                }
            }
        }
        let cands: Vec<matcher::Candidate<'_>> = checked
            .iter()
            .enumerate()
            .map(|(k, &(index, id))| {
                let (cps, partial) = if continuing {
                    let (begin, end, partial) = spans[k];
                    (&flat[begin..end], partial)
                } else {
                    self.vocab.fresh(id)
                };
                matcher::Candidate::new(index, cps, partial, id)
            })
            .collect();
        for rejected in self.state.reject(&cands) {
            if let Some(c) = cur.data.get_mut(rejected.index) {
                c.logit = f32::NEG_INFINITY;
            }
        }
    }

    /// Advance over a generated token (llama.cpp's grammar accept): an end-of-generation token
    /// only where the grammar may end; any other token must keep some stack alive.
    pub fn accept(&mut self, id: TokenId) -> Result<(), AcceptError> {
        if self.vocab.is_eog(id) {
            return if self.state.can_end() { Ok(()) } else { Err(AcceptError::EndTooEarly(id)) };
        }
        let piece = self.vocab.piece(id);
        self.state.accept_token(Some(id), piece).map_err(|Refused| AcceptError::Rejected {
            id,
            piece: String::from_utf8_lossy(piece).into_owned(),
        })
    }

    /// A token's code points and trailing partial sequence, decoded after the accepted text.
    fn decoded<'s>(
        &'s self,
        id: TokenId,
        piece: &[u8],
        scratch: &'s mut Vec<u32>,
    ) -> (&'s [u32], PartialUtf8) {
        if self.state.partial().n_remain > 0 {
            let partial = decode_utf8(piece, self.state.partial(), scratch);
            (scratch.as_slice(), partial)
        } else {
            self.vocab.fresh(id)
        }
    }
}
