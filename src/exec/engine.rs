//! One executor interface over both engines: a sequence evaluated by the CPU [`Session`] or, with
//! the whole model resident, by the GPU. Callers (the CLI, the bench tool) hold an
//! [`EngineSession`] and need no `#[cfg]`: without the `cuda` feature the GPU variant cannot be
//! built.

use super::Session;
use crate::gpu::{start_or_fall_back, Gpu, GpuLlama, GpuLlamaSession, GpuOptions};
use crate::model::{Logits, Model, ModelError};
use crate::TokenId;

/// Put `model` on the GPU for `-ngl n_gpu_layers`, or say in one line on stderr why the CPU is
/// used: `n_gpu_layers` 0 asks for none; at least the model's layer count puts the whole model on
/// the GPU; a smaller count is left to the hybrid executor.
pub fn load_on_gpu(model: &Model, opts: &GpuOptions, n_gpu_layers: usize) -> Option<(Gpu, GpuLlama)> {
    if n_gpu_layers == 0 {
        return None;
    }
    let n_layer = model.hparams().n_layer;
    if n_gpu_layers < n_layer {
        // Fewer layers than the model has: the hybrid executor places them (`-dev cudaN`).
        eprintln!("gpu: -ngl {n_gpu_layers} < {n_layer} layers: the hybrid executor splits the model");
        return None;
    }
    let gpu = start_or_fall_back(opts)?;
    match GpuLlama::from_model(&gpu, model) {
        Ok(resident) => Some((gpu, resident)),
        Err(e) => {
            eprintln!("gpu: {e}; running on the CPU");
            None
        }
    }
}

pub enum EngineSession<'m> {
    Cpu(Session<'m>),
    Gpu(Box<GpuLlamaSession<'m>>),
}

impl<'m> EngineSession<'m> {
    /// A session on the GPU when the model is resident there (see [`load_on_gpu`]), else on the CPU.
    pub fn new(
        model: &'m Model,
        resident: Option<&'m (Gpu, GpuLlama)>,
        n_ctx: usize,
        n_ubatch: usize,
    ) -> Result<EngineSession<'m>, ModelError> {
        match resident {
            Some((gpu, m)) => GpuLlamaSession::new(gpu, m, n_ctx, n_ubatch)
                .map(|s| EngineSession::Gpu(Box::new(s)))
                .map_err(|e| ModelError::Invalid(format!("gpu: {e}"))),
            None => Session::new(model, n_ctx, n_ubatch).map(EngineSession::Cpu),
        }
    }

    /// Apply LoRA adapters (see [`Session::set_lora`]); the GPU engine has none, so it refuses them.
    pub fn set_lora(&mut self, lora: Vec<crate::model::lora::ActiveLora>) -> Result<(), ModelError> {
        match self {
            EngineSession::Cpu(s) => s.set_lora(lora),
            EngineSession::Gpu(_) if lora.is_empty() => Ok(()),
            EngineSession::Gpu(_) => {
                Err(ModelError::Invalid("LoRA adapters run on the CPU path only (use -ngl 0)".into()))
            }
        }
    }

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
