//! Seeded random LoRA adapters for a base model, in llama.cpp's adapter GGUF form: no adapter can be
//! downloaded in CI, and tests need one that visibly changes the model's output. Every attention
//! and dense-FFN projection (`attn_q/k/v/output`, `ffn_gate/up/down`) and a separate `output.weight`
//! of the base file get a pair `NAME.lora_a` `{n_in, rank}` and `NAME.lora_b` `{rank, n_out}`;
//! unlike a freshly initialised PEFT adapter, B is random too, so the adapter is not a no-op.

use super::{check_float, encode, Rng};
use crate::dtype::DType;
use crate::error::{GgufError, Result};
use crate::names;
use crate::reader::GgufFile;
use crate::value::{Metadata, Value};
use crate::writer::GgufWriter;

/// The adapter's rank, alpha, seed and storage type.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraSynthSpec {
    pub seed: u64,
    pub rank: usize,
    /// `adapter.lora.alpha`: llama.cpp scales the adapter by `alpha / rank` (0: by 1).
    pub alpha: f32,
    /// A and B (f32, f16 or bf16).
    pub dtype: DType,
    /// B's entries are N(0, (b_scale / sqrt(rank))^2), so `B·(A·x)` is about `b_scale` times `x`.
    pub b_scale: f64,
}

impl Default for LoraSynthSpec {
    fn default() -> Self {
        LoraSynthSpec { seed: 1, rank: 16, alpha: 32.0, dtype: DType::F16, b_scale: 0.25 }
    }
}

/// Whether a base tensor gets a pair (see the module doc).
fn is_target(name: &str) -> bool {
    if name == "output.weight" {
        return true;
    }
    let Some(rest) = name.strip_prefix("blk.").and_then(|r| r.strip_suffix(".weight")) else { return false };
    let Some((il, kind)) = rest.split_once('.') else { return false };
    il.bytes().all(|b| b.is_ascii_digit())
        && ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"].contains(&kind)
}

/// The adapter for `base`, tensors in the base file's order.
pub fn lora_adapter(base: &GgufFile, spec: &LoraSynthSpec) -> Result<GgufWriter> {
    check_float(spec.dtype)?;
    if spec.rank == 0 {
        return Err(GgufError::Unsupported("lora: --rank must be at least 1".into()));
    }
    let arch = base.architecture()?.to_string();
    let mut w = GgufWriter::new();
    w.set(names::KEY_ARCHITECTURE, Value::String(arch));
    let base_name = base.get_str(names::KEY_NAME)?.unwrap_or("model").to_string();
    let name = format!("{base_name} LoRA rank {} alpha {} seed {}", spec.rank, spec.alpha, spec.seed);
    w.set(names::KEY_NAME, Value::String(name));
    w.set("general.type", Value::String("adapter".into()));
    w.set("adapter.type", Value::String("lora".into()));
    w.set("adapter.lora.alpha", Value::F32(spec.alpha));
    let r = spec.rank;
    let mut n_pairs = 0;
    for t in &base.tensors {
        if !is_target(&t.name) || t.dims.len() != 2 {
            continue;
        }
        let (n_in, n_out) = (t.dims[0] as usize, t.dims[1] as usize);
        let draw = |suffix: &str, n: usize, std: f64| -> (String, Vec<f32>) {
            let name = format!("{}.{suffix}", t.name);
            let mut rng = Rng::for_tensor(spec.seed, &name);
            let v = (0..n).map(|_| (std * rng.normal()) as f32).collect();
            (name, v)
        };
        let (a_name, a) = draw("lora_a", n_in * r, 1.0 / (n_in as f64).sqrt());
        let (b_name, b) = draw("lora_b", r * n_out, spec.b_scale / (r as f64).sqrt());
        w.add_tensor(&a_name, &[n_in as u64, r as u64], spec.dtype, encode(&a, spec.dtype))?;
        w.add_tensor(&b_name, &[r as u64, n_out as u64], spec.dtype, encode(&b, spec.dtype))?;
        n_pairs += 1;
    }
    if n_pairs == 0 {
        return Err(GgufError::Unsupported(
            "lora: the base model has no attn_q/k/v/output, ffn_gate/up/down or output matrix".into(),
        ));
    }
    Ok(w)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::{to_writer, SynthSpec, Vocab};

    fn base() -> GgufFile {
        let spec =
            SynthSpec { n_embd: 32, n_layer: 2, n_head: 4, n_head_kv: 2, n_ff: 48, ..SynthSpec::default() };
        GgufFile::from_bytes(to_writer(&spec, &Vocab::placeholder(40)).unwrap().to_bytes()).unwrap()
    }

    #[test]
    fn pairs_every_projection_with_transposed_shapes() {
        let base = base();
        let spec = LoraSynthSpec { rank: 4, ..LoraSynthSpec::default() };
        let f = GgufFile::from_bytes(lora_adapter(&base, &spec).unwrap().to_bytes()).unwrap();
        assert_eq!(f.get_str("general.type").unwrap(), Some("adapter"));
        assert_eq!(f.get_str("adapter.type").unwrap(), Some("lora"));
        assert_eq!(f.get_f32("adapter.lora.alpha").unwrap(), Some(32.0));
        // 2 layers x 7 projections + output, two tensors each.
        assert_eq!(f.tensors.len(), 2 * (2 * 7 + 1));
        let a = f.tensor("blk.1.ffn_down.weight.lora_a").unwrap();
        let b = f.tensor("blk.1.ffn_down.weight.lora_b").unwrap();
        assert_eq!((a.dims.clone(), b.dims.clone()), (vec![48, 4], vec![4, 32]));
        assert!(f.tensor("token_embd.weight.lora_a").is_none());
    }

    #[test]
    fn seeded_and_checked() {
        let base = base();
        let bytes = |seed| {
            lora_adapter(&base, &LoraSynthSpec { seed, ..LoraSynthSpec::default() }).unwrap().to_bytes()
        };
        assert_eq!(bytes(3), bytes(3));
        assert_ne!(bytes(3), bytes(4));
        assert!(lora_adapter(&base, &LoraSynthSpec { rank: 0, ..LoraSynthSpec::default() }).is_err());
        let q = LoraSynthSpec { dtype: DType::Q8_0, ..LoraSynthSpec::default() };
        assert!(lora_adapter(&base, &q).is_err());
    }
}
