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
        Linear {
            w: self.w.view(),
            n_in: self.w.n_in,
            n_out: self.w.n_out,
            bias: self.b.as_deref(),
            lora: &[],
        }
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

/// Multi-head latent attention (DeepSeek-V2/V3), as llama.cpp runs it with the absorption
/// optimisation: attention over one shared compressed KV head (`kv_lora` values plus the rope key),
/// each query head's no-rope part first mapped into that space by its `k_b`, each head's output
/// mapped back by its `v_b`.
pub struct LatentAttnWeights {
    pub q: LatentQuery,
    /// `[n_embd, kv_lora + n_rot]`: the compressed KV, then the shared rope key.
    pub kv_a: LinearWeight,
    /// `[kv_lora]`
    pub kv_a_norm: Vec<f32>,
    /// Per head `[nope, kv_lora]` (`attn_k_b`).
    pub k_b: Vec<LinearWeight>,
    /// Per head `[kv_lora, head_dim_v_mla]` (`attn_v_b`).
    pub v_b: Vec<LinearWeight>,
    /// `[n_head·head_dim_v_mla, n_embd]`
    pub o: LinearWeight,
}

/// How a latent-attention layer makes Q `[n_head·(nope + n_rot)]`.
pub enum LatentQuery {
    /// `attn_q` (DeepSeek-V2-Lite).
    Direct(LinearWeight),
    /// `attn_q_b · rms_norm(attn_q_a · x)` (V2, V3).
    LowRank { a: LinearWeight, norm: Vec<f32>, b: LinearWeight },
}

/// A layer's attention weights.
pub enum AttnBlock {
    /// Q, K, V and O per head (every family but DeepSeek).
    Heads(AttnWeights),
    Latent(LatentAttnWeights),
}

impl AttnBlock {
    /// Every matrix, in the attention task's order (see `exec::binding`): Q, K, V, O; or the
    /// latent one's Q (or Q_a, Q_b), KV_a, each head's K_b, each head's V_b, O.
    pub fn linears(&self) -> Vec<&LinearWeight> {
        match self {
            AttnBlock::Heads(a) => vec![&a.q, &a.k, &a.v, &a.o],
            AttnBlock::Latent(m) => {
                let mut v = match &m.q {
                    LatentQuery::Direct(q) => vec![q],
                    LatentQuery::LowRank { a, b, .. } => vec![a, b],
                };
                v.push(&m.kv_a);
                v.extend(&m.k_b);
                v.extend(&m.v_b);
                v.push(&m.o);
                v
            }
        }
    }

    /// The norm vectors inside the block (latent attention's).
    pub fn norm_params(&self) -> usize {
        match self {
            AttnBlock::Heads(_) => 0,
            AttnBlock::Latent(m) => {
                m.kv_a_norm.len()
                    + match &m.q {
                        LatentQuery::LowRank { norm, .. } => norm.len(),
                        LatentQuery::Direct(_) => 0,
                    }
            }
        }
    }

    /// The weights' storage type (of the first matrix).
    pub fn dtype(&self) -> gguf::DType {
        self.linears().first().map_or(gguf::DType::F32, |l| l.w.dtype())
    }
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
    pub attn: AttnBlock,
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
