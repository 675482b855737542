//! Seeded synthetic GLM-4.5 (`glm4moe`) models, laid out as llama.cpp's converter writes GLM-4.5-Air:
//! Q/K/V with biases, rope over half of each head (NEOX), `post_attention_norm` before the FFN, one
//! leading dense layer, then sigmoid-routed experts chosen with a selection bias (`exp_probs_b`),
//! renormalised and scaled, plus one ungated shared expert; and a NextN (multi-token prediction)
//! block after the trunk that llama.cpp loads but does not run when generating.
//!
//! The sizes: `SynthSpec::n_ff` is each expert's width (and the shared expert's), the dense layer is
//! `DENSE_WIDTH_FACTOR` times wider, as GLM-4.5-Air's 10944 is to its experts' 1408.

use crate::error::Result;
use crate::names::{ArchKey, TensorKind as T};
use crate::value::Value;
use crate::writer::GgufWriter;

use super::archs::moe_writer;
use super::{ExpertLayout, Gen, SynthSpec, Vocab};

/// The dense leading layer's width over an expert's.
pub const DENSE_WIDTH_FACTOR: usize = 4;
/// Leading dense layers, shared experts and NextN blocks, as in GLM-4.5 and GLM-4.5-Air.
pub(super) const LEADING_DENSE: usize = 1;
const SHARED_EXPERTS: usize = 1;
const NEXTN_LAYERS: usize = 1;
/// GLM-4.5's `routed_scaling_factor` (Air's is 1.0; a factor ≠ 1 is the case worth testing).
pub(super) const ROUTED_SCALE: f32 = 2.5;
/// llama.cpp's `LLAMA_EXPERT_GATING_FUNC_TYPE_SIGMOID`.
pub(super) const GATING_SIGMOID: u32 = 2;

/// The GLM-4.5 model with the sizes of `spec` (`n_expert`, `n_expert_used` from its MoE kind) and
/// Q/K/V heads of `head_dim`.
pub(super) fn to_writer(
    spec: &SynthSpec,
    head_dim: usize,
    n_expert: usize,
    n_expert_used: usize,
    vocab: &Vocab,
) -> Result<GgufWriter> {
    let name = "glm4moe";
    let u32_of = |n: usize| Value::U32(n as u32);
    let n_layer_all = spec.n_layer + NEXTN_LAYERS;
    let n_ff_dense = DENSE_WIDTH_FACTOR * spec.n_ff;
    let keys = vec![
        (ArchKey::ContextLength, Value::U32(spec.context_length)),
        (ArchKey::EmbeddingLength, u32_of(spec.n_embd)),
        (ArchKey::BlockCount, u32_of(n_layer_all)),
        (ArchKey::FeedForwardLength, u32_of(n_ff_dense)),
        (ArchKey::HeadCount, u32_of(spec.n_head)),
        (ArchKey::HeadCountKv, u32_of(spec.n_head_kv)),
        (ArchKey::KeyLength, u32_of(head_dim)),
        (ArchKey::ValueLength, u32_of(head_dim)),
        (ArchKey::RopeFreqBase, Value::F32(spec.rope_freq_base)),
        (ArchKey::RmsEpsilon, Value::F32(spec.rms_eps)),
        (ArchKey::RopeDimensionCount, u32_of(head_dim / 2)),
        (ArchKey::VocabSize, u32_of(vocab.n_vocab)),
        (ArchKey::ExpertCount, u32_of(n_expert)),
        (ArchKey::ExpertUsedCount, u32_of(n_expert_used)),
        (ArchKey::ExpertFeedForwardLength, u32_of(spec.n_ff)),
        (ArchKey::ExpertSharedCount, u32_of(SHARED_EXPERTS)),
        (ArchKey::LeadingDenseBlockCount, u32_of(LEADING_DENSE)),
        (ArchKey::ExpertWeightsScale, Value::F32(ROUTED_SCALE)),
        (ArchKey::ExpertWeightsNorm, Value::Bool(true)),
        (ArchKey::ExpertGatingFunc, Value::U32(GATING_SIGMOID)),
        (ArchKey::NextnPredictLayers, u32_of(NEXTN_LAYERS)),
    ];
    let mut w = moe_writer(name, spec, (n_expert, n_expert_used), keys, vocab);

    let g = Gen { seed: spec.seed, dtype: spec.dtype };
    let (n_embd, n_ff, n_vocab) = (spec.n_embd, spec.n_ff, vocab.n_vocab);
    let (n_q, n_kv) = (head_dim * spec.n_head, head_dim * spec.n_head_kv);
    g.matrix(&mut w, &T::TokenEmbd.weight(0), n_embd, n_vocab, 1.0)?;
    g.norm(&mut w, &T::OutputNorm.weight(0), n_embd)?;
    if spec.untied_output {
        g.linear(&mut w, &T::Output.weight(0), n_embd, n_vocab)?;
    }
    for il in 0..n_layer_all {
        g.attention(&mut w, il, (n_embd, n_q, n_kv), true)?;
        g.norm(&mut w, &T::AttnPostNorm.weight(il), n_embd)?;
        if il < LEADING_DENSE {
            g.dense_ffn(&mut w, il, n_embd, n_ff_dense)?;
            continue;
        }
        g.router(&mut w, il, n_embd, n_expert)?;
        // Correction biases of the size GLM-4.5's have next to sigmoid scores: enough to change
        // which experts win, not to decide alone.
        g.bias(&mut w, &T::FfnExpProbsB.bias(il), n_expert, 0.1)?;
        g.experts(&mut w, il, n_expert, ExpertLayout::Stacked, n_embd, n_ff)?;
        g.shared_ffn(&mut w, il, n_embd, SHARED_EXPERTS * n_ff)?;
        if il >= spec.n_layer {
            g.linear(&mut w, &T::NextnEhProj.weight(il), 2 * n_embd, n_embd)?;
            for kind in [T::NextnEnorm, T::NextnHnorm, T::NextnSharedHeadNorm] {
                g.norm(&mut w, &kind.weight(il), n_embd)?;
            }
        }
    }
    Ok(w)
}
