//! The CPU model's prepared weights seen as the GPU's host views, so that a loaded [`Model`]
//! (llama arch: LLaMA, Mistral, SmolLM, Mixtral) can be put on the GPU whole.

use super::llama::{
    GpuLlama, HostFfn, HostFfnBlock, HostLayer, HostLinear, HostMatrix, HostModel, LlamaShape,
};
use super::Gpu;
use crate::cpu::WeightView;
use crate::gpu::GpuError;
use crate::model::tensors::{AttnBlock, FfnBlock, FfnMats, LinearWeight};
use crate::model::weights::Weight;
use crate::model::{Arch, Model};
use crate::ops::rope::RopeStyle;

fn unsupported(msg: String) -> GpuError {
    GpuError::Shape { op: "model on GPU", msg }
}

fn matrix(w: &Weight) -> HostMatrix<'_> {
    match w.view() {
        WeightView::F16(v) => HostMatrix::F16(v),
        WeightView::BF16(v) => HostMatrix::Bf16(v),
        WeightView::F32(v) => HostMatrix::F32(v),
    }
}

fn linear(w: &Weight) -> HostLinear<'_> {
    HostLinear { w: matrix(w), n_in: w.n_in, n_out: w.n_out }
}

fn unbiased<'a>(l: &'a LinearWeight, what: &str) -> Result<HostLinear<'a>, GpuError> {
    match l.b {
        Some(_) => Err(unsupported(format!("{what} has a bias (not on the GPU yet)"))),
        None => Ok(linear(&l.w)),
    }
}

fn ffn<'a>(m: &'a FfnMats) -> Result<HostFfn<'a>, GpuError> {
    Ok(HostFfn {
        gate: unbiased(&m.gate, "ffn_gate")?,
        up: unbiased(&m.up, "ffn_up")?,
        down: unbiased(&m.down, "ffn_down")?,
    })
}

impl GpuLlama {
    /// Upload every weight of `model` (fails with `OutOfBudget` when it does not fit).
    pub fn from_model(gpu: &Gpu, model: &Model) -> Result<GpuLlama, GpuError> {
        let hp = model.hparams();
        let w = model.weights();
        if model.arch() != Arch::Llama {
            return Err(unsupported(format!("the {:?} architecture is not on the GPU yet", model.arch())));
        }
        // The llama arch has no long-context rope factors, so any context gets the same rope.
        let rope = model.rope_for(0);
        if hp.head_dim_k != hp.head_dim_v {
            return Err(unsupported(format!("K head dim {} != V head dim {}", hp.head_dim_k, hp.head_dim_v)));
        }
        let shape = LlamaShape {
            n_vocab: hp.n_vocab,
            n_embd: hp.n_embd,
            n_head: hp.n_head,
            n_head_kv: hp.n_head_kv,
            head_dim: hp.head_dim_k,
            n_rot: rope.n_rot,
            rope_neox: rope.style == RopeStyle::Neox,
            rope_freq_base: rope.freq_base,
            rope_freq_scale: rope.freq_scale,
            rms_eps: hp.rms_eps,
            n_expert_used: hp.n_expert_used,
            renorm_experts: hp.routing.normalize,
        };
        let mut layers = Vec::with_capacity(w.layers.len());
        for l in &w.layers {
            let AttnBlock::Heads(attn) = &l.attn else {
                return Err(unsupported("latent attention (not on the GPU yet)".into()));
            };
            layers.push(HostLayer {
                attn_norm: &l.attn_norm,
                q: unbiased(&attn.q, "attn_q")?,
                k: unbiased(&attn.k, "attn_k")?,
                v: unbiased(&attn.v, "attn_v")?,
                o: unbiased(&attn.o, "attn_output")?,
                ffn_norm: &l.ffn_norm,
                ffn: match &l.ffn {
                    FfnBlock::Dense(m) => HostFfnBlock::Dense(ffn(m)?),
                    FfnBlock::Moe { shared: Some(_), .. } => {
                        return Err(unsupported("a shared expert (not on the GPU yet)".into()))
                    }
                    FfnBlock::Moe { router, experts, shared: None, .. } => HostFfnBlock::Moe {
                        router: linear(router),
                        experts: experts.iter().map(ffn).collect::<Result<_, _>>()?,
                    },
                },
            });
        }
        let host = HostModel {
            shape,
            tok_embd: matrix(&w.tok_embd),
            output_norm: &w.output_norm,
            output: linear(w.output_head()),
            rope_freqs: w.rope_freqs.as_deref(),
            layers,
        };
        GpuLlama::upload(gpu, &host)
    }
}
