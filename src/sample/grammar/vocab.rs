//! What the grammar needs from the vocabulary, worked out once per model rather than once per
//! token: every token's piece (special tokens as their text, as llama.cpp's piece cache holds
//! them), its code points decoded from a clean start, and whether it ends generation.

use super::matcher::{decode_utf8, PartialUtf8};
use crate::tokenizer::Tokenizer;
use crate::TokenId;

#[derive(Debug, Clone, Default)]
pub struct GrammarVocab {
    /// All pieces end to end; token `i` is `bytes[piece_at[i]..piece_at[i + 1]]`.
    bytes: Vec<u8>,
    piece_at: Vec<usize>,
    /// Decoded code points, laid out the same way, and the partial sequence each piece ends in.
    code_points: Vec<u32>,
    code_points_at: Vec<usize>,
    trailing: Vec<PartialUtf8>,
    eog: Vec<bool>,
}

impl GrammarVocab {
    /// The table for tokens `0..n_vocab`. A piece stops at its first NUL byte: llama.cpp reads
    /// pieces as C strings, so a piece that starts with NUL counts as empty (never allowed).
    pub fn new(
        n_vocab: usize,
        piece: impl Fn(TokenId) -> Vec<u8>,
        is_eog: impl Fn(TokenId) -> bool,
    ) -> GrammarVocab {
        let mut v = GrammarVocab::default();
        v.piece_at.push(0);
        v.code_points_at.push(0);
        for id in 0..n_vocab as TokenId {
            let bytes = piece(id);
            let bytes = bytes.split(|&b| b == 0).next().unwrap_or_default();
            v.bytes.extend_from_slice(bytes);
            v.piece_at.push(v.bytes.len());
            let partial = decode_utf8(bytes, PartialUtf8::default(), &mut v.code_points);
            v.code_points_at.push(v.code_points.len());
            v.trailing.push(partial);
            v.eog.push(is_eog(id));
        }
        v
    }

    pub fn from_tokenizer(tok: &Tokenizer) -> GrammarVocab {
        GrammarVocab::new(tok.n_vocab(), |id| tok.token_to_piece(id, true), |id| tok.is_eog(id))
    }

    pub fn n_vocab(&self) -> usize {
        self.eog.len()
    }

    /// The piece (empty for an id outside the vocabulary).
    pub fn piece(&self, id: TokenId) -> &[u8] {
        let i = id as usize;
        match (self.piece_at.get(i), self.piece_at.get(i + 1)) {
            (Some(&a), Some(&b)) => &self.bytes[a..b],
            _ => &[],
        }
    }

    pub fn is_eog(&self, id: TokenId) -> bool {
        self.eog.get(id as usize).copied().unwrap_or(false)
    }

    /// The piece decoded from a clean start (which is also how a piece decodes after an invalid
    /// sequence): its complete code points and the sequence it leaves open.
    pub(super) fn fresh(&self, id: TokenId) -> (&[u32], PartialUtf8) {
        let i = id as usize;
        match (self.code_points_at.get(i), self.code_points_at.get(i + 1), self.trailing.get(i)) {
            (Some(&a), Some(&b), Some(&p)) => (&self.code_points[a..b], p),
            _ => (&[], PartialUtf8::default()),
        }
    }
}
