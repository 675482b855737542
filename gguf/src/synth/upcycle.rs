//! "Upcycled" MoE: a dense model whose FFN becomes `n_expert` experts, each a copy of the dense FFN
//! with small seeded multiplicative noise, behind a random router. Since every expert computes nearly
//! the dense FFN and the routing weights are renormalised to sum to 1, the MoE model still writes the
//! dense model's coherent text, while every MoE code path (routing, top-k, expert matmuls) is exercised.

use std::collections::HashMap;

use super::{check_float, encode, Rng};
use crate::dequant;
use crate::dtype::DType;
use crate::error::{GgufError, Result};
use crate::names::{self, ArchKey, TensorKind};
use crate::reader::GgufFile;
use crate::value::{Metadata, Value};
use crate::writer::GgufWriter;

/// How to turn a dense model into an MoE one.
#[derive(Debug, Clone, PartialEq)]
pub struct UpcycleSpec {
    pub seed: u64,
    pub n_expert: usize,
    pub n_expert_used: usize,
    /// Relative noise: an expert weight is `w * (1 + noise * N(0,1))`.
    pub noise: f64,
    /// Router weights are N(0, (router_scale / sqrt(n_embd))^2).
    pub router_scale: f64,
    /// Storage type of the expert tensors; `None` keeps the dense FFN's type.
    pub dtype: Option<DType>,
}

impl Default for UpcycleSpec {
    fn default() -> Self {
        UpcycleSpec { seed: 1, n_expert: 8, n_expert_used: 2, noise: 1e-2, router_scale: 1.0, dtype: None }
    }
}

/// Build the upcycled model from `dense` (f32/f16/bf16 FFN tensors). Everything but the FFN matrices is
/// copied byte for byte, metadata (vocabulary included) in file order.
pub fn upcycle(dense: &GgufFile, spec: &UpcycleSpec) -> Result<GgufWriter> {
    let arch = dense.architecture()?.to_string();
    if spec.n_expert_used == 0 || spec.n_expert_used > spec.n_expert {
        return Err(GgufError::Unsupported(format!(
            "upcycle: need 1 <= n_expert_used ({}) <= n_expert ({})",
            spec.n_expert_used, spec.n_expert
        )));
    }
    if dense.get_u32(&ArchKey::ExpertCount.name(&arch))?.unwrap_or(0) > 0 {
        return Err(GgufError::Unsupported("upcycle: the source model is already an MoE model".into()));
    }
    let n_layer = dense.require_u32(&ArchKey::BlockCount.name(&arch))? as usize;
    let n_embd = dense.require_u32(&ArchKey::EmbeddingLength.name(&arch))? as usize;

    let mut w = GgufWriter::new();
    for (key, value) in &dense.kv {
        w.set(key, value.clone());
    }
    let old_name = dense.get_str(names::KEY_NAME)?.unwrap_or("model").to_string();
    let (e, k) = (spec.n_expert, spec.n_expert_used);
    w.set(names::KEY_NAME, Value::String(format!("{old_name} upcycled {e}x{k} seed {}", spec.seed)));
    w.set(&ArchKey::ExpertCount.name(&arch), Value::U32(e as u32));
    w.set(&ArchKey::ExpertUsedCount.name(&arch), Value::U32(k as u32));

    // Dense FFN tensor name -> (its stacked-expert kind, layer).
    let mut ffn: HashMap<String, (TensorKind, usize)> = HashMap::new();
    for il in 0..n_layer {
        ffn.insert(TensorKind::FfnGate.weight(il), (TensorKind::FfnGateExps, il));
        ffn.insert(TensorKind::FfnUp.weight(il), (TensorKind::FfnUpExps, il));
        ffn.insert(TensorKind::FfnDown.weight(il), (TensorKind::FfnDownExps, il));
    }
    let mut seen = 0;
    for info in &dense.tensors {
        let bytes = dense.tensor_bytes(info);
        let Some(&(stacked, il)) = ffn.get(&info.name) else {
            w.add_tensor(&info.name, &info.dims, info.dtype, bytes.to_vec())?;
            continue;
        };
        seen += 1;
        if stacked == TensorKind::FfnGateExps {
            let router = TensorKind::FfnGateInp.weight(il);
            let mut rng = Rng::for_tensor(spec.seed, &router);
            let std = spec.router_scale / (n_embd as f64).sqrt();
            let values: Vec<f32> = (0..n_embd * e).map(|_| (std * rng.normal()) as f32).collect();
            w.add_tensor(&router, &[n_embd as u64, e as u64], DType::F32, encode(&values, DType::F32))?;
        }
        let [n_in, n_out] = info.dims[..] else {
            return Err(GgufError::Tensor {
                name: info.name.clone(),
                why: "an FFN weight must be 2-D".into(),
            });
        };
        let dtype = spec.dtype.unwrap_or(info.dtype);
        check_float(dtype)?;
        let dense_values = dequant::to_f32(info.dtype, bytes, info.n_elems() as usize)?;
        let name = stacked.weight(il);
        // {n_in, n_out, n_expert}: expert e's matrix is the e-th contiguous slab.
        let mut values = Vec::with_capacity(dense_values.len() * e);
        for expert in 0..e {
            let mut rng = Rng::for_tensor(spec.seed, &format!("{name}#{expert}"));
            values
                .extend(dense_values.iter().map(|&x| (x as f64 * (1.0 + spec.noise * rng.normal())) as f32));
        }
        w.add_tensor(&name, &[n_in, n_out, e as u64], dtype, encode(&values, dtype))?;
    }
    if seen != 3 * n_layer {
        return Err(GgufError::Unsupported(format!(
            "upcycle: found {seen} of the {} dense FFN tensors (ffn_gate/ffn_up/ffn_down per layer)",
            3 * n_layer
        )));
    }
    Ok(w)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::{to_writer, SynthSpec, Vocab};

    #[test]
    fn experts_are_perturbed_copies_and_the_rest_is_copied() {
        let dense_spec =
            SynthSpec { n_embd: 32, n_layer: 2, n_head: 4, n_head_kv: 2, n_ff: 48, ..Default::default() };
        let dense = GgufFile::from_bytes(to_writer(&dense_spec, &Vocab::placeholder(50)).unwrap().to_bytes())
            .unwrap();
        let spec = UpcycleSpec { n_expert: 4, ..Default::default() };
        let moe = GgufFile::from_bytes(upcycle(&dense, &spec).unwrap().to_bytes()).unwrap();
        assert_eq!(moe.get_u32("llama.expert_count").unwrap(), Some(4));
        assert_eq!(moe.get_u32("llama.expert_used_count").unwrap(), Some(2));
        assert!(moe.tensor("blk.0.ffn_gate.weight").is_none());
        for name in ["token_embd.weight", "blk.1.attn_k.weight", "blk.1.ffn_norm.weight"] {
            assert_eq!(
                moe.tensor_bytes(moe.tensor(name).unwrap()),
                dense.tensor_bytes(dense.tensor(name).unwrap())
            );
        }
        let src = dense.tensor("blk.1.ffn_down.weight").unwrap();
        let src = dequant::to_f32(src.dtype, dense.tensor_bytes(src), 48 * 32).unwrap();
        let exps = moe.tensor("blk.1.ffn_down_exps.weight").unwrap();
        assert_eq!(exps.dims, vec![48, 32, 4]);
        let exps = dequant::to_f32(exps.dtype, moe.tensor_bytes(exps), 48 * 32 * 4).unwrap();
        let mut slabs = exps.chunks_exact(48 * 32);
        let (e0, e1) = (slabs.next().unwrap(), slabs.next().unwrap());
        assert_ne!(e0, e1);
        for slab in [e0, e1] {
            // Relative deviation ~1e-2 (f16 rounding adds ~5e-4); bounded by 2*sqrt(3)*noise. Tiny
            // weights are left out: f16's subnormal spacing would dominate their relative error.
            let rel: Vec<f64> = slab
                .iter()
                .zip(&src)
                .filter(|(_, b)| b.abs() > 1e-3)
                .map(|(a, b)| ((a - b) / b) as f64)
                .collect();
            let rms = (rel.iter().map(|r| r * r).sum::<f64>() / rel.len() as f64).sqrt();
            assert!((0.008..0.012).contains(&rms), "relative rms {rms}");
            assert!(rel.iter().all(|r| r.abs() < 0.036));
        }
        assert_eq!(moe.tensor("blk.0.ffn_gate_inp.weight").unwrap().dtype, DType::F32);
    }

    #[test]
    fn refuses_an_moe_source() {
        let spec = SynthSpec {
            n_embd: 32,
            n_layer: 1,
            n_head: 4,
            n_head_kv: 2,
            n_ff: 48,
            ffn: crate::synth::FfnKind::Moe {
                n_expert: 2,
                n_expert_used: 1,
                layout: crate::synth::ExpertLayout::Stacked,
            },
            ..Default::default()
        };
        let moe =
            GgufFile::from_bytes(to_writer(&spec, &Vocab::placeholder(50)).unwrap().to_bytes()).unwrap();
        assert!(upcycle(&moe, &UpcycleSpec::default()).is_err());
    }
}
