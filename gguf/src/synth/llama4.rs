//! Seeded synthetic Llama 4 (`llama4`) models, laid out as llama.cpp's converter writes Llama-4
//! Maverick: MoE layers every `INTERLEAVE_STEP`-th layer (top-1 sigmoid routing of `n_expert`
//! experts plus one shared expert of the same width), dense SwiGLU layers between them, llama3-style
//! `rope_freqs`, and no `attention.sliding_window` key, so llama.cpp runs it with chunked attention
//! and a NoPE layer every fourth layer.
//!
//! The sizes: `SynthSpec::n_ff` is each expert's width, the dense layers are `DENSE_WIDTH_FACTOR`
//! times wider (Maverick: 16384 against 8192).

use crate::dtype::DType;
use crate::error::Result;
use crate::names::{ArchKey, TensorKind as T};
use crate::value::Value;
use crate::writer::GgufWriter;

use super::archs::moe_writer;
use super::{encode, ExpertLayout, Gen, SynthSpec, Vocab};

/// The dense layers' width over an expert's.
pub const DENSE_WIDTH_FACTOR: usize = 2;
/// Every second layer (1-based) routes to experts, as in Maverick (Scout: every layer).
const INTERLEAVE_STEP: usize = 2;

/// The Llama 4 model with the sizes of `spec` (`n_expert`, `n_expert_used` from its MoE kind).
pub(super) fn to_writer(
    spec: &SynthSpec,
    n_expert: usize,
    n_expert_used: usize,
    vocab: &Vocab,
) -> Result<GgufWriter> {
    let name = "llama4";
    let u32_of = |n: usize| Value::U32(n as u32);
    let head_dim = spec.n_embd / spec.n_head;
    let n_ff_dense = DENSE_WIDTH_FACTOR * spec.n_ff;
    let keys = vec![
        (ArchKey::ContextLength, Value::U32(spec.context_length)),
        (ArchKey::EmbeddingLength, u32_of(spec.n_embd)),
        (ArchKey::BlockCount, u32_of(spec.n_layer)),
        (ArchKey::FeedForwardLength, u32_of(n_ff_dense)),
        (ArchKey::HeadCount, u32_of(spec.n_head)),
        (ArchKey::HeadCountKv, u32_of(spec.n_head_kv)),
        (ArchKey::RopeFreqBase, Value::F32(spec.rope_freq_base)),
        (ArchKey::RmsEpsilon, Value::F32(spec.rms_eps)),
        (ArchKey::RopeDimensionCount, u32_of(head_dim)),
        (ArchKey::VocabSize, u32_of(vocab.n_vocab)),
        (ArchKey::ExpertCount, u32_of(n_expert)),
        (ArchKey::ExpertUsedCount, u32_of(n_expert_used)),
        (ArchKey::ExpertFeedForwardLength, u32_of(spec.n_ff)),
        (ArchKey::InterleaveMoeLayerStep, u32_of(INTERLEAVE_STEP)),
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
    // llama3-style divisors: 1 for the fast pairs, growing for the slow ones.
    let freqs = T::RopeFreqs.weight(0);
    let mut factors = g.values(&freqs, head_dim / 2, 0.0, 0.5);
    for (i, f) in factors.iter_mut().enumerate() {
        *f = if 4 * i < head_dim { 1.0 } else { 1.0 + f.abs() + (8 * i) as f32 / head_dim as f32 };
    }
    w.add_tensor(&freqs, &[(head_dim / 2) as u64], DType::F32, encode(&factors, DType::F32))?;
    for il in 0..spec.n_layer {
        g.attention(&mut w, il, (n_embd, n_q, n_kv), false)?;
        g.norm(&mut w, &T::FfnNorm.weight(il), n_embd)?;
        if !(il + 1).is_multiple_of(INTERLEAVE_STEP) {
            g.dense_ffn(&mut w, il, n_embd, n_ff_dense)?;
            continue;
        }
        g.router(&mut w, il, n_embd, n_expert)?;
        g.experts(&mut w, il, n_expert, ExpertLayout::Stacked, n_embd, n_ff)?;
        g.shared_ffn(&mut w, il, n_embd, n_ff)?;
    }
    Ok(w)
}
