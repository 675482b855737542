//! The `llama` architecture: LLaMA-2/3, Mistral, SmolLM, and Mixtral (`expert_count > 0`, experts
//! stacked as `ffn_*_exps` or in the legacy per-expert layout `ffn_*.{e}`).

use gguf::names::TensorKind as T;

use super::arch::{Arch, BiasRule};
use super::hparams::HParams;
use super::tensors::{AttnWeights, FfnBlock, FfnMats, LayerWeights, LinearWeight, ModelWeights};
use super::weights::Loader;
use super::ModelError;

pub fn load(ld: &Loader, hp: &HParams, arch: Arch) -> Result<ModelWeights, ModelError> {
    let n_embd = hp.n_embd;
    let tok_embd = ld.matrix(&T::TokenEmbd.weight(0), n_embd, hp.n_vocab)?;
    let output_norm = ld.vector(&T::OutputNorm.weight(0), n_embd)?;
    let output_name = T::Output.weight(0);
    let output = if ld.has(&output_name) || !arch.output_may_be_tied() {
        Some(ld.matrix(&output_name, n_embd, hp.n_vocab)?)
    } else {
        None
    };
    let rope_freqs = ld.optional_vector(&T::RopeFreqs.weight(0), hp.n_rot / 2)?;
    let layers = (0..hp.n_layer).map(|il| load_layer(ld, hp, arch, il)).collect::<Result<_, _>>()?;
    Ok(ModelWeights { tok_embd, output_norm, output, rope_freqs, layers })
}

fn load_layer(ld: &Loader, hp: &HParams, arch: Arch, il: usize) -> Result<LayerWeights, ModelError> {
    let n_embd = hp.n_embd;
    let attn_rule = arch.attn_bias();
    let attn = AttnWeights {
        q: linear(ld, T::AttnQ, il, n_embd, hp.n_embd_q(), attn_rule)?,
        k: linear(ld, T::AttnK, il, n_embd, hp.n_embd_k_gqa(), attn_rule)?,
        v: linear(ld, T::AttnV, il, n_embd, hp.n_embd_v_gqa(), attn_rule)?,
        o: linear(ld, T::AttnOutput, il, hp.n_embd_attn_out(), n_embd, attn_rule)?,
    };
    let ffn = if hp.is_moe() { load_moe(ld, hp, il)? } else { load_dense(ld, hp, arch, il)? };
    Ok(LayerWeights {
        attn_norm: ld.vector(&T::AttnNorm.weight(il), n_embd)?,
        attn,
        ffn_norm: ld.vector(&T::FfnNorm.weight(il), n_embd)?,
        ffn,
    })
}

fn load_dense(ld: &Loader, hp: &HParams, arch: Arch, il: usize) -> Result<FfnBlock, ModelError> {
    let rule = arch.ffn_bias();
    Ok(FfnBlock::Dense(FfnMats {
        gate: linear(ld, T::FfnGate, il, hp.n_embd, hp.n_ff, rule)?,
        up: linear(ld, T::FfnUp, il, hp.n_embd, hp.n_ff, rule)?,
        down: linear(ld, T::FfnDown, il, hp.n_ff, hp.n_embd, rule)?,
    }))
}

fn load_moe(ld: &Loader, hp: &HParams, il: usize) -> Result<FfnBlock, ModelError> {
    let (n_embd, n_ff, n_exp) = (hp.n_embd, hp.n_ff, hp.n_expert);
    let router = ld.matrix(&T::FfnGateInp.weight(il), n_embd, n_exp)?;
    let stacked = ld.has(&T::FfnUpExps.weight(il));
    let experts = if stacked {
        let gate = ld.experts(&T::FfnGateExps.weight(il), n_embd, n_ff, n_exp)?;
        let up = ld.experts(&T::FfnUpExps.weight(il), n_embd, n_ff, n_exp)?;
        let down = ld.experts(&T::FfnDownExps.weight(il), n_ff, n_embd, n_exp)?;
        gate.into_iter()
            .zip(up)
            .zip(down)
            .map(|((g, u), d)| FfnMats {
                gate: LinearWeight { w: g, b: None },
                up: LinearWeight { w: u, b: None },
                down: LinearWeight { w: d, b: None },
            })
            .collect()
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
    Ok(FfnBlock::Moe { router, experts })
}

fn linear(
    ld: &Loader,
    kind: T,
    il: usize,
    n_in: usize,
    n_out: usize,
    rule: BiasRule,
) -> Result<LinearWeight, ModelError> {
    let w = ld.matrix(&kind.weight(il), n_in, n_out)?;
    let bias_name = kind.bias(il);
    let b = match rule {
        BiasRule::None => None,
        BiasRule::Optional => ld.optional_vector(&bias_name, n_out)?,
        BiasRule::Required => Some(ld.vector(&bias_name, n_out)?),
    };
    Ok(LinearWeight { w, b })
}
