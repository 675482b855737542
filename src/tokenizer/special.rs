//! Cutting a prompt at the text of special tokens before the merge tokenizer sees it.
//!
//! Tokens are taken longest first; each one is searched for in every stretch of plain text still
//! left, and every occurrence becomes that token. User-defined tokens are always matched; control
//! and unknown tokens only when `parse_special`. A token with the lstrip (rstrip) attribute also
//! swallows the white space before (after) it.

use super::vocab::{attr, Vocab};
use crate::TokenId;
use memchr::memmem;
use std::ops::Range;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fragment {
    /// A byte range of the prompt, never empty.
    Text(Range<usize>),
    Token(TokenId),
}

/// C's `isspace` in the "C" locale.
fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r')
}

/// The special tokens to look for, longest first, with their searchers built once.
pub struct SpecialMatcher {
    entries: Vec<SpecialEntry>,
}

struct SpecialEntry {
    id: TokenId,
    attrs: u16,
    finder: memmem::Finder<'static>,
}

impl SpecialMatcher {
    pub fn new(vocab: &Vocab) -> SpecialMatcher {
        let entries = vocab
            .special_search_order
            .iter()
            .map(|&id| {
                let token = &vocab.tokens[id as usize];
                SpecialEntry {
                    id,
                    attrs: token.attr,
                    finder: memmem::Finder::new(token.text.as_bytes()).into_owned(),
                }
            })
            .collect();
        SpecialMatcher { entries }
    }

    pub fn partition(&self, text: &[u8], parse_special: bool) -> Vec<Fragment> {
        let mut fragments = Vec::new();
        if text.is_empty() {
            return fragments;
        }
        fragments.push(Fragment::Text(0..text.len()));
        for entry in &self.entries {
            if !parse_special && entry.attrs & (attr::CONTROL | attr::UNKNOWN) != 0 {
                continue;
            }
            let finder = &entry.finder;
            // Most tokens never occur: check once before rebuilding the list.
            let occurs = fragments.iter().any(|f| match f {
                Fragment::Text(r) => {
                    r.len() >= finder.needle().len() && finder.find(&text[r.clone()]).is_some()
                }
                Fragment::Token(_) => false,
            });
            if !occurs {
                continue;
            }
            let mut next = Vec::with_capacity(fragments.len() + 2);
            for fragment in fragments {
                match fragment {
                    Fragment::Token(_) => next.push(fragment),
                    Fragment::Text(range) => split_at_token(text, range, entry, &mut next),
                }
            }
            fragments = next;
        }
        fragments
    }
}

fn split_at_token(text: &[u8], mut rest: Range<usize>, entry: &SpecialEntry, out: &mut Vec<Fragment>) {
    let (id, attrs, finder) = (entry.id, entry.attrs, &entry.finder);
    let len = finder.needle().len();
    while let Some(found) = finder.find(&text[rest.clone()]) {
        let at = rest.start + found;
        let mut left_end = at;
        if attrs & attr::LSTRIP != 0 {
            while left_end > rest.start && is_c_space(text[left_end - 1]) {
                left_end -= 1;
            }
        }
        if left_end > rest.start {
            out.push(Fragment::Text(rest.start..left_end));
        }
        out.push(Fragment::Token(id));
        let mut right_start = at + len;
        if attrs & attr::RSTRIP != 0 {
            while right_start < rest.end && is_c_space(text[right_start]) {
                right_start += 1;
            }
        }
        rest = right_start..rest.end;
    }
    if !rest.is_empty() {
        out.push(Fragment::Text(rest));
    }
}
