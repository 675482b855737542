//! rs-llama: a Rust inference engine for GGUF language models, a drop-in for llama.cpp workflows.
//!
//! Data flows one way: CLI → ([`gguf`] → [`model`], [`tokenizer`]) → plan → [`exec`] → [`ops`] →
//! [`cpu`] | [`gpu`] → logits → [`sample`] → text.
//!
//! Dimension convention (as ggml): a matrix `[n_in, n_out]` has `n_in` contiguous elements per row;
//! a linear layer computes `y[o] = Σ_i W[o][i] · x[i]`. Activations are f32 `[n_embd]` per token,
//! row-major `[n_tokens][n_embd]` for a batch.

pub mod bench;
pub mod chat;
pub mod cli;
pub mod cpu;
pub mod exec;
pub mod gpu;
pub mod model;
pub mod ops;
pub mod perplexity;
pub mod plan;
pub mod sample;
pub mod server;
pub mod tokenizer;

pub use gguf;

/// A token id, as llama.cpp's `llama_token` (non-negative in practice).
pub type TokenId = u32;
