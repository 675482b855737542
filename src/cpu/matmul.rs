//! `y = x · Wᵀ`: f32 activations times f32/f16/bf16 weights, parallel over output rows.
//!
//! Weights stay in their storage type; each thread converts a block of weight rows to f32 once
//! (F16C/AVX2, see `convert`) and reuses it for every token of the batch, so prefill costs
//! one weight pass per batch instead of one per token. Under the default `ggml` numerics,
//! `ggml_matmul` rounds the activations to the weight's type first and sums in ggml's order.

use half::{bf16, f16};
use rayon::prelude::*;

use super::convert::{bf16_to_f32, f16_to_f32};
use super::dot::{kernels, Kernels};
use super::ggml_matmul::{self, RowOrder};
use super::numerics::{self, Numerics};

/// Weight rows of a linear layer, ggml `[n_in, n_out]`: row `o` is `data[o*n_in .. (o+1)*n_in]`.
#[derive(Debug, Clone, Copy)]
pub enum WeightView<'a> {
    F32(&'a [f32]),
    F16(&'a [f16]),
    BF16(&'a [bf16]),
}

impl WeightView<'_> {
    pub fn len(&self) -> usize {
        match self {
            WeightView::F32(s) => s.len(),
            WeightView::F16(s) => s.len(),
            WeightView::BF16(s) => s.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Rows `first..first + n` of a weight with `n_in` columns.
    pub fn rows(&self, first: usize, n: usize, n_in: usize) -> WeightView<'_> {
        let r = first * n_in..(first + n) * n_in;
        match self {
            WeightView::F32(s) => WeightView::F32(&s[r]),
            WeightView::F16(s) => WeightView::F16(&s[r]),
            WeightView::BF16(s) => WeightView::BF16(&s[r]),
        }
    }

    /// The raw 16-bit values of an f16 (`false`) or bf16 (`true`) weight.
    pub(super) fn halves(&self) -> Option<(&[u16], bool)> {
        // SAFETY: f16 and bf16 are `repr(transparent)` over u16; same length and lifetime.
        let raw = |p: *const u16, n| unsafe { std::slice::from_raw_parts(p, n) };
        match self {
            WeightView::F16(s) => Some((raw(s.as_ptr().cast(), s.len()), false)),
            WeightView::BF16(s) => Some((raw(s.as_ptr().cast(), s.len()), true)),
            WeightView::F32(_) => None,
        }
    }

    /// Elements `[start, start + out.len())` as f32.
    pub fn to_f32_into(&self, start: usize, out: &mut [f32]) {
        let end = start + out.len();
        match self {
            WeightView::F32(s) => out.copy_from_slice(&s[start..end]),
            WeightView::F16(s) => f16_to_f32(&s[start..end], out),
            WeightView::BF16(s) => bf16_to_f32(&s[start..end], out),
        }
    }
}

/// `y[t][o] = Σ_i w[o][i] · x[t][i]` with the active path's kernels.
///
/// `x`: `[n_tok][n_in]`, `w`: ggml `[n_in, n_out]`, `y`: `[n_tok][n_out]`. Lengths are invariants
/// established when the model is loaded; a mismatch is a programming error.
pub fn matmul(x: &[f32], w: WeightView<'_>, n_in: usize, n_out: usize, y: &mut [f32]) {
    matmul_with(&kernels(), x, w, n_in, n_out, y)
}

/// [`matmul`] with the kernels of a given path (tests and benches compare paths with it).
pub fn matmul_with(k: &Kernels, x: &[f32], w: WeightView<'_>, n_in: usize, n_out: usize, y: &mut [f32]) {
    match numerics::active() {
        Numerics::Ggml => ggml_matmul::matmul(k, x, w, n_in, n_out, y, RowOrder::ByTokenCount),
        Numerics::F32 => matmul_plain(k, x, w, n_in, n_out, y),
    }
}

/// Several matmuls of the same activations (`x`: `[n_tok][n_in]`; `mats`: `(weight, y)` pairs):
/// the same results as one [`matmul`] each, but one token under `ggml` numerics goes out as a
/// single parallel dispatch. `per_row`: they are expert matmuls ([`matmul_per_row`]).
pub fn matmul_many(x: &[f32], n_in: usize, mats: &mut [(WeightView<'_>, &mut [f32])], per_row: bool) {
    if x.len() == n_in && numerics::active() == Numerics::Ggml {
        return ggml_matmul::matvec_many(x, mats);
    }
    for (w, y) in mats.iter_mut() {
        let n_out = y.len() / (x.len() / n_in);
        if per_row {
            matmul_per_row(x, *w, n_in, n_out, y);
        } else {
            matmul(x, *w, n_in, n_out, y);
        }
    }
}

/// A matmul that llama.cpp runs as `mul_mat_id` (the routed experts): under `ggml` numerics it
/// sums every output the way ggml's one-row dot products do, whatever the token count.
pub fn matmul_per_row(x: &[f32], w: WeightView<'_>, n_in: usize, n_out: usize, y: &mut [f32]) {
    let k = kernels();
    match numerics::active() {
        Numerics::Ggml => ggml_matmul::matmul(&k, x, w, n_in, n_out, y, RowOrder::PerRow),
        Numerics::F32 => matmul_plain(&k, x, w, n_in, n_out, y),
    }
}

/// The f32-activation matmul: GEMV for one token, weight rows widened once per block for more.
/// Every row is one lane chain reduced at the end, the order of tinyBLAS's f32 and f16 kernels.
pub(super) fn matmul_plain(
    k: &Kernels,
    x: &[f32],
    w: WeightView<'_>,
    n_in: usize,
    n_out: usize,
    y: &mut [f32],
) {
    let n_tok = check_shapes(x, w, n_in, n_out, y);
    if n_tok == 0 || n_out == 0 {
        return;
    }
    if n_tok == 1 {
        // GEMV: convert in registers, no row buffer round trip.
        match (w, k.dot_f16, k.dot_bf16) {
            (WeightView::F16(ws), Some(dot), _) => return gemv(ws, x, n_in, y, dot),
            (WeightView::BF16(ws), _, Some(dot)) => return gemv(ws, x, n_in, y, dot),
            (WeightView::F32(ws), _, _) => return gemv(ws, x, n_in, y, k.dot),
            _ => {}
        }
    }
    super::gemm::gemm_f32(k.into(), x, w, n_in, n_out, y);
}

/// Checks the shapes (a mismatch is a programming error: they are fixed at load) → `n_tok`.
pub(super) fn check_shapes(x: &[f32], w: WeightView<'_>, n_in: usize, n_out: usize, y: &[f32]) -> usize {
    assert!(n_in > 0 && x.len().is_multiple_of(n_in), "matmul: x has {} elements, n_in {n_in}", x.len());
    let n_tok = x.len() / n_in;
    assert_eq!(w.len(), n_in * n_out, "matmul: weight size");
    assert_eq!(y.len(), n_tok * n_out, "matmul: output size");
    n_tok
}

/// `y[t][o] = yt[o][t]`.
pub(super) fn transpose_into(yt: &[f32], n_tok: usize, n_out: usize, y: &mut [f32]) {
    for (o, col) in yt.chunks_exact(n_tok).enumerate() {
        for (t, v) in col.iter().enumerate() {
            y[t * n_out + o] = *v;
        }
    }
}

/// `y[o] = w[o] · x` for one token, parallel over blocks of rows.
fn gemv<T: Sync>(w: &[T], x: &[f32], n_in: usize, y: &mut [f32], dot: fn(&[T], &[f32]) -> f32) {
    const ROWS: usize = 64;
    y.par_chunks_mut(ROWS).enumerate().for_each(|(block, out)| {
        let rows = &w[block * ROWS * n_in..][..out.len() * n_in];
        for (o, wr) in out.iter_mut().zip(rows.chunks_exact(n_in)) {
            *o = dot(wr, x);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::dot::kernels_for;
    use crate::cpu::path::CpuPath;

    fn paths_and_views<'a>(
        w32: &'a [f32],
        w16: &'a [f16],
        wb16: &'a [bf16],
    ) -> Vec<(CpuPath, WeightView<'a>)> {
        let views = [WeightView::F32(w32), WeightView::F16(w16), WeightView::BF16(wb16)];
        CpuPath::ALL.into_iter().flat_map(|p| views.map(|v| (p, v))).collect()
    }

    fn rand_vec(seed: u64, n: usize) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
            })
            .collect()
    }

    fn reference(x: &[f32], w: &[f64], n_in: usize, n_out: usize) -> Vec<f64> {
        let n_tok = x.len() / n_in;
        let mut y = vec![0f64; n_tok * n_out];
        for t in 0..n_tok {
            for o in 0..n_out {
                y[t * n_out + o] = (0..n_in).map(|i| x[t * n_in + i] as f64 * w[o * n_in + i]).sum();
            }
        }
        y
    }

    #[test]
    fn batched_rows_are_bit_identical_to_single_token_rows() {
        // Incremental decode must equal one batched pass: the kernel may not depend on n_tok.
        let (n_tok, n_in, n_out) = (11, 101, 45);
        let x = rand_vec(3, n_tok * n_in);
        let w32 = rand_vec(4, n_in * n_out);
        let w16: Vec<f16> = w32.iter().map(|&v| f16::from_f32(v)).collect();
        let wb16: Vec<bf16> = w32.iter().map(|&v| bf16::from_f32(v)).collect();
        for (path, view) in paths_and_views(&w32, &w16, &wb16) {
            let k = kernels_for(path);
            let mut all = vec![0f32; n_tok * n_out];
            matmul_plain(&k, &x, view, n_in, n_out, &mut all);
            for t in 0..n_tok {
                let mut one = vec![0f32; n_out];
                matmul_plain(&k, &x[t * n_in..][..n_in], view, n_in, n_out, &mut one);
                assert_eq!(one, all[t * n_out..][..n_out], "{path:?} {view:?}");
            }
        }
    }

    #[test]
    fn matmul_matches_f64_for_every_weight_type() {
        // 40 tokens × 64 rows: the AVX2 path's direct 4 × 3 tile with leftover tokens.
        for (n_tok, n_in, n_out) in
            [(1, 40, 37), (5, 64, 33), (3, 129, 16), (17, 8, 50), (9, 576, 70), (40, 96, 64)]
        {
            let x = rand_vec(1 + n_tok as u64, n_tok * n_in);
            let w32 = rand_vec(7 + n_in as u64, n_in * n_out);
            let w16: Vec<f16> = w32.iter().map(|&v| f16::from_f32(v)).collect();
            let wb16: Vec<bf16> = w32.iter().map(|&v| bf16::from_f32(v)).collect();
            // Under ggml numerics the activations meet f16 (bf16) weights rounded to f16 (bf16).
            let ggml = numerics::active() == Numerics::Ggml;
            let round = |f: fn(&mut [f32])| {
                let mut r = x.clone();
                if ggml {
                    f(&mut r);
                }
                r
            };
            let cases: [(WeightView, Vec<f64>, Vec<f32>); 3] = [
                (WeightView::F32(&w32), w32.iter().map(|&v| v as f64).collect(), x.clone()),
                (
                    WeightView::F16(&w16),
                    w16.iter().map(|v| v.to_f64()).collect(),
                    round(numerics::round_to_f16),
                ),
                (
                    WeightView::BF16(&wb16),
                    wb16.iter().map(|v| v.to_f64()).collect(),
                    round(numerics::round_to_bf16),
                ),
            ];
            for (path, (view, wref, xref)) in
                CpuPath::ALL.into_iter().flat_map(|p| cases.clone().map(|c| (p, c)))
            {
                // NaN first: every output is written, whatever the buffer held (callers hand
                // matmuls reused scratch buffers).
                let mut y = vec![f32::NAN; n_tok * n_out];
                matmul_with(&kernels_for(path), &x, view, n_in, n_out, &mut y);
                let want = reference(&xref, &wref, n_in, n_out);
                for (g, w) in y.iter().zip(&want) {
                    assert!((*g as f64 - w).abs() < 1e-5 * (n_in as f64).sqrt(), "{path:?}: {g} vs {w}");
                }
            }
        }
    }
}
