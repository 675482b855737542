//! Loading the parts every llama-family architecture shares, each architecture's quirks read from
//! its typed `Arch` properties: head and norms (with optional biases), attention projections
//! (separate or fused `attn_qkv`), dense SwiGLU (separate or fused gate/up) and stacked experts.

use gguf::names::TensorKind as T;

use super::arch::{Arch, Presence, SharedExpertKind};
use super::hparams::HParams;
use super::tensors::{
    AttnBlock, AttnWeights, FfnBlock, FfnMats, LayerWeights, LinearWeight, ModelWeights, SharedExpert,
};
use super::weights::{Loader, Weight};
use super::ModelError;

/// The whole model with `ffn` deciding each layer's FFN.
pub(super) fn load_model(
    ld: &Loader,
    hp: &HParams,
    arch: Arch,
    ffn: impl Fn(usize) -> Result<FfnBlock, ModelError>,
) -> Result<ModelWeights, ModelError> {
    let n_embd = hp.n_embd;
    let tok_embd = ld.matrix(&T::TokenEmbd.weight(0), n_embd, hp.n_vocab)?;
    let output_norm = ld.vector(&T::OutputNorm.weight(0), n_embd)?;
    let output_norm_b = vector_if(ld, &T::OutputNorm.bias(0), n_embd, arch.norm_bias())?;
    let output_name = T::Output.weight(0);
    let output = if ld.has(&output_name) || !arch.output_may_be_tied() {
        Some(ld.matrix(&output_name, n_embd, hp.n_vocab)?)
    } else {
        None
    };
    let output_b = vector_if(ld, &T::Output.bias(0), hp.n_vocab, arch.output_bias())?;
    let half_rot = hp.n_rot / 2;
    let (rope_freqs, rope_freqs_long) = if arch.has_long_short_rope() {
        (
            ld.optional_vector(&T::RopeFactorsShort.weight(0), half_rot)?,
            ld.optional_vector(&T::RopeFactorsLong.weight(0), half_rot)?,
        )
    } else {
        (ld.optional_vector(&T::RopeFreqs.weight(0), half_rot)?, None)
    };
    let layers = (0..hp.n_layer)
        .map(|il| {
            // Projections first: a truncated file is reported by its first missing matrix.
            let attn = match &hp.mla {
                Some(mla) => AttnBlock::Latent(super::deepseek2::load_latent_attn(ld, hp, mla, il)?),
                None => AttnBlock::Heads(load_attn(ld, hp, arch, il)?),
            };
            let ffn = ffn(il)?;
            Ok(LayerWeights {
                attn_norm: ld.vector(&T::AttnNorm.weight(il), n_embd)?,
                attn_norm_b: vector_if(ld, &T::AttnNorm.bias(il), n_embd, arch.norm_bias())?,
                attn,
                qk_norm: match (
                    vector_if(ld, &T::AttnQNorm.weight(il), hp.head_dim_k, arch.qk_norm())?,
                    vector_if(ld, &T::AttnKNorm.weight(il), hp.head_dim_k, arch.qk_norm())?,
                ) {
                    (Some(q), Some(k)) => Some((q, k)),
                    (None, None) => None,
                    _ => {
                        return Err(ModelError::Invalid(format!(
                            "layer {il} has only one of attn_q_norm and attn_k_norm"
                        )))
                    }
                },
                attn_sinks: if arch.has_attn_sinks() {
                    Some(ld.vector(&T::AttnSinks.weight(il), hp.n_head)?)
                } else {
                    None
                },
                ffn_norm: ld.vector(&arch.ffn_norm_tensor().weight(il), n_embd)?,
                ffn_norm_b: vector_if(ld, &T::FfnNorm.bias(il), n_embd, arch.norm_bias())?,
                ffn,
            })
        })
        .collect::<Result<_, ModelError>>()?;
    Ok(ModelWeights {
        tok_embd,
        output_norm,
        output_norm_b,
        output,
        output_b,
        rope_freqs,
        rope_freqs_long,
        layers,
    })
}

/// Q, K, V from `attn_q/k/v`, or split out of a fused `attn_qkv` `[n_embd, n_q + 2·n_kv]` (rows in
/// the order Q, K, V; a fused bias is split the same way).
fn load_attn(ld: &Loader, hp: &HParams, arch: Arch, il: usize) -> Result<AttnWeights, ModelError> {
    let n_embd = hp.n_embd;
    let (n_q, n_k, n_v) = (hp.n_embd_q(), hp.n_embd_k_gqa(), hp.n_embd_v_gqa());
    let o = || linear(ld, T::AttnOutput, il, hp.n_embd_attn_out(), n_embd, arch.attn_out_bias());
    let fused = T::AttnQkv.weight(il);
    if !ld.has(&fused) {
        let rule = arch.attn_bias();
        return Ok(AttnWeights {
            q: linear(ld, T::AttnQ, il, n_embd, n_q, rule)?,
            k: linear(ld, T::AttnK, il, n_embd, n_k, rule)?,
            v: linear(ld, T::AttnV, il, n_embd, n_v, rule)?,
            o: o()?,
        });
    }
    let total = n_q + n_k + n_v;
    let b = ld.optional_vector(&T::AttnQkv.bias(il), total)?;
    let part = |row0: usize, rows: usize| -> Result<LinearWeight, ModelError> {
        Ok(LinearWeight {
            w: ld.matrix_rows(&fused, n_embd, total, row0, rows)?,
            b: b.as_ref().map(|b| b[row0..row0 + rows].to_vec()),
        })
    };
    Ok(AttnWeights { q: part(0, n_q)?, k: part(n_q, n_k)?, v: part(n_q + n_k, n_v)?, o: o()? })
}

/// The dense SwiGLU FFN; with `fused_gate_up`, `ffn_up` holds the gate rows then the up rows.
pub(super) fn load_dense(ld: &Loader, hp: &HParams, arch: Arch, il: usize) -> Result<FfnBlock, ModelError> {
    let (n_embd, n_ff) = (hp.n_embd, hp.n_ff);
    let rule = arch.ffn_bias();
    let down = linear(ld, T::FfnDown, il, n_ff, n_embd, rule)?;
    if arch.fused_gate_up() {
        let name = T::FfnUp.weight(il);
        let half = |row0| ld.matrix_rows(&name, n_embd, 2 * n_ff, row0, n_ff);
        return Ok(FfnBlock::Dense(FfnMats {
            gate: LinearWeight { w: half(0)?, b: None },
            up: LinearWeight { w: half(n_ff)?, b: None },
            down,
        }));
    }
    Ok(FfnBlock::Dense(FfnMats {
        gate: linear(ld, T::FfnGate, il, n_embd, n_ff, rule)?,
        up: linear(ld, T::FfnUp, il, n_embd, n_ff, rule)?,
        down,
    }))
}

/// Router and stacked experts `ffn_*_exps` of width `n_ff_exp`; plus the selection bias and the
/// shared expert (gated or plain) where the architecture has them.
pub(super) fn load_moe(ld: &Loader, hp: &HParams, arch: Arch, il: usize) -> Result<FfnBlock, ModelError> {
    let (n_embd, n_ff, n_exp) = (hp.n_embd, hp.n_ff_exp, hp.n_expert);
    let router = ld.matrix(&T::FfnGateInp.weight(il), n_embd, n_exp)?;
    let selection_bias = vector_if(ld, &T::FfnExpProbsB.bias(il), n_exp, arch.selection_bias())?;
    let mut experts = stacked_experts(ld, il, n_embd, n_ff, n_exp)?;
    let router_b = if arch.has_expert_biases() {
        let biases = |kind: T, n| ld.vectors(&kind.bias(il), n, n_exp);
        let (gate, up, down) =
            (biases(T::FfnGateExps, n_ff)?, biases(T::FfnUpExps, n_ff)?, biases(T::FfnDownExps, n_embd)?);
        for (m, ((g, u), d)) in experts.iter_mut().zip(gate.into_iter().zip(up).zip(down)) {
            (m.gate.b, m.up.b, m.down.b) = (Some(g), Some(u), Some(d));
        }
        Some(ld.vector(&T::FfnGateInp.bias(il), n_exp)?)
    } else {
        None
    };
    let n_sh = hp.n_ff_shexp;
    let mat =
        |kind: T, n_in, n_out| ld.matrix(&kind.weight(il), n_in, n_out).map(|w| LinearWeight { w, b: None });
    let shared_ffn = || -> Result<FfnMats, ModelError> {
        Ok(FfnMats {
            gate: mat(T::FfnGateShexp, n_embd, n_sh)?,
            up: mat(T::FfnUpShexp, n_embd, n_sh)?,
            down: mat(T::FfnDownShexp, n_sh, n_embd)?,
        })
    };
    let shared = match arch.shared_expert() {
        SharedExpertKind::None => None,
        SharedExpertKind::Gated => Some(SharedExpert {
            gate_inp: Some(ld.vector(&T::FfnGateInpShexp.weight(il), n_embd)?),
            ffn: shared_ffn()?,
        }),
        SharedExpertKind::Plain => Some(SharedExpert { gate_inp: None, ffn: shared_ffn()? }),
    };
    Ok(FfnBlock::Moe { router, router_b, selection_bias, experts, shared })
}

pub(super) fn stacked_experts(
    ld: &Loader,
    il: usize,
    n_embd: usize,
    n_ff: usize,
    n_exp: usize,
) -> Result<Vec<FfnMats>, ModelError> {
    let gate = ld.experts(&T::FfnGateExps.weight(il), n_embd, n_ff, n_exp)?;
    let up = ld.experts(&T::FfnUpExps.weight(il), n_embd, n_ff, n_exp)?;
    let down = ld.experts(&T::FfnDownExps.weight(il), n_ff, n_embd, n_exp)?;
    let plain = |w: Weight| LinearWeight { w, b: None };
    Ok(gate
        .into_iter()
        .zip(up)
        .zip(down)
        .map(|((g, u), d)| FfnMats { gate: plain(g), up: plain(u), down: plain(d) })
        .collect())
}

pub(super) fn linear(
    ld: &Loader,
    kind: T,
    il: usize,
    n_in: usize,
    n_out: usize,
    rule: Presence,
) -> Result<LinearWeight, ModelError> {
    let w = ld.matrix(&kind.weight(il), n_in, n_out)?;
    let b = vector_if(ld, &kind.bias(il), n_out, rule)?;
    Ok(LinearWeight { w, b })
}

fn vector_if(ld: &Loader, name: &str, n: usize, rule: Presence) -> Result<Option<Vec<f32>>, ModelError> {
    match rule {
        Presence::Absent => Ok(None),
        Presence::Optional => ld.optional_vector(name, n),
        Presence::Required => ld.vector(name, n).map(Some),
    }
}
