//! Seeded synthetic DeepSeek-V3-style (`deepseek2`) models, laid out as llama.cpp's converter writes
//! them with multi-head latent attention: Q through a low-rank pair with a norm between, the
//! compressed KV with its shared rope key (`attn_kv_a_mqa`) and its norm, K's and V's
//! decompressions split per head (`attn_k_b` transposed, `attn_v_b`), `head_count_kv` 1 and the
//! compressed sizes as `key_length`/`value_length`; one leading dense layer, then sigmoid-routed
//! experts in groups with V3's selection bias, renormalised and scaled, plus one shared expert;
//! YaRN rope with DeepSeek's log multiplier (V2-Lite's 0.707).
//!
//! The `lite` variant is laid out as DeepSeek-V2-Lite: Q projected directly (`attn_q`; Q rank 0), softmax
//! routing over ungrouped experts without a selection bias, not renormalised, two shared experts.
//!
//! The latent sizes follow the model's head size `d = n_embd / n_head`, in DeepSeek-V3's
//! proportions scaled down: no-rope part `d`, rope part `d/2`, V heads `d`, compressed KV `2d`,
//! Q rank `3d`. `SynthSpec::n_ff` is each expert's width, the dense layer is four times wider.

use crate::error::Result;
use crate::names::{ArchKey, TensorKind as T};
use crate::value::Value;
use crate::writer::GgufWriter;

use super::archs::moe_writer;
// The dense layer and the routing's scale and gating as in the GLM-4.5 models.
use super::glm4moe::{DENSE_WIDTH_FACTOR, GATING_SIGMOID, LEADING_DENSE, ROUTED_SCALE};
use super::{encode, ExpertLayout, Gen, SynthSpec, Vocab};

/// Shared experts (V3: 1, V2-Lite: 2).
const SHARED_EXPERTS: usize = 1;
const SHARED_EXPERTS_LITE: usize = 2;
/// Expert groups and how many of them a token's experts may come from (V3: 8 and 4).
pub const EXPERT_GROUPS: usize = 4;
const EXPERT_GROUPS_USED: usize = 2;
/// YaRN as DeepSeek-V2-Lite ships it: factor 40 over 4096 positions, `mscale_all_dim` 0.707
/// (the file holds a tenth of it).
const YARN_FACTOR: f32 = 40.0;
const YARN_ORIG_CTX: u32 = 4096;
const YARN_LOG_MUL: f32 = 0.0707;

/// The latent attention's sizes for head size `d`: (nope, rope, v head, kv rank, q rank).
pub fn latent_dims(d: usize) -> (usize, usize, usize, usize, usize) {
    (d, d / 2, d, 2 * d, 3 * d)
}

pub(super) fn to_writer(
    spec: &SynthSpec,
    n_expert: usize,
    n_expert_used: usize,
    vocab: &Vocab,
    lite: bool,
) -> Result<GgufWriter> {
    let name = "deepseek2";
    let u32_of = |n: usize| Value::U32(n as u32);
    let (nope, rope, dv, kv_lora, q_lora) = latent_dims(spec.head_dim());
    let n_ff_dense = DENSE_WIDTH_FACTOR * spec.n_ff;
    let n_shared = if lite { SHARED_EXPERTS_LITE } else { SHARED_EXPERTS };
    let mut keys = vec![
        (ArchKey::ContextLength, Value::U32(spec.context_length)),
        (ArchKey::EmbeddingLength, u32_of(spec.n_embd)),
        (ArchKey::BlockCount, u32_of(spec.n_layer)),
        (ArchKey::FeedForwardLength, u32_of(n_ff_dense)),
        (ArchKey::HeadCount, u32_of(spec.n_head)),
        (ArchKey::HeadCountKv, u32_of(1)),
        (ArchKey::RopeFreqBase, Value::F32(spec.rope_freq_base)),
        (ArchKey::RmsEpsilon, Value::F32(spec.rms_eps)),
        (ArchKey::VocabSize, u32_of(vocab.n_vocab)),
        (ArchKey::LeadingDenseBlockCount, u32_of(LEADING_DENSE)),
    ];
    // V2-Lite's own files have no Q rank at all, which llama.cpp accepts only at V2-Lite's 27 (or
    // 26) layers; a rank of 0 means the same to it at any depth.
    keys.push((ArchKey::QLoraRank, u32_of(if lite { 0 } else { q_lora })));
    keys.extend([
        (ArchKey::KvLoraRank, u32_of(kv_lora)),
        (ArchKey::KeyLength, u32_of(kv_lora + rope)),
        (ArchKey::ValueLength, u32_of(kv_lora)),
        (ArchKey::KeyLengthMla, u32_of(nope + rope)),
        (ArchKey::ValueLengthMla, u32_of(dv)),
        (ArchKey::ExpertFeedForwardLength, u32_of(spec.n_ff)),
        (ArchKey::ExpertCount, u32_of(n_expert)),
        (ArchKey::ExpertUsedCount, u32_of(n_expert_used)),
        (ArchKey::ExpertSharedCount, u32_of(n_shared)),
    ]);
    if lite {
        // V2-Lite's converted files: routed_scaling_factor 1.0, no gating key (softmax).
        keys.push((ArchKey::ExpertWeightsScale, Value::F32(1.0)));
    } else {
        keys.extend([
            (ArchKey::ExpertWeightsScale, Value::F32(ROUTED_SCALE)),
            (ArchKey::ExpertWeightsNorm, Value::Bool(true)),
            (ArchKey::ExpertGatingFunc, Value::U32(GATING_SIGMOID)),
            (ArchKey::ExpertGroupCount, u32_of(EXPERT_GROUPS)),
            (ArchKey::ExpertGroupUsedCount, u32_of(EXPERT_GROUPS_USED)),
        ]);
    }
    keys.extend([
        (ArchKey::RopeDimensionCount, u32_of(rope)),
        (ArchKey::RopeScalingType, Value::String("yarn".into())),
        (ArchKey::RopeScalingFactor, Value::F32(YARN_FACTOR)),
        (ArchKey::RopeScalingOrigCtx, Value::U32(YARN_ORIG_CTX)),
        (ArchKey::RopeScalingYarnLogMul, Value::F32(YARN_LOG_MUL)),
    ]);
    let mut w = moe_writer(name, spec, (n_expert, n_expert_used), keys, vocab);

    let g = Gen { seed: spec.seed, dtype: spec.dtype };
    let (n_embd, n_ff, n_vocab, n_head) = (spec.n_embd, spec.n_ff, vocab.n_vocab, spec.n_head);
    g.matrix(&mut w, &T::TokenEmbd.weight(0), n_embd, n_vocab, 1.0)?;
    g.norm(&mut w, &T::OutputNorm.weight(0), n_embd)?;
    if spec.untied_output {
        g.linear(&mut w, &T::Output.weight(0), n_embd, n_vocab)?;
    }
    for il in 0..spec.n_layer {
        g.norm(&mut w, &T::AttnNorm.weight(il), n_embd)?;
        if !lite {
            g.norm(&mut w, &T::AttnQANorm.weight(il), q_lora)?;
        }
        g.norm(&mut w, &T::AttnKvANorm.weight(il), kv_lora)?;
        if lite {
            g.linear(&mut w, &T::AttnQ.weight(il), n_embd, n_head * (nope + rope))?;
        } else {
            g.linear(&mut w, &T::AttnQA.weight(il), n_embd, q_lora)?;
            g.linear(&mut w, &T::AttnQB.weight(il), q_lora, n_head * (nope + rope))?;
        }
        g.linear(&mut w, &T::AttnKvAMqa.weight(il), n_embd, kv_lora + rope)?;
        g.per_head(&mut w, &T::AttnKB.weight(il), (nope, kv_lora, n_head))?;
        g.per_head(&mut w, &T::AttnVB.weight(il), (kv_lora, dv, n_head))?;
        g.linear(&mut w, &T::AttnOutput.weight(il), n_head * dv, n_embd)?;
        g.norm(&mut w, &T::FfnNorm.weight(il), n_embd)?;
        if il < LEADING_DENSE {
            g.dense_ffn(&mut w, il, n_embd, n_ff_dense)?;
            continue;
        }
        g.router(&mut w, il, n_embd, n_expert)?;
        if !lite {
            g.bias(&mut w, &T::FfnExpProbsB.bias(il), n_expert, 0.1)?;
        }
        g.experts(&mut w, il, n_expert, ExpertLayout::Stacked, n_embd, n_ff)?;
        g.shared_ffn(&mut w, il, n_embd, n_shared * n_ff)?;
    }
    Ok(w)
}

impl Gen {
    /// A stack of `n_head` matrices `[n_in, n_out]` (ggml `{n_in, n_out, n_head}`), each scaled
    /// by 1/sqrt(n_in), in the model's dtype.
    fn per_head(
        &self,
        w: &mut GgufWriter,
        name: &str,
        (n_in, n_out, n_head): (usize, usize, usize),
    ) -> Result<()> {
        let values = self.values(name, n_in * n_out * n_head, 0.0, 1.0 / (n_in as f64).sqrt());
        let dims = [n_in as u64, n_out as u64, n_head as u64];
        w.add_tensor(name, &dims, self.dtype, encode(&values, self.dtype))?;
        Ok(())
    }
}
