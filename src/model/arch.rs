//! The supported architectures and what sets them apart, as typed properties.
//!
//! Adding an architecture: a variant here (with its properties in every `match`), a file that
//! loads its tensors (like `llama.rs`), and a line in `Model::load`'s dispatch.

use gguf::names::TensorKind;

use crate::ops::ffn::Glu;
use crate::ops::moe::{ExpertGating, ExpertRouting};
use crate::ops::rope::RopeStyle;

use super::ModelError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// LLaMA-2/3, Mistral, SmolLM; Mixtral when `expert_count > 0`.
    Llama,
    /// Qwen2 / Qwen2.5: LLaMA's graph with Q/K/V biases and NEOX rope.
    Qwen2,
    /// Qwen1.5-MoE / Qwen2-MoE: routed experts (not renormalised) plus a sigmoid-gated shared expert.
    Qwen2Moe,
    /// Phi-3 / Phi-3.5-mini: fused QKV and gate/up, Q pre-scaled, long/short RoPE factors.
    Phi3,
    /// Phi-3.5-MoE as llama.cpp runs it: Phi-3's graph with RMSNorm + bias and biased heads.
    PhiMoe,
    /// Qwen3: per-head RMSNorm of Q and K before rope.
    Qwen3,
    /// Qwen3-MoE: Qwen3's attention with routed experts (renormalised).
    Qwen3Moe,
    /// GLM-4.5 / 4.6 / 4.5-Air: Q/K/V biases, rope over part of each head, leading dense layers,
    /// then sigmoid-routed experts (chosen with a selection bias, renormalised and scaled) plus an
    /// ungated shared expert; a NextN block after the trunk is not run.
    Glm4Moe,
    /// Llama 4 Scout / Maverick: MoE every `interleave_moe_layer_step`-th layer (top-k on the
    /// router logits, sigmoid weights applied to the expert's input) plus a shared expert; with
    /// chunked attention, every fourth layer has no rope (and temperature-scaled Q), the others
    /// RMS-normalise Q and K after rope.
    Llama4,
    /// gpt-oss-20b/120b: biased Q/K/V/O, attention sinks, a sliding window on every other layer,
    /// YaRN rope; biased router and experts, top-k on the logits with a softmax over the chosen,
    /// and the clamped SwiGLU of `swiglu_oai`.
    GptOss,
    /// DeepSeek-V2 / V2-Lite / V3 / R1, Kimi-K2: multi-head latent attention (a compressed KV
    /// cache), leading dense layers, then routed experts (softmax or sigmoid, with V3's selection
    /// bias and expert groups) plus plain shared experts; YaRN rope with its log multiplier.
    Deepseek2,
}

/// Whether the model's FFN is dense, routed experts, or either (decided by `expert_count`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FfnShape {
    Dense,
    Moe,
    Either,
}

/// What an MoE layer's shared expert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedExpertKind {
    None,
    /// Scaled by `sigmoid(ffn_gate_inp_shexp · x)` (Qwen2-MoE).
    Gated,
    /// Added as it is (GLM-4.5, DeepSeek).
    Plain,
}

/// Whether a family of tensors (biases, norms) is absent, optional or required.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    Absent,
    Optional,
    Required,
}

impl Arch {
    pub const ALL: &'static [Arch] = &[
        Arch::Llama,
        Arch::Qwen2,
        Arch::Qwen2Moe,
        Arch::Phi3,
        Arch::PhiMoe,
        Arch::Qwen3,
        Arch::Qwen3Moe,
        Arch::Glm4Moe,
        Arch::Llama4,
        Arch::GptOss,
        Arch::Deepseek2,
    ];

    /// `general.architecture` as written in GGUF files.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Qwen2 => "qwen2",
            Arch::Qwen2Moe => "qwen2moe",
            Arch::Phi3 => "phi3",
            Arch::PhiMoe => "phimoe",
            Arch::Qwen3 => "qwen3",
            Arch::Qwen3Moe => "qwen3moe",
            Arch::Glm4Moe => "glm4moe",
            Arch::Llama4 => "llama4",
            Arch::GptOss => "gpt-oss",
            Arch::Deepseek2 => "deepseek2",
        }
    }

    pub fn from_name(name: &str) -> Result<Arch, ModelError> {
        Arch::ALL.iter().copied().find(|a| a.name() == name).ok_or_else(|| {
            let supported: Vec<&str> = Arch::ALL.iter().map(|a| a.name()).collect();
            ModelError::UnknownArch(name.to_string(), supported.join(", "))
        })
    }

    pub fn rope_style(self) -> RopeStyle {
        match self {
            Arch::Llama | Arch::Llama4 | Arch::Deepseek2 => RopeStyle::Norm,
            _ => RopeStyle::Neox,
        }
    }

    /// The output head may be missing, in which case the token embedding is reused.
    pub fn output_may_be_tied(self) -> bool {
        !matches!(self, Arch::Qwen2Moe | Arch::PhiMoe | Arch::GptOss)
    }

    pub fn ffn_shape(self) -> FfnShape {
        match self {
            Arch::Llama => FfnShape::Either,
            Arch::Qwen2 | Arch::Phi3 | Arch::Qwen3 => FfnShape::Dense,
            Arch::Qwen2Moe
            | Arch::PhiMoe
            | Arch::Qwen3Moe
            | Arch::Glm4Moe
            | Arch::Llama4
            | Arch::GptOss
            | Arch::Deepseek2 => FfnShape::Moe,
        }
    }

    /// The routing when the file does not say (llama.cpp's fixed choice for the architecture; for
    /// `glm4moe`, its defaults where the `expert_*` keys are missing).
    pub fn default_routing(self) -> ExpertRouting {
        match self {
            Arch::Glm4Moe => ExpertRouting { gating: ExpertGating::Sigmoid, ..ExpertRouting::softmax(false) },
            Arch::Llama4 => ExpertRouting {
                gating: ExpertGating::Sigmoid,
                select_on_logits: true,
                weight_inputs: true,
                ..ExpertRouting::softmax(false)
            },
            Arch::GptOss => {
                ExpertRouting { gating: ExpertGating::SoftmaxOfChosen, ..ExpertRouting::softmax(false) }
            }
            // DeepSeek: softmax unless `expert_gating_func` says otherwise, and not renormalised
            // unless `expert_weights_norm` says so (V2's `norm_topk_prob` is false).
            Arch::Deepseek2 => ExpertRouting::softmax(false),
            _ => ExpertRouting::softmax(self != Arch::Qwen2Moe),
        }
    }

    /// The `expert_gating_func`, `expert_weights_norm` and `expert_weights_scale` keys are read.
    pub fn reads_routing_keys(self) -> bool {
        matches!(self, Arch::Glm4Moe | Arch::Deepseek2)
    }

    /// Experts have their own width (`expert_feed_forward_length`, else n_ff / n_expert_used).
    pub fn has_expert_ff_length(self) -> bool {
        matches!(
            self,
            Arch::Qwen2Moe | Arch::Qwen3Moe | Arch::Glm4Moe | Arch::Llama4 | Arch::GptOss | Arch::Deepseek2
        )
    }

    /// The shared expert of an MoE layer, if the architecture has one.
    pub fn shared_expert(self) -> SharedExpertKind {
        match self {
            Arch::Qwen2Moe => SharedExpertKind::Gated,
            Arch::Glm4Moe | Arch::Llama4 | Arch::Deepseek2 => SharedExpertKind::Plain,
            _ => SharedExpertKind::None,
        }
    }

    /// The router's probabilities get a per-expert bias (`exp_probs_b`) for choosing the experts
    /// (DeepSeek-V3 has it, V2 not).
    pub fn selection_bias(self) -> Presence {
        match self {
            Arch::Glm4Moe => Presence::Required,
            Arch::Deepseek2 => Presence::Optional,
            _ => Presence::Absent,
        }
    }

    /// The first `leading_dense_block_count` layers have a dense FFN.
    pub fn has_leading_dense_layers(self) -> bool {
        matches!(self, Arch::Glm4Moe | Arch::Deepseek2)
    }

    /// Multi-head latent attention instead of per-head Q/K/V projections.
    pub fn has_latent_attention(self) -> bool {
        self == Arch::Deepseek2
    }

    /// Only every `interleave_moe_layer_step`-th layer (1-based) routes to experts.
    pub fn has_interleaved_moe_layers(self) -> bool {
        self == Arch::Llama4
    }

    /// Per-head RMSNorm of Q and K (`attn_q_norm`, `attn_k_norm`, `[head_dim]`) before rope.
    pub fn qk_norm(self) -> Presence {
        match self {
            Arch::Qwen3 | Arch::Qwen3Moe => Presence::Required,
            // GLM-4.5 (355B) has them, GLM-4.5-Air not.
            Arch::Glm4Moe => Presence::Optional,
            _ => Presence::Absent,
        }
    }

    /// The FFN's input norm: `ffn_norm`, or GLM's and gpt-oss's `post_attention_norm`.
    pub fn ffn_norm_tensor(self) -> TensorKind {
        match self {
            Arch::Glm4Moe | Arch::GptOss => TensorKind::AttnPostNorm,
            _ => TensorKind::FfnNorm,
        }
    }

    /// The last layer keeps only the rows whose logits are wanted before its FFN (llama.cpp's
    /// `inp_out_ids` there); gpt-oss's graph runs that FFN on every row and keeps them after.
    pub fn gathers_rows_before_last_ffn(self) -> bool {
        self != Arch::GptOss
    }

    /// Per-head attention sinks (`attn_sinks`, `[n_head]`).
    pub fn has_attn_sinks(self) -> bool {
        self == Arch::GptOss
    }

    /// Biases of the router (`ffn_gate_inp.bias`) and of the stacked experts (`ffn_*_exps.bias`).
    pub fn has_expert_biases(self) -> bool {
        self == Arch::GptOss
    }

    /// Sliding-window attention on some layers (`attention.sliding_window`), and the default
    /// pattern: every layer but each n-th uses the window.
    pub fn sliding_window_pattern(self) -> Option<usize> {
        match self {
            Arch::GptOss => Some(2),
            _ => None,
        }
    }

    /// How an expert's gate and up combine.
    pub fn expert_glu(self) -> Glu {
        match self {
            Arch::GptOss => Glu::OaiClamped { alpha: 1.702, limit: 7.0 },
            _ => Glu::SiLU,
        }
    }

    /// Q is multiplied by 1/sqrt(head_dim) after rope and the attention scale is 1.
    pub fn prescales_q(self) -> bool {
        matches!(self, Arch::Phi3 | Arch::PhiMoe)
    }

    /// The dense FFN's gate and up projections are one `ffn_up` `[n_embd, 2·n_ff]` (gate rows first).
    pub fn fused_gate_up(self) -> bool {
        self == Arch::Phi3
    }

    /// `rope_factors_long` / `rope_factors_short` may be present (chosen by context size).
    pub fn has_long_short_rope(self) -> bool {
        matches!(self, Arch::Phi3 | Arch::PhiMoe)
    }

    /// Biases of `attn_norm`, `ffn_norm` and `output_norm` (added after the RMSNorm's scale).
    pub fn norm_bias(self) -> Presence {
        match self {
            Arch::PhiMoe => Presence::Required,
            _ => Presence::Absent,
        }
    }

    /// Bias of the output head.
    pub fn output_bias(self) -> Presence {
        match self {
            Arch::PhiMoe => Presence::Required,
            Arch::Qwen2 | Arch::Phi3 => Presence::Optional,
            _ => Presence::Absent,
        }
    }

    /// Bias of `attn_output`.
    pub fn attn_out_bias(self) -> Presence {
        match self {
            Arch::PhiMoe | Arch::GptOss => Presence::Required,
            Arch::Llama => Presence::Optional,
            _ => Presence::Absent,
        }
    }

    /// Biases of `attn_q/k/v` (or the fused `attn_qkv`): optional in every llama.cpp loader.
    pub fn attn_bias(self) -> Presence {
        Presence::Optional
    }

    /// Biases of the dense FFN's `ffn_gate/up/down`.
    pub fn ffn_bias(self) -> Presence {
        match self {
            Arch::Llama => Presence::Optional,
            _ => Presence::Absent,
        }
    }
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_arch_names_it_and_lists_supported() {
        for &a in Arch::ALL {
            assert_eq!(Arch::from_name(a.name()).ok(), Some(a));
        }
        let err = Arch::from_name("gpt-j").err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("'gpt-j'") && err.contains("llama, qwen2, qwen2moe, phi3"), "{err}");
    }
}
