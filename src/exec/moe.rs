//! The MoE FFN block (`ffn_moe_*-{il}`): route, run each expert on the tokens sent to it, and sum
//! the weighted expert outputs per token in routing-slot order (as llama.cpp adds them).

use crate::model::tensors::{FfnMats, SharedExpert};
use crate::ops::ffn::{swiglu_ffn, swiglu_ffn_expert};
use crate::ops::matmul::Linear;
use crate::ops::moe::{route, shared_expert_gate, ExpertGating};

pub struct MoeConfig {
    pub n_expert_used: usize,
    pub gating: ExpertGating,
    pub normalize: bool,
}

/// `x`: `[n_tok][n_embd]` (after `ffn_norm`) → `out`: `[n_tok][n_embd]`; with a shared expert,
/// `ffn_out = ffn_moe_out + sigmoid(gate_inp · x) · shexp(x)` (`ffn_shexp_out-{il}`).
pub fn moe_ffn(
    x: &[f32],
    router: Linear<'_>,
    experts: &[FfnMats],
    shared: Option<&SharedExpert>,
    cfg: &MoeConfig,
    out: &mut [f32],
) {
    routed_ffn(x, router, experts, cfg, out);
    super::dump::tensor("ffn_moe_out", out);
    if let Some(sh) = shared {
        let n_embd = router.n_in;
        // ffn_shexp: [n_tok][n_embd]
        let mut y = vec![0f32; out.len()];
        swiglu_ffn(x, &sh.ffn.weights(), &mut y);
        super::dump::tensor("ffn_shexp", &y);
        let gates = shared_expert_gate(x, &sh.gate_inp);
        super::dump::tensor("ffn_shexp_gate", &gates);
        for ((o, yr), g) in out.chunks_exact_mut(n_embd).zip(y.chunks_exact(n_embd)).zip(gates) {
            for (a, b) in o.iter_mut().zip(yr) {
                *a += b * g;
            }
        }
    }
}

fn routed_ffn(x: &[f32], router: Linear<'_>, experts: &[FfnMats], cfg: &MoeConfig, out: &mut [f32]) {
    let n_embd = router.n_in;
    let n_expert = router.n_out;
    let n_tok = x.len() / n_embd;
    let k = cfg.n_expert_used;
    // ffn_moe_logits: [n_tok][n_expert]
    let mut logits = vec![0f32; n_tok * n_expert];
    crate::ops::matmul::linear(x, &router, &mut logits);
    super::dump::tensor("ffn_moe_logits", &logits);
    let routes = route(&logits, n_expert, k, cfg.gating, cfg.normalize);

    // ffn_moe_weighted: [n_tok][k][n_embd]
    let mut slots = vec![0f32; n_tok * k * n_embd];
    for (e, mats) in experts.iter().enumerate() {
        // (token, slot, weight) for the tokens routed to expert e
        let picked: Vec<(usize, usize, f32)> = routes
            .iter()
            .enumerate()
            .flat_map(|(t, r)| {
                r.experts
                    .iter()
                    .zip(&r.weights)
                    .enumerate()
                    .filter(|(_, (&ex, _))| ex == e)
                    .map(move |(slot, (_, &w))| (t, slot, w))
            })
            .collect();
        if picked.is_empty() {
            continue;
        }
        // xe, ye: [n_picked][n_embd]
        let mut xe = Vec::with_capacity(picked.len() * n_embd);
        for &(t, _, _) in &picked {
            xe.extend_from_slice(&x[t * n_embd..(t + 1) * n_embd]);
        }
        let mut ye = vec![0f32; picked.len() * n_embd];
        swiglu_ffn_expert(&xe, &mats.weights(), &mut ye);
        for (row, &(t, slot, w)) in ye.chunks_exact(n_embd).zip(&picked) {
            let dst = &mut slots[(t * k + slot) * n_embd..][..n_embd];
            for (d, v) in dst.iter_mut().zip(row) {
                *d = v * w;
            }
        }
    }
    for (o, tok_slots) in out.chunks_exact_mut(n_embd).zip(slots.chunks_exact(k * n_embd)) {
        o.copy_from_slice(&tok_slots[..n_embd]);
        for s in tok_slots.chunks_exact(n_embd).skip(1) {
            for (a, b) in o.iter_mut().zip(s) {
                *a += b;
            }
        }
    }
}
