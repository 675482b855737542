//! The `llama` architecture: LLaMA-2/3, Mistral, SmolLM, and Mixtral (`expert_count > 0`, experts
//! stacked as `ffn_*_exps` or in the legacy per-expert layout `ffn_*.{e}`).

use gguf::names::TensorKind as T;

use super::arch::Arch;
use super::blocks::{load_dense, load_model, stacked_experts};
use super::hparams::HParams;
use super::tensors::{FfnBlock, FfnMats, LinearWeight, ModelWeights};
use super::weights::Loader;
use super::ModelError;

pub fn load(ld: &Loader, hp: &HParams, arch: Arch) -> Result<ModelWeights, ModelError> {
    load_model(
        ld,
        hp,
        arch,
        |il| if hp.is_moe() { load_moe(ld, hp, il) } else { load_dense(ld, hp, arch, il) },
    )
}

fn load_moe(ld: &Loader, hp: &HParams, il: usize) -> Result<FfnBlock, ModelError> {
    let (n_embd, n_ff, n_exp) = (hp.n_embd, hp.n_ff, hp.n_expert);
    let router = ld.matrix(&T::FfnGateInp.weight(il), n_embd, n_exp)?;
    let experts = if ld.has(&T::FfnUpExps.weight(il)) {
        stacked_experts(ld, il, n_embd, n_ff, n_exp)?
    } else {
        // Legacy layout: one 2-D tensor per expert.
        let mat = |kind: T, e: usize, n_in: usize, n_out: usize| {
            ld.matrix(&kind.expert_weight(il, e), n_in, n_out).map(|w| LinearWeight { w, b: None })
        };
        (0..n_exp)
            .map(|e| {
                Ok(FfnMats {
                    gate: mat(T::FfnGateExpert, e, n_embd, n_ff)?,
                    up: mat(T::FfnUpExpert, e, n_embd, n_ff)?,
                    down: mat(T::FfnDownExpert, e, n_ff, n_embd)?,
                })
            })
            .collect::<Result<_, ModelError>>()?
    };
    Ok(FfnBlock::Moe { router, router_b: None, selection_bias: None, experts, shared: None })
}
