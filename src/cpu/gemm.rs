//! Batched matmul (two or more tokens): register tiles of 4 weight rows × a few tokens, each
//! output still one vector-lane chain over the inputs reduced at the end — tinyBLAS's order, so
//! a row's result is the same whichever tile or leftover loop computed it.
//!
//! Work is split into (block of output rows, block of tokens) tasks, so that layers with few
//! rows (K and V projections) still feed every thread; a task's weight rows stay in L2 while its
//! tokens pass by, and results go straight to `y[t][o]` with no transpose.

use std::cell::RefCell;
use std::ops::Range;

use half::bf16;
use rayon::prelude::*;

use super::dot::{DotFn, Kernels, Tile};
use super::ggml_dot::{gemm_dot_bf16_dp, tile_4x4_bf16_dp, tile_4x4_vec_dot_bf16_dp, vec_dot_bf16};
use super::matmul::WeightView;
use super::path::CpuPath;
#[cfg(target_arch = "x86_64")]
use super::{avx2, avx512};

/// Output rows per task (a multiple of the tile's 4), when there are enough tasks.
const TASK_ROWS: usize = 64;
/// The fewest rows per task: batches too small to split by tokens split rows this far.
const MIN_TASK_ROWS: usize = 16;
/// Tasks per thread to aim for, so that uneven tasks still balance.
const TASKS_PER_THREAD: usize = 8;

thread_local! {
    static ROW_BUF: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// `y: [n_tok][n_out]`, written by tasks at disjoint `(t, o)` cells.
struct Out {
    ptr: *mut f32,
    n_out: usize,
}

// SAFETY: tasks write disjoint cells (their own row block × token block) of a live `&mut [f32]`.
unsafe impl Sync for Out {}

impl Out {
    /// SAFETY: `(t, o)` in bounds and written by one task only.
    unsafe fn set(&self, t: usize, o: usize, v: f32) {
        *self.ptr.add(t * self.n_out + o) = v;
    }
}

fn for_each_task(
    n_out: usize,
    n_tok: usize,
    tile_tokens: usize,
    y: &mut [f32],
    task: impl Fn(Range<usize>, Range<usize>, &Out) + Sync,
) {
    assert_eq!(y.len(), n_out * n_tok, "gemm: output size");
    let out = Out { ptr: y.as_mut_ptr(), n_out };
    // Split tokens only as far as needed to give every thread tasks: each token block converts
    // (or reloads) its weight rows again. Few tokens: smaller row blocks instead.
    let wanted = TASKS_PER_THREAD * rayon::current_num_threads().max(1);
    let mut task_rows = TASK_ROWS;
    let tok_blocks = wanted.div_ceil(n_out.div_ceil(task_rows)).clamp(1, n_tok.div_ceil(32));
    while n_out.div_ceil(task_rows) * tok_blocks < wanted && task_rows > MIN_TASK_ROWS {
        task_rows /= 2;
    }
    let row_blocks = n_out.div_ceil(task_rows);
    // Whole tiles per block (and a multiple of 8 tokens), so no token falls to the one-output dot.
    let step = if 8 % tile_tokens.max(1) == 0 { 8 } else { 8 * tile_tokens };
    let tokens_per = n_tok.div_ceil(tok_blocks).next_multiple_of(step);
    let tok_blocks = n_tok.div_ceil(tokens_per);
    (0..row_blocks * tok_blocks).into_par_iter().with_max_len(1).for_each(|i| {
        let (rb, tb) = (i % row_blocks, i / row_blocks);
        let rows = rb * task_rows..((rb + 1) * task_rows).min(n_out);
        let toks = tb * tokens_per..((tb + 1) * tokens_per).min(n_tok);
        task(rows, toks, &out);
    });
}

/// A 4-row tile and the dot product that gives its order for leftover rows and tokens, and the
/// tile in the same order that reads 16-bit weights as stored.
#[derive(Clone, Copy)]
pub(super) struct TileAndDot {
    pub tile: Option<Tile>,
    pub dot: DotFn,
    /// Tiles that read 16-bit weights as stored, by batch size: the first whose `max_batch`
    /// admits the batch is used; past the last, weights are widened per task.
    pub direct: &'static [DirectTile],
}

/// `f(w: [rows][n] as stored, bf16, x: [tokens][n], n, tokens, out)` writes `w[r] · x[t]` at
/// `out.at(t, r)`. SAFETY: those cells of `out` are valid and the caller's alone.
type DirectFn = unsafe fn(&[u16], bool, &[f32], usize, usize, TileOut);

/// Where a direct tile writes its results: cell `(t, r)` at `ptr + t * stride + r`, so a tile
/// writes straight into a `[tokens][n_out]` output (stride `n_out`) with no scatter after it.
#[derive(Clone, Copy)]
pub(super) struct TileOut {
    ptr: *mut f32,
    stride: usize,
}

impl TileOut {
    /// The cells of `out` as `[tokens][stride]` (tests give a tile a buffer of their own).
    #[cfg(test)]
    pub fn of(out: &mut [f32], stride: usize) -> TileOut {
        TileOut { ptr: out.as_mut_ptr(), stride }
    }

    /// SAFETY: `(t, r)` is one of the cells the tile was given.
    pub unsafe fn at(self, t: usize, r: usize) -> *mut f32 {
        self.ptr.add(t * self.stride + r)
    }

    /// The cells past the first `r` rows. SAFETY: as [`TileOut::at`] for the rows it is used for.
    pub unsafe fn past_rows(self, r: usize) -> TileOut {
        TileOut { ptr: self.ptr.add(r), stride: self.stride }
    }
}

/// A [`DirectFn`], its rows and most tokens per call, and the largest batch it is used for.
#[derive(Clone, Copy)]
pub(super) struct DirectTile {
    pub rows: usize,
    pub max_tokens: usize,
    pub max_batch: usize,
    pub f: DirectFn,
}

impl From<&Kernels> for TileAndDot {
    fn from(k: &Kernels) -> Self {
        #[cfg(target_arch = "x86_64")]
        let direct: &'static [DirectTile] = match k.path {
            // Small batches only: widening a row into a buffer costs about what a few tokens'
            // FMAs over it do, and past that the widened 4 × 4 tile is faster.
            CpuPath::Avx512 => &[DirectTile {
                rows: 4,
                max_tokens: avx512::DIRECT_TOKENS,
                max_batch: 8,
                f: avx512::tile_4_direct,
            }],
            // 2 × 6 up to 32 tokens (Zen 3, f16 576×1536 against widened rows: 8 tokens 1.7x, 16
            // 1.30x, 32 1.23x), the 4 × 3 assembly tile past that.
            CpuPath::Avx2 => &[
                DirectTile {
                    rows: avx2::DIRECT_ROWS,
                    max_tokens: avx2::DIRECT_TOKENS,
                    max_batch: 32,
                    f: avx2::tile_2x6_direct,
                },
                DirectTile { rows: 4, max_tokens: 3, max_batch: usize::MAX, f: avx2::tile_4x3_direct_tokens },
            ],
            CpuPath::Scalar => &[],
        };
        #[cfg(not(target_arch = "x86_64"))]
        let direct: &'static [DirectTile] = &[];
        TileAndDot { tile: k.tile, dot: k.dot, direct }
    }
}

/// `y = x · Wᵀ` with f32 activations, weight rows widened to f32 once per task, the 4-row tile
/// and its dot product for the leftovers.
pub(super) fn gemm_f32(
    k: TileAndDot,
    x: &[f32],
    w: WeightView<'_>,
    n_in: usize,
    n_out: usize,
    y: &mut [f32],
) {
    let n_tok = x.len() / n_in;
    if let Some((halves, bf16)) = w.halves() {
        if let Some(&direct) = k.direct.iter().find(|d| n_tok <= d.max_batch) {
            if n_out.is_multiple_of(direct.rows) {
                return gemm_direct(direct, x, halves, bf16, n_in, n_out, y);
            }
        }
    }
    let tile_tokens = k.tile.map_or(1, |t| t.tokens);
    for_each_task(n_out, n_tok, tile_tokens, y, |rows, toks, out| {
        ROW_BUF.with(|buf| {
            let mut buf = buf.borrow_mut();
            let block: &[f32] = match w {
                WeightView::F32(ws) => &ws[rows.start * n_in..rows.end * n_in],
                _ => {
                    buf.resize(rows.len() * n_in, 0.0);
                    w.to_f32_into(rows.start * n_in, &mut buf);
                    &buf
                }
            };
            let tile = k.tile.map(|t| (t.tokens, t.f));
            block_times_tokens(block, x, n_in, rows, toks, out, tile, k.dot);
        });
    });
}

/// [`gemm_f32`] on 16-bit weights read as stored: per task, each chunk of the tile's tokens
/// against every row group of the task's rows (which stay in cache while the chunks pass by).
fn gemm_direct(d: DirectTile, x: &[f32], w: &[u16], bf16: bool, n_in: usize, n_out: usize, y: &mut [f32]) {
    let n_tok = x.len() / n_in;
    for_each_task(n_out, n_tok, d.max_tokens, y, |rows, toks, out| {
        let mut t = toks.start;
        while t < toks.end {
            let tt = d.max_tokens.min(toks.end - t);
            let xs = &x[t * n_in..(t + tt) * n_in];
            for r in rows.clone().step_by(d.rows) {
                // SAFETY: this task owns rows × toks, and the tile writes tt × d.rows of them.
                unsafe {
                    let cells = TileOut { ptr: out.ptr.add(t * n_out + r), stride: n_out };
                    (d.f)(&w[r * n_in..(r + d.rows) * n_in], bf16, xs, n_in, tt, cells);
                }
            }
            t += tt;
        }
    });
}

/// A 4-row × 4-token bf16 tile and the one-output dot that gives its order.
#[derive(Clone, Copy)]
pub(super) struct Bf16Tile {
    pub tile: fn(&[bf16], &[bf16], usize, &mut [f32]),
    pub dot: fn(&[bf16], &[bf16]) -> f32,
}

/// tinyBLAS's bf16 order on `vdpbf16ps` (see `ggml_dot::gemm_dot_bf16_dp`).
pub(super) const BF16_TINYBLAS: Bf16Tile = Bf16Tile { tile: tile_4x4_bf16_dp, dot: gemm_dot_bf16_dp };
/// `ggml_vec_dot_bf16`'s order on `vdpbf16ps` (expert matmuls).
pub(super) const BF16_VEC_DOT: Bf16Tile = Bf16Tile { tile: tile_4x4_vec_dot_bf16_dp, dot: vec_dot_bf16 };

/// `y = x · Wᵀ` for bf16 weights and bf16-rounded activations on `vdpbf16ps`, each output summed
/// in `k`'s order. Only valid when `ggml_dot::has_dpbf16()`.
pub(super) fn gemm_bf16_dp(k: Bf16Tile, x: &[bf16], w: &[bf16], n_in: usize, n_out: usize, y: &mut [f32]) {
    let n_tok = x.len() / n_in;
    for_each_task(n_out, n_tok, 4, y, |rows, toks, out| {
        let block = &w[rows.start * n_in..rows.end * n_in];
        block_times_tokens(block, x, n_in, rows, toks, out, Some((4, k.tile)), k.dot);
    });
}

/// A 4-row tile over `W` weights and `X` activations: `f(w: [4][n], x: [T][n], n, out)`.
type TileFn<W, X> = fn(&[W], &[X], usize, &mut [f32]);

/// One task: `y[t][o] = dot(block[o - rows.start], x[t])` for `o` in `rows`, `t` in `toks`; whole
/// groups of 4 rows × `tokens` through the tile (`tile = (tokens, f)`, at most 8 tokens), the rest
/// through `dot`, which sums in the tile's order.
#[allow(clippy::too_many_arguments)]
fn block_times_tokens<W, X>(
    block: &[W],
    x: &[X],
    n_in: usize,
    rows: Range<usize>,
    toks: Range<usize>,
    out: &Out,
    tile: Option<(usize, TileFn<W, X>)>,
    dot: fn(&[W], &[X]) -> f32,
) {
    let mut t = toks.start;
    if let Some((tt, f)) = tile {
        let mut res = [0f32; 4 * 8];
        while t + tt <= toks.end {
            let xs = &x[t * n_in..(t + tt) * n_in];
            let mut r = 0;
            while r + 4 <= rows.len() {
                f(&block[r * n_in..(r + 4) * n_in], xs, n_in, &mut res);
                for (i, vals) in res[..4 * tt].chunks_exact(tt).enumerate() {
                    for (j, v) in vals.iter().enumerate() {
                        // SAFETY: this task owns rows × toks.
                        unsafe { out.set(t + j, rows.start + r + i, *v) };
                    }
                }
                r += 4;
            }
            for r in r..rows.len() {
                for j in 0..tt {
                    let v = dot(&block[r * n_in..][..n_in], &xs[j * n_in..][..n_in]);
                    // SAFETY: as above.
                    unsafe { out.set(t + j, rows.start + r, v) };
                }
            }
            t += tt;
        }
    }
    for t in t..toks.end {
        let xt = &x[t * n_in..][..n_in];
        for (r, wr) in block.chunks_exact(n_in).enumerate() {
            // SAFETY: as above.
            unsafe { out.set(t, rows.start + r, dot(wr, xt)) };
        }
    }
}
