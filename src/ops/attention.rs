//! Causal multi-head attention with grouped KV heads over the f16 KV cache (`kq-{il}`,
//! `kq_softmax-{il}`, `kqv_out-{il}`).
//!
//! K and V come from the cache as stored (f16, like llama.cpp's default cache type) and are widened
//! exactly to f32 once per head; Q, the scores, the softmax and the weighted sum stay in f32 (the
//! sum of exponentials in f64). llama.cpp also rounds Q (and the probabilities) to f16 here; we do
//! not (DESIGN.md §3: more exact, never less).

use half::f16;
use rayon::prelude::*;

use crate::cpu::convert::f16_to_f32;
use crate::cpu::dot::best_dot;

/// Head layout of one attention layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttnShape {
    pub n_head: usize,
    pub n_head_kv: usize,
    /// Dims of a Q/K head.
    pub head_dim_k: usize,
    /// Dims of a V head.
    pub head_dim_v: usize,
}

/// `q`: `[n_tok][n_head][head_dim_k]` for positions `pos0..pos0+n_tok`;
/// `k`: `[n_kv][n_head_kv][head_dim_k]`, `v`: `[n_kv][n_head_kv][head_dim_v]` with
/// `n_kv ≥ pos0 + n_tok`; `out`: `[n_tok][n_head][head_dim_v]`.
/// Query head `h` uses KV head `h / (n_head / n_head_kv)`; token `t` sees positions `0..=pos0+t`.
pub fn attention(q: &[f32], k: &[f16], v: &[f16], pos0: usize, s: AttnShape, scale: f32, out: &mut [f32]) {
    let (dk, dv) = (s.head_dim_k, s.head_dim_v);
    let n_tok = q.len() / (s.n_head * dk);
    let n_kv = pos0 + n_tok;
    let group = s.n_head / s.n_head_kv;
    let dot = best_dot();
    // One task per query head: widen its KV head once, then serve every query token.
    let per_head: Vec<Vec<f32>> = (0..s.n_head)
        .into_par_iter()
        .map(|h| {
            let kvh = h / group;
            // kh: [n_kv][dk], vh: [n_kv][dv]
            let mut kh = vec![0f32; n_kv * dk];
            let mut vh = vec![0f32; n_kv * dv];
            let (k_row, v_row) = (s.n_head_kv * dk, s.n_head_kv * dv);
            for j in 0..n_kv {
                f16_to_f32(&k[j * k_row + kvh * dk..][..dk], &mut kh[j * dk..][..dk]);
                f16_to_f32(&v[j * v_row + kvh * dv..][..dv], &mut vh[j * dv..][..dv]);
            }
            // o: [n_tok][dv]
            let mut o = vec![0f32; n_tok * dv];
            let mut kq = Vec::with_capacity(n_kv);
            for (t, ot) in o.chunks_exact_mut(dv).enumerate() {
                let qh = &q[(t * s.n_head + h) * dk..][..dk];
                kq.clear();
                kq.extend(kh.chunks_exact(dk).take(pos0 + t + 1).map(|kj| dot(qh, kj) * scale));
                let max = kq.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let mut sum = 0f64;
                for x in kq.iter_mut() {
                    *x = (*x - max).exp();
                    sum += *x as f64;
                }
                let inv = (1.0 / sum) as f32;
                for (p, vj) in kq.iter().zip(vh.chunks_exact(dv)) {
                    let w = p * inv;
                    for (acc, x) in ot.iter_mut().zip(vj) {
                        *acc += w * x;
                    }
                }
            }
            o
        })
        .collect();
    for (h, o) in per_head.iter().enumerate() {
        for (t, ot) in o.chunks_exact(dv).enumerate() {
            out[(t * s.n_head + h) * dv..][..dv].copy_from_slice(ot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_rng::Rng;

    #[test]
    fn attention_matches_f64_with_gqa_and_causal_mask() {
        let mut rng = Rng::new(9);
        let s = AttnShape { n_head: 6, n_head_kv: 2, head_dim_k: 16, head_dim_v: 8 };
        let (pos0, n_tok) = (5, 4);
        let n_kv = pos0 + n_tok;
        let q = rng.vec(n_tok * s.n_head * s.head_dim_k, 2.0);
        let k: Vec<f16> =
            rng.vec(n_kv * s.n_head_kv * s.head_dim_k, 2.0).into_iter().map(f16::from_f32).collect();
        let v: Vec<f16> =
            rng.vec(n_kv * s.n_head_kv * s.head_dim_v, 2.0).into_iter().map(f16::from_f32).collect();
        let scale = 1.0 / (s.head_dim_k as f32).sqrt();
        let mut out = vec![0f32; n_tok * s.n_head * s.head_dim_v];
        attention(&q, &k, &v, pos0, s, scale, &mut out);
        for t in 0..n_tok {
            for h in 0..s.n_head {
                let kvh = h / 3;
                let seen = pos0 + t + 1;
                let scores: Vec<f64> = (0..seen)
                    .map(|j| {
                        (0..s.head_dim_k)
                            .map(|d| {
                                q[(t * s.n_head + h) * 16 + d] as f64
                                    * k[(j * s.n_head_kv + kvh) * 16 + d].to_f64()
                            })
                            .sum::<f64>()
                            * scale as f64
                    })
                    .collect();
                let m = scores.iter().cloned().fold(f64::MIN, f64::max);
                let e: Vec<f64> = scores.iter().map(|x| (x - m).exp()).collect();
                let z: f64 = e.iter().sum();
                for d in 0..s.head_dim_v {
                    let want: f64 =
                        (0..seen).map(|j| e[j] / z * v[(j * s.n_head_kv + kvh) * 8 + d].to_f64()).sum();
                    let got = out[(t * s.n_head + h) * 8 + d] as f64;
                    assert!((got - want).abs() < 1e-5, "t{t} h{h} d{d}: {got} vs {want}");
                }
            }
        }
    }
}
