//! AVX2+FMA tiles for batched matmul: 4 weight rows × 3 tokens, in the two orders ggml's AVX2
//! build sums in.
//! - tinyBLAS (`mul_mat` with two or more tokens): one 8-lane FMA chain per output, the inputs
//!   past the last whole vector folded into the same lanes by one zero-padded FMA, then reduced
//!   as `dot::hsum` reduces it.
//! - `ggml_vec_dot_f16` / `ggml_vec_dot_bf16` (expert matmuls): four 8-lane accumulators over
//!   blocks of 32, folded, reduced (the two dots reduce their last four lanes in different
//!   orders), and the tail past the last block added in f64. ggml's bf16 dot multiplies then
//!   adds; an FMA gives the same bits, as a product of two bf16 values is exact in f32.
//!
//! 4 × 3 is what 16 ymm registers allow: 12 accumulators, 3 activation vectors, 1 weight vector,
//! 7 loads per 12 FMAs, so the FMA units are the limit and every chain has slack for load latency.
//! Weights arrive widened to f32 and activations already rounded to the weight type, so a product
//! here is the product ggml forms after its own widening.
//!
//! Every `pub(super)` function here may only be called after `CpuPath::Avx2.supported()`.

#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;

/// Tokens per tile.
pub(super) const TILE_TOKENS: usize = 3;

/// tinyBLAS's order: `out[r*3 + t] = w[r] · x[t]` for `w`: `[4][n]`, `x`: `[3][n]`.
pub(super) fn tile_4x3(w: &[f32], x: &[f32], n: usize, out: &mut [f32]) {
    assert!(w.len() >= 4 * n && x.len() >= 3 * n && out.len() >= 12, "tile_4x3: short buffers");
    // SAFETY: handed out only for CpuPath::Avx2, whose features were detected; lengths above.
    unsafe { tile_one_chain::<4, 3>(w.as_ptr(), x.as_ptr(), n, out) }
}

/// `ggml_vec_dot_f16`'s AVX2 order for 4 rows × 3 tokens (values already f16).
pub(super) fn tile_4x3_vec_dot_f16(w: &[f32], x: &[f32], n: usize, out: &mut [f32]) {
    assert!(w.len() >= 4 * n && x.len() >= 3 * n && out.len() >= 12, "tile_4x3: short buffers");
    // SAFETY: as above.
    unsafe { tile_four_chains::<4, 3, true>(w.as_ptr(), x.as_ptr(), n, out) }
}

/// `ggml_vec_dot_bf16`'s AVX2 order for 4 rows × 3 tokens (values already bf16).
pub(super) fn tile_4x3_vec_dot_bf16(w: &[f32], x: &[f32], n: usize, out: &mut [f32]) {
    assert!(w.len() >= 4 * n && x.len() >= 3 * n && out.len() >= 12, "tile_4x3: short buffers");
    // SAFETY: as above.
    unsafe { tile_four_chains::<4, 3, false>(w.as_ptr(), x.as_ptr(), n, out) }
}

/// One output of [`tile_4x3_vec_dot_f16`] (leftover rows and tokens).
pub(super) fn vec_dot_f16_order(w: &[f32], x: &[f32]) -> f32 {
    let n = w.len().min(x.len());
    let mut out = [0f32; 1];
    // SAFETY: as above; both rows hold n elements.
    unsafe { tile_four_chains::<1, 1, true>(w.as_ptr(), x.as_ptr(), n, &mut out) };
    out[0]
}

/// One output of [`tile_4x3_vec_dot_bf16`].
pub(super) fn vec_dot_bf16_order(w: &[f32], x: &[f32]) -> f32 {
    let n = w.len().min(x.len());
    let mut out = [0f32; 1];
    // SAFETY: as above.
    unsafe { tile_four_chains::<1, 1, false>(w.as_ptr(), x.as_ptr(), n, &mut out) };
    out[0]
}

#[target_feature(enable = "avx2,fma")]
unsafe fn tile_one_chain<const R: usize, const T: usize>(
    w: *const f32,
    x: *const f32,
    n: usize,
    out: &mut [f32],
) {
    let mut acc = [[_mm256_setzero_ps(); T]; R];
    let mut i = 0;
    while i + 8 <= n {
        let xs: [__m256; T] = std::array::from_fn(|t| _mm256_loadu_ps(x.add(t * n + i)));
        for (r, row) in acc.iter_mut().enumerate() {
            let wv = _mm256_loadu_ps(w.add(r * n + i));
            for (a, xv) in row.iter_mut().zip(xs) {
                *a = _mm256_fmadd_ps(wv, xv, *a);
            }
        }
        i += 8;
    }
    if i < n {
        let xs: [__m256; T] = std::array::from_fn(|t| load_partial(x.add(t * n + i), n - i));
        for (r, row) in acc.iter_mut().enumerate() {
            let wv = load_partial(w.add(r * n + i), n - i);
            for (a, xv) in row.iter_mut().zip(xs) {
                *a = _mm256_fmadd_ps(wv, xv, *a);
            }
        }
    }
    for r in 0..R {
        for t in 0..T {
            out[r * T + t] = reduce_pairs_02_13(acc[r][t]);
        }
    }
}

/// The `len < 8` values at `p`, zero in the other lanes. tinyBLAS finishes a row this way (a
/// masked load, then one more FMA into the same accumulators), so a tail lands in lanes
/// `0..len` before the reduction, not after it.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn load_partial(p: *const f32, len: usize) -> __m256 {
    debug_assert!(len < 8);
    let lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    let mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(len as i32), lane);
    _mm256_maskload_ps(p, mask)
}

/// One pass per accumulator of ggml's dot (the lanes at 8·j + 32·m), so that the tile needs R·T
/// registers instead of 4·R·T; each pass reads a quarter of every row, which stays in cache.
#[target_feature(enable = "avx2,fma")]
unsafe fn tile_four_chains<const R: usize, const T: usize, const HADD: bool>(
    w: *const f32,
    x: *const f32,
    n: usize,
    out: &mut [f32],
) {
    let np = n / 32 * 32;
    let mut parts = [[[_mm256_setzero_ps(); T]; R]; 4];
    for (j, part) in parts.iter_mut().enumerate() {
        let mut i = 8 * j;
        while i < np {
            let xs: [__m256; T] = std::array::from_fn(|t| _mm256_loadu_ps(x.add(t * n + i)));
            for (r, acc_r) in part.iter_mut().enumerate() {
                let wv = _mm256_loadu_ps(w.add(r * n + i));
                for (a, xv) in acc_r.iter_mut().zip(xs) {
                    *a = _mm256_fmadd_ps(wv, xv, *a);
                }
            }
            i += 32;
        }
    }
    for r in 0..R {
        for t in 0..T {
            let p = |j: usize| parts[j][r][t];
            let folded = _mm256_add_ps(_mm256_add_ps(p(0), p(2)), _mm256_add_ps(p(1), p(3)));
            // The f16 dot reduces with two horizontal adds, the bf16 one as `hsum` does.
            let sum = if HADD { reduce_pairs_01_23(folded) } else { reduce_pairs_02_13(folded) };
            let mut tail = 0f64;
            for k in np..n {
                tail += (*w.add(r * n + k) * *x.add(t * n + k)) as f64;
            }
            out[r * T + t] = (sum as f64 + tail) as f32;
        }
    }
}

/// Most tokens per [`tile_4_direct`] call: with more accumulators than 4 the chain of each row
/// spills out of AVX2's 16 registers, which costs more than a second pass over rows still in L1
/// (SmolLM2 f16 pp4 and pp8 measured both ways).
pub(super) const DIRECT_TOKENS: usize = 4;

/// tinyBLAS's order (as [`tile_4x3`]) for 4 rows of 16-bit weights read as stored (`bf16`, else
/// f16) and widened in registers, × `tokens` (1 to [`DIRECT_TOKENS`]) f32 activations: for
/// batches too small to pay for widening the rows into a buffer first. Widening is exact, so the
/// bits are [`tile_4x3`]'s. `out[r*tokens + t] = w[r] · x[t]`. One row at a time, as the decode
/// GEMV reads: the hardware prefetcher follows one sequential stream best, and the activations
/// stay in L1.
pub(super) fn tile_4_direct(w: &[u16], bf16: bool, x: &[f32], n: usize, tokens: usize, out: &mut [f32]) {
    assert!((1..=DIRECT_TOKENS).contains(&tokens), "tile_4_direct: {tokens} tokens");
    assert!(
        w.len() >= 4 * n && x.len() >= tokens * n && out.len() >= 4 * tokens,
        "tile_4_direct: short buffers"
    );
    for (r, out) in out[..4 * tokens].chunks_exact_mut(tokens).enumerate() {
        let (w, x) = (w[r * n..].as_ptr(), x.as_ptr());
        // SAFETY: handed out only for this path, whose features were detected; lengths above.
        unsafe {
            match (tokens, bf16) {
                (1, false) => direct_row::<1, false>(w, x, n, out),
                (2, false) => direct_row::<2, false>(w, x, n, out),
                (3, false) => direct_row::<3, false>(w, x, n, out),
                (4, false) => direct_row::<4, false>(w, x, n, out),
                (1, true) => direct_row::<1, true>(w, x, n, out),
                (2, true) => direct_row::<2, true>(w, x, n, out),
                (3, true) => direct_row::<3, true>(w, x, n, out),
                _ => direct_row::<4, true>(w, x, n, out),
            }
        }
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn direct_row<const T: usize, const BF16: bool>(
    w: *const u16,
    x: *const f32,
    n: usize,
    out: &mut [f32],
) {
    let widen = |h: __m128i| -> __m256 {
        if BF16 {
            _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(h)))
        } else {
            _mm256_cvtph_ps(h)
        }
    };
    let mut acc = [_mm256_setzero_ps(); T];
    let mut i = 0;
    while i + 8 <= n {
        let wv = widen(_mm_loadu_si128(w.add(i).cast()));
        for (t, a) in acc.iter_mut().enumerate() {
            *a = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x.add(t * n + i)), *a);
        }
        i += 8;
    }
    if i < n {
        let mut halves = [0u16; 8];
        std::ptr::copy_nonoverlapping(w.add(i), halves.as_mut_ptr(), n - i);
        let wv = widen(_mm_loadu_si128(halves.as_ptr().cast()));
        for (t, a) in acc.iter_mut().enumerate() {
            *a = _mm256_fmadd_ps(wv, load_partial(x.add(t * n + i), n - i), *a);
        }
    }
    for (o, a) in out.iter_mut().zip(acc) {
        *o = reduce_pairs_02_13(a);
    }
}

/// Low half + high half, then lanes (0 + 2) + (1 + 3): `dot::hsum`'s and the bf16 dot's order.
#[target_feature(enable = "avx")]
unsafe fn reduce_pairs_02_13(v: __m256) -> f32 {
    let q = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let q = _mm_add_ps(q, _mm_movehl_ps(q, q));
    _mm_cvtss_f32(_mm_add_ss(q, _mm_movehdup_ps(q)))
}

/// Low half + high half, then lanes (0 + 1) + (2 + 3): two `hadd`s, the f16 dot's order.
#[target_feature(enable = "avx")]
unsafe fn reduce_pairs_01_23(v: __m256) -> f32 {
    let q = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let q = _mm_hadd_ps(q, q);
    _mm_cvtss_f32(_mm_hadd_ps(q, q))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::ggml_dot;
    use crate::cpu::path::CpuPath;
    use crate::ops::test_rng::Rng;
    use half::{bf16, f16};

    /// The tiles against ggml's one-output dots (emulated in `ggml_dot`), bit for bit, at sizes
    /// with and without a tail past the last block.
    #[test]
    fn tiles_sum_in_ggml_avx2_orders() {
        if !CpuPath::Avx2.supported() {
            return;
        }
        let mut rng = Rng::new(5);
        for n in [8, 32, 64, 100, 576, 1000] {
            let w = rng.vec(4 * n, 1.0);
            let x = rng.vec(3 * n, 3.0);
            let wh: Vec<f16> = w.iter().map(|v| f16::from_f32(*v)).collect();
            let xh: Vec<f16> = x.iter().map(|v| f16::from_f32(*v)).collect();
            let wb: Vec<bf16> = w.iter().map(|v| bf16::from_f32(*v)).collect();
            let xb: Vec<bf16> = x.iter().map(|v| bf16::from_f32(*v)).collect();
            let widen_h = |v: &[f16]| v.iter().map(|h| h.to_f32()).collect::<Vec<f32>>();
            let widen_b = |v: &[bf16]| v.iter().map(|h| h.to_f32()).collect::<Vec<f32>>();
            let (wf, xf) = (widen_h(&wh), widen_h(&xh));
            let (wbf, xbf) = (widen_b(&wb), widen_b(&xb));
            let mut got_h = [0f32; 12];
            let mut got_b = [0f32; 12];
            tile_4x3_vec_dot_f16(&wf, &xf, n, &mut got_h);
            tile_4x3_vec_dot_bf16(&wbf, &xbf, n, &mut got_b);
            for r in 0..4 {
                for t in 0..3 {
                    // SAFETY: AVX2 checked above.
                    let (want_h, want_b) = unsafe {
                        (
                            ggml_dot::x86_avx2_vec_dot_f16(&wh[r * n..][..n], &xh[t * n..][..n]),
                            ggml_dot::x86_avx2_vec_dot_bf16(&wb[r * n..][..n], &xb[t * n..][..n]),
                        )
                    };
                    assert_eq!(got_h[r * 3 + t].to_bits(), want_h.to_bits(), "f16 n={n} r={r} t={t}");
                    assert_eq!(got_b[r * 3 + t].to_bits(), want_b.to_bits(), "bf16 n={n} r={r} t={t}");
                    let (wr, xt) = (&wf[r * n..][..n], &xf[t * n..][..n]);
                    assert_eq!(vec_dot_f16_order(wr, xt).to_bits(), want_h.to_bits(), "f16 one n={n}");
                    let (wr, xt) = (&wbf[r * n..][..n], &xbf[t * n..][..n]);
                    assert_eq!(vec_dot_bf16_order(wr, xt).to_bits(), want_b.to_bits(), "bf16 one n={n}");
                }
            }
        }
    }
}
