//! SentencePiece-style merges (`tokenizer.ggml.model = llama`).
//!
//! The text is cut into UTF-8 characters; neighbouring symbols whose concatenation is a token are
//! merged, highest token score first (ties: leftmost). What is left and is not a token is spelled
//! with byte tokens `<0xXX>`.

use super::unicode::utf8_len_from_lead;
use super::vocab::Vocab;
use crate::TokenId;
use std::cmp::Ordering;
use std::collections::BinaryHeap;

pub struct Spm {
    /// `[byte] → <0xXX>` token, or else the token spelled as that single byte.
    byte_token: [Option<TokenId>; 256],
}

impl Spm {
    pub fn new(vocab: &Vocab) -> Spm {
        let mut byte_token = [None; 256];
        for (b, slot) in byte_token.iter_mut().enumerate() {
            *slot = vocab.id_of(format!("<0x{b:02X}>").as_bytes()).or_else(|| vocab.id_of(&[b as u8]));
        }
        Spm { byte_token }
    }

    /// Tokenize `text` (already `▁`-escaped), appending to `out`.
    pub fn encode(&self, vocab: &Vocab, text: &[u8], out: &mut Vec<TokenId>) {
        let mut symbols = Vec::with_capacity(text.len());
        let mut offset = 0;
        while offset < text.len() {
            let len = utf8_len_from_lead(text[offset]).min(text.len() - offset);
            let index = symbols.len() as i32;
            offset += len;
            symbols.push(Symbol {
                start: offset - len,
                len,
                prev: index - 1,
                next: if offset == text.len() { -1 } else { index + 1 },
            });
        }

        let mut queue = BinaryHeap::new();
        let push = |queue: &mut BinaryHeap<Bigram>, symbols: &[Symbol], left: i32, right: i32| {
            if left < 0 || right < 0 {
                return;
            }
            let (l, r) = (&symbols[left as usize], &symbols[right as usize]);
            let joined = &text[l.start..r.start + r.len];
            if let Some(id) = vocab.id_of(joined) {
                let score = vocab.tokens[id as usize].score;
                queue.push(Bigram { score, left: left as usize, right: right as usize, size: joined.len() });
            }
        };
        for i in 1..symbols.len() as i32 {
            push(&mut queue, &symbols, i - 1, i);
        }
        while let Some(bigram) = queue.pop() {
            let (l, r) = (symbols[bigram.left], symbols[bigram.right]);
            // Stale: one side was merged away or grew since the pair was queued.
            if l.len == 0 || r.len == 0 || l.len + r.len != bigram.size {
                continue;
            }
            symbols[bigram.left].len += r.len;
            symbols[bigram.left].next = r.next;
            symbols[bigram.right].len = 0;
            if r.next >= 0 {
                symbols[r.next as usize].prev = bigram.left as i32;
            }
            let left = bigram.left as i32;
            push(&mut queue, &symbols, l.prev, left);
            push(&mut queue, &symbols, left, r.next);
        }

        let mut i = if symbols.is_empty() { -1 } else { 0 };
        while i >= 0 {
            let sym = symbols[i as usize];
            let piece = &text[sym.start..sym.start + sym.len];
            match vocab.id_of(piece) {
                Some(id) => out.push(id),
                None => out.extend(piece.iter().filter_map(|&b| self.byte_token[b as usize])),
            }
            i = sym.next;
        }
    }
}

#[derive(Clone, Copy)]
struct Symbol {
    start: usize,
    len: usize,
    prev: i32,
    next: i32,
}

struct Bigram {
    score: f32,
    left: usize,
    right: usize,
    size: usize,
}

impl Ord for Bigram {
    /// Higher score first; equal scores (and NaN, as C++'s `<` treats it) put the leftmost first.
    fn cmp(&self, other: &Self) -> Ordering {
        match self.score.partial_cmp(&other.score) {
            Some(Ordering::Equal) | None => other.left.cmp(&self.left),
            Some(order) => order,
        }
    }
}

impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Bigram {}
