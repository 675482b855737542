//! Models: the `Arch` enum with typed properties, hyperparameters parsed once, weights, and the
//! forward pass over a KV cache. (Contract fixed; body by the model work.)

use crate::TokenId;
use gguf::GgufFile;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Gguf(#[from] gguf::GgufError),
    #[error("unknown model architecture '{0}' (supported: {1})")]
    UnknownArch(String, String),
    #[error("model: {0}")]
    Invalid(String),
    #[error("context full: {n_past} + {n_new} tokens exceed n_ctx = {n_ctx}")]
    ContextFull { n_past: usize, n_new: usize, n_ctx: usize },
}

/// What the loader is told.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Show an indicatif bar on stderr while weights are prepared.
    pub progress: bool,
}

pub struct Model {}

impl Model {
    /// Validate hparams and weights of `file` and prepare them for the CPU (quantized tensors are
    /// dequantized here, f16/bf16/f32 are used in place from the map).
    pub fn load(_file: &GgufFile, _opts: &LoadOptions) -> Result<Model, ModelError> {
        Err(ModelError::Invalid("not implemented".into()))
    }

    pub fn n_vocab(&self) -> usize {
        todo!()
    }
    /// n_ctx_train from the file.
    pub fn n_ctx_train(&self) -> usize {
        todo!()
    }
    /// Human summary of the model (arch, sizes) for the load log.
    pub fn describe(&self) -> String {
        todo!()
    }
}

/// Which logits `Session::decode` returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logits {
    /// `[n_vocab]` for the last token of the batch.
    Last,
    /// `[n_tokens][n_vocab]` for every token of the batch.
    All,
}

/// One sequence being evaluated: a KV cache (f16) of `n_ctx` positions plus scratch buffers.
pub struct Session<'m> {
    _model: &'m Model,
}

impl<'m> Session<'m> {
    /// `n_ubatch`: the largest number of tokens evaluated in one pass (llama.cpp's `-ub`).
    pub fn new(_model: &'m Model, _n_ctx: usize, _n_ubatch: usize) -> Result<Session<'m>, ModelError> {
        todo!()
    }

    /// Evaluate `tokens` at positions `n_past..n_past + len` and append them to the KV cache.
    pub fn decode(&mut self, _tokens: &[TokenId], _logits: Logits) -> Result<Vec<f32>, ModelError> {
        todo!()
    }

    /// Tokens in the KV cache.
    pub fn n_past(&self) -> usize {
        todo!()
    }

    pub fn n_ctx(&self) -> usize {
        todo!()
    }

    /// Empty the KV cache.
    pub fn clear(&mut self) {
        todo!()
    }
}
