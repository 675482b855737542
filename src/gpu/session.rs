//! One executor interface over both engines: a sequence evaluated by the CPU [`Session`] or, with
//! the whole model resident, by the GPU. Callers (the CLI, the bench tool) hold an
//! [`EngineSession`] and need no `#[cfg]`: without the `cuda` feature the GPU variant cannot be
//! built.

use super::GpuLlamaSession;
use crate::model::{Logits, ModelError, Session};
use crate::TokenId;

pub enum EngineSession<'m> {
    Cpu(Session<'m>),
    Gpu(Box<GpuLlamaSession<'m>>),
}

impl EngineSession<'_> {
    /// Evaluate `tokens` at positions `n_past..` (see [`Session::decode`]).
    pub fn decode(&mut self, tokens: &[TokenId], logits: Logits) -> Result<Vec<f32>, ModelError> {
        match self {
            EngineSession::Cpu(s) => s.decode(tokens, logits),
            EngineSession::Gpu(s) => {
                let n_ctx = s.n_ctx();
                if s.n_past() + tokens.len() > n_ctx {
                    return Err(ModelError::ContextFull { n_past: s.n_past(), n_new: tokens.len(), n_ctx });
                }
                s.decode(tokens, logits == Logits::All).map_err(|e| ModelError::Invalid(format!("gpu: {e}")))
            }
        }
    }

    pub fn n_past(&self) -> usize {
        match self {
            EngineSession::Cpu(s) => s.n_past(),
            EngineSession::Gpu(s) => s.n_past(),
        }
    }

    pub fn n_ctx(&self) -> usize {
        match self {
            EngineSession::Cpu(s) => s.n_ctx(),
            EngineSession::Gpu(s) => s.n_ctx(),
        }
    }

    pub fn clear(&mut self) {
        match self {
            EngineSession::Cpu(s) => s.clear(),
            EngineSession::Gpu(s) => s.clear(),
        }
    }

    /// "CPU" or "GPU", for logs.
    pub fn engine(&self) -> &'static str {
        match self {
            EngineSession::Cpu(_) => "CPU",
            EngineSession::Gpu(_) => "GPU",
        }
    }
}
