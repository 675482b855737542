//! Model shapes: the few numbers the planner needs, from a GGUF file or from a named preset.
//!
//! Named shapes follow the Hugging Face `config.json` of each model (see
//! `reference/hybrid-anchors.md` §6.4); Qwen3-30B-A3B and LLaMA-2-70B come from their public configs.

use gguf::names::{ArchKey, TensorKind};
use gguf::value::Metadata;
use gguf::{DType, GgufFile};
use serde::{Deserialize, Serialize};

use super::PlanError;

/// Storage type of the weights as the engine holds them (quantized files are dequantized to f16).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WeightType {
    F16,
    Bf16,
    F32,
}

impl WeightType {
    pub fn bytes(self) -> u64 {
        match self {
            WeightType::F16 | WeightType::Bf16 => 2,
            WeightType::F32 => 4,
        }
    }

    pub fn parse(s: &str) -> Result<WeightType, PlanError> {
        match s {
            "f16" => Ok(WeightType::F16),
            "bf16" => Ok(WeightType::Bf16),
            "f32" => Ok(WeightType::F32),
            _ => Err(PlanError::BadArg(format!("unknown weight type '{s}' (f16, bf16, f32)"))),
        }
    }
}

/// The dimensions of a decoder-only transformer, dense or mixture-of-experts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelShape {
    pub name: String,
    pub arch: String,
    pub n_layer: u32,
    pub n_embd: u64,
    pub n_head: u64,
    pub n_head_kv: u64,
    pub head_dim_k: u64,
    pub head_dim_v: u64,
    pub n_vocab: u64,
    /// Dense FFN width (every layer of a dense model, the leading dense layers of an MoE one); 0
    /// when no layer is dense.
    pub n_ff: u64,
    /// Layers `0..n_layer_dense_lead` of an MoE model are dense (GLM-4.5, DeepSeek).
    #[serde(default)]
    pub n_layer_dense_lead: u32,
    /// Past those, every this-many-th layer (1-based) is MoE, the others dense (Llama 4).
    #[serde(default = "every_layer")]
    pub n_moe_layer_step: u32,
    pub n_expert: u32,
    pub n_expert_used: u32,
    pub n_ff_exp: u64,
    /// Shared expert width; 0 when there is none.
    pub n_ff_shexp: u64,
    /// The shared expert has a scalar gate (`ffn_gate_inp_shexp`, a {n_embd} vector).
    pub shexp_gated: bool,
    pub tied_output: bool,
    pub wtype: WeightType,
    /// Multi-head latent attention (DeepSeek); then `n_head_kv` is 1 and `head_dim_k`/`head_dim_v`
    /// are the compressed cache row's sizes (`kv_lora + n_rot` and `kv_lora`).
    #[serde(default)]
    pub mla: Option<LatentShape>,
}

/// A latent-attention layer's sizes: Q's low rank (0: Q projected directly), the compressed KV's
/// rank, the rope part, and the per-head Q/K and V sizes the compression stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatentShape {
    pub q_lora_rank: u64,
    pub kv_lora_rank: u64,
    pub n_rot: u64,
    pub head_dim_k: u64,
    pub head_dim_v: u64,
}

impl LatentShape {
    /// Parameters of one latent attention block (projections and the norms inside it).
    fn params(&self, n_embd: u64, n_head: u64) -> u64 {
        let (q_rank, kv_rank) = (self.q_lora_rank, self.kv_lora_rank);
        let n_q = n_head * self.head_dim_k;
        let q = if q_rank > 0 { n_embd * q_rank + q_rank + q_rank * n_q } else { n_embd * n_q };
        let kv_a = n_embd * (kv_rank + self.n_rot) + kv_rank;
        let k_b = n_head * (self.head_dim_k - self.n_rot) * kv_rank;
        let v_b = n_head * kv_rank * self.head_dim_v;
        q + kv_a + k_b + v_b + n_head * self.head_dim_v * n_embd
    }
}

pub const SHAPE_NAMES: &[&str] = &[
    "mixtral-8x7b",
    "phi-3.5-moe",
    "qwen1.5-moe-a2.7b",
    "qwen2-57b-a14b",
    "qwen3-30b-a3b",
    "glm-4.5-air",
    "gpt-oss-120b",
    "llama-4-scout",
    "deepseek-v2-lite",
    "deepseek-v3",
    "llama-2-13b",
    "llama-2-70b",
];

#[allow(clippy::too_many_arguments)]
fn shape(
    name: &str,
    arch: &str,
    n_layer: u32,
    n_embd: u64,
    heads: (u64, u64, u64),
    n_vocab: u64,
    n_ff: u64,
    moe: (u32, u32, u64, u64),
) -> ModelShape {
    ModelShape {
        name: name.to_string(),
        arch: arch.to_string(),
        n_layer,
        n_embd,
        n_head: heads.0,
        n_head_kv: heads.1,
        head_dim_k: heads.2,
        head_dim_v: heads.2,
        n_vocab,
        n_ff,
        n_layer_dense_lead: 0,
        n_moe_layer_step: 1,
        n_expert: moe.0,
        n_expert_used: moe.1,
        n_ff_exp: moe.2,
        n_ff_shexp: moe.3,
        shexp_gated: moe.3 > 0,
        tied_output: false,
        wtype: WeightType::F16,
        mla: None,
    }
}

/// A DeepSeek shape: latent attention with a KV rank of 512, rope 64, heads of 128 + 64 (Q/K) and
/// 128 (V); `n_layer_dense_lead` dense layers, then experts with `n_shared` shared ones.
#[allow(clippy::too_many_arguments)]
fn deepseek(
    name: &str,
    n_layer: u32,
    n_embd: u64,
    n_head: u64,
    q_lora_rank: u64,
    n_vocab: u64,
    (n_ff, n_layer_dense_lead): (u64, u32),
    (n_expert, n_expert_used, n_ff_exp, n_shared): (u32, u32, u64, u64),
) -> ModelShape {
    let mla = LatentShape { q_lora_rank, kv_lora_rank: 512, n_rot: 64, head_dim_k: 192, head_dim_v: 128 };
    ModelShape {
        n_head_kv: 1,
        head_dim_k: mla.kv_lora_rank + mla.n_rot,
        head_dim_v: mla.kv_lora_rank,
        n_layer_dense_lead,
        shexp_gated: false,
        mla: Some(mla),
        ..shape(
            name,
            "deepseek2",
            n_layer,
            n_embd,
            (n_head, 1, 0),
            n_vocab,
            n_ff,
            (n_expert, n_expert_used, n_ff_exp, n_shared * n_ff_exp),
        )
    }
}

fn every_layer() -> u32 {
    1
}

impl ModelShape {
    /// A named shape in the given weight type.
    pub fn named(name: &str, wtype: WeightType) -> Result<ModelShape, PlanError> {
        let mut s = match name {
            "mixtral-8x7b" => shape(name, "llama", 32, 4096, (32, 8, 128), 32000, 0, (8, 2, 14336, 0)),
            "phi-3.5-moe" => shape(name, "phimoe", 32, 4096, (32, 8, 128), 32064, 0, (16, 2, 6400, 0)),
            "qwen1.5-moe-a2.7b" => {
                shape(name, "qwen2moe", 24, 2048, (16, 16, 128), 151936, 0, (60, 4, 1408, 5632))
            }
            "qwen2-57b-a14b" => {
                shape(name, "qwen2moe", 28, 3584, (28, 4, 128), 151936, 0, (64, 8, 2560, 20480))
            }
            "qwen3-30b-a3b" => shape(name, "qwen3moe", 48, 2048, (32, 4, 128), 151936, 0, (128, 8, 768, 0)),
            // One dense layer of 10944, then 128 experts of 1408 (top-8) and a shared one of 1408;
            // the NextN block is not run and not counted.
            "glm-4.5-air" => ModelShape {
                n_layer_dense_lead: 1,
                shexp_gated: false,
                ..shape(name, "glm4moe", 46, 4096, (96, 8, 128), 151552, 10944, (128, 8, 1408, 1408))
            },
            // Attention sinks and biases are a rounding error of the parameters.
            "gpt-oss-120b" => shape(name, "gpt-oss", 36, 2880, (64, 8, 64), 201088, 0, (128, 4, 2880, 0)),
            // Every layer MoE: 16 experts of 8192 (top-1) and a shared one.
            "llama-4-scout" => ModelShape {
                shexp_gated: false,
                ..shape(name, "llama4", 48, 5120, (40, 8, 128), 202048, 0, (16, 1, 8192, 8192))
            },
            // One dense layer of 10944, then 64 experts of 1408 (top-6) and two shared ones; Q
            // projected directly. 15.7B published.
            "deepseek-v2-lite" => deepseek(name, 27, 2048, 16, 0, 102400, (10944, 1), (64, 6, 1408, 2)),
            // Three dense layers of 18432, then 256 experts of 2048 (top-8) and one shared; Q of
            // rank 1536. 671B published (the MTP block not counted, not run).
            "deepseek-v3" => deepseek(name, 61, 7168, 128, 1536, 129280, (18432, 3), (256, 8, 2048, 1)),
            "llama-2-13b" => shape(name, "llama", 40, 5120, (40, 40, 128), 32000, 13824, (0, 0, 0, 0)),
            "llama-2-70b" => shape(name, "llama", 80, 8192, (64, 8, 128), 32000, 28672, (0, 0, 0, 0)),
            _ => {
                return Err(PlanError::BadArg(format!(
                    "unknown shape '{name}' (known: {})",
                    SHAPE_NAMES.join(", ")
                )))
            }
        };
        s.wtype = wtype;
        Ok(s)
    }

    /// Reads the shape from a GGUF file's metadata and tensor table.
    pub fn from_gguf(file: &GgufFile, name: &str) -> Result<ModelShape, PlanError> {
        let arch = file.architecture()?.to_string();
        let key = |k: ArchKey| k.name(&arch);
        let req = |k: ArchKey| -> Result<u64, PlanError> { Ok(u64::from(file.require_u32(&key(k))?)) };
        let opt =
            |k: ArchKey| -> Result<Option<u64>, PlanError> { Ok(file.get_u32(&key(k))?.map(u64::from)) };
        let n_embd = req(ArchKey::EmbeddingLength)?;
        let n_head = req(ArchKey::HeadCount)?;
        if n_head == 0 || n_embd == 0 {
            return Err(PlanError::BadModel("head count and embedding length must be positive".into()));
        }
        let n_layer_nextn = file.get_u32(&key(ArchKey::NextnPredictLayers))?.unwrap_or(0);
        let n_layer = file.require_u32(&key(ArchKey::BlockCount))?.saturating_sub(n_layer_nextn);
        let n_layer_dense_lead = file.get_u32(&key(ArchKey::LeadingDenseBlockCount))?.unwrap_or(0);
        let n_moe_layer_step = file.get_u32(&key(ArchKey::InterleaveMoeLayerStep))?.unwrap_or(1).max(1);
        let n_head_kv = opt(ArchKey::HeadCountKv)?.unwrap_or(n_head);
        let head_dim_k = opt(ArchKey::KeyLength)?.unwrap_or(n_embd / n_head);
        let head_dim_v = opt(ArchKey::ValueLength)?.unwrap_or(head_dim_k);
        // MoE tensors are looked up in the first MoE layer.
        let moe0 = (n_layer_dense_lead..n_layer.max(1))
            .find(|il| (il + 1).is_multiple_of(n_moe_layer_step))
            .unwrap_or(n_layer_dense_lead) as usize;
        let dim1 = |kind: TensorKind| file.tensor(&kind.weight(moe0)).and_then(|t| t.dims.get(1).copied());
        let embd = file.require_tensor(&TensorKind::TokenEmbd.weight(0))?;
        let n_vocab = embd.dims.get(1).copied().unwrap_or(0);
        let n_expert = opt(ArchKey::ExpertCount)?.unwrap_or(0) as u32;
        let n_expert_used = opt(ArchKey::ExpertUsedCount)?.unwrap_or(0) as u32;
        let (n_ff, n_ff_exp) = if n_expert > 0 {
            let exp = opt(ArchKey::ExpertFeedForwardLength)?
                .or_else(|| dim1(TensorKind::FfnGateExps))
                .or_else(|| {
                    file.tensor(&TensorKind::FfnUpExpert.expert_weight(moe0, 0))
                        .and_then(|t| t.dims.get(1).copied())
                })
                .or(opt(ArchKey::FeedForwardLength)?)
                .unwrap_or(0);
            let dense = if n_layer_dense_lead > 0 || n_moe_layer_step > 1 {
                req(ArchKey::FeedForwardLength)?
            } else {
                0
            };
            (dense, exp)
        } else {
            (req(ArchKey::FeedForwardLength)?, 0)
        };
        let n_ff_shexp = if n_expert > 0 {
            dim1(TensorKind::FfnUpShexp).or(opt(ArchKey::ExpertSharedFeedForwardLength)?).unwrap_or(0)
        } else {
            0
        };
        let mla = match opt(ArchKey::KvLoraRank)? {
            Some(kv_lora_rank) => Some(LatentShape {
                q_lora_rank: opt(ArchKey::QLoraRank)?.unwrap_or(0),
                kv_lora_rank,
                n_rot: opt(ArchKey::RopeDimensionCount)?.unwrap_or(0),
                head_dim_k: opt(ArchKey::KeyLengthMla)?.unwrap_or(0),
                head_dim_v: opt(ArchKey::ValueLengthMla)?.unwrap_or(0),
            }),
            None => None,
        };
        let probe = [TensorKind::AttnQ, TensorKind::AttnQkv, TensorKind::AttnQA]
            .into_iter()
            .find_map(|kind| file.tensor(&kind.weight(0)));
        let wtype = match probe.map(|t| t.dtype) {
            Some(DType::F32) => WeightType::F32,
            Some(DType::BF16) => WeightType::Bf16,
            _ => WeightType::F16,
        };
        let s = ModelShape {
            name: name.to_string(),
            arch: arch.clone(),
            n_layer,
            n_embd,
            n_head,
            n_head_kv,
            head_dim_k,
            head_dim_v,
            n_vocab,
            n_ff,
            n_layer_dense_lead: if n_expert > 0 { n_layer_dense_lead } else { 0 },
            n_moe_layer_step: if n_expert > 0 { n_moe_layer_step } else { 1 },
            n_expert,
            n_expert_used,
            n_ff_exp,
            n_ff_shexp,
            shexp_gated: file.tensor(&TensorKind::FfnGateInpShexp.weight(moe0)).is_some(),
            tied_output: file.tensor(&TensorKind::Output.weight(0)).is_none(),
            wtype,
            mla,
        };
        s.validate()?;
        Ok(s)
    }

    pub fn validate(&self) -> Result<(), PlanError> {
        let bad = |m: &str| Err(PlanError::BadModel(m.to_string()));
        if self.n_layer == 0 || self.n_vocab == 0 {
            return bad("model has no layers or no vocabulary");
        }
        if self.is_moe()
            && (self.n_expert_used == 0 || self.n_expert_used > self.n_expert || self.n_ff_exp == 0)
        {
            return bad("MoE model needs 0 < expert_used_count <= expert_count and an expert FFN width");
        }
        if !self.is_moe() && self.n_ff == 0 {
            return bad("dense model needs a feed-forward length");
        }
        if let Some(m) = &self.mla {
            if m.head_dim_k <= m.n_rot || m.head_dim_v == 0 || m.kv_lora_rank == 0 {
                return bad(
                    "latent attention needs key_length_mla > rope dims, value_length_mla and kv_lora_rank",
                );
            }
        }
        let some_dense = self.is_moe() && (self.n_layer_dense_lead > 0 || self.n_moe_layer_step > 1);
        if self.n_layer_dense_lead > self.n_layer
            || self.n_moe_layer_step == 0
            || (some_dense && self.n_ff == 0)
        {
            return bad(
                "dense layers of an MoE model need a feed-forward length (and a valid layer pattern)",
            );
        }
        Ok(())
    }

    pub fn is_moe(&self) -> bool {
        self.n_expert > 0
    }

    /// Layer `il` routes to experts (an MoE model past its leading dense layers, on its step).
    pub fn layer_is_moe(&self, il: u32) -> bool {
        self.is_moe()
            && il >= self.n_layer_dense_lead
            && (il + 1).is_multiple_of(self.n_moe_layer_step.max(1))
    }

    /// Parameters of one layer's attention block (projections and norms; biases are negligible).
    pub fn attn_params(&self) -> u64 {
        if let Some(mla) = &self.mla {
            return mla.params(self.n_embd, self.n_head) + 2 * self.n_embd;
        }
        let q = self.n_embd * self.n_head * self.head_dim_k;
        let kv = self.n_embd * self.n_head_kv * (self.head_dim_k + self.head_dim_v);
        let o = self.n_head * self.head_dim_v * self.n_embd;
        q + kv + o + 2 * self.n_embd
    }

    pub fn expert_params(&self) -> u64 {
        3 * self.n_embd * self.n_ff_exp
    }

    pub fn shexp_params(&self) -> u64 {
        3 * self.n_embd * self.n_ff_shexp + if self.shexp_gated { self.n_embd } else { 0 }
    }

    pub fn router_params(&self) -> u64 {
        self.n_embd * u64::from(self.n_expert)
    }

    pub fn dense_ffn_params(&self) -> u64 {
        3 * self.n_embd * self.n_ff
    }

    /// Output norm and head (the head is the token embedding when tied).
    pub fn output_params(&self) -> u64 {
        self.n_embd * self.n_vocab + self.n_embd
    }

    /// Every parameter, the token embedding included.
    pub fn total_params(&self) -> u64 {
        let layer = |il: u32| {
            self.attn_params()
                + if self.layer_is_moe(il) {
                    self.router_params()
                        + u64::from(self.n_expert) * self.expert_params()
                        + self.shexp_params()
                } else {
                    self.dense_ffn_params()
                }
        };
        let embd = if self.tied_output { 0 } else { self.n_embd * self.n_vocab };
        (0..self.n_layer).map(layer).sum::<u64>() + self.output_params() + embd
    }

    /// KV cache bytes per token per layer (f16 cache; latent attention's V is part of its K).
    pub fn kv_bytes_per_token_layer(&self) -> u64 {
        let v = if self.mla.is_some() { 0 } else { self.head_dim_v };
        2 * self.n_head_kv * (self.head_dim_k + v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Totals published with each model (hybrid-anchors §6.4; Qwen3-30B-A3B: 30.5B; LLaMA-2-70B: 69B).
    #[test]
    fn named_totals_match_published_parameter_counts() {
        for (name, billions) in [
            ("mixtral-8x7b", 46.7),
            ("phi-3.5-moe", 41.9),
            ("qwen1.5-moe-a2.7b", 14.3),
            ("qwen2-57b-a14b", 57.4),
            ("qwen3-30b-a3b", 30.5),
            // GLM-4.5-Air: 106B published (12B active); gpt-oss-120b: 116.8B; Llama 4 Scout: 109B.
            ("glm-4.5-air", 106.0),
            ("gpt-oss-120b", 116.8),
            ("llama-4-scout", 109.0),
            ("deepseek-v2-lite", 15.7),
            ("deepseek-v3", 671.0),
            ("llama-2-13b", 13.0),
            ("llama-2-70b", 69.0),
        ] {
            let s = ModelShape::named(name, WeightType::F16).unwrap();
            let got = s.total_params() as f64 / 1e9;
            assert!((got - billions).abs() / billions < 0.015, "{name}: {got:.2}B vs {billions}B");
        }
    }

    #[test]
    fn kv_per_token_matches_reference_table() {
        // hybrid-anchors §6.5: Mixtral 128 KiB, Qwen1.5-MoE 192 KiB, Qwen2-57B 56 KiB, LLaMA-2-13B 800 KiB.
        for (name, kib) in
            [("mixtral-8x7b", 128), ("qwen1.5-moe-a2.7b", 192), ("qwen2-57b-a14b", 56), ("llama-2-13b", 800)]
        {
            let s = ModelShape::named(name, WeightType::F16).unwrap();
            assert_eq!(s.kv_bytes_per_token_layer() * u64::from(s.n_layer), kib * 1024, "{name}");
        }
    }
}
