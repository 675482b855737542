//! Seeded synthetic models of the architectures beyond `llama`: Qwen2 (+MoE with a gated shared
//! expert), Phi-3 (fused QKV and gate/up, long/short RoPE factors), PhiMoE (norms and heads with
//! biases), Qwen3 (+MoE; per-head QK-norm and a head size independent of n_embd).
//!
//! Tensors are named and shaped as llama.cpp's loader expects them for each architecture, and every
//! one draws from its own stream keyed by its name, like the llama files (`super::Gen`).

use crate::dtype::DType;
use crate::error::{GgufError, Result};
use crate::names::{self, ArchKey, TensorKind as T};
use crate::value::Value;
use crate::writer::GgufWriter;

use super::{encode, file_type, FfnKind, Gen, SynthSpec, Vocab};

/// The architectures `to_writer_arch` can make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SynthArch {
    Qwen2,
    Qwen2Moe,
    Phi3,
    PhiMoe,
    Qwen3,
    Qwen3Moe,
    /// GLM-4.5 (see `super::glm4moe`).
    Glm4Moe,
    /// Llama 4 (see `super::llama4`).
    Llama4,
    /// gpt-oss (see `super::gpt_oss`).
    GptOss,
    /// DeepSeek-V3-style latent attention (see `super::deepseek2`).
    Deepseek2,
    /// DeepSeek-V2-Lite's layout of the same architecture.
    Deepseek2Lite,
}

impl SynthArch {
    /// `general.architecture`.
    pub fn name(self) -> &'static str {
        match self {
            SynthArch::Qwen2 => "qwen2",
            SynthArch::Qwen2Moe => "qwen2moe",
            SynthArch::Phi3 => "phi3",
            SynthArch::PhiMoe => "phimoe",
            SynthArch::Qwen3 => "qwen3",
            SynthArch::Qwen3Moe => "qwen3moe",
            SynthArch::Glm4Moe => "glm4moe",
            SynthArch::Llama4 => "llama4",
            SynthArch::GptOss => "gpt-oss",
            SynthArch::Deepseek2 | SynthArch::Deepseek2Lite => "deepseek2",
        }
    }

    /// The architecture routes to experts (needs `--kind moe`).
    pub fn is_moe(self) -> bool {
        matches!(
            self,
            SynthArch::Qwen2Moe
                | SynthArch::PhiMoe
                | SynthArch::Qwen3Moe
                | SynthArch::Glm4Moe
                | SynthArch::Llama4
                | SynthArch::GptOss
                | SynthArch::Deepseek2
                | SynthArch::Deepseek2Lite
        )
    }
}

/// What a non-llama synthetic model adds to the `SynthSpec` (whose `ffn` gives the expert counts of
/// the MoE architectures; `n_ff` is the width of each expert there).
#[derive(Debug, Clone, PartialEq)]
pub struct ArchSynth {
    pub arch: SynthArch,
    /// Q/K/V head size (`attention.key_length`); Qwen3 only, default n_embd / n_head.
    pub head_dim: Option<usize>,
    /// Width of Qwen2-MoE's shared expert (default 2·n_ff).
    pub n_ff_shexp: Option<usize>,
}

/// Build the model of `arch` with the sizes of `spec` and `vocab`, ready to write.
pub fn to_writer_arch(spec: &SynthSpec, extra: &ArchSynth, vocab: &Vocab) -> Result<GgufWriter> {
    spec.check()?;
    let arch = extra.arch;
    let bad = |why: String| Err(GgufError::Unsupported(format!("synth {}: {why}", arch.name())));
    let (n_expert, n_expert_used) = match spec.ffn {
        FfnKind::Moe { n_expert, n_expert_used, .. } => (n_expert, n_expert_used),
        FfnKind::Dense => (0, 0),
    };
    if arch.is_moe() != (n_expert > 0) {
        return bad("MoE architectures need --kind moe, dense ones --kind dense".into());
    }
    let head_dim = match (arch, extra.head_dim) {
        (SynthArch::Qwen3 | SynthArch::Qwen3Moe | SynthArch::Glm4Moe | SynthArch::GptOss, Some(d)) => d,
        (_, Some(_)) => return bad("only qwen3, qwen3moe, glm4moe and gpt-oss take a head size".into()),
        (_, None) => spec.head_dim(),
    };
    if head_dim == 0 || !head_dim.is_multiple_of(2) {
        return bad(format!("head size {head_dim} must be even and positive"));
    }
    let n_ff_shexp = extra.n_ff_shexp.unwrap_or(2 * spec.n_ff);
    if n_ff_shexp == 0 {
        return bad("the shared expert needs a positive width".into());
    }
    if arch == SynthArch::Glm4Moe {
        if extra.n_ff_shexp.is_some() {
            return bad("the shared expert is as wide as the routed ones".into());
        }
        return super::glm4moe::to_writer(spec, head_dim, n_expert, n_expert_used, vocab);
    }
    if arch == SynthArch::Llama4 {
        if extra.n_ff_shexp.is_some() {
            return bad("the shared expert is as wide as the routed ones".into());
        }
        return super::llama4::to_writer(spec, n_expert, n_expert_used, vocab);
    }
    if matches!(arch, SynthArch::Deepseek2 | SynthArch::Deepseek2Lite) {
        let lite = arch == SynthArch::Deepseek2Lite;
        if extra.n_ff_shexp.is_some() {
            return bad("the shared experts are as wide as the routed ones".into());
        }
        let groups = super::deepseek2::EXPERT_GROUPS;
        if !lite && (n_expert % groups != 0 || n_expert / groups < 2) {
            return bad(format!(
                "{n_expert} experts do not make {} groups of two or more",
                super::deepseek2::EXPERT_GROUPS
            ));
        }
        return super::deepseek2::to_writer(spec, n_expert, n_expert_used, vocab, lite);
    }
    if arch == SynthArch::GptOss {
        if extra.n_ff_shexp.is_some() {
            return bad("gpt-oss has no shared expert".into());
        }
        return super::gpt_oss::to_writer(spec, head_dim, n_expert, n_expert_used, vocab);
    }

    let name = arch.name();
    let mut w = GgufWriter::new();
    let u32_of = |n: usize| Value::U32(n as u32);
    w.set(names::KEY_ARCHITECTURE, Value::String(name.into()));
    let kind = if n_expert > 0 { format!("moe{n_expert}x{n_expert_used}") } else { "dense".into() };
    // Not "phi3": a general.name containing "phi3" or "phi-3" switches on Phi-3's special-token rules,
    // and llama.cpp then refuses a vocabulary without "</s>" (SmolLM2's).
    let label = if arch == SynthArch::Phi3 { "phi_3" } else { name };
    w.set(names::KEY_NAME, Value::String(format!("rs-llama synth {label} {kind} seed {}", spec.seed)));
    w.set(names::KEY_FILE_TYPE, Value::U32(file_type(spec.dtype)));
    w.set(&ArchKey::ContextLength.name(name), Value::U32(spec.context_length));
    w.set(&ArchKey::EmbeddingLength.name(name), u32_of(spec.n_embd));
    w.set(&ArchKey::BlockCount.name(name), u32_of(spec.n_layer));
    w.set(&ArchKey::FeedForwardLength.name(name), u32_of(spec.n_ff));
    w.set(&ArchKey::HeadCount.name(name), u32_of(spec.n_head));
    w.set(&ArchKey::HeadCountKv.name(name), u32_of(spec.n_head_kv));
    if extra.head_dim.is_some() {
        w.set(&ArchKey::KeyLength.name(name), u32_of(head_dim));
        w.set(&ArchKey::ValueLength.name(name), u32_of(head_dim));
    }
    w.set(&ArchKey::RopeFreqBase.name(name), Value::F32(spec.rope_freq_base));
    w.set(&ArchKey::RmsEpsilon.name(name), Value::F32(spec.rms_eps));
    w.set(&ArchKey::RopeDimensionCount.name(name), u32_of(head_dim));
    w.set(&ArchKey::VocabSize.name(name), u32_of(vocab.n_vocab));
    if n_expert > 0 {
        w.set(&ArchKey::ExpertCount.name(name), u32_of(n_expert));
        w.set(&ArchKey::ExpertUsedCount.name(name), u32_of(n_expert_used));
        if arch != SynthArch::PhiMoe {
            w.set(&ArchKey::ExpertFeedForwardLength.name(name), u32_of(spec.n_ff));
        }
    }
    if arch == SynthArch::Qwen2Moe {
        w.set(&ArchKey::ExpertSharedFeedForwardLength.name(name), u32_of(n_ff_shexp));
    }
    for (key, value) in &vocab.kv {
        w.set(key, value.clone());
    }

    let g = Gen { seed: spec.seed, dtype: spec.dtype };
    let (n_embd, n_ff, n_vocab) = (spec.n_embd, spec.n_ff, vocab.n_vocab);
    let (n_q, n_kv) = (head_dim * spec.n_head, head_dim * spec.n_head_kv);
    let phimoe = arch == SynthArch::PhiMoe;
    g.matrix(&mut w, &T::TokenEmbd.weight(0), n_embd, n_vocab, 1.0)?;
    g.norm(&mut w, &T::OutputNorm.weight(0), n_embd)?;
    if phimoe {
        g.bias(&mut w, &T::OutputNorm.bias(0), n_embd, 0.05)?;
    }
    // Qwen2-MoE and PhiMoE have no tied head in llama.cpp; the others are written untied unless asked.
    if spec.untied_output || matches!(arch, SynthArch::Qwen2Moe | SynthArch::PhiMoe) {
        g.linear(&mut w, &T::Output.weight(0), n_embd, n_vocab)?;
    }
    if phimoe {
        g.bias(&mut w, &T::Output.bias(0), n_vocab, 0.1)?;
    }
    if matches!(arch, SynthArch::Phi3 | SynthArch::PhiMoe) {
        // Divisors ≥ 1 that grow with the pair index, as in Phi-3's long/short factors.
        for kind in [T::RopeFactorsLong, T::RopeFactorsShort] {
            let name = kind.weight(0);
            let mut values = g.values(&name, head_dim / 2, 0.0, 0.2);
            for (i, v) in values.iter_mut().enumerate() {
                *v = 1.0 + v.abs() + i as f32 / head_dim as f32;
            }
            w.add_tensor(&name, &[(head_dim / 2) as u64], DType::F32, encode(&values, DType::F32))?;
        }
    }

    for il in 0..spec.n_layer {
        g.norm(&mut w, &T::AttnNorm.weight(il), n_embd)?;
        if phimoe {
            g.bias(&mut w, &T::AttnNorm.bias(il), n_embd, 0.05)?;
        }
        if arch == SynthArch::Phi3 {
            g.linear(&mut w, &T::AttnQkv.weight(il), n_embd, n_q + 2 * n_kv)?;
        } else {
            g.linear(&mut w, &T::AttnQ.weight(il), n_embd, n_q)?;
            g.linear(&mut w, &T::AttnK.weight(il), n_embd, n_kv)?;
            g.linear(&mut w, &T::AttnV.weight(il), n_embd, n_kv)?;
            if matches!(arch, SynthArch::Qwen2 | SynthArch::Qwen2Moe | SynthArch::PhiMoe) {
                g.bias(&mut w, &T::AttnQ.bias(il), n_q, 0.5)?;
                g.bias(&mut w, &T::AttnK.bias(il), n_kv, 0.5)?;
                g.bias(&mut w, &T::AttnV.bias(il), n_kv, 0.2)?;
            }
        }
        if matches!(arch, SynthArch::Qwen3 | SynthArch::Qwen3Moe) {
            g.norm(&mut w, &T::AttnQNorm.weight(il), head_dim)?;
            g.norm(&mut w, &T::AttnKNorm.weight(il), head_dim)?;
        }
        g.linear(&mut w, &T::AttnOutput.weight(il), n_q, n_embd)?;
        if phimoe {
            g.bias(&mut w, &T::AttnOutput.bias(il), n_embd, 0.1)?;
        }
        g.norm(&mut w, &T::FfnNorm.weight(il), n_embd)?;
        if phimoe {
            g.bias(&mut w, &T::FfnNorm.bias(il), n_embd, 0.05)?;
        }
        match arch {
            SynthArch::Qwen2 | SynthArch::Qwen3 => g.dense_ffn(&mut w, il, n_embd, n_ff)?,
            SynthArch::Phi3 => {
                // Fused: rows 0..n_ff are the gate, n_ff..2·n_ff the up projection.
                g.linear(&mut w, &T::FfnUp.weight(il), n_embd, 2 * n_ff)?;
                g.linear(&mut w, &T::FfnDown.weight(il), n_ff, n_embd)?;
            }
            SynthArch::Qwen2Moe
            | SynthArch::PhiMoe
            | SynthArch::Qwen3Moe
            | SynthArch::Glm4Moe
            | SynthArch::Llama4
            | SynthArch::GptOss
            | SynthArch::Deepseek2
            | SynthArch::Deepseek2Lite => {
                g.router(&mut w, il, n_embd, n_expert)?;
                g.experts(&mut w, il, n_expert, super::ExpertLayout::Stacked, n_embd, n_ff)?;
            }
        }
        if arch == SynthArch::Qwen2Moe {
            // The shared expert's gate is one row {n_embd}: a scalar per token through a sigmoid.
            let gate = T::FfnGateInpShexp.weight(il);
            let values = g.values(&gate, n_embd, 0.0, 1.0 / (n_embd as f64).sqrt());
            w.add_tensor(&gate, &[n_embd as u64], DType::F32, encode(&values, DType::F32))?;
            g.shared_ffn(&mut w, il, n_embd, n_ff_shexp)?;
        }
    }
    Ok(w)
}

/// A writer for the MoE model `name` (glm4moe, llama4, gpt-oss): the general keys, then `keys`
/// under `{name}.` in the order given, then the vocabulary.
pub(super) fn moe_writer(
    name: &str,
    spec: &SynthSpec,
    (n_expert, n_expert_used): (usize, usize),
    keys: Vec<(ArchKey, Value)>,
    vocab: &Vocab,
) -> GgufWriter {
    let mut w = GgufWriter::new();
    w.set(names::KEY_ARCHITECTURE, Value::String(name.into()));
    w.set(
        names::KEY_NAME,
        Value::String(format!("rs-llama synth {name} moe{n_expert}x{n_expert_used} seed {}", spec.seed)),
    );
    w.set(names::KEY_FILE_TYPE, Value::U32(file_type(spec.dtype)));
    for (key, value) in keys {
        w.set(&key.name(name), value);
    }
    for (key, value) in &vocab.kv {
        w.set(key, value.clone());
    }
    w
}

impl Gen {
    /// Layer `il`'s attention norm and Q, K, V (with biases where `biased`) and output projections.
    pub(super) fn attention(
        &self,
        w: &mut GgufWriter,
        il: usize,
        (n_embd, n_q, n_kv): (usize, usize, usize),
        biased: bool,
    ) -> Result<()> {
        self.norm(w, &T::AttnNorm.weight(il), n_embd)?;
        self.linear(w, &T::AttnQ.weight(il), n_embd, n_q)?;
        self.linear(w, &T::AttnK.weight(il), n_embd, n_kv)?;
        self.linear(w, &T::AttnV.weight(il), n_embd, n_kv)?;
        if biased {
            self.bias(w, &T::AttnQ.bias(il), n_q, 0.5)?;
            self.bias(w, &T::AttnK.bias(il), n_kv, 0.5)?;
            self.bias(w, &T::AttnV.bias(il), n_kv, 0.2)?;
        }
        self.linear(w, &T::AttnOutput.weight(il), n_q, n_embd)
    }

    /// Layer `il`'s dense SwiGLU FFN `ffn_gate/down/up` of width `n_ff`.
    pub(super) fn dense_ffn(&self, w: &mut GgufWriter, il: usize, n_embd: usize, n_ff: usize) -> Result<()> {
        self.linear(w, &T::FfnGate.weight(il), n_embd, n_ff)?;
        self.linear(w, &T::FfnDown.weight(il), n_ff, n_embd)?;
        self.linear(w, &T::FfnUp.weight(il), n_embd, n_ff)
    }

    /// Layer `il`'s shared expert `ffn_gate/down/up_shexp` of width `n_sh`.
    pub(super) fn shared_ffn(&self, w: &mut GgufWriter, il: usize, n_embd: usize, n_sh: usize) -> Result<()> {
        self.linear(w, &T::FfnGateShexp.weight(il), n_embd, n_sh)?;
        self.linear(w, &T::FfnDownShexp.weight(il), n_sh, n_embd)?;
        self.linear(w, &T::FfnUpShexp.weight(il), n_embd, n_sh)
    }

    /// A bias `[n]` with N(0, std²) entries, f32 like every 1-D tensor in llama.cpp's files.
    pub(super) fn bias(&self, w: &mut GgufWriter, name: &str, n: usize, std: f64) -> Result<()> {
        let values = self.values(name, n, 0.0, std);
        w.add_tensor(name, &[n as u64], DType::F32, encode(&values, DType::F32))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reader::GgufFile;
    use crate::synth::ExpertLayout;
    use crate::value::Metadata;

    fn spec(moe: bool) -> SynthSpec {
        let ffn = if moe {
            FfnKind::Moe { n_expert: 4, n_expert_used: 2, layout: ExpertLayout::Stacked }
        } else {
            FfnKind::Dense
        };
        SynthSpec {
            seed: 3,
            n_embd: 32,
            n_layer: 2,
            n_head: 4,
            n_head_kv: 2,
            n_ff: 24,
            ffn,
            ..Default::default()
        }
    }

    fn build(arch: SynthArch, head_dim: Option<usize>) -> GgufFile {
        let extra = ArchSynth { arch, head_dim, n_ff_shexp: None };
        let bytes = to_writer_arch(&spec(arch.is_moe()), &extra, &Vocab::placeholder(50)).unwrap().to_bytes();
        GgufFile::from_bytes(bytes).unwrap()
    }

    fn dims(f: &GgufFile, name: &str) -> Vec<u64> {
        f.tensor(name).unwrap_or_else(|| panic!("{name} missing")).dims.clone()
    }

    #[test]
    fn each_arch_has_llama_cpp_tensor_shapes() {
        let f = build(SynthArch::Qwen2, None);
        assert_eq!(dims(&f, "blk.1.attn_k.bias"), vec![16]);
        let f = build(SynthArch::Qwen2Moe, None);
        assert_eq!(dims(&f, "blk.0.ffn_gate_inp_shexp.weight"), vec![32]);
        assert_eq!(dims(&f, "blk.0.ffn_up_shexp.weight"), vec![32, 48]);
        assert_eq!(dims(&f, "blk.0.ffn_down_exps.weight"), vec![24, 32, 4]);
        let f = build(SynthArch::Phi3, None);
        assert_eq!(dims(&f, "blk.0.attn_qkv.weight"), vec![32, 32 + 2 * 16]);
        assert_eq!(dims(&f, "blk.0.ffn_up.weight"), vec![32, 48]);
        assert_eq!(dims(&f, "rope_factors_short.weight"), vec![4]);
        let f = build(SynthArch::PhiMoe, None);
        for name in ["output_norm.bias", "output.bias", "blk.1.attn_output.bias", "blk.1.ffn_norm.bias"] {
            assert!(f.tensor(name).is_some(), "{name}");
        }
        let f = build(SynthArch::Qwen3Moe, Some(12));
        assert_eq!(dims(&f, "blk.0.attn_q.weight"), vec![32, 48]);
        assert_eq!(dims(&f, "blk.0.attn_k_norm.weight"), vec![12]);
        assert_eq!(dims(&f, "blk.0.attn_output.weight"), vec![48, 32]);
        // GLM-4.5: a dense layer 0, MoE layers after it, one NextN block after the trunk.
        let f = build(SynthArch::Glm4Moe, Some(16));
        assert_eq!(f.get_u32("glm4moe.block_count").unwrap(), Some(3));
        assert_eq!(f.get_u32("glm4moe.rope.dimension_count").unwrap(), Some(8));
        assert_eq!(dims(&f, "blk.0.ffn_up.weight"), vec![32, 4 * 24]);
        assert!(f.tensor("blk.0.ffn_gate_inp.weight").is_none());
        assert_eq!(dims(&f, "blk.1.exp_probs_b.bias"), vec![4]);
        assert_eq!(dims(&f, "blk.1.ffn_up_shexp.weight"), vec![32, 24]);
        assert_eq!(dims(&f, "blk.1.post_attention_norm.weight"), vec![32]);
        assert_eq!(dims(&f, "blk.2.nextn.eh_proj.weight"), vec![64, 32]);
        assert!(f.tensor("blk.1.nextn.eh_proj.weight").is_none());
        // Llama 4: dense layer 0, MoE layer 1 with its shared expert, llama3 rope factors.
        let f = build(SynthArch::Llama4, None);
        assert_eq!(dims(&f, "blk.0.ffn_up.weight"), vec![32, 2 * 24]);
        assert_eq!(dims(&f, "blk.1.ffn_up_exps.weight"), vec![32, 24, 4]);
        assert_eq!(dims(&f, "blk.1.ffn_down_shexp.weight"), vec![24, 32]);
        assert_eq!(dims(&f, "rope_freqs.weight"), vec![4]);
        assert_eq!(f.get_u32("llama4.interleave_moe_layer_step").unwrap(), Some(2));
        // gpt-oss: sinks per head, biased router and experts, YaRN.
        let f = build(SynthArch::GptOss, Some(16));
        assert_eq!(dims(&f, "blk.1.attn_sinks.weight"), vec![4]);
        assert_eq!(dims(&f, "blk.1.ffn_gate_exps.bias"), vec![24, 4]);
        assert_eq!(dims(&f, "blk.1.ffn_down_exps.bias"), vec![32, 4]);
        assert_eq!(dims(&f, "blk.0.ffn_gate_inp.bias"), vec![4]);
        assert_eq!(dims(&f, "blk.0.attn_q.weight"), vec![32, 64]);
        assert_eq!(f.get_str("gpt-oss.rope.scaling.type").unwrap(), Some("yarn"));
        // DeepSeek: latent attention over one compressed KV head (head size 8: nope 8, rope 4,
        // V 8, KV rank 16, Q rank 24), K_b and V_b per head; 8 experts in 4 groups.
        let extra = ArchSynth { arch: SynthArch::Deepseek2, head_dim: None, n_ff_shexp: None };
        let mut s = spec(true);
        s.ffn = FfnKind::Moe { n_expert: 8, n_expert_used: 2, layout: ExpertLayout::Stacked };
        let bytes = to_writer_arch(&s, &extra, &Vocab::placeholder(50)).unwrap().to_bytes();
        let f = GgufFile::from_bytes(bytes).unwrap();
        assert_eq!(f.get_u32("deepseek2.attention.head_count_kv").unwrap(), Some(1));
        assert_eq!(f.get_u32("deepseek2.attention.key_length").unwrap(), Some(16 + 4));
        assert_eq!(f.get_u32("deepseek2.attention.key_length_mla").unwrap(), Some(8 + 4));
        assert_eq!(dims(&f, "blk.0.attn_q_a.weight"), vec![32, 24]);
        assert_eq!(dims(&f, "blk.0.attn_q_b.weight"), vec![24, 4 * 12]);
        assert_eq!(dims(&f, "blk.0.attn_kv_a_mqa.weight"), vec![32, 20]);
        assert_eq!(dims(&f, "blk.1.attn_k_b.weight"), vec![8, 16, 4]);
        assert_eq!(dims(&f, "blk.1.attn_v_b.weight"), vec![16, 8, 4]);
        assert_eq!(dims(&f, "blk.1.attn_output.weight"), vec![32, 32]);
        assert_eq!(dims(&f, "blk.0.ffn_up.weight"), vec![32, 4 * 24]);
        assert_eq!(dims(&f, "blk.1.exp_probs_b.bias"), vec![8]);
        assert_eq!(dims(&f, "blk.1.ffn_up_shexp.weight"), vec![32, 24]);
        assert!(to_writer_arch(&spec(true), &extra, &Vocab::placeholder(50)).is_err(), "4 experts, 4 groups");
    }

    #[test]
    fn arch_models_are_deterministic_and_refuse_mismatched_kinds() {
        let extra = ArchSynth { arch: SynthArch::Qwen3, head_dim: None, n_ff_shexp: None };
        let a = to_writer_arch(&spec(false), &extra, &Vocab::placeholder(50)).unwrap().to_bytes();
        let b = to_writer_arch(&spec(false), &extra, &Vocab::placeholder(50)).unwrap().to_bytes();
        assert_eq!(a, b);
        assert!(to_writer_arch(&spec(true), &extra, &Vocab::placeholder(50)).is_err());
        let bad_head = ArchSynth { arch: SynthArch::Qwen2, head_dim: Some(8), n_ff_shexp: None };
        assert!(to_writer_arch(&spec(false), &bad_head, &Vocab::placeholder(50)).is_err());
    }
}
