//! `qwen3` and `qwen3moe`: Qwen2's layout without biases, with a per-head RMSNorm of Q and K
//! (`attn_q_norm`, `attn_k_norm`, `[head_dim]`) before rope, and a head size that may differ from
//! n_embd / n_head (`attention.key_length`). The MoE variant renormalises its top-k weights and
//! has no shared expert.

use super::arch::Arch;
use super::blocks::{load_dense, load_model, load_moe};
use super::hparams::HParams;
use super::tensors::ModelWeights;
use super::weights::Loader;
use super::ModelError;

pub fn load(ld: &Loader, hp: &HParams, arch: Arch) -> Result<ModelWeights, ModelError> {
    load_model(ld, hp, arch, |il| match arch {
        Arch::Qwen3Moe => load_moe(ld, hp, arch, il),
        _ => load_dense(ld, hp, arch, il),
    })
}
