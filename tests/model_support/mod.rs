//! Shared by the model tests: a seeded tiny llama/Mixtral GGUF built with `GgufWriter`, and an
//! independent naive f64 forward pass over the same (storage-rounded) weights.

#![allow(dead_code)]

pub mod reference;

use std::collections::HashMap;

use rs_llama::gguf::names::{ArchKey, TensorKind as T, KEY_ARCHITECTURE};
use rs_llama::gguf::writer::GgufWriter;
use rs_llama::gguf::{DType, Value};

pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    /// Uniform in [-1, 1).
    pub fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
}

#[derive(Debug, Clone)]
pub struct Spec {
    pub n_vocab: usize,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub n_ff: usize,
    pub n_expert: usize,
    pub n_expert_used: usize,
    pub n_ctx_train: usize,
    pub rope_base: f32,
    pub rms_eps: f32,
    /// Storage type of the matrices (norms are always f32).
    pub dtype: DType,
    /// No `output.weight`: the head reuses `token_embd`.
    pub tied: bool,
    /// Experts as `blk.N.ffn_gate.E.weight` instead of stacked `ffn_gate_exps`.
    pub legacy_experts: bool,
    pub seed: u64,
}

impl Spec {
    pub fn dense() -> Spec {
        Spec {
            n_vocab: 96,
            n_embd: 64,
            n_layer: 3,
            n_head: 4,
            n_head_kv: 2,
            n_ff: 96,
            n_expert: 0,
            n_expert_used: 0,
            n_ctx_train: 256,
            rope_base: 10000.0,
            rms_eps: 1e-5,
            dtype: DType::F16,
            tied: true,
            legacy_experts: false,
            seed: 42,
        }
    }

    pub fn moe(legacy: bool) -> Spec {
        Spec { n_expert: 4, n_expert_used: 2, n_ff: 48, tied: false, legacy_experts: legacy, ..Spec::dense() }
    }

    pub fn head_dim(&self) -> usize {
        self.n_embd / self.n_head
    }
}

/// The file bytes plus every tensor's values (as stored, widened to f64) by name. Stacked experts
/// are listed per expert under their legacy names so the reference reads one layout.
pub struct Tiny {
    pub spec: Spec,
    pub bytes: Vec<u8>,
    pub values: HashMap<String, Vec<f64>>,
}

impl Tiny {
    pub fn get(&self, name: &str) -> &[f64] {
        self.values.get(name).map(Vec::as_slice).unwrap_or_else(|| panic!("test model lacks {name}"))
    }
}

fn round(dtype: DType, v: f32) -> (f64, [u8; 4], usize) {
    match dtype {
        DType::F16 => {
            let h = half::f16::from_f32(v);
            let b = h.to_le_bytes();
            (h.to_f64(), [b[0], b[1], 0, 0], 2)
        }
        DType::BF16 => {
            let h = half::bf16::from_f32(v);
            let b = h.to_le_bytes();
            (h.to_f64(), [b[0], b[1], 0, 0], 2)
        }
        _ => (v as f64, v.to_le_bytes(), 4),
    }
}

struct Gen<'a> {
    rng: Rng,
    spec: &'a Spec,
    values: HashMap<String, Vec<f64>>,
}

impl Gen<'_> {
    /// Random values of `n` elements around `center` (never all zero), rounded to `dtype`.
    fn tensor(&mut self, name: &str, n: usize, center: f32, spread: f32, dtype: DType) -> Vec<u8> {
        let mut bytes = Vec::new();
        let mut vals = Vec::with_capacity(n);
        for _ in 0..n {
            let (v, b, len) = round(dtype, center + spread * self.rng.next());
            vals.push(v);
            bytes.extend_from_slice(&b[..len]);
        }
        self.values.insert(name.to_string(), vals);
        bytes
    }

    fn matrix(&mut self, name: &str, n_in: usize, n_out: usize) -> Vec<u8> {
        let spread = 1.7 / (n_in as f32).sqrt();
        self.tensor(name, n_in * n_out, 0.0, spread, self.spec.dtype)
    }
}

pub fn build(spec: &Spec) -> Tiny {
    build_with(spec, |_| {})
}

/// `build`, with `edit` applied to the writer last (to override keys of a valid model).
pub fn build_with(spec: &Spec, edit: impl FnOnce(&mut GgufWriter)) -> Tiny {
    let s = spec;
    let mut w = GgufWriter::new();
    let key = |k: ArchKey| k.name("llama");
    w.set(KEY_ARCHITECTURE, Value::String("llama".into()));
    w.set(&key(ArchKey::ContextLength), Value::U32(s.n_ctx_train as u32));
    w.set(&key(ArchKey::EmbeddingLength), Value::U32(s.n_embd as u32));
    w.set(&key(ArchKey::BlockCount), Value::U32(s.n_layer as u32));
    w.set(&key(ArchKey::FeedForwardLength), Value::U32(s.n_ff as u32));
    w.set(&key(ArchKey::HeadCount), Value::U32(s.n_head as u32));
    w.set(&key(ArchKey::HeadCountKv), Value::U32(s.n_head_kv as u32));
    w.set(&key(ArchKey::RmsEpsilon), Value::F32(s.rms_eps));
    w.set(&key(ArchKey::RopeFreqBase), Value::F32(s.rope_base));
    w.set(&key(ArchKey::RopeDimensionCount), Value::U32(s.head_dim() as u32));
    w.set(&key(ArchKey::VocabSize), Value::U32(s.n_vocab as u32));
    if s.n_expert > 0 {
        w.set(&key(ArchKey::ExpertCount), Value::U32(s.n_expert as u32));
        w.set(&key(ArchKey::ExpertUsedCount), Value::U32(s.n_expert_used as u32));
    }
    let mut g = Gen { rng: Rng::new(s.seed), spec: s, values: HashMap::new() };
    let (e, kv) = (s.n_embd, s.head_dim() * s.n_head_kv);
    let add = |w: &mut GgufWriter, name: &str, dims: &[usize], dtype: DType, data: Vec<u8>| {
        let dims: Vec<u64> = dims.iter().map(|&d| d as u64).collect();
        w.add_tensor(name, &dims, dtype, data).expect("valid test tensor");
    };
    let emb = T::TokenEmbd.weight(0);
    let data = g.tensor(&emb, e * s.n_vocab, 0.0, 1.0, s.dtype);
    add(&mut w, &emb, &[e, s.n_vocab], s.dtype, data);
    for il in 0..s.n_layer {
        for kind in [T::AttnNorm, T::FfnNorm] {
            let data = g.tensor(&kind.weight(il), e, 1.0, 0.3, DType::F32);
            add(&mut w, &kind.weight(il), &[e], DType::F32, data);
        }
        for (kind, n_in, n_out) in
            [(T::AttnQ, e, e), (T::AttnK, e, kv), (T::AttnV, e, kv), (T::AttnOutput, e, e)]
        {
            let data = g.matrix(&kind.weight(il), n_in, n_out);
            add(&mut w, &kind.weight(il), &[n_in, n_out], s.dtype, data);
        }
        let mats = [(T::FfnGate, e, s.n_ff), (T::FfnUp, e, s.n_ff), (T::FfnDown, s.n_ff, e)];
        if s.n_expert == 0 {
            for (kind, n_in, n_out) in mats {
                let data = g.matrix(&kind.weight(il), n_in, n_out);
                add(&mut w, &kind.weight(il), &[n_in, n_out], s.dtype, data);
            }
            continue;
        }
        let router = T::FfnGateInp.weight(il);
        let data = g.tensor(&router, e * s.n_expert, 0.0, 3.0 / (e as f32).sqrt(), DType::F32);
        add(&mut w, &router, &[e, s.n_expert], DType::F32, data);
        let stacked = [T::FfnGateExps, T::FfnUpExps, T::FfnDownExps];
        for ((kind, n_in, n_out), stacked_kind) in mats.into_iter().zip(stacked) {
            let mut all = Vec::new();
            for x in 0..s.n_expert {
                let name = kind.expert_weight(il, x);
                let data = g.matrix(&name, n_in, n_out);
                if s.legacy_experts {
                    add(&mut w, &name, &[n_in, n_out], s.dtype, data);
                } else {
                    all.extend(data);
                }
            }
            if !s.legacy_experts {
                add(&mut w, &stacked_kind.weight(il), &[n_in, n_out, s.n_expert], s.dtype, all);
            }
        }
    }
    let norm = T::OutputNorm.weight(0);
    let data = g.tensor(&norm, e, 1.0, 0.3, DType::F32);
    add(&mut w, &norm, &[e], DType::F32, data);
    if !s.tied {
        let out = T::Output.weight(0);
        let data = g.matrix(&out, e, s.n_vocab);
        add(&mut w, &out, &[e, s.n_vocab], s.dtype, data);
    }
    edit(&mut w);
    Tiny { spec: s.clone(), bytes: w.to_bytes(), values: g.values }
}

/// Load a tiny model's bytes as a `Model`.
pub fn load(t: &Tiny) -> rs_llama::model::Model {
    let file = rs_llama::gguf::GgufFile::from_bytes(t.bytes.clone()).expect("tiny model parses");
    rs_llama::model::Model::load(std::sync::Arc::new(file), &Default::default()).expect("tiny model loads")
}

/// Largest absolute difference of two equally long slices.
pub fn max_abs_diff(a: &[f32], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (*x as f64 - y).abs()).fold(0.0, f64::max)
}
