//! `qwen2` (Qwen2 / Qwen2.5: LLaMA's graph with Q/K/V biases, NEOX rope) and `qwen2moe` (routed
//! experts of `expert_feed_forward_length`, softmax → top-k without renormalising, plus a shared
//! expert scaled by `sigmoid(ffn_gate_inp_shexp · x)`, whose gate is a single `[n_embd]` row).
//! The differences are the `Arch` properties; this file only picks the FFN.

use super::arch::Arch;
use super::blocks::{load_dense, load_model, load_moe};
use super::hparams::HParams;
use super::tensors::ModelWeights;
use super::weights::Loader;
use super::ModelError;

pub fn load(ld: &Loader, hp: &HParams, arch: Arch) -> Result<ModelWeights, ModelError> {
    load_model(ld, hp, arch, |il| match arch {
        Arch::Qwen2Moe => load_moe(ld, hp, arch, il),
        _ => load_dense(ld, hp, arch, il),
    })
}
