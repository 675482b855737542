//! Seeded synthetic models: LLaMA-shaped dense and Mixtral-shaped MoE files with random weights, and
//! "upcycled" MoE files whose experts are perturbed copies of a real dense model's FFN.
//!
//! The bytes depend only on the spec (seed included) and the vocabulary, on every machine: the random
//! numbers come from our own generator (no crate RNG whose stream could change between versions), the
//! normal deviates use only additions and multiplications (no libm `ln`/`cos`, whose last bits differ
//! between platforms), and each tensor draws from its own stream keyed by its name, so adding a layer
//! does not change the others. Reference fixtures made with llama.cpp name these files by sha256, so a
//! change here makes them stale; `tests::small_model_hash_is_recorded` catches that.

mod archs;
mod deepseek2;
mod glm4moe;
mod gpt_oss;
mod llama4;
mod lora;
mod upcycle;

use std::path::Path;

use half::{bf16, f16};

use crate::dtype::DType;
use crate::error::{GgufError, Result};
use crate::names::{self, ArchKey, TensorKind};
use crate::reader::GgufFile;
use crate::value::{Metadata, Value, ValueType};
use crate::writer::GgufWriter;

pub use archs::{to_writer_arch, ArchSynth, SynthArch};
pub use lora::{lora_adapter, LoraSynthSpec};
pub use upcycle::{upcycle, UpcycleSpec};

/// What kind of FFN the synthetic model has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FfnKind {
    /// `ffn_gate`, `ffn_up`, `ffn_down` per layer.
    Dense,
    /// Mixtral-style: a router `ffn_gate_inp` and `n_expert` SwiGLU experts, `n_expert_used` per token.
    Moe { n_expert: usize, n_expert_used: usize, layout: ExpertLayout },
}

/// How expert weights are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpertLayout {
    /// One 3-D tensor per projection: `blk.{il}.ffn_gate_exps.weight` {n_embd, n_ff, n_expert}.
    Stacked,
    /// The early Mixtral GGUF layout: `blk.{il}.ffn_gate.{e}.weight` {n_embd, n_ff} per expert.
    PerExpert,
}

/// The shape and seed of a random-weight LLaMA-architecture model.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthSpec {
    pub seed: u64,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    /// FFN width (of each expert, for MoE).
    pub n_ff: usize,
    pub ffn: FfnKind,
    /// Storage type of the matrices (f32, f16 or bf16); norms and the router are always f32.
    pub dtype: DType,
    pub context_length: u32,
    pub rope_freq_base: f32,
    pub rms_eps: f32,
    /// Write `output.weight`; without it llama.cpp ties the output head to `token_embd`.
    pub untied_output: bool,
}

impl Default for SynthSpec {
    fn default() -> Self {
        SynthSpec {
            seed: 1,
            n_embd: 256,
            n_layer: 4,
            n_head: 8,
            n_head_kv: 4,
            n_ff: 512,
            ffn: FfnKind::Dense,
            dtype: DType::F16,
            context_length: 2048,
            rope_freq_base: 10000.0,
            rms_eps: 1e-5,
            untied_output: true,
        }
    }
}

/// The tokenizer part of a model: every `tokenizer.*` key, in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct Vocab {
    pub kv: Vec<(String, Value)>,
    pub n_vocab: usize,
}

impl Vocab {
    /// Take the vocabulary of an existing model file.
    pub fn from_gguf(file: &GgufFile) -> Result<Vocab> {
        let kv: Vec<(String, Value)> =
            file.kv.iter().filter(|(k, _)| k.starts_with(names::TOK_PREFIX)).cloned().collect();
        let n_vocab = match file.get_array(names::TOK_TOKENS)? {
            Some((_, tokens)) if !tokens.is_empty() => tokens.len(),
            _ => return Err(GgufError::MissingKey(names::TOK_TOKENS.into())),
        };
        Ok(Vocab { kv, n_vocab })
    }

    /// A stand-in vocabulary of `n_vocab` tokens `<t0>`, `<t1>`, ... for tests that only need shapes
    /// (it declares the "none" tokenizer model; llama.cpp cannot tokenise text with it).
    pub fn placeholder(n_vocab: usize) -> Vocab {
        let tokens = (0..n_vocab).map(|i| Value::String(format!("<t{i}>"))).collect();
        Vocab {
            kv: vec![
                (names::TOK_MODEL.into(), Value::String("none".into())),
                (names::TOK_TOKENS.into(), Value::Array(ValueType::String, tokens)),
            ],
            n_vocab,
        }
    }
}

impl SynthSpec {
    fn check(&self) -> Result<()> {
        let bad = |why: String| Err(GgufError::Unsupported(format!("synth: {why}")));
        if [self.n_embd, self.n_layer, self.n_head, self.n_head_kv, self.n_ff].contains(&0) {
            return bad("sizes must be positive".into());
        }
        if !self.n_embd.is_multiple_of(self.n_head) {
            return bad(format!("n_embd {} is not a multiple of n_head {}", self.n_embd, self.n_head));
        }
        if !self.n_head.is_multiple_of(self.n_head_kv) {
            return bad(format!("n_head {} is not a multiple of n_head_kv {}", self.n_head, self.n_head_kv));
        }
        if !(self.n_embd / self.n_head).is_multiple_of(2) {
            return bad(format!("head size {} must be even for RoPE", self.n_embd / self.n_head));
        }
        if let FfnKind::Moe { n_expert, n_expert_used, .. } = self.ffn {
            if n_expert_used == 0 || n_expert_used > n_expert {
                return bad(format!("need 1 <= n_expert_used ({n_expert_used}) <= n_expert ({n_expert})"));
            }
        }
        check_float(self.dtype)
    }

    fn head_dim(&self) -> usize {
        self.n_embd / self.n_head
    }
}

fn check_float(dtype: DType) -> Result<()> {
    if dtype.is_float() {
        Ok(())
    } else {
        Err(GgufError::Unsupported(format!("synth writes f32, f16 or bf16 weights, not {dtype}")))
    }
}

/// llama.cpp's `general.file_type` for a model stored mostly in `dtype`.
pub(crate) fn file_type(dtype: DType) -> u32 {
    match dtype {
        DType::F32 => 0,
        DType::BF16 => 32,
        _ => 1,
    }
}

/// Build the model described by `spec` with `vocab`, ready to write.
pub fn to_writer(spec: &SynthSpec, vocab: &Vocab) -> Result<GgufWriter> {
    spec.check()?;
    let arch = "llama";
    let mut w = GgufWriter::new();
    let kind = match spec.ffn {
        FfnKind::Dense => "dense".to_string(),
        FfnKind::Moe { n_expert, n_expert_used, .. } => format!("moe{n_expert}x{n_expert_used}"),
    };
    w.set(names::KEY_ARCHITECTURE, Value::String(arch.into()));
    w.set(names::KEY_NAME, Value::String(format!("rs-llama synth {kind} seed {}", spec.seed)));
    w.set(names::KEY_FILE_TYPE, Value::U32(file_type(spec.dtype)));
    let u32_of = |n: usize| Value::U32(n as u32);
    w.set(&ArchKey::ContextLength.name(arch), Value::U32(spec.context_length));
    w.set(&ArchKey::EmbeddingLength.name(arch), u32_of(spec.n_embd));
    w.set(&ArchKey::BlockCount.name(arch), u32_of(spec.n_layer));
    w.set(&ArchKey::FeedForwardLength.name(arch), u32_of(spec.n_ff));
    w.set(&ArchKey::HeadCount.name(arch), u32_of(spec.n_head));
    w.set(&ArchKey::HeadCountKv.name(arch), u32_of(spec.n_head_kv));
    w.set(&ArchKey::RopeFreqBase.name(arch), Value::F32(spec.rope_freq_base));
    w.set(&ArchKey::RmsEpsilon.name(arch), Value::F32(spec.rms_eps));
    w.set(&ArchKey::RopeDimensionCount.name(arch), u32_of(spec.head_dim()));
    w.set(&ArchKey::VocabSize.name(arch), u32_of(vocab.n_vocab));
    if let FfnKind::Moe { n_expert, n_expert_used, .. } = spec.ffn {
        w.set(&ArchKey::ExpertCount.name(arch), u32_of(n_expert));
        w.set(&ArchKey::ExpertUsedCount.name(arch), u32_of(n_expert_used));
    }
    for (key, value) in &vocab.kv {
        w.set(key, value.clone());
    }

    let (n_embd, n_ff, n_vocab) = (spec.n_embd, spec.n_ff, vocab.n_vocab);
    let n_kv = spec.head_dim() * spec.n_head_kv;
    let g = Gen { seed: spec.seed, dtype: spec.dtype };
    // Embeddings of unit scale: the first RMSNorm sees O(1) inputs whatever n_embd is.
    g.matrix(&mut w, &TensorKind::TokenEmbd.weight(0), n_embd, n_vocab, 1.0)?;
    g.norm(&mut w, &TensorKind::OutputNorm.weight(0), n_embd)?;
    if spec.untied_output {
        g.linear(&mut w, &TensorKind::Output.weight(0), n_embd, n_vocab)?;
    }
    for il in 0..spec.n_layer {
        g.norm(&mut w, &TensorKind::AttnNorm.weight(il), n_embd)?;
        g.linear(&mut w, &TensorKind::AttnQ.weight(il), n_embd, n_embd)?;
        g.linear(&mut w, &TensorKind::AttnK.weight(il), n_embd, n_kv)?;
        g.linear(&mut w, &TensorKind::AttnV.weight(il), n_embd, n_kv)?;
        g.linear(&mut w, &TensorKind::AttnOutput.weight(il), n_embd, n_embd)?;
        g.norm(&mut w, &TensorKind::FfnNorm.weight(il), n_embd)?;
        match spec.ffn {
            FfnKind::Dense => {
                g.linear(&mut w, &TensorKind::FfnGate.weight(il), n_embd, n_ff)?;
                g.linear(&mut w, &TensorKind::FfnDown.weight(il), n_ff, n_embd)?;
                g.linear(&mut w, &TensorKind::FfnUp.weight(il), n_embd, n_ff)?;
            }
            FfnKind::Moe { n_expert, layout, .. } => {
                g.router(&mut w, il, n_embd, n_expert)?;
                g.experts(&mut w, il, n_expert, layout, n_embd, n_ff)?;
            }
        }
    }
    Ok(w)
}

/// Build and write the model described by `spec`.
pub fn write(spec: &SynthSpec, vocab: &Vocab, path: impl AsRef<Path>) -> Result<()> {
    to_writer(spec, vocab)?.write(path)
}

/// Draws every tensor of one model.
struct Gen {
    seed: u64,
    dtype: DType,
}

impl Gen {
    /// `n` values `mean + std * N(0,1)` from the stream of tensor `name`.
    fn values(&self, name: &str, n: usize, mean: f64, std: f64) -> Vec<f32> {
        let mut rng = Rng::for_tensor(self.seed, name);
        (0..n).map(|_| (mean + std * rng.normal()) as f32).collect()
    }

    /// A {n_in, n_out} matrix with N(0, scale^2) entries, in the model's dtype.
    fn matrix(&self, w: &mut GgufWriter, name: &str, n_in: usize, n_out: usize, scale: f64) -> Result<()> {
        let values = self.values(name, n_in * n_out, 0.0, scale);
        w.add_tensor(name, &[n_in as u64, n_out as u64], self.dtype, encode(&values, self.dtype))?;
        Ok(())
    }

    /// A linear layer scaled by 1/sqrt(fan_in), so outputs keep the scale of the inputs.
    fn linear(&self, w: &mut GgufWriter, name: &str, n_in: usize, n_out: usize) -> Result<()> {
        self.matrix(w, name, n_in, n_out, 1.0 / (n_in as f64).sqrt())
    }

    /// An RMSNorm weight near 1 (f32, as 1-D tensors are in llama.cpp's files).
    fn norm(&self, w: &mut GgufWriter, name: &str, n: usize) -> Result<()> {
        let values = self.values(name, n, 1.0, 0.05);
        w.add_tensor(name, &[n as u64], DType::F32, encode(&values, DType::F32))?;
        Ok(())
    }

    /// `ffn_gate_inp` `[n_embd, n_expert]`, kept in f32 as converters write it.
    fn router(&self, w: &mut GgufWriter, il: usize, n_embd: usize, n_expert: usize) -> Result<()> {
        let router = TensorKind::FfnGateInp.weight(il);
        let values = self.values(&router, n_embd * n_expert, 0.0, 1.0 / (n_embd as f64).sqrt());
        w.add_tensor(&router, &[n_embd as u64, n_expert as u64], DType::F32, encode(&values, DType::F32))?;
        Ok(())
    }

    fn experts(
        &self,
        w: &mut GgufWriter,
        il: usize,
        n_expert: usize,
        layout: ExpertLayout,
        n_embd: usize,
        n_ff: usize,
    ) -> Result<()> {
        let projections = [
            (TensorKind::FfnGateExps, TensorKind::FfnGateExpert, n_embd, n_ff),
            (TensorKind::FfnDownExps, TensorKind::FfnDownExpert, n_ff, n_embd),
            (TensorKind::FfnUpExps, TensorKind::FfnUpExpert, n_embd, n_ff),
        ];
        // Both layouts draw from the stacked tensor's stream, so a per-expert file holds exactly the
        // weights of the stacked file with the same seed (and the same reference outputs apply).
        for (stacked, single, n_in, n_out) in projections {
            let name = stacked.weight(il);
            let values = self.values(&name, n_in * n_out * n_expert, 0.0, 1.0 / (n_in as f64).sqrt());
            match layout {
                ExpertLayout::Stacked => {
                    let dims = [n_in as u64, n_out as u64, n_expert as u64];
                    w.add_tensor(&name, &dims, self.dtype, encode(&values, self.dtype))?;
                }
                ExpertLayout::PerExpert => {
                    for (e, slab) in values.chunks_exact(n_in * n_out).enumerate() {
                        let dims = [n_in as u64, n_out as u64];
                        w.add_tensor(
                            &single.expert_weight(il, e),
                            &dims,
                            self.dtype,
                            encode(slab, self.dtype),
                        )?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// f32 values as little-endian bytes of `dtype` (f16/bf16 rounded to nearest even).
pub(crate) fn encode(values: &[f32], dtype: DType) -> Vec<u8> {
    match dtype {
        DType::F16 => values.iter().flat_map(|&x| f16::from_f32(x).to_le_bytes()).collect(),
        DType::BF16 => values.iter().flat_map(|&x| bf16::from_f32(x).to_le_bytes()).collect(),
        _ => values.iter().flat_map(|&x| x.to_le_bytes()).collect(),
    }
}

/// xoshiro256** seeded through splitmix64: small, fast, and its stream is fixed by its definition.
pub(crate) struct Rng {
    s: [u64; 4],
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        let mut state = seed;
        Rng { s: [0; 4].map(|_| splitmix64(&mut state)) }
    }

    /// The stream of one tensor: the seed mixed with an FNV-1a hash of its name.
    pub(crate) fn for_tensor(seed: u64, name: &str) -> Rng {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in name.bytes() {
            h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
        }
        Rng::new(seed ^ h)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        let out = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        out
    }

    /// Uniform in [0, 1), exactly representable (53 random bits).
    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Approximately N(0, 1): a centred sum of four uniforms scaled to unit variance (support ±2√3).
    /// Only + and × are used, so every IEEE machine produces the same bits.
    pub(crate) fn normal(&mut self) -> f64 {
        let sum = self.uniform() + self.uniform() + self.uniform() + self.uniform();
        (sum - 2.0) * SQRT_3
    }
}

const SQRT_3: f64 = 1.732_050_807_568_877_2;

#[cfg(test)]
mod tests {
    use super::*;

    fn fnv1a(bytes: &[u8]) -> u64 {
        bytes
            .iter()
            .fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3))
    }

    fn tiny(ffn: FfnKind, dtype: DType) -> SynthSpec {
        SynthSpec {
            seed: 7,
            n_embd: 32,
            n_layer: 2,
            n_head: 4,
            n_head_kv: 2,
            n_ff: 64,
            ffn,
            dtype,
            ..Default::default()
        }
    }

    const MOE: FfnKind = FfnKind::Moe { n_expert: 4, n_expert_used: 2, layout: ExpertLayout::Stacked };

    #[test]
    fn xoshiro_matches_its_reference_stream() {
        // splitmix64 from state 0 gives the published first output 0xe220a8397b1dcdaf.
        let mut state = 0u64;
        assert_eq!(splitmix64(&mut state), 0xe220_a839_7b1d_cdaf);
        // xoshiro256** from the state {1, 2, 3, 4}, worked by hand from the algorithm's definition.
        let mut rng = Rng { s: [1, 2, 3, 4] };
        let got: Vec<u64> = (0..3).map(|_| rng.next_u64()).collect();
        assert_eq!(got, vec![11520, 0, 1509978240]);
    }

    #[test]
    fn normal_has_unit_moments() {
        let mut rng = Rng::new(42);
        let xs: Vec<f64> = (0..200_000).map(|_| rng.normal()).collect();
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / xs.len() as f64;
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((var - 1.0).abs() < 0.01, "variance {var}");
    }

    #[test]
    fn same_seed_same_bytes_other_seed_other_bytes() {
        let vocab = Vocab::placeholder(100);
        for ffn in [FfnKind::Dense, MOE] {
            let a = to_writer(&tiny(ffn, DType::F16), &vocab).unwrap().to_bytes();
            let b = to_writer(&tiny(ffn, DType::F16), &vocab).unwrap().to_bytes();
            assert_eq!(a, b);
            let other = SynthSpec { seed: 8, ..tiny(ffn, DType::F16) };
            assert_ne!(a, to_writer(&other, &vocab).unwrap().to_bytes());
        }
    }

    /// If this fails, generation changed: regenerate the synthetic goldens (scripts/make-fixtures.sh)
    /// and record the new hashes here.
    #[test]
    fn small_model_hash_is_recorded() {
        let vocab = Vocab::placeholder(100);
        let cases = [
            (tiny(FfnKind::Dense, DType::F16), 0x62ab_885a_8c54_f92eu64),
            (tiny(MOE, DType::BF16), 0x7c93_a0b9_bf5e_7199),
            (
                tiny(
                    FfnKind::Moe { n_expert: 4, n_expert_used: 2, layout: ExpertLayout::PerExpert },
                    DType::F32,
                ),
                0xd5b2_a413_667f_2a03,
            ),
        ];
        let got: Vec<u64> =
            cases.iter().map(|(s, _)| fnv1a(&to_writer(s, &vocab).unwrap().to_bytes())).collect();
        let want: Vec<u64> = cases.iter().map(|c| c.1).collect();
        assert_eq!(got, want, "got {got:#x?}");
    }

    #[test]
    fn written_model_reads_back_with_scaled_weights() {
        let spec = tiny(MOE, DType::F16);
        let f = GgufFile::from_bytes(to_writer(&spec, &Vocab::placeholder(100)).unwrap().to_bytes()).unwrap();
        assert_eq!(f.get_u32("llama.expert_count").unwrap(), Some(4));
        assert_eq!(f.get_u32("llama.vocab_size").unwrap(), Some(100));
        let t = f.tensor("blk.1.ffn_down_exps.weight").unwrap();
        assert_eq!((t.dims.clone(), t.dtype), (vec![64, 32, 4], DType::F16));
        let v = crate::dequant::to_f32(t.dtype, f.tensor_bytes(t), t.n_elems() as usize).unwrap();
        let rms = (v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>() / v.len() as f64).sqrt();
        assert!((rms - 1.0 / 8.0).abs() < 0.01, "rms {rms} (want 1/sqrt(64))");
        let norm = f.tensor("blk.0.attn_norm.weight").unwrap();
        let v = crate::dequant::to_f32(norm.dtype, f.tensor_bytes(norm), 32).unwrap();
        assert!(v.iter().all(|x| (0.8..1.2).contains(x)) && v.iter().any(|x| *x != 1.0));
    }

    #[test]
    fn per_expert_layout_holds_the_stacked_weights() {
        let vocab = Vocab::placeholder(100);
        let per_expert = FfnKind::Moe { n_expert: 4, n_expert_used: 2, layout: ExpertLayout::PerExpert };
        let a = GgufFile::from_bytes(to_writer(&tiny(MOE, DType::F16), &vocab).unwrap().to_bytes()).unwrap();
        let b = GgufFile::from_bytes(to_writer(&tiny(per_expert, DType::F16), &vocab).unwrap().to_bytes())
            .unwrap();
        let stacked = a.tensor_bytes(a.tensor("blk.1.ffn_up_exps.weight").unwrap());
        let slab = 32 * 64 * 2;
        for e in 0..4 {
            let single = b.tensor(&format!("blk.1.ffn_up.{e}.weight")).unwrap();
            assert_eq!(single.dims, vec![32, 64]);
            assert_eq!(b.tensor_bytes(single), &stacked[e * slab..(e + 1) * slab]);
        }
        assert_eq!(
            a.tensor_bytes(a.tensor("output.weight").unwrap()),
            b.tensor_bytes(b.tensor("output.weight").unwrap())
        );
    }

    #[test]
    fn rejects_bad_shapes() {
        let vocab = Vocab::placeholder(10);
        let bad = [
            SynthSpec { n_head: 5, ..tiny(FfnKind::Dense, DType::F16) },
            SynthSpec { n_head_kv: 3, ..tiny(FfnKind::Dense, DType::F16) },
            SynthSpec { dtype: DType::Q8_0, ..tiny(FfnKind::Dense, DType::F16) },
            tiny(FfnKind::Moe { n_expert: 2, n_expert_used: 3, layout: ExpertLayout::Stacked }, DType::F16),
        ];
        for spec in bad {
            assert!(to_writer(&spec, &vocab).is_err(), "{spec:?}");
        }
    }
}
