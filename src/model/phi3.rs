//! `phi3` and `phimoe` as llama.cpp runs them: fused `attn_qkv` (or separate Q/K/V), NEOX rope with
//! `rope_factors_short` / `rope_factors_long` (the long ones beyond the original context), Q scaled
//! by 1/sqrt(head_dim) after rope with an attention scale of 1, and for `phi3` a fused `ffn_up`
//! `[n_embd, 2·n_ff]` (gate rows first). `phimoe` keeps that graph with RMSNorm + bias everywhere,
//! biases on `attn_output` and the output head (all required), and Mixtral-style routing (softmax,
//! top-k, renormalised) over experts of width `feed_forward_length`.

use super::arch::Arch;
use super::blocks::{load_dense, load_model, load_moe};
use super::hparams::HParams;
use super::tensors::ModelWeights;
use super::weights::Loader;
use super::ModelError;

pub fn load(ld: &Loader, hp: &HParams, arch: Arch) -> Result<ModelWeights, ModelError> {
    load_model(ld, hp, arch, |il| match arch {
        Arch::PhiMoe => load_moe(ld, hp, arch, il),
        _ => load_dense(ld, hp, arch, il),
    })
}
