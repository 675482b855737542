//! `deepseek2` (DeepSeek-V2, V2-Lite, V3, R1; Kimi-K2): multi-head latent attention over a
//! compressed KV cache, the first `leading_dense_block_count` layers dense, the rest routed experts
//! (softmax for V2, sigmoid with a selection bias and expert groups for V3) plus plain shared
//! experts (its layers load as `mixed`'s do; this file is what sets its attention apart). Files converted with the split `attn_k_b` / `attn_v_b` (llama.cpp's MLA layout) are
//! read; the older unsplit `attn_kv_b` is refused by name.

use gguf::names::{ArchKey, TensorKind as T};
use gguf::value::Metadata;
use gguf::GgufFile;

use super::blocks::linear;
use super::hparams::HParams;
use super::tensors::{LatentAttnWeights, LatentQuery, LinearWeight};
use super::weights::Loader;
use super::ModelError;
use crate::model::arch::Presence;

/// The sizes of a latent-attention layer. In the file's MLA layout the attention is one shared
/// KV "head" (`head_count_kv` 1) of `key_length = kv_lora + n_rot` values whose first `kv_lora`
/// are also the values (`value_length`); the per-head sizes before absorption are the `_mla` keys.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatentAttention {
    /// Q's low-rank width; `None`: Q is projected directly (V2-Lite).
    pub q_lora_rank: Option<usize>,
    pub kv_lora_rank: usize,
    /// Per-head Q/K size before absorption (`nope + n_rot`).
    pub head_dim_k_mla: usize,
    /// Per-head V size after decompression.
    pub head_dim_v_mla: usize,
    /// The scores' scale, `mscale² / sqrt(head_dim_k_mla)` with DeepSeek's YaRN mscale.
    pub kq_scale: f32,
}

impl LatentAttention {
    /// The part of each Q/K head without rope.
    pub fn nope(&self, n_rot: usize) -> usize {
        self.head_dim_k_mla - n_rot
    }
}

/// DeepSeek's YaRN log multiplier (`mscale_all_dim`): the file holds a tenth of it.
pub(super) fn yarn_log_mul(file: &GgufFile, key: &dyn Fn(ArchKey) -> String) -> Result<f32, ModelError> {
    Ok(file.get_f32(&key(ArchKey::RopeScalingYarnLogMul))?.map_or(0.0, |v| v / 0.1))
}

/// The latent attention's sizes, checked against the compressed head sizes. `attn_factor`: the
/// YaRN attention factor the rope runs with (1 without YaRN), `freq_scale`: 1 / the rope factor.
#[allow(clippy::too_many_arguments)]
pub(super) fn latent_attention(
    file: &GgufFile,
    key: &dyn Fn(ArchKey) -> String,
    (head_dim_k, head_dim_v, n_head_kv, n_rot): (usize, usize, usize, usize),
    attn_factor: f32,
    freq_scale: f32,
    log_mul: f32,
) -> Result<LatentAttention, ModelError> {
    let invalid = |m: String| Err(ModelError::Invalid(m));
    let get =
        |k: ArchKey| -> Result<Option<usize>, ModelError> { Ok(file.get_u32(&key(k))?.map(|v| v as usize)) };
    let (Some(head_dim_k_mla), Some(head_dim_v_mla)) =
        (get(ArchKey::KeyLengthMla)?, get(ArchKey::ValueLengthMla)?)
    else {
        return invalid(format!(
            "deepseek2 without '{}' (a file converted before llama.cpp's MLA layout, with attn_kv_b) is not \
             supported: convert it again with a current convert_hf_to_gguf.py",
            key(ArchKey::KeyLengthMla)
        ));
    };
    let kv_lora_rank = file.require_u32(&key(ArchKey::KvLoraRank))? as usize;
    let q_lora_rank = get(ArchKey::QLoraRank)?.filter(|&r| r > 0);
    if file.get_f32(&key(ArchKey::AttnTemperatureScale))?.is_some_and(|t| t != 0.0) {
        return invalid(
            "deepseek2 with attention temperature scaling (Mistral Large 3) is not supported".into(),
        );
    }
    if n_head_kv != 1 || head_dim_k != kv_lora_rank + n_rot || head_dim_v != kv_lora_rank {
        return invalid(format!(
            "latent attention needs head_count_kv 1, key_length = kv_lora_rank + rope dims and value_length = \
             kv_lora_rank (got {n_head_kv}, {head_dim_k}, {head_dim_v} for kv_lora_rank {kv_lora_rank}, rope {n_rot})"
        ));
    }
    if head_dim_k_mla <= n_rot || head_dim_v_mla == 0 || head_dim_v_mla > 1 << 16 || kv_lora_rank == 0 {
        return invalid(format!(
            "latent attention head sizes {head_dim_k_mla}/{head_dim_v_mla} do not fit rope dims {n_rot}"
        ));
    }
    // As llama.cpp's graph: undo the attention factor's YaRN correction, then scale the scores by
    // the square of DeepSeek's mscale (f32, left to right, as libllama computes it).
    let ln_factor = (1.0f32 / freq_scale).ln();
    let attn_factor_org = attn_factor * (1.0 + 0.1 * ln_factor);
    let mscale = attn_factor_org * (1.0 + 0.1 * log_mul * ln_factor);
    let kq_scale = 1.0 * mscale * mscale / (head_dim_k_mla as f32).sqrt();
    Ok(LatentAttention { q_lora_rank, kv_lora_rank, head_dim_k_mla, head_dim_v_mla, kq_scale })
}

/// One layer's latent attention weights; `attn_k_b` and `attn_v_b` are cut per head.
pub(super) fn load_latent_attn(
    ld: &Loader,
    hp: &HParams,
    mla: &LatentAttention,
    il: usize,
) -> Result<LatentAttnWeights, ModelError> {
    let (n_embd, n_head, n_rot) = (hp.n_embd, hp.n_head, hp.n_rot);
    let kv_lora = mla.kv_lora_rank;
    if ld.has(&T::AttnKvB.weight(il)) && !ld.has(&T::AttnKB.weight(il)) {
        return Err(ModelError::Invalid(format!(
            "layer {il} has the unsplit attn_kv_b of an old conversion: convert the model again"
        )));
    }
    let plain = |kind: T, n_in, n_out| linear(ld, kind, il, n_in, n_out, Presence::Absent);
    let n_q = n_head * mla.head_dim_k_mla;
    let q = match mla.q_lora_rank {
        None => LatentQuery::Direct(plain(T::AttnQ, n_embd, n_q)?),
        Some(rank) => LatentQuery::LowRank {
            a: plain(T::AttnQA, n_embd, rank)?,
            norm: ld.vector(&T::AttnQANorm.weight(il), rank)?,
            b: plain(T::AttnQB, rank, n_q)?,
        },
    };
    let per_head = |kind: T, n_in, n_out| -> Result<Vec<LinearWeight>, ModelError> {
        Ok(ld
            .experts(&kind.weight(il), n_in, n_out, n_head)?
            .into_iter()
            .map(|w| LinearWeight { w, b: None })
            .collect())
    };
    Ok(LatentAttnWeights {
        q,
        kv_a: plain(T::AttnKvAMqa, n_embd, kv_lora + n_rot)?,
        kv_a_norm: ld.vector(&T::AttnKvANorm.weight(il), kv_lora)?,
        k_b: per_head(T::AttnKB, mla.nope(n_rot), kv_lora)?,
        v_b: per_head(T::AttnVB, kv_lora, mla.head_dim_v_mla)?,
        o: plain(T::AttnOutput, n_head * mla.head_dim_v_mla, n_embd)?,
    })
}
