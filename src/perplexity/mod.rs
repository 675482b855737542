//! llama-perplexity's measurements: perplexity over fixed-size chunks of a text, and the
//! KL-divergence check against a stored "base" file of quantized log-probabilities, with
//! llama.cpp's chunking, arithmetic, file layout and printed statistics.
//!
//! Chunking (shared by both modes): chunk `i` is tokens `[i·n_ctx, (i+1)·n_ctx)`, evaluated from an
//! empty KV cache, its first token replaced by BOS when the vocabulary adds one. Only the second
//! half is scored: the logits at positions `n_ctx/2 ..= n_ctx−2` predict the next token, so each
//! chunk yields `n_ctx − 1 − n_ctx/2` scored rows.

pub mod base_file;
pub mod cli;
pub mod device;
pub mod eval;
pub mod logprobs;
pub mod run;
pub mod stats;

use crate::model::ModelError;

/// Errors of the perplexity tool; every one reads as a single line.
#[derive(Debug, thiserror::Error)]
pub enum PerplexityError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0} does not look like a file containing log-probabilities")]
    NotLogProbs(String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// Scored rows per chunk: positions `n_ctx/2 ..= n_ctx−2` (the last token predicts nothing inside
/// the chunk).
pub fn n_scored(n_ctx: usize) -> usize {
    n_ctx.saturating_sub(1 + n_ctx / 2)
}
