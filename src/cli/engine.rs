//! What the completion loop needs from a model and a vocabulary, as two small traits, so that the
//! loop can be tested with a fake model; the real ones wrap [`Session`] and [`Tokenizer`].

use crate::exec::EngineSession;
use crate::model::{Logits, ModelError};
use crate::tokenizer::Tokenizer;
use crate::TokenId;

/// A model being evaluated over one sequence.
pub trait Engine {
    fn n_vocab(&self) -> usize;
    /// KV positions available.
    fn n_ctx(&self) -> usize;
    /// Append `tokens` to the sequence and return the `[n_vocab]` logits of the last one.
    fn decode(&mut self, tokens: &[TokenId]) -> Result<Vec<f32>, ModelError>;
    /// Forget the sequence (after warm-up).
    fn clear(&mut self);
}

/// The vocabulary side: tokenizing the prompt and printing tokens.
pub trait Vocab {
    fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<TokenId>;
    /// Bytes of a token (control tokens give nothing unless `special`).
    fn piece(&self, id: TokenId, special: bool) -> Vec<u8>;
    fn is_eog(&self, id: TokenId) -> bool;
    fn eog_tokens(&self) -> Vec<TokenId>;
    fn bos(&self) -> Option<TokenId>;
    fn eos(&self) -> Option<TokenId>;
    fn add_bos(&self) -> bool;
    /// End-of-turn token (inserted when the user interrupts a reply in conversation mode).
    fn eot(&self) -> Option<TokenId> {
        None
    }
}

/// A CPU or GPU session as an [`Engine`].
pub struct SessionEngine<'m> {
    pub session: EngineSession<'m>,
    pub n_vocab: usize,
}

impl Engine for SessionEngine<'_> {
    fn n_vocab(&self) -> usize {
        self.n_vocab
    }

    fn n_ctx(&self) -> usize {
        self.session.n_ctx()
    }

    fn decode(&mut self, tokens: &[TokenId]) -> Result<Vec<f32>, ModelError> {
        self.session.decode(tokens, Logits::Last)
    }

    fn clear(&mut self) {
        self.session.clear();
    }
}

impl Vocab for Tokenizer {
    fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<TokenId> {
        Tokenizer::encode(self, text, add_special, parse_special)
    }

    fn piece(&self, id: TokenId, special: bool) -> Vec<u8> {
        self.token_to_piece(id, special)
    }

    fn is_eog(&self, id: TokenId) -> bool {
        Tokenizer::is_eog(self, id)
    }

    fn eog_tokens(&self) -> Vec<TokenId> {
        Tokenizer::eog_tokens(self)
    }

    fn bos(&self) -> Option<TokenId> {
        Tokenizer::bos(self)
    }

    fn eos(&self) -> Option<TokenId> {
        Tokenizer::eos(self)
    }

    fn add_bos(&self) -> bool {
        Tokenizer::add_bos(self)
    }

    fn eot(&self) -> Option<TokenId> {
        Tokenizer::eot(self)
    }
}
