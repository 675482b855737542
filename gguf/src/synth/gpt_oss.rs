//! Seeded synthetic gpt-oss (`gpt-oss`) models, laid out as llama.cpp's converter writes
//! gpt-oss-20b/120b: biased Q/K/V/O, per-head attention sinks, `post_attention_norm`, a biased
//! router over stacked experts with biases, YaRN rope (factor 32 over 4096 trained positions, base
//! 150000, as released), and a sliding window on every other layer.
//!
//! The one departure: the window is `WINDOW` positions instead of gpt-oss's 128, so that short
//! prompts already see it.

use crate::dtype::DType;
use crate::error::Result;
use crate::names::{ArchKey, TensorKind as T};
use crate::value::Value;
use crate::writer::GgufWriter;

use super::archs::moe_writer;
use super::{encode, ExpertLayout, Gen, SynthSpec, Vocab};

/// The sliding window of the windowed layers.
pub const WINDOW: usize = 16;

/// The gpt-oss model with the sizes of `spec` and Q/K/V heads of `head_dim`.
pub(super) fn to_writer(
    spec: &SynthSpec,
    head_dim: usize,
    n_expert: usize,
    n_expert_used: usize,
    vocab: &Vocab,
) -> Result<GgufWriter> {
    let name = "gpt-oss";
    let u32_of = |n: usize| Value::U32(n as u32);
    let keys = vec![
        (ArchKey::ContextLength, Value::U32(spec.context_length)),
        (ArchKey::EmbeddingLength, u32_of(spec.n_embd)),
        (ArchKey::BlockCount, u32_of(spec.n_layer)),
        (ArchKey::FeedForwardLength, u32_of(spec.n_ff)),
        (ArchKey::HeadCount, u32_of(spec.n_head)),
        (ArchKey::HeadCountKv, u32_of(spec.n_head_kv)),
        (ArchKey::KeyLength, u32_of(head_dim)),
        (ArchKey::ValueLength, u32_of(head_dim)),
        (ArchKey::RopeFreqBase, Value::F32(150000.0)),
        (ArchKey::RopeScalingType, Value::String("yarn".into())),
        (ArchKey::RopeScalingFactor, Value::F32(32.0)),
        (ArchKey::RopeScalingOrigCtx, Value::U32(4096)),
        (ArchKey::RmsEpsilon, Value::F32(spec.rms_eps)),
        (ArchKey::RopeDimensionCount, u32_of(head_dim)),
        (ArchKey::SlidingWindow, u32_of(WINDOW)),
        (ArchKey::VocabSize, u32_of(vocab.n_vocab)),
        (ArchKey::ExpertCount, u32_of(n_expert)),
        (ArchKey::ExpertUsedCount, u32_of(n_expert_used)),
        (ArchKey::ExpertFeedForwardLength, u32_of(spec.n_ff)),
    ];
    let mut w = moe_writer(name, spec, (n_expert, n_expert_used), keys, vocab);

    let g = Gen { seed: spec.seed, dtype: spec.dtype };
    let (n_embd, n_ff, n_vocab) = (spec.n_embd, spec.n_ff, vocab.n_vocab);
    let (n_q, n_kv) = (head_dim * spec.n_head, head_dim * spec.n_head_kv);
    g.matrix(&mut w, &T::TokenEmbd.weight(0), n_embd, n_vocab, 1.0)?;
    g.norm(&mut w, &T::OutputNorm.weight(0), n_embd)?;
    g.linear(&mut w, &T::Output.weight(0), n_embd, n_vocab)?;
    for il in 0..spec.n_layer {
        g.attention(&mut w, il, (n_embd, n_q, n_kv), true)?;
        g.bias(&mut w, &T::AttnOutput.bias(il), n_embd, 0.1)?;
        // Sinks of the size of the scores: some heads park much of their weight there.
        let sinks = T::AttnSinks.weight(il);
        let values: Vec<f32> = g.values(&sinks, spec.n_head, 0.5, 1.0);
        w.add_tensor(&sinks, &[spec.n_head as u64], DType::F32, encode(&values, DType::F32))?;
        g.norm(&mut w, &T::AttnPostNorm.weight(il), n_embd)?;
        g.router(&mut w, il, n_embd, n_expert)?;
        g.bias(&mut w, &T::FfnGateInp.bias(il), n_expert, 0.2)?;
        g.experts(&mut w, il, n_expert, ExpertLayout::Stacked, n_embd, n_ff)?;
        for (kind, n) in [(T::FfnGateExps, n_ff), (T::FfnUpExps, n_ff), (T::FfnDownExps, n_embd)] {
            let name = kind.bias(il);
            let values = g.values(&name, n * n_expert, 0.0, 0.1);
            w.add_tensor(&name, &[n as u64, n_expert as u64], DType::F32, encode(&values, DType::F32))?;
        }
    }
    Ok(w)
}
