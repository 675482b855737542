//! The prepared weights of a llama-family model, shared by every architecture file.

use super::weights::Weight;
use crate::ops::ffn::FfnWeights;
use crate::ops::matmul::Linear;

/// A linear layer: matrix and optional bias `[n_out]`.
pub struct LinearWeight {
    pub w: Weight,
    pub b: Option<Vec<f32>>,
}

impl LinearWeight {
    pub fn linear(&self) -> Linear<'_> {
        Linear { w: self.w.view(), n_in: self.w.n_in, n_out: self.w.n_out, bias: self.b.as_deref() }
    }
}

pub struct AttnWeights {
    /// `[n_embd, n_head·head_dim_k]`
    pub q: LinearWeight,
    /// `[n_embd, n_head_kv·head_dim_k]`
    pub k: LinearWeight,
    /// `[n_embd, n_head_kv·head_dim_v]`
    pub v: LinearWeight,
    /// `[n_head·head_dim_v, n_embd]`
    pub o: LinearWeight,
}

/// Gate, up and down of a SwiGLU FFN (dense layer or one expert).
pub struct FfnMats {
    pub gate: LinearWeight,
    pub up: LinearWeight,
    pub down: LinearWeight,
}

impl FfnMats {
    pub fn weights(&self) -> FfnWeights<'_> {
        FfnWeights { gate: self.gate.linear(), up: self.up.linear(), down: self.down.linear() }
    }
}

/// A shared expert: a SwiGLU FFN run on every token, scaled by `sigmoid(gate_inp · x)` where it
/// has a gate (Qwen2-MoE), added as it is otherwise (GLM-4.5).
pub struct SharedExpert {
    /// `[n_embd]` (`ffn_gate_inp_shexp`, a single row)
    pub gate_inp: Option<Vec<f32>>,
    pub ffn: FfnMats,
}

pub enum FfnBlock {
    Dense(FfnMats),
    /// `router`: `[n_embd, n_expert]`; experts in id order, whichever layout the file used;
    /// `selection_bias` `[n_expert]` (`exp_probs_b`) added to the probabilities to choose experts.
    Moe {
        router: Weight,
        /// `[n_expert]` added to the router's logits (gpt-oss).
        router_b: Option<Vec<f32>>,
        selection_bias: Option<Vec<f32>>,
        experts: Vec<FfnMats>,
        shared: Option<SharedExpert>,
    },
}

pub struct LayerWeights {
    /// `[n_embd]`
    pub attn_norm: Vec<f32>,
    /// `[n_embd]`, added after the RMSNorm's scale (PhiMoE).
    pub attn_norm_b: Option<Vec<f32>>,
    pub attn: AttnWeights,
    /// `[head_dim_k]` each: per-head RMSNorm of Q and K before rope (Qwen3).
    pub qk_norm: Option<(Vec<f32>, Vec<f32>)>,
    /// `[n_head]` sink logits of the attention's softmax (gpt-oss).
    pub attn_sinks: Option<Vec<f32>>,
    /// `[n_embd]`
    pub ffn_norm: Vec<f32>,
    /// `[n_embd]` (PhiMoE).
    pub ffn_norm_b: Option<Vec<f32>>,
    pub ffn: FfnBlock,
}

pub struct ModelWeights {
    /// `[n_embd, n_vocab]`
    pub tok_embd: Weight,
    /// `[n_embd]`
    pub output_norm: Vec<f32>,
    /// `[n_embd]` (PhiMoE).
    pub output_norm_b: Option<Vec<f32>>,
    /// `[n_embd, n_vocab]`; `None` when tied to `tok_embd`.
    pub output: Option<Weight>,
    /// `[n_vocab]`
    pub output_b: Option<Vec<f32>>,
    /// `[n_rot/2]` frequency divisors (LLaMA-3 `rope_freqs`; Phi-3's `rope_factors_short`).
    pub rope_freqs: Option<Vec<f32>>,
    /// `[n_rot/2]` Phi-3's `rope_factors_long`, used when the context exceeds `n_ctx_orig`.
    pub rope_freqs_long: Option<Vec<f32>>,
    pub layers: Vec<LayerWeights>,
}

impl ModelWeights {
    pub fn output_head(&self) -> &Weight {
        self.output.as_ref().unwrap_or(&self.tok_embd)
    }
}
