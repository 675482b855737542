//! GGUF vocab → tokenizer: SPM (`tokenizer.ggml.model = llama`) and byte-level BPE (`gpt2`) with
//! llama.cpp's pre-tokenizers, special tokens, detokenization. (Contract fixed; body by the tokenizer
//! work.)

use crate::TokenId;
use gguf::GgufFile;

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error(transparent)]
    Gguf(#[from] gguf::GgufError),
    #[error("tokenizer: {0}")]
    Invalid(String),
}

pub struct Tokenizer {}

impl Tokenizer {
    /// Build from the `tokenizer.ggml.*` keys of a GGUF file.
    pub fn from_gguf(_file: &GgufFile) -> Result<Tokenizer, TokenizerError> {
        Err(TokenizerError::Invalid("not implemented".into()))
    }

    /// llama.cpp's `llama_tokenize(text, add_special, parse_special)`: `add_special` adds BOS/EOS as
    /// the vocab says; `parse_special` turns the text of control/user-defined tokens into those tokens.
    pub fn encode(&self, _text: &str, _add_special: bool, _parse_special: bool) -> Vec<TokenId> {
        todo!()
    }

    /// llama.cpp's `llama_token_to_piece(id, lstrip = 0, special)`: the bytes of one token (a piece may
    /// be a partial UTF-8 sequence). Control tokens give nothing unless `special`.
    pub fn token_to_piece(&self, _id: TokenId, _special: bool) -> Vec<u8> {
        todo!()
    }

    /// llama.cpp's `llama_detokenize(ids, remove_special, unparse_special)`.
    pub fn detokenize(&self, _ids: &[TokenId], _remove_special: bool, _unparse_special: bool) -> String {
        todo!()
    }

    pub fn n_vocab(&self) -> usize {
        todo!()
    }
    pub fn bos(&self) -> Option<TokenId> {
        todo!()
    }
    pub fn eos(&self) -> Option<TokenId> {
        todo!()
    }
    /// Whether `encode(.., add_special = true, ..)` prepends BOS.
    pub fn add_bos(&self) -> bool {
        todo!()
    }
    pub fn add_eos(&self) -> bool {
        todo!()
    }
    /// End-of-generation token (EOS, EOT, EOM, and tokens whose text llama.cpp treats as EOG).
    pub fn is_eog(&self, _id: TokenId) -> bool {
        todo!()
    }
    /// All end-of-generation tokens (for `--ignore-eos`).
    pub fn eog_tokens(&self) -> Vec<TokenId> {
        todo!()
    }
}
