//! The SwiGLU feed-forward block: `down(silu(gate(x)) · up(x))` (`ffn_gate-{il}`, `ffn_up-{il}`,
//! `ffn_swiglu-{il}`, `ffn_out-{il}`).

use rayon::prelude::*;

use super::matmul::{linear, linear_many, linear_per_row, Linear};
use crate::cpu::scratch::scratch;

pub use crate::cpu::vexp::swiglu;

/// Weights of one SwiGLU FFN (a dense layer or one expert).
pub struct FfnWeights<'a> {
    /// `[n_embd, n_ff]`
    pub gate: Linear<'a>,
    /// `[n_embd, n_ff]`
    pub up: Linear<'a>,
    /// `[n_ff, n_embd]`
    pub down: Linear<'a>,
}

/// How the gate and up projections combine before `down`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Glu {
    /// `silu(gate) · up`.
    SiLU,
    /// gpt-oss's experts: `g = min(gate, limit)`, `u = clamp(up, −limit, limit)`,
    /// `g / (1 + exp(−alpha·g)) · (u + 1)`, as ggml's `swiglu_oai`.
    OaiClamped { alpha: f32, limit: f32 },
}

/// `x`: `[n_tok][n_embd]` → `out`: `[n_tok][n_embd]`.
pub fn swiglu_ffn(x: &[f32], w: &FfnWeights<'_>, out: &mut [f32]) {
    swiglu_ffn_by(x, w, out, false, Glu::SiLU)
}

/// [`swiglu_ffn`] for a routed expert: llama.cpp runs those matmuls as `mul_mat_id`, which sums
/// each output like a one-token matmul (see `cpu::ggml_matmul`).
pub fn swiglu_ffn_expert(x: &[f32], w: &FfnWeights<'_>, out: &mut [f32]) {
    swiglu_ffn_by(x, w, out, true, Glu::SiLU)
}

/// A routed expert with the model's GLU.
pub fn glu_ffn_expert(x: &[f32], w: &FfnWeights<'_>, glu: Glu, out: &mut [f32]) {
    swiglu_ffn_by(x, w, out, true, glu)
}

fn swiglu_ffn_by(x: &[f32], w: &FfnWeights<'_>, out: &mut [f32], per_row: bool, glu: Glu) {
    let n_tok = x.len() / w.gate.n_in;
    let n_ff = w.gate.n_out;
    // Every element is written by the matmuls before it is read.
    let mut gate = scratch(n_tok * n_ff); // [n_tok][n_ff]
    let mut up = scratch(n_tok * n_ff); // [n_tok][n_ff]
    linear_many(x, &mut [(&w.gate, &mut gate), (&w.up, &mut up)], per_row);
    crate::exec::dump::tensor("ffn_gate", &gate);
    crate::exec::dump::tensor("ffn_up", &up);
    match glu {
        Glu::SiLU => swiglu_parallel(&mut gate, &up),
        Glu::OaiClamped { alpha, limit } => {
            for (g, &u) in gate.iter_mut().zip(up.iter()) {
                let x = if limit < *g { limit } else { *g };
                let y = u.clamp(-limit, limit);
                *g = x / (1.0 + (alpha * -x).exp()) * (y + 1.0);
            }
        }
    }
    crate::exec::dump::tensor("ffn_swiglu", &gate);
    if per_row {
        linear_per_row(&gate, &w.down, out);
    } else {
        linear(&gate, &w.down, out);
    }
}

/// [`swiglu`] in chunks across threads. The chunks are whole multiples of every path's vector
/// width, so each element takes the same (vector or scalar-tail) route as in one call.
pub fn swiglu_parallel(gate: &mut [f32], up: &[f32]) {
    const CHUNK: usize = 1 << 14;
    gate.par_chunks_mut(CHUNK).zip(up.par_chunks(CHUNK)).for_each(|(g, u)| swiglu(g, u));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::WeightView;
    use crate::ops::test_rng::Rng;

    fn lin(w: &[f32], n_in: usize, n_out: usize) -> Linear<'_> {
        Linear { w: WeightView::F32(w), n_in, n_out, bias: None, lora: &[] }
    }

    #[test]
    fn swiglu_ffn_matches_f64() {
        let mut rng = Rng::new(5);
        let (n_tok, n_embd, n_ff) = (3, 24, 40);
        let x = rng.vec(n_tok * n_embd, 1.0);
        let g = rng.vec(n_embd * n_ff, 0.5);
        let u = rng.vec(n_embd * n_ff, 0.5);
        let d = rng.vec(n_ff * n_embd, 0.5);
        let w = FfnWeights {
            gate: lin(&g, n_embd, n_ff),
            up: lin(&u, n_embd, n_ff),
            down: lin(&d, n_ff, n_embd),
        };
        let mut out = vec![0f32; n_tok * n_embd];
        swiglu_ffn(&x, &w, &mut out);
        for t in 0..n_tok {
            let xt = &x[t * n_embd..(t + 1) * n_embd];
            let h: Vec<f64> = (0..n_ff)
                .map(|f| {
                    let a: f64 = (0..n_embd).map(|i| g[f * n_embd + i] as f64 * xt[i] as f64).sum();
                    let b: f64 = (0..n_embd).map(|i| u[f * n_embd + i] as f64 * xt[i] as f64).sum();
                    a / (1.0 + (-a).exp()) * b
                })
                .collect();
            for o in 0..n_embd {
                let want: f64 = (0..n_ff).map(|f| d[o * n_ff + f] as f64 * h[f]).sum();
                assert!(
                    (out[t * n_embd + o] as f64 - want).abs() < 1e-5,
                    "{} vs {want}",
                    out[t * n_embd + o]
                );
            }
        }
    }
}
