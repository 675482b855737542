//! Attention for micro-batches of 64 tokens or more under `ggml` numerics, computed as llama.cpp's
//! tiled CPU flash attention computes it, so prompt processing (and perplexity) matches it bit
//! for bit. Per query row and per tile of 64 KV positions: scores as one FMA chain over the head
//! dims (K and Q in f32), scaled; the online softmax's running max, its `exp` rescale (libm), the
//! tile's exponentials by ggml's vector `exp` summed per vector into f64; then the weighted V sum
//! as one FMA chain over the tile's positions on top of the running f32 sum.

use half::f16;
use rayon::prelude::*;

use super::attention::AttnShape;
use crate::cpu::convert::f16_to_f32;
use crate::cpu::vexp::exp_shifted_sum;

/// KV positions per tile (`GGML_FA_TILE_KV`).
const KV_TILE: usize = 64;

/// Same contract as [`super::attention::attention`].
pub fn attention_tiled(
    q: &[f32],
    k: &[f16],
    v: &[f16],
    pos0: usize,
    s: AttnShape,
    scale: f32,
    out: &mut [f32],
) {
    let (dk, dv) = (s.head_dim_k, s.head_dim_v);
    let n_tok = q.len() / (s.n_head * dk);
    let n_kv = pos0 + n_tok;
    let group = s.n_head / s.n_head_kv;
    let per_head: Vec<Vec<f32>> = (0..s.n_head)
        .into_par_iter()
        .map(|h| {
            let kvh = h / group;
            let (k_row, v_row) = (s.n_head_kv * dk, s.n_head_kv * dv);
            // Per query token: running max, sum and V sum ([n_tok][dv]).
            let mut max = vec![f32::NEG_INFINITY; n_tok];
            let mut sum = vec![0f32; n_tok];
            let mut acc = vec![0f32; n_tok * dv];
            // kt: [dk][KV_TILE] (K transposed), vt: [KV_TILE][dv]
            let mut kt = vec![0f32; dk * KV_TILE];
            let mut vt = vec![0f32; KV_TILE * dv];
            let mut kq = [0f32; KV_TILE];
            let mut widened = vec![0f32; dk.max(dv)];
            for c0 in (0..n_kv).step_by(KV_TILE) {
                let len = KV_TILE.min(n_kv - c0);
                kt.fill(0.0);
                vt.fill(0.0);
                for j in 0..len {
                    f16_to_f32(&k[(c0 + j) * k_row + kvh * dk..][..dk], &mut widened[..dk]);
                    for (d, x) in widened[..dk].iter().enumerate() {
                        kt[d * KV_TILE + j] = *x;
                    }
                    f16_to_f32(&v[(c0 + j) * v_row + kvh * dv..][..dv], &mut vt[j * dv..][..dv]);
                }
                for t in 0..n_tok {
                    let pos = pos0 + t;
                    if pos < c0 {
                        continue; // the whole tile is in this token's future
                    }
                    let qh = &q[(t * s.n_head + h) * dk..][..dk];
                    scores(qh, &kt, &mut kq);
                    for (j, x) in kq.iter_mut().enumerate() {
                        *x = if j < len && c0 + j <= pos { *x * scale } else { f32::NEG_INFINITY };
                    }
                    let tile_max = kq.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                    let new_max = max[t].max(tile_max);
                    let row = &mut acc[t * dv..][..dv];
                    if new_max > max[t] {
                        let rescale = (max[t] - new_max).exp();
                        row.iter_mut().for_each(|x| *x *= rescale);
                        sum[t] *= rescale;
                    }
                    max[t] = new_max;
                    sum[t] = (sum[t] as f64 + exp_shifted_sum(&mut kq, new_max)) as f32;
                    weighted_sum(&kq, &vt, row);
                }
            }
            for (row, s) in acc.chunks_exact_mut(dv).zip(&sum) {
                let inv = if *s == 0.0 { 0.0 } else { 1.0 / s };
                row.iter_mut().for_each(|x| *x *= inv);
            }
            acc
        })
        .collect();
    s.write_heads(&per_head, out);
}

/// `kq[j] = Σ_d q[d]·kt[d][j]`, one FMA chain per `j` in order of `d`, from zero.
fn scores(q: &[f32], kt: &[f32], kq: &mut [f32; KV_TILE]) {
    kq.fill(0.0);
    for (d, &qd) in q.iter().enumerate() {
        fma_row(kq, &kt[d * KV_TILE..][..KV_TILE], qd);
    }
}

/// `row[d] += Σ_j p[j]·vt[j][d]`, one FMA chain per `d` in order of `j`.
fn weighted_sum(p: &[f32; KV_TILE], vt: &[f32], row: &mut [f32]) {
    let dv = row.len();
    for (j, &pj) in p.iter().enumerate() {
        fma_row(row, &vt[j * dv..][..dv], pj);
    }
}

/// `acc[i] = fma(x[i], s, acc[i])`.
fn fma_row(acc: &mut [f32], x: &[f32], s: f32) {
    #[cfg(target_arch = "x86_64")]
    if crate::cpu::path::active() != crate::cpu::path::CpuPath::Scalar {
        // SAFETY: every non-scalar path was chosen after detecting FMA.
        unsafe { fma_row_simd(acc, x, s) };
        return;
    }
    for (a, b) in acc.iter_mut().zip(x) {
        *a = b.mul_add(s, *a);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fma_row_simd(acc: &mut [f32], x: &[f32], s: f32) {
    for (a, b) in acc.iter_mut().zip(x) {
        *a = b.mul_add(s, *a);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::attention::tests::reference;
    use crate::ops::test_rng::Rng;

    #[test]
    fn tiled_kernel_matches_f64_across_tile_edges() {
        // 70 new tokens after 30 cached ones: tiles of 64 KV positions cut through the batch.
        let s = AttnShape { n_head: 4, n_head_kv: 2, head_dim_k: 32, head_dim_v: 24 };
        let (pos0, n_tok) = (30, 70);
        let mut rng = Rng::new(21);
        let n_kv = pos0 + n_tok;
        let q = rng.vec(n_tok * s.n_head * s.head_dim_k, 2.0);
        let k: Vec<f16> =
            rng.vec(n_kv * s.n_head_kv * s.head_dim_k, 2.0).into_iter().map(f16::from_f32).collect();
        let v: Vec<f16> =
            rng.vec(n_kv * s.n_head_kv * s.head_dim_v, 2.0).into_iter().map(f16::from_f32).collect();
        let scale = 1.0 / (s.head_dim_k as f32).sqrt();
        let mut out = vec![0f32; n_tok * s.n_head * s.head_dim_v];
        attention_tiled(&q, &k, &v, pos0, s, scale, &mut out);
        for (i, (g, w)) in out.iter().zip(reference(&q, &k, &v, pos0, s, scale)).enumerate() {
            assert!((*g as f64 - w).abs() < 2e-5, "element {i}: {g} vs {w}");
        }
    }
}
