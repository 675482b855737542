//! The matmul under `ggml` numerics: activations rounded to the weight's type (ggml's
//! `vec_dot_type`), then summed in the order ggml would sum them (see `ggml_dot`):
//! - one token, an expert matmul (`mul_mat_id`), or a weight whose row count is not a multiple
//!   of 4: one `ggml_vec_dot_*` per output;
//! - more tokens: tinyBLAS, whose f32/f16 order is the plain kernels' and whose bf16 order on
//!   CPUs with `vdpbf16ps` is its own.

use half::{bf16, f16};
use rayon::prelude::*;

use super::dot::{DotFn, Kernels, Tile};
use super::gemm::{gemm_bf16_dp, gemm_f32, TileAndDot, BF16_TINYBLAS, BF16_VEC_DOT};
use super::ggml_dot::{
    has_dpbf16, vec_dot_bf16, vec_dot_bf16_rows, vec_dot_f16, vec_dot_f16_rows, vec_dot_f32,
};
use super::matmul::{check_shapes, matmul_plain, transpose_into, WeightView};
use super::numerics::{round_to_bf16, round_to_f16};
use super::path::{active, CpuPath};
use super::scratch::rounded_copy;
use super::vec_dot_tokens::{row_tokens_kernel, RowTokensFn};

/// Which of ggml's two matmul kinds a call stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowOrder {
    /// `mul_mat`: one-row dot products for one token, tinyBLAS for more.
    ByTokenCount,
    /// `mul_mat_id`: one-row dot products always.
    PerRow,
}

pub(super) fn matmul(
    k: &Kernels,
    x: &[f32],
    w: WeightView<'_>,
    n_in: usize,
    n_out: usize,
    y: &mut [f32],
    order: RowOrder,
) {
    let n_tok = check_shapes(x, w, n_in, n_out, y);
    if n_tok == 0 || n_out == 0 {
        return;
    }
    if n_tok == 1 {
        return matvec_many(x, &mut [(w, y)]);
    }
    // tinyBLAS takes only whole 4-row tiles: with n_out % 4 != 0 ggml's mul_mat falls back to its
    // one-row dot products, the order of `mul_mat_id`.
    let per_row = order == RowOrder::PerRow || !n_out.is_multiple_of(4);
    if per_row && n_tok <= ROW_TOKENS_MAX_BATCH {
        if let Some((halves, bf16)) = w.halves() {
            if let Some((f, per_call)) = row_tokens_kernel(bf16) {
                let xr = rounded_copy(x, if bf16 { round_to_bf16 } else { round_to_f16 });
                return each_output_direct(f, per_call, halves, bf16, &xr, n_in, n_out, y);
            }
        }
    }
    if per_row {
        if let Some((tiles, round)) = vec_dot_order_tiles(k.path, w, n_tok) {
            return gemm_f32(tiles, &rounded_copy(x, round), w, n_in, n_out, y);
        }
    }
    match w {
        WeightView::F16(ws) if per_row => {
            let xh: Vec<f16> = x.iter().map(|v| f16::from_f32(*v)).collect();
            each_output(ws, &xh, n_in, n_out, y, vec_dot_f16);
        }
        WeightView::BF16(ws) if per_row || has_dpbf16() => {
            let xb: Vec<bf16> = x.iter().map(|v| bf16::from_f32(*v)).collect();
            match (per_row, has_dpbf16() && n_tok >= 4) {
                (true, false) => each_output(ws, &xb, n_in, n_out, y, vec_dot_bf16),
                (true, true) => gemm_bf16_dp(BF16_VEC_DOT, &xb, ws, n_in, n_out, y),
                (false, _) => gemm_bf16_dp(BF16_TINYBLAS, &xb, ws, n_in, n_out, y),
            }
        }
        WeightView::F32(ws) if per_row => each_output(ws, x, n_in, n_out, y, vec_dot_f32),
        WeightView::F16(_) => matmul_plain(k, &rounded_copy(x, round_to_f16), w, n_in, n_out, y),
        WeightView::BF16(_) => matmul_plain(k, &rounded_copy(x, round_to_bf16), w, n_in, n_out, y),
        WeightView::F32(_) => matmul_plain(k, x, w, n_in, n_out, y),
    }
}

/// One token through several matmuls that read it (Q, K and V; gate and up): the activation is
/// rounded once and one parallel dispatch covers all their rows, since in decode waking the
/// threads costs about as much as a small matmul. `mats`: `(weight [n_in, n_out], y [n_out])`.
pub(super) fn matvec_many(x: &[f32], mats: &mut [(WeightView<'_>, &mut [f32])]) {
    const ROWS: usize = 16;
    let n_in = x.len();
    let has = |f: fn(&WeightView<'_>) -> bool| mats.iter().any(|(w, _)| f(w));
    // The activation stays f16, as ggml keeps it: on the AVX-512 path widening it to f32 once
    // would save conversions but double its loads, which (two 256-bit loads a cycle on Zen 4)
    // cost about a tenth of decode speed.
    let xh: Vec<f16> = if has(|w| matches!(w, WeightView::F16(_))) {
        x.iter().map(|v| f16::from_f32(*v)).collect()
    } else {
        Vec::new()
    };
    let xb: Vec<bf16> = if has(|w| matches!(w, WeightView::BF16(_))) {
        x.iter().map(|v| bf16::from_f32(*v)).collect()
    } else {
        Vec::new()
    };
    // The AVX2 kernels read it widened instead (see `vec_dot_f16_rows`); the others not at all.
    let avx2 = active() == CpuPath::Avx2;
    let xh_as_f32: Vec<f32> = if avx2 { xh.iter().map(|v| v.to_f32()).collect() } else { Vec::new() };
    let xb_as_f32: Vec<f32> = if avx2 { xb.iter().map(|v| v.to_f32()).collect() } else { Vec::new() };
    let mut items: Vec<(WeightView<'_>, &mut [f32])> = Vec::new();
    for (w, y) in mats.iter_mut() {
        assert_eq!(w.len(), n_in * y.len(), "matvec: weight size");
        for (c, out) in y.chunks_mut(ROWS).enumerate() {
            items.push((w.rows(c * ROWS, out.len(), n_in), out));
        }
    }
    items.into_par_iter().for_each(|(w, out)| match w {
        // One row after the other: a single sequential stream is what the hardware prefetcher
        // follows best (interleaving four rows' loads halved decode speed here).
        WeightView::F16(ws) => vec_dot_f16_rows(ws, &xh, &xh_as_f32, out),
        WeightView::BF16(ws) => vec_dot_bf16_rows(ws, &xb, &xb_as_f32, out),
        WeightView::F32(ws) => {
            for (v, row) in out.iter_mut().zip(ws.chunks_exact(n_in)) {
                *v = vec_dot_f32(row, x);
            }
        }
    });
}

/// Rounds activations in place to a weight type's precision.
type RoundFn = fn(&mut [f32]);

/// The tiles that sum an expert matmul's outputs in `ggml_vec_dot_f16`'s or `ggml_vec_dot_bf16`'s
/// order on `path`, with the rounding of the activations, where a tile pays for `n_tok` tokens
/// (bf16 on AVX-512 has its own `vdpbf16ps` tiles, below).
fn vec_dot_order_tiles(path: CpuPath, w: WeightView<'_>, n_tok: usize) -> Option<(TileAndDot, RoundFn)> {
    #[cfg(target_arch = "x86_64")]
    {
        use super::{avx2, avx512};
        let tile = |tokens, f, dot: DotFn| TileAndDot { tile: Some(Tile { tokens, f }), dot, direct: &[] };
        let avx2_tile = n_tok >= avx2::TILE_TOKENS && path == CpuPath::Avx2;
        match w {
            WeightView::F16(_) if n_tok >= 4 && path == CpuPath::Avx512 => {
                Some((tile(4, avx512::tile_4x4_vec_dot_order, avx512::vec_dot_f16_order), round_to_f16))
            }
            WeightView::F16(_) if avx2_tile => Some((
                tile(avx2::TILE_TOKENS, avx2::tile_4x3_vec_dot_f16, avx2::vec_dot_f16_order),
                round_to_f16,
            )),
            WeightView::BF16(_) if avx2_tile => Some((
                tile(avx2::TILE_TOKENS, avx2::tile_4x3_vec_dot_bf16, avx2::vec_dot_bf16_order),
                round_to_bf16,
            )),
            _ => None,
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (path, w, n_tok);
        None
    }
}

/// Batches up to this many tokens keep the one-token order reading the weights as stored (see
/// `vec_dot_tokens`); larger ones widen blocks of rows once for all their tokens.
const ROW_TOKENS_MAX_BATCH: usize = 8;

/// [`each_output`] with a kernel that reads each 16-bit weight row once for up to `per_call`
/// tokens (`x`: the activations rounded to the weight type).
#[allow(clippy::too_many_arguments)]
fn each_output_direct(
    f: RowTokensFn,
    per_call: usize,
    w: &[u16],
    bf16: bool,
    x: &[f32],
    n_in: usize,
    n_out: usize,
    y: &mut [f32],
) {
    by_output_row(n_in, n_out, x.len() / n_in, y, |o, col| {
        let row = &w[o * n_in..][..n_in];
        for (c, part) in col.chunks_mut(per_call).enumerate() {
            let t = c * per_call;
            f(row, bf16, &x[t * n_in..(t + part.len()) * n_in], n_in, part);
        }
    });
}

/// `y[t][o] = dot(w[o], x[t])`, parallel over blocks of output rows; each weight row meets every
/// token while it is in cache.
fn each_output<T: Sync>(
    w: &[T],
    x: &[T],
    n_in: usize,
    n_out: usize,
    y: &mut [f32],
    dot: fn(&[T], &[T]) -> f32,
) {
    by_output_row(n_in, n_out, x.len() / n_in, y, |o, col| {
        let wr = &w[o * n_in..][..n_in];
        for (v, xt) in col.iter_mut().zip(x.chunks_exact(n_in)) {
            *v = dot(wr, xt);
        }
    });
}

/// `row(o, col)` fills output row `o` for every token (`col[t] = y[t][o]`), in parallel over
/// blocks of rows, into `y: [n_tok][n_out]`.
fn by_output_row(
    n_in: usize,
    n_out: usize,
    n_tok: usize,
    y: &mut [f32],
    row: impl Fn(usize, &mut [f32]) + Sync,
) {
    const ROWS: usize = 16;
    debug_assert!(n_in > 0 && y.len() == n_out * n_tok);
    // yt: [n_out][n_tok]
    let mut yt = vec![0f32; n_out * n_tok];
    yt.par_chunks_mut(ROWS * n_tok).enumerate().for_each(|(block, out)| {
        for (r, col) in out.chunks_exact_mut(n_tok).enumerate() {
            row(block * ROWS + r, col);
        }
    });
    transpose_into(&yt, n_tok, n_out, y);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::dot::kernels;
    use crate::ops::test_rng::Rng;

    #[test]
    fn batched_expert_matmul_sums_each_output_as_vec_dot_f16() {
        // 7 tokens (a tile and leftovers), 13 rows (tiles and leftovers), 616 inputs (a tail
        // past the last 64-block): every output must equal ggml's one-row dot, bit for bit.
        let (n_tok, n_in, n_out) = (7, 616, 13);
        let mut rng = Rng::new(9);
        let x = rng.vec(n_tok * n_in, 2.0);
        let w: Vec<f16> = rng.vec(n_in * n_out, 1.0).into_iter().map(f16::from_f32).collect();
        let mut y = vec![f32::NAN; n_tok * n_out];
        matmul(&kernels(), &x, WeightView::F16(&w), n_in, n_out, &mut y, RowOrder::PerRow);
        let xh: Vec<f16> = x.iter().map(|v| f16::from_f32(*v)).collect();
        for t in 0..n_tok {
            for o in 0..n_out {
                let want = vec_dot_f16(&w[o * n_in..][..n_in], &xh[t * n_in..][..n_in]);
                assert_eq!(y[t * n_out + o].to_bits(), want.to_bits(), "t={t} o={o}");
            }
        }
    }

    /// tinyBLAS's sum of one output, written out lane by lane: `lanes` FMA chains, element `i`
    /// in chain `i % lanes` (the tail past the last whole vector included, as its masked load
    /// puts it), then the halving reduction of `hsum` / `_mm512_reduce_add_ps`.
    fn tinyblas_lane_sum(w: &[f32], x: &[f32], lanes: usize) -> f32 {
        let mut acc = vec![0f32; lanes];
        for (i, (a, b)) in w.iter().zip(x).enumerate() {
            acc[i % lanes] = a.mul_add(*b, acc[i % lanes]);
        }
        while acc.len() > 1 {
            let half = acc.len() / 2;
            acc = (0..half).map(|j| acc[j] + acc[j + half]).collect();
        }
        acc[0]
    }

    #[test]
    fn batched_matmul_sums_each_output_in_tinyblas_lane_order() {
        // 616 + 5 inputs: a tail past the last vector on both paths; 8 rows; token counts that
        // take the direct small-batch tiles (whole and partial), the row-buffer tiles, and on
        // AVX2 the direct 4 × 3 tile of larger batches with its leftover tokens.
        let (n_in, n_out) = (621, 8);
        let mut rng = Rng::new(21);
        let wf = rng.vec(n_in * n_out, 1.0);
        let wh: Vec<f16> = wf.iter().map(|v| f16::from_f32(*v)).collect();
        let wb: Vec<bf16> = wf.iter().map(|v| bf16::from_f32(*v)).collect();
        let mut checked = 0;
        for (path, lanes) in [(CpuPath::Avx2, 8), (CpuPath::Avx512, 16)] {
            if !path.supported() {
                continue;
            }
            let k = crate::cpu::dot::kernels_for(path);
            for n_tok in [2, 3, 5, 8, 9, 19, 34, 40] {
                let x = rng.vec(n_tok * n_in, 2.0);
                for ty in ["f32", "f16", "bf16"] {
                    let (w, wv, xs): (WeightView<'_>, Vec<f32>, Vec<f32>) = match ty {
                        "f32" => (WeightView::F32(&wf), wf.clone(), x.clone()),
                        "f16" => (
                            WeightView::F16(&wh),
                            wh.iter().map(|v| v.to_f32()).collect(),
                            rounded_copy(&x, round_to_f16).to_vec(),
                        ),
                        _ => (
                            WeightView::BF16(&wb),
                            wb.iter().map(|v| v.to_f32()).collect(),
                            rounded_copy(&x, round_to_bf16).to_vec(),
                        ),
                    };
                    let mut y = vec![f32::NAN; n_tok * n_out];
                    // bf16 goes to the vdpbf16ps tiles under `matmul` where the CPU has them.
                    gemm_f32((&k).into(), &xs, w, n_in, n_out, &mut y);
                    for t in 0..n_tok {
                        for o in 0..n_out {
                            let want =
                                tinyblas_lane_sum(&wv[o * n_in..][..n_in], &xs[t * n_in..][..n_in], lanes);
                            let got = y[t * n_out + o];
                            assert_eq!(
                                got.to_bits(),
                                want.to_bits(),
                                "{path:?} {ty} n_tok={n_tok} t={t} o={o}"
                            );
                            checked += 1;
                        }
                    }
                }
            }
        }
        eprintln!("{checked} outputs in tinyBLAS's lane order");
    }

    #[test]
    fn batched_matmul_with_rows_not_a_multiple_of_4_sums_as_vec_dot() {
        // tinyBLAS refuses 13 rows, so ggml's mul_mat sums every output with its one-row dot.
        let (n_tok, n_in, n_out) = (5, 616, 13);
        let mut rng = Rng::new(23);
        let x = rng.vec(n_tok * n_in, 2.0);
        let w: Vec<f16> = rng.vec(n_in * n_out, 1.0).into_iter().map(f16::from_f32).collect();
        let mut y = vec![f32::NAN; n_tok * n_out];
        matmul(&kernels(), &x, WeightView::F16(&w), n_in, n_out, &mut y, RowOrder::ByTokenCount);
        let xh: Vec<f16> = x.iter().map(|v| f16::from_f32(*v)).collect();
        for t in 0..n_tok {
            for o in 0..n_out {
                let want = vec_dot_f16(&w[o * n_in..][..n_in], &xh[t * n_in..][..n_in]);
                assert_eq!(y[t * n_out + o].to_bits(), want.to_bits(), "t={t} o={o}");
            }
        }
    }

    #[test]
    fn decode_matvec_sums_each_row_as_vec_dot_f16() {
        // 13 rows (groups of rows and leftovers), 616 inputs (a tail past the last block).
        let (n_in, n_out) = (616, 13);
        let mut rng = Rng::new(11);
        let x = rng.vec(n_in, 2.0);
        let w: Vec<f16> = rng.vec(n_in * n_out, 1.0).into_iter().map(f16::from_f32).collect();
        let mut y = vec![0f32; n_out];
        matvec_many(&x, &mut [(WeightView::F16(&w), &mut y)]);
        let xh: Vec<f16> = x.iter().map(|v| f16::from_f32(*v)).collect();
        for (o, got) in y.iter().enumerate() {
            let want = vec_dot_f16(&w[o * n_in..][..n_in], &xh);
            assert_eq!(got.to_bits(), want.to_bits(), "row {o}");
        }
    }
}
