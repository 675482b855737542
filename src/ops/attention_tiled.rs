//! Attention for micro-batches of 64 tokens or more under `ggml` numerics, computed as llama.cpp's
//! tiled CPU flash attention computes it, so prompt processing (and perplexity) matches it bit
//! for bit. Per query row and per tile of 64 KV positions: scores as one FMA chain over the head
//! dims (K and Q in f32), scaled; the online softmax's running max, its `exp` rescale (libm), the
//! tile's exponentials by ggml's vector `exp` summed per vector into f64; then the weighted V sum
//! as one FMA chain over the tile's positions on top of the running f32 sum.
//!
//! Each query row's arithmetic depends on nothing but its own row, so the work is split into
//! (head, chunk of query rows) tasks: nine heads on two threads would leave one idle a ninth of
//! the time. The chains live in registers (`tile_kernels`), which is what makes this fast.

use half::f16;
use rayon::prelude::*;

use super::attention::{apply_sink, AttnExtras, AttnShape};
use super::attention_tile_kernels::{tile_kernels, TileKernels, KV_TILE};
use crate::cpu::convert::f16_to_f32;
use crate::cpu::vexp::exp_shifted_sum;

/// Query rows per task: small enough for load balance, large enough that converting a KV tile
/// to f32 (once per task) stays cheap next to the rows that use it.
const Q_CHUNK: usize = 32;

/// Same contract as [`super::attention::attention_with`].
#[allow(clippy::too_many_arguments)]
pub fn attention_tiled(
    q: &[f32],
    k: &[f16],
    v: &[f16],
    pos0: usize,
    s: AttnShape,
    scale: f32,
    x: AttnExtras<'_>,
    out: &mut [f32],
) {
    let n_tok = q.len() / (s.n_head * s.head_dim_k);
    let kernels = tile_kernels();
    let wide = WideKv::new(k, v, pos0 + n_tok, s);
    // Later chunks see more positions: hand them out first.
    let mut tasks: Vec<(usize, usize)> =
        (0..n_tok).step_by(Q_CHUNK).flat_map(|t0| (0..s.n_head).map(move |h| (h, t0))).collect();
    tasks.reverse();
    let results: Vec<Vec<f32>> = tasks
        .par_iter()
        .with_max_len(1)
        .map(|&(h, t0)| {
            let rows = t0..(t0 + Q_CHUNK).min(n_tok);
            head_rows(&kernels, q, &wide, pos0, s, scale, x, h, rows)
        })
        .collect();
    let dv = s.head_dim_v;
    for (&(h, t0), res) in tasks.iter().zip(&results) {
        for (i, row) in res.chunks_exact(dv).enumerate() {
            out[((t0 + i) * s.n_head + h) * dv..][..dv].copy_from_slice(row);
        }
    }
}

/// The KV cache's first `n_kv` positions widened to f32 once per call, in the layout the tile
/// kernels read: K tiles transposed (`[n_head_kv][n_tiles][dk][KV_TILE]`), V tiles as they are
/// (`[n_head_kv][n_tiles][KV_TILE][dv]`), zero past `n_kv`. Every query head of a group and every
/// chunk of query rows shares them; widening per task cost as much as the FMAs.
struct WideKv {
    kt: Vec<f32>,
    vt: Vec<f32>,
    n_tiles: usize,
    tile_k: usize,
    tile_v: usize,
}

impl WideKv {
    fn new(k: &[f16], v: &[f16], n_kv: usize, s: AttnShape) -> WideKv {
        let (dk, dv) = (s.head_dim_k, s.head_dim_v);
        let (k_row, (v_row, v_head)) = (s.n_head_kv * dk, s.v_layout());
        let n_tiles = n_kv.div_ceil(KV_TILE);
        let (tile_k, tile_v) = (dk * KV_TILE, KV_TILE * dv);
        let mut kt = vec![0f32; s.n_head_kv * n_tiles * tile_k];
        let mut vt = vec![0f32; s.n_head_kv * n_tiles * tile_v];
        kt.par_chunks_mut(tile_k).zip(vt.par_chunks_mut(tile_v)).enumerate().for_each(|(i, (kt, vt))| {
            let (kvh, c0) = (i / n_tiles, (i % n_tiles) * KV_TILE);
            let mut widened = vec![0f32; dk];
            for j in 0..KV_TILE.min(n_kv - c0) {
                f16_to_f32(&k[(c0 + j) * k_row + kvh * dk..][..dk], &mut widened);
                for (d, x) in widened.iter().enumerate() {
                    kt[d * KV_TILE + j] = *x;
                }
                f16_to_f32(&v[(c0 + j) * v_row + kvh * v_head..][..dv], &mut vt[j * dv..][..dv]);
            }
        });
        WideKv { kt, vt, n_tiles, tile_k, tile_v }
    }

    /// KV head `kvh`'s tile `tile`: (K transposed, V).
    fn tile(&self, kvh: usize, tile: usize) -> (&[f32], &[f32]) {
        let i = kvh * self.n_tiles + tile;
        (&self.kt[i * self.tile_k..][..self.tile_k], &self.vt[i * self.tile_v..][..self.tile_v])
    }
}

/// Head `h`'s output for query rows `rows`: `[rows.len()][head_dim_v]`.
#[allow(clippy::too_many_arguments)]
fn head_rows(
    kern: &TileKernels,
    q: &[f32],
    wide: &WideKv,
    pos0: usize,
    s: AttnShape,
    scale: f32,
    x: AttnExtras<'_>,
    h: usize,
    rows: std::ops::Range<usize>,
) -> Vec<f32> {
    let (dk, dv) = (s.head_dim_k, s.head_dim_v);
    let kvh = h / (s.n_head / s.n_head_kv);
    let n = rows.len();
    let n_kv = pos0 + rows.end;
    // Per query row: running max, sum and V sum ([n][dv]).
    let mut max = vec![f32::NEG_INFINITY; n];
    let mut sum = vec![0f32; n];
    let mut acc = vec![0f32; n * dv];
    let mut kq = [[0f32; KV_TILE]; 2];
    for (tile, c0) in (0..n_kv).step_by(KV_TILE).enumerate() {
        let len = KV_TILE.min(n_kv - c0);
        let (kt, vt) = wide.tile(kvh, tile);
        // Rows see the tile from the first whose position reaches it; they go through in pairs.
        let first = (c0.saturating_sub(pos0)).max(rows.start) - rows.start;
        let mut i = first;
        while i < n {
            let pair = i + 1 < n;
            let q_of = |i: usize| &q[((rows.start + i) * s.n_head + h) * dk..][..dk];
            if pair {
                let [a, b] = &mut kq;
                (kern.scores_pair)([q_of(i), q_of(i + 1)], kt, [a, b]);
            } else {
                (kern.scores)(q_of(i), kt, &mut kq[0]);
            }
            for (r, scores) in kq.iter_mut().take(1 + usize::from(pair)).enumerate() {
                let row = i + r;
                let pos = pos0 + rows.start + row;
                let tile_max = mask_scale_max(scores, c0, len, x.first_visible(pos), pos, scale);
                if tile_max == f32::NEG_INFINITY {
                    // A tile wholly outside the row's window: ggml skips the row there (its
                    // weights zero, its sums untouched).
                    scores.fill(0.0);
                    continue;
                }
                let new_max = max[row].max(tile_max);
                if new_max > max[row] {
                    let rescale = (max[row] - new_max).exp();
                    acc[row * dv..][..dv].iter_mut().for_each(|x| *x *= rescale);
                    sum[row] *= rescale;
                }
                max[row] = new_max;
                sum[row] = (sum[row] as f64 + exp_shifted_sum(scores, new_max)) as f32;
            }
            if pair {
                let (a, b) = acc[i * dv..][..2 * dv].split_at_mut(dv);
                (kern.weighted_sum_pair)([&kq[0], &kq[1]], vt, [a, b]);
            } else {
                (kern.weighted_sum)(&kq[0], vt, &mut acc[i * dv..][..dv]);
            }
            i += 1 + usize::from(pair);
        }
    }
    for (i, (row, s)) in acc.chunks_exact_mut(dv).zip(&mut sum).enumerate() {
        if let Some(sinks) = x.sinks {
            apply_sink(sinks[h], &mut max[i], s, row);
        }
        let inv = if *s == 0.0 { 0.0 } else { 1.0 / *s };
        row.iter_mut().for_each(|x| *x *= inv);
    }
    acc
}

/// The tile's scores for the row at `pos`: scaled, positions past `pos` (or past the cache) and
/// before `first` masked to −∞; returns their max.
fn mask_scale_max(
    kq: &mut [f32; KV_TILE],
    c0: usize,
    len: usize,
    first: usize,
    pos: usize,
    scale: f32,
) -> f32 {
    if len == KV_TILE && c0 + KV_TILE <= pos + 1 && c0 >= first {
        return scale_and_max(kq, scale);
    }
    for (j, x) in kq.iter_mut().enumerate() {
        *x = if j < len && c0 + j <= pos && c0 + j >= first { *x * scale } else { f32::NEG_INFINITY };
    }
    kq.iter().copied().fold(f32::NEG_INFINITY, f32::max)
}

/// Scales a tile wholly in the row's past and returns its max, in lanes the compiler vectorises
/// (the max of a set does not depend on the order it is taken in).
fn scale_and_max(kq: &mut [f32; KV_TILE], scale: f32) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 16];
    for chunk in kq.chunks_exact_mut(16) {
        for (m, x) in lanes.iter_mut().zip(chunk) {
            *x *= scale;
            *m = if *x > *m { *x } else { *m };
        }
    }
    lanes.iter().copied().fold(f32::NEG_INFINITY, f32::max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::attention::tests::reference;
    use crate::ops::test_rng::Rng;

    #[test]
    fn tiled_kernel_matches_f64_across_tile_edges() {
        // 70 new tokens after 30 cached ones: tiles of 64 KV positions cut through the batch.
        let s = AttnShape::heads(4, 2, 32, 24);
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
        attention_tiled(&q, &k, &v, pos0, s, scale, AttnExtras::NONE, &mut out);
        for (i, (g, w)) in out.iter().zip(reference(&q, &k, &v, pos0, s, scale)).enumerate() {
            assert!((*g as f64 - w).abs() < 2e-5, "element {i}: {g} vs {w}");
        }
    }
}
