//! Causal multi-head attention with grouped KV heads over the f16 KV cache (`kq-{il}`,
//! `kq_softmax-{il}`, `kqv_out-{il}`).
//!
//! K and V come from the cache as stored (f16, like llama.cpp's default cache type). Two kernels,
//! chosen the way llama.cpp's CPU flash attention chooses (see `numerics`):
//! - micro-batches of [`GGML_TILE_TOKENS`] tokens or more (prompt processing): ggml's tiled f32
//!   kernel (`attention_tiled`);
//! - smaller ones (decode, short prompts): Q rounded to f16 and an online softmax whose running V
//!   sum is an f16 vector, rounded after every position, as ggml keeps it;
//! - a pass of one query row (a lone decode token) over a KV view of 512 positions or more: the
//!   same f16 online softmax, but over the chunks of [`KvSplit`] separately, merged at the end
//!   (`attention_split_kv`), as ggml's split-KV path does.
//!
//! `RS_LLAMA_NUMERICS=f32` uses `attention_f32` for all: K and V widened exactly once per head,
//! scores, softmax and the weighted sum in f32 (the sum of exponentials in f64).

use half::f16;
use rayon::prelude::*;

use super::attention_decode::{
    combine_partials, decode_row, decode_row_partial, fused_row_available, normalize, portable_row,
    portable_row_partial, DecodeRow, Partial,
};
use crate::cpu::convert::f16_to_f32;
use crate::cpu::dot::best_dot;
use crate::cpu::numerics::{self, Numerics};

/// llama.cpp's CPU flash attention switches to its f32 tiled kernel from this many query tokens
/// per micro-batch (`GGML_FA_TILE_Q`); below it, it accumulates in f16.
pub const GGML_TILE_TOKENS: usize = 64;

/// Head layout of one attention layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttnShape {
    pub n_head: usize,
    pub n_head_kv: usize,
    /// Dims of a Q/K head.
    pub head_dim_k: usize,
    /// Dims of a V head.
    pub head_dim_v: usize,
    /// V is the first `head_dim_v` values of each K head (latent attention's one cache row, as
    /// llama.cpp views it): the `v` a kernel is given is then K itself.
    pub v_in_k: bool,
}

impl AttnShape {
    /// Per-head attention with K and V heads of their own.
    pub const fn heads(n_head: usize, n_head_kv: usize, head_dim_k: usize, head_dim_v: usize) -> AttnShape {
        AttnShape { n_head, n_head_kv, head_dim_k, head_dim_v, v_in_k: false }
    }

    /// Where V is in the `v` a kernel gets: (values from one position's V to the next's, from one
    /// KV head's to the next's).
    pub fn v_layout(&self) -> (usize, usize) {
        let head = if self.v_in_k { self.head_dim_k } else { self.head_dim_v };
        (self.n_head_kv * head, head)
    }

    /// Interleave per-head results (`[n_head][n_tok][head_dim_v]`) into `out`: `[n_tok][n_head][head_dim_v]`.
    pub(super) fn write_heads(&self, per_head: &[Vec<f32>], out: &mut [f32]) {
        let dv = self.head_dim_v;
        for (h, o) in per_head.iter().enumerate() {
            for (t, ot) in o.chunks_exact(dv).enumerate() {
                out[(t * self.n_head + h) * dv..][..dv].copy_from_slice(ot);
            }
        }
    }
}

/// What a layer's attention adds to the causal mask and the softmax (gpt-oss).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct AttnExtras<'a> {
    /// A query at position `p` sees only `p + 1 - window ..= p` (llama.cpp's standard sliding
    /// window: keys `window` or more positions back are masked).
    pub window: Option<usize>,
    /// Per-head sink logits `[n_head]`: one more term in each softmax's denominator, with no value.
    pub sinks: Option<&'a [f32]>,
}

impl AttnExtras<'_> {
    pub const NONE: AttnExtras<'static> = AttnExtras { window: None, sinks: None };

    /// The first position a query at `pos` sees.
    pub fn first_visible(&self, pos: usize) -> usize {
        self.window.map_or(0, |w| (pos + 1).saturating_sub(w))
    }
}

/// ggml's sink for one row, on what the online softmax left (`p`, the unnormalized V sum `o`): a
/// sink above the maximum rescales the sum and becomes the maximum, else it adds
/// `exp(sink − max)`; `S = S·ms + vs` fused where the CPU path has FMA, as GCC contracts it.
pub(super) fn apply_sink(sink: f32, max: &mut f32, sum: &mut f32, o: &mut [f32]) {
    let fma = crate::cpu::path::active() != crate::cpu::path::CpuPath::Scalar;
    let (mut ms, mut vs) = (1f32, 1f32);
    if sink > *max {
        ms = (*max - sink).exp();
        *max = sink;
        o.iter_mut().for_each(|x| *x *= ms);
    } else {
        vs = (sink - *max).exp();
    }
    *sum = if fma { sum.mul_add(ms, vs) } else { *sum * ms + vs };
}

/// llama.cpp's KV view of a pass (`llama_kv_cache::get_n_kv`): the cells up to the last used one,
/// padded to a multiple of 256 (at least 256), within the cache, whose size llama.cpp pads to 256
/// as well. `n_used`: the positions filled, the pass's own included.
pub fn ggml_kv_view(n_ctx: usize, n_used: usize) -> usize {
    const PAD: usize = 256;
    n_used.next_multiple_of(PAD).max(PAD).min(n_ctx.next_multiple_of(PAD))
}

/// How ggml's CPU flash attention cuts the KV of a pass with one query row over its threads
/// (`use_split_kv_path`, f16 K/V): from a view of [`KvSplit::MIN_VIEW`] positions, into
/// `n_threads` consecutive chunks of `ceil(view / n_threads)` positions (the last ones short or
/// empty). Each chunk runs the online softmax alone; the chunks are merged in order
/// (`attention_decode::combine_partials`). Positions past the row's own are masked, so a chunk
/// there contributes nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvSplit {
    pub chunk_len: usize,
    pub n_chunks: usize,
}

impl KvSplit {
    /// The smallest KV view ggml splits.
    pub const MIN_VIEW: usize = 512;

    /// The split of a view of `kv_view` positions over `n_threads`, if ggml splits it.
    pub fn new(kv_view: usize, n_threads: usize) -> Option<KvSplit> {
        let n_chunks = n_threads.max(1);
        (kv_view >= Self::MIN_VIEW).then(|| KvSplit { chunk_len: kv_view.div_ceil(n_chunks), n_chunks })
    }

    /// The split llama.cpp makes for a lone token at position `pos` of a cache of `n_ctx`
    /// positions, on its thread count for one-token batches ([`crate::cpu::decode_threads`]).
    pub fn for_decode(n_ctx: usize, pos: usize) -> Option<KvSplit> {
        Self::new(ggml_kv_view(n_ctx, pos + 1), crate::cpu::decode_threads())
    }

    /// The chunks' position ranges cut at `n_pos` (the visible ones), empty ones left out.
    pub fn ranges(&self, n_pos: usize) -> impl Iterator<Item = (usize, usize)> + '_ {
        (0..self.n_chunks)
            .map(move |c| (c * self.chunk_len, ((c + 1) * self.chunk_len).min(n_pos)))
            .take_while(|(a, b)| a < b)
    }
}

/// `q`: `[n_tok][n_head][head_dim_k]` for positions `pos0..pos0+n_tok`;
/// `k`: `[n_kv][n_head_kv][head_dim_k]`, `v`: `[n_kv][n_head_kv][head_dim_v]` with
/// `n_kv ≥ pos0 + n_tok`; `out`: `[n_tok][n_head][head_dim_v]`.
/// Query head `h` uses KV head `h / (n_head / n_head_kv)`; token `t` sees positions `0..=pos0+t`.
/// `split`: where the pass is a lone token that llama.cpp would split (see [`KvSplit`]); ignored
/// for more tokens and by the f32 numerics.
#[allow(clippy::too_many_arguments)]
pub fn attention(
    q: &[f32],
    k: &[f16],
    v: &[f16],
    pos0: usize,
    s: AttnShape,
    scale: f32,
    split: Option<KvSplit>,
    out: &mut [f32],
) {
    attention_with(q, k, v, pos0, s, scale, split, AttnExtras::NONE, out)
}

/// [`attention`] with a sliding window and sinks (`x`).
#[allow(clippy::too_many_arguments)]
pub fn attention_with(
    q: &[f32],
    k: &[f16],
    v: &[f16],
    pos0: usize,
    s: AttnShape,
    scale: f32,
    split: Option<KvSplit>,
    x: AttnExtras<'_>,
    out: &mut [f32],
) {
    let n_tok = q.len() / (s.n_head * s.head_dim_k);
    match (numerics::active(), n_tok < GGML_TILE_TOKENS) {
        (Numerics::Ggml, true) => match split {
            Some(sp) if n_tok == 1 => attention_split_kv(q, k, v, pos0, s, scale, sp, x, out),
            _ => attention_f16_accumulate(q, k, v, pos0, s, scale, x, out),
        },
        (Numerics::Ggml, false) => super::attention_tiled::attention_tiled(q, k, v, pos0, s, scale, x, out),
        (Numerics::F32, _) => attention_f32(q, k, v, pos0, s, scale, x, out),
    }
}

/// The f32 kernel (see the module note).
#[allow(clippy::too_many_arguments)]
pub fn attention_f32(
    q: &[f32],
    k: &[f16],
    v: &[f16],
    pos0: usize,
    s: AttnShape,
    scale: f32,
    x: AttnExtras<'_>,
    out: &mut [f32],
) {
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
            let (k_row, (v_row, v_head)) = (s.n_head_kv * dk, s.v_layout());
            for j in 0..n_kv {
                f16_to_f32(&k[j * k_row + kvh * dk..][..dk], &mut kh[j * dk..][..dk]);
                f16_to_f32(&v[j * v_row + kvh * v_head..][..dv], &mut vh[j * dv..][..dv]);
            }
            // o: [n_tok][dv]
            let mut o = vec![0f32; n_tok * dv];
            let mut kq = Vec::with_capacity(n_kv);
            for (t, ot) in o.chunks_exact_mut(dv).enumerate() {
                let qh = &q[(t * s.n_head + h) * dk..][..dk];
                let first = x.first_visible(pos0 + t);
                kq.clear();
                kq.extend(kh.chunks_exact(dk).take(pos0 + t + 1).skip(first).map(|kj| dot(qh, kj) * scale));
                let sink = x.sinks.map(|sk| sk[h]);
                let max = kq.iter().copied().chain(sink).fold(f32::NEG_INFINITY, f32::max);
                let mut sum = sink.map_or(0f64, |sk| (sk - max).exp() as f64);
                for x in kq.iter_mut() {
                    *x = (*x - max).exp();
                    sum += *x as f64;
                }
                let inv = (1.0 / sum) as f32;
                for (p, vj) in kq.iter().zip(vh.chunks_exact(dv).skip(first)) {
                    let w = p * inv;
                    for (acc, x) in ot.iter_mut().zip(vj) {
                        *acc += w * x;
                    }
                }
            }
            o
        })
        .collect();
    s.write_heads(&per_head, out);
}

/// What every f16-accumulating row of one pass shares: the K/V layout and which row kernel runs.
struct F16Rows<'a> {
    k: &'a [f16],
    v: &'a [f16],
    s: AttnShape,
    scale: f32,
    fused: bool,
}

impl<'a> F16Rows<'a> {
    fn new(k: &'a [f16], v: &'a [f16], s: AttnShape, scale: f32) -> F16Rows<'a> {
        F16Rows { k, v, s, scale, fused: fused_row_available(s.head_dim_k, s.head_dim_v) }
    }

    /// Query head `h` (its Q already rounded to f16) over positions `start..end`.
    fn row<'q>(&self, q16: &'q [f16], h: usize, start: usize, end: usize) -> DecodeRow<'q>
    where
        'a: 'q,
    {
        let s = self.s;
        let kvh = h / (s.n_head / s.n_head_kv);
        let (v_stride, v_head) = s.v_layout();
        DecodeRow {
            q16,
            k: &self.k[kvh * s.head_dim_k..],
            v: &self.v[kvh * v_head..],
            k_stride: s.n_head_kv * s.head_dim_k,
            v_stride,
            start,
            n_pos: end,
            scale: self.scale,
        }
    }
}

fn to_f16(q: &[f32]) -> Vec<f16> {
    q.iter().map(|v| f16::from_f32(*v)).collect()
}

/// The f16-accumulating kernel of ggml's CPU flash attention for small batches: per query row, Q
/// rounded to f16; for each visible position in order, `s = (k·q)·scale`; when `s` is a new
/// maximum the f16 sum is rescaled by `exp(M_old − s)`, else `v` is weighted by `exp(s − M)`;
/// `VKQ = f16(VKQ + v·w)`; the result is `VKQ / S`.
#[allow(clippy::too_many_arguments)]
pub fn attention_f16_accumulate(
    q: &[f32],
    k: &[f16],
    v: &[f16],
    pos0: usize,
    s: AttnShape,
    scale: f32,
    x: AttnExtras<'_>,
    out: &mut [f32],
) {
    let (dk, dv) = (s.head_dim_k, s.head_dim_v);
    let n_tok = q.len() / (s.n_head * dk);
    let rows = F16Rows::new(k, v, s, scale);
    // One task per (token, head) row; rows: [n_tok][n_head][dv]
    out[..n_tok * s.n_head * dv].par_chunks_mut(dv).enumerate().for_each(|(row, o)| {
        let (t, h) = (row / s.n_head, row % s.n_head);
        let q16 = to_f16(&q[row * dk..][..dk]);
        let r = rows.row(&q16, h, x.first_visible(pos0 + t), pos0 + t + 1);
        match x.sinks {
            None if rows.fused => decode_row(&r, o),
            None => portable_row(&r, o),
            Some(sinks) => {
                let p = if rows.fused { decode_row_partial(&r, o) } else { portable_row_partial(&r, o) };
                let (mut max, mut sum) = (p.max, p.sum);
                apply_sink(sinks[h], &mut max, &mut sum, o);
                normalize(sum, o);
            }
        }
    });
}

/// One token (at `pos0`) the way ggml's split-KV path computes it: per query head and chunk of
/// `split`, the f16-accumulating row of [`attention_f16_accumulate`] over that chunk's positions
/// alone, stopped before the division (its maximum, sum and f16 V sum widened to f32); then per
/// head the chunks merged in order (`combine_partials`). Every (head, chunk) is a task, so a long
/// context spreads over the threads even with few heads.
#[allow(clippy::too_many_arguments)]
pub fn attention_split_kv(
    q: &[f32],
    k: &[f16],
    v: &[f16],
    pos0: usize,
    s: AttnShape,
    scale: f32,
    split: KvSplit,
    x: AttnExtras<'_>,
    out: &mut [f32],
) {
    let (dk, dv) = (s.head_dim_k, s.head_dim_v);
    assert_eq!(q.len(), s.n_head * dk, "attention_split_kv: one token");
    let rows = F16Rows::new(k, v, s, scale);
    // Positions before the window are masked: a chunk of them alone is empty.
    let first = x.first_visible(pos0);
    let ranges: Vec<(usize, usize)> = split.ranges(pos0 + 1).map(|(a, b)| (a.max(first).min(b), b)).collect();
    let n_parts = ranges.len();
    // vkq: [n_head][n_parts][dv]
    let mut vkq = vec![0f32; s.n_head * n_parts * dv];
    let parts: Vec<Partial> = vkq
        .par_chunks_mut(dv)
        .enumerate()
        .map(|(i, o)| {
            let (h, (start, end)) = (i / n_parts, ranges[i % n_parts]);
            let q16 = to_f16(&q[h * dk..][..dk]);
            let r = rows.row(&q16, h, start, end);
            let mut p = if rows.fused { decode_row_partial(&r, o) } else { portable_row_partial(&r, o) };
            // ggml adds the sink to the first chunk's partial, whether or not it saw a position.
            if let (Some(sinks), 0) = (x.sinks, i % n_parts) {
                apply_sink(sinks[h], &mut p.max, &mut p.sum, o);
            }
            p
        })
        .collect();
    for (h, o) in out[..s.n_head * dv].chunks_exact_mut(dv).enumerate() {
        combine_partials(&parts[h * n_parts..][..n_parts], &vkq[h * n_parts * dv..][..n_parts * dv], o);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::ops::test_rng::Rng;

    /// Exact softmax attention in f64 over the same (f16-stored) K and V, `[n_tok][n_head][dv]`.
    pub(crate) fn reference(
        q: &[f32],
        k: &[f16],
        v: &[f16],
        pos0: usize,
        s: AttnShape,
        scale: f32,
    ) -> Vec<f64> {
        reference_with(q, k, v, pos0, s, scale, AttnExtras::NONE)
    }

    /// [`reference`] with a sliding window (positions before it left out) and sinks (one more
    /// exponential in the denominator).
    pub(crate) fn reference_with(
        q: &[f32],
        k: &[f16],
        v: &[f16],
        pos0: usize,
        s: AttnShape,
        scale: f32,
        x: AttnExtras<'_>,
    ) -> Vec<f64> {
        let (dk, dv) = (s.head_dim_k, s.head_dim_v);
        let n_tok = q.len() / (s.n_head * dk);
        let group = s.n_head / s.n_head_kv;
        let mut out = vec![0f64; n_tok * s.n_head * dv];
        for t in 0..n_tok {
            for h in 0..s.n_head {
                let kvh = h / group;
                let seen = pos0 + t + 1;
                let first = x.window.map_or(0, |w| seen.saturating_sub(w));
                let scores: Vec<f64> = (0..seen)
                    .map(|j| {
                        if j < first {
                            return f64::NEG_INFINITY;
                        }
                        (0..dk)
                            .map(|d| {
                                q[(t * s.n_head + h) * dk + d] as f64
                                    * k[(j * s.n_head_kv + kvh) * dk + d].to_f64()
                            })
                            .sum::<f64>()
                            * scale as f64
                    })
                    .collect();
                let sink = x.sinks.map(|sk| sk[h] as f64);
                let m = scores.iter().cloned().chain(sink).fold(f64::MIN, f64::max);
                let e: Vec<f64> = scores.iter().map(|x| (x - m).exp()).collect();
                let z: f64 = e.iter().sum::<f64>() + sink.map_or(0.0, |sk| (sk - m).exp());
                for d in 0..dv {
                    out[(t * s.n_head + h) * dv + d] =
                        (0..seen).map(|j| e[j] / z * v[(j * s.n_head_kv + kvh) * dv + d].to_f64()).sum();
                }
            }
        }
        out
    }

    struct Case {
        q: Vec<f32>,
        k: Vec<f16>,
        v: Vec<f16>,
        pos0: usize,
        scale: f32,
    }

    fn case(seed: u64, pos0: usize, n_tok: usize, s: AttnShape) -> Case {
        let mut rng = Rng::new(seed);
        let n_kv = pos0 + n_tok;
        let q = rng.vec(n_tok * s.n_head * s.head_dim_k, 2.0);
        let k = rng.vec(n_kv * s.n_head_kv * s.head_dim_k, 2.0).into_iter().map(f16::from_f32).collect();
        let v = rng.vec(n_kv * s.n_head_kv * s.head_dim_v, 2.0).into_iter().map(f16::from_f32).collect();
        Case { q, k, v, pos0, scale: 1.0 / (s.head_dim_k as f32).sqrt() }
    }

    #[test]
    fn f32_kernel_matches_f64_with_gqa_and_causal_mask() {
        let s = AttnShape::heads(6, 2, 16, 8);
        let c = case(9, 5, 4, s);
        let mut out = vec![0f32; 4 * s.n_head * s.head_dim_v];
        attention_f32(&c.q, &c.k, &c.v, c.pos0, s, c.scale, AttnExtras::NONE, &mut out);
        for (i, (g, w)) in out.iter().zip(reference(&c.q, &c.k, &c.v, c.pos0, s, c.scale)).enumerate() {
            assert!((*g as f64 - w).abs() < 1e-5, "element {i}: {g} vs {w}");
        }
    }

    #[test]
    fn kv_view_and_split_follow_llama_cpp() {
        // Padded to 256, at least 256, within the (padded) cache.
        assert_eq!(ggml_kv_view(8192, 1), 256);
        assert_eq!(ggml_kv_view(8192, 256), 256);
        assert_eq!(ggml_kv_view(8192, 257), 512);
        assert_eq!(ggml_kv_view(8192, 335), 512);
        assert_eq!(ggml_kv_view(300, 290), 512);
        assert_eq!(ggml_kv_view(100, 90), 256);
        assert_eq!(KvSplit::new(256, 2), None);
        assert_eq!(KvSplit::new(512, 2), Some(KvSplit { chunk_len: 256, n_chunks: 2 }));
        assert_eq!(KvSplit::new(768, 5), Some(KvSplit { chunk_len: 154, n_chunks: 5 }));
        assert_eq!(KvSplit::new(512, 0), Some(KvSplit { chunk_len: 512, n_chunks: 1 }));
        // Cut at the visible positions; chunks past them are left out.
        let sp = KvSplit::new(512, 3).unwrap();
        assert_eq!(sp.ranges(335).collect::<Vec<_>>(), [(0, 171), (171, 335)]);
        assert_eq!(sp.ranges(512).collect::<Vec<_>>(), [(0, 171), (171, 342), (342, 512)]);
        assert_eq!(sp.ranges(171).collect::<Vec<_>>(), [(0, 171)]);
    }

    #[test]
    fn split_kv_with_one_chunk_is_the_single_sweep_bit_for_bit() {
        let s = AttnShape::heads(6, 2, 64, 64);
        for pos0 in [300usize, 511, 700] {
            let c = case(21 + pos0 as u64, pos0, 1, s);
            let (mut one, mut split) = (vec![0f32; s.n_head * 64], vec![0f32; s.n_head * 64]);
            attention_f16_accumulate(&c.q, &c.k, &c.v, pos0, s, c.scale, AttnExtras::NONE, &mut one);
            let sp = KvSplit::new(ggml_kv_view(1024, pos0 + 1), 1).unwrap();
            attention_split_kv(&c.q, &c.k, &c.v, pos0, s, c.scale, sp, AttnExtras::NONE, &mut split);
            for (i, (a, b)) in one.iter().zip(&split).enumerate() {
                assert_eq!(a.to_bits(), b.to_bits(), "pos0 {pos0} element {i}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn split_kv_stays_near_f64_and_depends_on_the_chunks() {
        // Head dims 64 (the fused row on AVX-512) and 20 (the portable row everywhere); and
        // latent attention's one shared KV head with K wider than V (80 and 64).
        for (seed, kv_heads, dk, dv) in [(31u64, 2, 64usize, 64usize), (32, 2, 20, 20), (33, 1, 80, 64)] {
            let s = AttnShape::heads(4, kv_heads, dk, dv);
            let pos0 = 600;
            let c = case(seed, pos0, 1, s);
            let exact = reference(&c.q, &c.k, &c.v, pos0, s, c.scale);
            let mut single = vec![0f32; s.n_head * dv];
            attention_f16_accumulate(&c.q, &c.k, &c.v, pos0, s, c.scale, AttnExtras::NONE, &mut single);
            let mut differs = false;
            // 2 and 3 chunks over a view of 768 (the last one part masked), 16 (some past it all).
            for n_threads in [2usize, 3, 16] {
                let sp = KvSplit::new(ggml_kv_view(4096, pos0 + 1), n_threads).unwrap();
                let mut out = vec![0f32; s.n_head * dv];
                attention_split_kv(&c.q, &c.k, &c.v, pos0, s, c.scale, sp, AttnExtras::NONE, &mut out);
                for (i, (g, w)) in out.iter().zip(&exact).enumerate() {
                    assert!(
                        (*g as f64 - w).abs() < 5e-3,
                        "dk {dk} threads {n_threads} element {i}: {g} vs {w}"
                    );
                }
                differs |= out.iter().zip(&single).any(|(a, b)| a.to_bits() != b.to_bits());
            }
            // The f16 sums round differently per chunk: a split must not be the single sweep.
            assert!(differs, "dk {dk}: splitting changed no bit");
        }
    }

    /// gpt-oss's attention: a sliding window of 16 and per-head sinks, through every kernel (the
    /// tiled one for a 70-token prompt, the f16 rows for 3 tokens, the split-KV merge for one token
    /// whose first chunk lies wholly before the window, and the f32 one), against f64.
    #[test]
    fn window_and_sinks_match_f64_in_every_kernel() {
        let s = AttnShape::heads(4, 2, 64, 64);
        let sinks = [0.5f32, -1.0, 3.0, 8.0];
        let x = AttnExtras { window: Some(16), sinks: Some(&sinks) };
        let check = |what: &str, got: &[f32], want: &[f64], tol: f64| {
            for (i, (g, w)) in got.iter().zip(want).enumerate() {
                assert!((*g as f64 - w).abs() < tol, "{what} element {i}: {g} vs {w}");
            }
        };
        for (pos0, n_tok) in [(30usize, 70usize), (37, 3), (600, 1)] {
            let c = case(31, pos0, n_tok, s);
            let want = reference_with(&c.q, &c.k, &c.v, pos0, s, c.scale, x);
            let plain = reference(&c.q, &c.k, &c.v, pos0, s, c.scale);
            assert!(want.iter().zip(&plain).any(|(a, b)| (a - b).abs() > 1e-2), "extras changed nothing");
            let mut out = vec![0f32; n_tok * s.n_head * s.head_dim_v];
            let split = (n_tok == 1).then(|| KvSplit::new(1024, 2)).flatten();
            attention_with(&c.q, &c.k, &c.v, pos0, s, c.scale, split, x, &mut out);
            check(&format!("pos0 {pos0} n_tok {n_tok}"), &out, &want, 5e-3);
            attention_f32(&c.q, &c.k, &c.v, pos0, s, c.scale, x, &mut out);
            check(&format!("f32 pos0 {pos0}"), &out, &want, 1e-5);
        }
    }

    /// Latent attention reads V from the start of each K row (`v_in_k`): in every kernel (tiled,
    /// f16 rows, split-KV, f32) the same bits as with those values copied into a V of their own.
    #[test]
    fn v_read_from_k_rows_equals_a_separate_v_in_every_kernel() {
        let own = AttnShape::heads(4, 1, 80, 64);
        let in_k = AttnShape { v_in_k: true, ..own };
        for (pos0, n_tok) in [(30usize, 70usize), (37, 3), (600, 1)] {
            let c = case(41, pos0, n_tok, own);
            let v: Vec<f16> = c.k.chunks_exact(80).flat_map(|r| &r[..64]).copied().collect();
            let split = (n_tok == 1).then(|| KvSplit::new(1024, 2)).flatten();
            let mut want = vec![0f32; n_tok * 4 * 64];
            let mut got = want.clone();
            attention(&c.q, &c.k, &v, pos0, own, c.scale, split, &mut want);
            attention(&c.q, &c.k, &c.k, pos0, in_k, c.scale, split, &mut got);
            assert!(got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()), "n_tok {n_tok}");
            attention_f32(&c.q, &c.k, &v, pos0, own, c.scale, AttnExtras::NONE, &mut want);
            attention_f32(&c.q, &c.k, &c.k, pos0, in_k, c.scale, AttnExtras::NONE, &mut got);
            assert!(got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()), "f32 n_tok {n_tok}");
        }
    }

    #[test]
    fn f16_accumulating_kernel_equals_a_scalar_replay_and_stays_near_f64() {
        // Head dims 64 and 20: the SIMD body and its scalar tail.
        for (seed, dk, dv) in [(11u64, 64usize, 64usize), (12, 20, 20)] {
            let s = AttnShape::heads(4, 2, dk, dv);
            let (pos0, n_tok) = (37, 3);
            let c = case(seed, pos0, n_tok, s);
            let mut out = vec![0f32; n_tok * s.n_head * dv];
            attention_f16_accumulate(&c.q, &c.k, &c.v, pos0, s, c.scale, AttnExtras::NONE, &mut out);
            let exact = reference(&c.q, &c.k, &c.v, pos0, s, c.scale);
            for (i, (g, w)) in out.iter().zip(&exact).enumerate() {
                // f16 rounding of Q and of the running sum: a few f16 ulps of |v| ≤ 2.
                assert!((*g as f64 - w).abs() < 5e-3, "dk {dk} element {i}: {g} vs {w}");
            }
            // The same algorithm written plainly, with the half crate's conversions and libm's expf.
            for t in 0..n_tok {
                for h in 0..s.n_head {
                    let kvh = h / 2;
                    let q16: Vec<f32> =
                        c.q[(t * 4 + h) * dk..][..dk].iter().map(|x| f16::from_f32(*x).to_f32()).collect();
                    let mut acc = vec![f16::ZERO; dv];
                    let (mut m, mut sum) = (f32::NEG_INFINITY, 0f32);
                    for j in 0..=pos0 + t {
                        let kj = &c.k[(j * 2 + kvh) * dk..][..dk];
                        let dot: f64 = kj.iter().zip(&q16).map(|(a, b)| a.to_f64() * *b as f64).sum();
                        let sc = dot as f32 * c.scale;
                        let (mut ms, mut vs) = (1f32, 1f32);
                        if sc > m {
                            ms = (m - sc).exp();
                            m = sc;
                            acc.iter_mut().for_each(|a| *a = f16::from_f32(a.to_f32() * ms));
                        } else {
                            vs = (sc - m).exp();
                        }
                        for (a, x) in acc.iter_mut().zip(&c.v[(j * 2 + kvh) * dv..][..dv]) {
                            *a = f16::from_f32(x.to_f32().mul_add(vs, a.to_f32()));
                        }
                        sum = sum * ms + vs;
                    }
                    for d in 0..dv {
                        let want = acc[d].to_f32() / sum;
                        let got = out[(t * 4 + h) * dv + d];
                        // Only the f32 dot-product order differs, which can flip an f16 rounding.
                        assert!((got - want).abs() <= 2e-3 * want.abs().max(1e-2), "{got} vs {want}");
                    }
                }
            }
        }
    }
}
