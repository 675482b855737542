//! Models: the `Arch` enum with typed properties, hyperparameters parsed once, and the weights the
//! layer tasks of [`crate::exec`] compute with.

pub mod arch;
mod blocks;
pub mod deepseek2;
pub mod hparams;
pub mod llama;
pub mod lora;
pub mod mixed;
pub mod phi3;
pub mod qwen2;
pub mod qwen3;
pub mod tensors;
pub mod weights;

use std::path::Path;
use std::sync::Arc;

use gguf::GgufFile;

pub use arch::Arch;
pub use hparams::HParams;

use crate::ops::rope::RopeParams;
use tensors::{FfnBlock, ModelWeights};

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

/// A loaded model. Holds the file (shared) because f16/bf16/f32 weights are read from its map.
pub struct Model {
    file: Arc<GgufFile>,
    arch: Arch,
    hparams: HParams,
    rope: RopeParams,
    /// Phi-3's rope with `rope_factors_long`, for contexts beyond `n_ctx_orig`.
    rope_long: Option<RopeParams>,
    weights: ModelWeights,
}

impl Model {
    /// Validate hparams and weights of `file` and prepare them for the CPU (quantized tensors are
    /// dequantized here, f16/bf16/f32 are used in place from the map).
    pub fn load(file: Arc<GgufFile>, opts: &LoadOptions) -> Result<Model, ModelError> {
        let arch = Arch::from_name(file.architecture()?)?;
        let hparams = HParams::parse(&file, arch)?;
        let loader = weights::Loader::new(file.clone(), opts.progress);
        let weights = match arch {
            Arch::Llama => llama::load(&loader, &hparams, arch),
            Arch::Qwen2 | Arch::Qwen2Moe => qwen2::load(&loader, &hparams, arch),
            Arch::Phi3 | Arch::PhiMoe => phi3::load(&loader, &hparams, arch),
            Arch::Qwen3 | Arch::Qwen3Moe => qwen3::load(&loader, &hparams, arch),
            Arch::Glm4Moe | Arch::Llama4 | Arch::GptOss | Arch::Deepseek2 => {
                mixed::load(&loader, &hparams, arch)
            }
        };
        loader.finish();
        let weights = weights?;
        let rope = RopeParams {
            style: hparams.rope_style,
            n_rot: hparams.n_rot,
            freq_base: hparams.rope_freq_base,
            freq_scale: hparams.rope_freq_scale,
            freq_factors: weights.rope_freqs.clone(),
            yarn: hparams.yarn,
        };
        let rope_long =
            weights.rope_freqs_long.clone().map(|f| RopeParams { freq_factors: Some(f), ..rope.clone() });
        Ok(Model { file, arch, hparams, rope, rope_long, weights })
    }

    /// Open `path` and load it.
    pub fn open(path: impl AsRef<Path>, opts: &LoadOptions) -> Result<Model, ModelError> {
        Model::load(Arc::new(GgufFile::open(path)?), opts)
    }

    pub fn n_vocab(&self) -> usize {
        self.hparams.n_vocab
    }
    /// n_ctx_train from the file.
    pub fn n_ctx_train(&self) -> usize {
        self.hparams.n_ctx_train
    }
    /// The context when none is asked for (`-c 0`): the trained one, as llama.cpp, but no more
    /// than the model runs exactly (Llama 4: one attention chunk).
    pub fn default_context(&self) -> usize {
        self.hparams.max_context().map_or(self.hparams.n_ctx_train, |max| max.min(self.hparams.n_ctx_train))
    }
    pub fn arch(&self) -> Arch {
        self.arch
    }
    pub fn hparams(&self) -> &HParams {
        &self.hparams
    }
    pub fn file(&self) -> &Arc<GgufFile> {
        &self.file
    }
    pub(crate) fn weights(&self) -> &ModelWeights {
        &self.weights
    }
    /// The rope for a context of `n_ctx` positions: as llama.cpp, Phi-3's long factors apply when
    /// the context exceeds the original one.
    pub(crate) fn rope_for(&self, n_ctx: usize) -> &RopeParams {
        match &self.rope_long {
            Some(long) if n_ctx > self.hparams.n_ctx_orig => long,
            _ => &self.rope,
        }
    }

    /// Parameters of the matrices and vectors the forward pass uses (tied output counted once).
    pub fn n_params(&self) -> u64 {
        let w = &self.weights;
        let mat = |m: &weights::Weight| (m.n_in * m.n_out) as u64;
        let vec_len = |v: &Option<Vec<f32>>| v.as_ref().map_or(0, |v| v.len() as u64);
        let mut n = mat(&w.tok_embd) + w.output.as_ref().map_or(0, mat) + w.output_norm.len() as u64;
        n += vec_len(&w.output_norm_b) + vec_len(&w.output_b);
        for l in &w.layers {
            n += (l.attn_norm.len() + l.ffn_norm.len()) as u64;
            n += vec_len(&l.attn_norm_b) + vec_len(&l.ffn_norm_b);
            n += l.qk_norm.as_ref().map_or(0, |(q, k)| (q.len() + k.len()) as u64);
            n += vec_len(&l.attn_sinks);
            for lin in l.attn.linears() {
                n += mat(&lin.w) + lin.b.as_ref().map_or(0, |b| b.len() as u64);
            }
            n += l.attn.norm_params() as u64;
            let ffn = |m: &tensors::FfnMats| mat(&m.gate.w) + mat(&m.up.w) + mat(&m.down.w);
            n += match &l.ffn {
                FfnBlock::Dense(m) => ffn(m),
                FfnBlock::Moe { router, router_b, selection_bias, experts, shared } => {
                    mat(router)
                        + vec_len(router_b)
                        + vec_len(selection_bias)
                        + experts.iter().map(ffn).sum::<u64>()
                        + shared.as_ref().map_or(0, |s| vec_len(&s.gate_inp) + ffn(&s.ffn))
                }
            };
        }
        n
    }

    /// Human summary of the model (arch, sizes) for the load log.
    pub fn describe(&self) -> String {
        let hp = &self.hparams;
        let moe = if hp.is_moe() {
            format!(", experts {} (used {})", hp.n_expert, hp.n_expert_used)
        } else {
            String::new()
        };
        format!(
            "arch {}, {:.1}M params, n_layer {}, n_embd {}, n_head {} (kv {}), head_dim {}, n_ff {}{moe}, \
             n_vocab {}, n_ctx_train {}, rope {:?} base {} scale {}, weights {}, output {}",
            self.arch,
            self.n_params() as f64 / 1e6,
            hp.n_layer,
            hp.n_embd,
            hp.n_head,
            hp.n_head_kv,
            hp.head_dim_k,
            hp.n_ff,
            hp.n_vocab,
            hp.n_ctx_train,
            hp.rope_style,
            hp.rope_freq_base,
            hp.rope_freq_scale,
            self.weights.layers.first().map_or(gguf::DType::F32, |l| l.attn.dtype()),
            if self.weights.output.is_some() { "separate" } else { "tied to token_embd" },
        )
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
