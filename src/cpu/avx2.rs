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
//! here is the product ggml forms after its own widening. The tinyBLAS order also has tiles that
//! read 16-bit weights as stored: [`tile_2x6_direct`] for dense matmuls of up to 32 tokens, and
//! the assembly [`tile_4x3_direct`] past that (no widening pass, half the bytes through L2, and
//! results written straight into the output: with it and scratch buffers, SmolLM2 f16 pp512 went
//! from ~0.90x to ~0.98x of llama.cpp's AVX2 build on Zen 3, bf16 pp512 to ~1.2x).
//!
//! Every `pub(super)` function here may only be called after `CpuPath::Avx2.supported()`.

#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;

use super::gemm::TileOut;

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

/// Inputs per chunk of [`tile_four_chains`]: a 4 × 3 tile's rows and tokens over one chunk
/// (7 KiB) stay in L1 through its four passes. Over whole rows, a Mixtral-shaped expert's `down`
/// (2816 inputs: 78 KiB) streamed from L2 four times and ran at half the speed of its `gate`
/// (1024 inputs) on Zen 3; chunks of 256 and 512 were 1.27x and 1.24x whole rows there.
const FOUR_CHAINS_CHUNK: usize = 256;

/// One pass per accumulator of ggml's dot (the lanes at 8·j + 32·m), so that the tile needs R·T
/// registers instead of 4·R·T; each pass reads a quarter of every row. The passes go chunk by
/// chunk of the inputs, each accumulator carried from one chunk to the next: every chain still
/// adds its blocks in ggml's order.
#[target_feature(enable = "avx2,fma")]
unsafe fn tile_four_chains<const R: usize, const T: usize, const HADD: bool>(
    w: *const f32,
    x: *const f32,
    n: usize,
    out: &mut [f32],
) {
    let np = n / 32 * 32;
    let mut parts = [[[_mm256_setzero_ps(); T]; R]; 4];
    for chunk in (0..np).step_by(FOUR_CHAINS_CHUNK) {
        let end = (chunk + FOUR_CHAINS_CHUNK).min(np);
        for (j, part) in parts.iter_mut().enumerate() {
            // A local copy, so that the pass keeps its accumulators in registers.
            let mut acc = *part;
            let mut i = chunk + 8 * j;
            while i < end {
                let xs: [__m256; T] = std::array::from_fn(|t| _mm256_loadu_ps(x.add(t * n + i)));
                for (r, acc_r) in acc.iter_mut().enumerate() {
                    let wv = _mm256_loadu_ps(w.add(r * n + i));
                    for (a, xv) in acc_r.iter_mut().zip(xs) {
                        *a = _mm256_fmadd_ps(wv, xv, *a);
                    }
                }
                i += 32;
            }
            *part = acc;
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

/// Weight rows per [`tile_2x6_direct`] call.
pub(super) const DIRECT_ROWS: usize = 2;
/// Most tokens per [`tile_2x6_direct`] call.
pub(super) const DIRECT_TOKENS: usize = 6;

/// tinyBLAS's order (as [`tile_4x3`]) for 2 rows of 16-bit weights read as stored (`bf16`, else
/// f16) and widened in registers, × `tokens` (1 to 6) f32 activations. Widening is exact, so the
/// bits are [`tile_4x3`]'s on widened rows. `out[r*tokens + t] = w[r] · x[t]`.
///
/// For small and middling batches: a task's rows stay in L2 at half the size of widened ones,
/// with no widening pass, and each conversion feeds 6 FMAs. 2 × 6 rather than 4 × 3: 12 accumulators,
/// the 2 converted weight vectors and one activation vector at a time leave the compiler room
/// to convert the next weights early within 16 registers; a 4 × 3 tile on converted weights
/// spills an accumulator and runs at half speed. Zen 3, 2 threads, best of 40 interleaved
/// trials, f16 576×1536 × 8 tokens: 112 GFLOP/s against 66 for the one-row kernel this replaced.
///
/// SAFETY: `out`'s cells `(t, r)`, `t < tokens`, `r < 2`, are valid and the caller's alone.
pub(super) unsafe fn tile_2x6_direct(
    w: &[u16],
    bf16: bool,
    x: &[f32],
    n: usize,
    tokens: usize,
    out: TileOut,
) {
    assert!((1..=DIRECT_TOKENS).contains(&tokens), "tile_2x6_direct: {tokens} tokens");
    assert!(w.len() >= 2 * n && x.len() >= tokens * n, "tile_2x6_direct: short buffers");
    let (w, x) = (w.as_ptr(), x.as_ptr());
    macro_rules! by_tokens {
        ($($t:literal)*) => {
            match (tokens, bf16) {
                $(($t, false) => two_rows::<$t, false>(w, x, n, out),
                  ($t, true) => two_rows::<$t, true>(w, x, n, out),)*
                _ => unreachable!(),
            }
        };
    }
    // SAFETY: handed out only for this path, whose features were detected; lengths above; `out`
    // by the caller.
    unsafe { by_tokens!(1 2 3 4 5 6) }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn two_rows<const T: usize, const BF16: bool>(w: *const u16, x: *const f32, n: usize, out: TileOut) {
    let widen = |h: __m128i| -> __m256 {
        if BF16 {
            _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(h)))
        } else {
            _mm256_cvtph_ps(h)
        }
    };
    let (mut acc0, mut acc1) = ([_mm256_setzero_ps(); T], [_mm256_setzero_ps(); T]);
    let mut i = 0;
    while i + 8 <= n {
        let w0 = widen(_mm_loadu_si128(w.add(i).cast()));
        let w1 = widen(_mm_loadu_si128(w.add(n + i).cast()));
        for (t, (a0, a1)) in acc0.iter_mut().zip(&mut acc1).enumerate() {
            let xv = _mm256_loadu_ps(x.add(t * n + i));
            *a0 = _mm256_fmadd_ps(w0, xv, *a0);
            *a1 = _mm256_fmadd_ps(w1, xv, *a1);
        }
        i += 8;
    }
    if i < n {
        let tail = |r: usize| {
            let mut halves = [0u16; 8];
            std::ptr::copy_nonoverlapping(w.add(r * n + i), halves.as_mut_ptr(), n - i);
            widen(_mm_loadu_si128(halves.as_ptr().cast()))
        };
        let (w0, w1) = (tail(0), tail(1));
        for (t, (a0, a1)) in acc0.iter_mut().zip(&mut acc1).enumerate() {
            let xv = load_partial(x.add(t * n + i), n - i);
            *a0 = _mm256_fmadd_ps(w0, xv, *a0);
            *a1 = _mm256_fmadd_ps(w1, xv, *a1);
        }
    }
    for t in 0..T {
        *out.at(t, 0) = reduce_pairs_02_13(acc0[t]);
        *out.at(t, 1) = reduce_pairs_02_13(acc1[t]);
    }
}

/// tinyBLAS's order for 4 rows of 16-bit weights read as stored × 3 f32 tokens, written in
/// assembly: 12 accumulators, 3 activation vectors and 1 weight register (converted from memory
/// in one instruction) are exactly the 16 ymm registers, which LLVM does not manage without a
/// spill. `w[r] · x[t]` goes to `out.at(t, r)`; the bits are [`tile_4x3`]'s on widened rows.
///
/// SAFETY: `out`'s cells `(t, r)`, `t < 3`, `r < 4`, are valid and the caller's alone.
pub(super) unsafe fn tile_4x3_direct(w: &[u16], bf16: bool, x: &[f32], n: usize, out: TileOut) {
    assert!(w.len() >= 4 * n && x.len() >= 3 * n, "tile_4x3_direct: short buffers");
    // SAFETY: handed out only for this path, whose features were detected; lengths above; `out`
    // by the caller.
    unsafe {
        if bf16 {
            four_by_three::<true>(w.as_ptr(), x.as_ptr(), n, out)
        } else {
            four_by_three::<false>(w.as_ptr(), x.as_ptr(), n, out)
        }
    }
}

/// [`tile_4x3_direct`]: the assembly over whole vectors, the tail folded into the same lanes,
/// then the reduction, four outputs at a time.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn four_by_three<const BF16: bool>(w: *const u16, x: *const f32, n: usize, out: TileOut) {
    let mut acc = four_by_three_asm::<BF16>(w, x, n);
    let i = n / 8 * 8;
    if i < n {
        let widen = |r: usize| {
            let mut halves = [0u16; 8];
            std::ptr::copy_nonoverlapping(w.add(r * n + i), halves.as_mut_ptr(), n - i);
            let h = _mm_loadu_si128(halves.as_ptr().cast());
            if BF16 {
                _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(h)))
            } else {
                _mm256_cvtph_ps(h)
            }
        };
        let xs: [__m256; 3] = std::array::from_fn(|t| load_partial(x.add(t * n + i), n - i));
        for r in 0..4 {
            let wv = widen(r);
            for t in 0..3 {
                acc[r * 3 + t] = _mm256_fmadd_ps(wv, xs[t], acc[r * 3 + t]);
            }
        }
    }
    // Token by token, the four rows' sums are adjacent in the output.
    for t in 0..3 {
        _mm_storeu_ps(out.at(t, 0), reduce4_pairs_02_13(acc[t], acc[3 + t], acc[6 + t], acc[9 + t]));
    }
}

/// [`tile_4x3_direct`] as a `gemm` direct tile: 3 tokens through it, fewer through
/// [`tile_2x6_direct`] (the same bits) on each pair of rows.
///
/// SAFETY: `out`'s cells `(t, r)`, `t < tokens`, `r < 4`, are valid and the caller's alone.
pub(super) unsafe fn tile_4x3_direct_tokens(
    w: &[u16],
    bf16: bool,
    x: &[f32],
    n: usize,
    tokens: usize,
    out: TileOut,
) {
    if tokens == 3 {
        return tile_4x3_direct(w, bf16, x, n, out);
    }
    for pair in 0..2 {
        let rows = &w[2 * pair * n..(2 * pair + 2) * n];
        tile_2x6_direct(rows, bf16, x, n, tokens, out.past_rows(2 * pair));
    }
}

/// The whole vectors of [`tile_4x3_direct`]: the 12 accumulators, `[r*3 + t]`.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn four_by_three_asm<const BF16: bool>(w: *const u16, x: *const f32, n: usize) -> [__m256; 12] {
    let z = _mm256_setzero_ps();
    let (mut a0, mut a1, mut a2, mut a3, mut a4, mut a5) = (z, z, z, z, z, z);
    let (mut a6, mut a7, mut a8, mut a9, mut a10, mut a11) = (z, z, z, z, z, z);
    // Byte offsets into a weight row; an activation's offset is twice as far.
    let end = n / 8 * 16;
    if end > 0 {
        macro_rules! kernel {
            ($($widen:expr),*) => {
                std::arch::asm!(
                    "xor {i}, {i}",
                    "2:",
                    "vmovups ymm12, [{x0} + 2*{i}]",
                    "vmovups ymm13, [{x1} + 2*{i}]",
                    "vmovups ymm14, [{x2} + 2*{i}]",
                    $($widen,)*
                    "add {i}, 16",
                    "cmp {i}, {end}",
                    "jb 2b",
                    i = out(reg) _,
                    end = in(reg) end,
                    x0 = in(reg) x,
                    x1 = in(reg) x.add(n),
                    x2 = in(reg) x.add(2 * n),
                    w0 = in(reg) w,
                    w1 = in(reg) w.add(n),
                    w2 = in(reg) w.add(2 * n),
                    w3 = in(reg) w.add(3 * n),
                    inout("ymm0") a0, inout("ymm1") a1, inout("ymm2") a2, inout("ymm3") a3,
                    inout("ymm4") a4, inout("ymm5") a5, inout("ymm6") a6, inout("ymm7") a7,
                    inout("ymm8") a8, inout("ymm9") a9, inout("ymm10") a10, inout("ymm11") a11,
                    out("ymm12") _, out("ymm13") _, out("ymm14") _, out("ymm15") _,
                    options(nostack, readonly),
                )
            };
        }
        macro_rules! fma_row {
            ($a:literal, $b:literal, $c:literal) => {
                concat!(
                    "vfmadd231ps ymm",
                    $a,
                    ", ymm15, ymm12\n",
                    "vfmadd231ps ymm",
                    $b,
                    ", ymm15, ymm13\n",
                    "vfmadd231ps ymm",
                    $c,
                    ", ymm15, ymm14"
                )
            };
        }
        if BF16 {
            kernel!(
                "vpmovzxwd ymm15, [{w0} + {i}]",
                "vpslld ymm15, ymm15, 16",
                fma_row!("0", "1", "2"),
                "vpmovzxwd ymm15, [{w1} + {i}]",
                "vpslld ymm15, ymm15, 16",
                fma_row!("3", "4", "5"),
                "vpmovzxwd ymm15, [{w2} + {i}]",
                "vpslld ymm15, ymm15, 16",
                fma_row!("6", "7", "8"),
                "vpmovzxwd ymm15, [{w3} + {i}]",
                "vpslld ymm15, ymm15, 16",
                fma_row!("9", "10", "11")
            );
        } else {
            kernel!(
                "vcvtph2ps ymm15, [{w0} + {i}]",
                fma_row!("0", "1", "2"),
                "vcvtph2ps ymm15, [{w1} + {i}]",
                fma_row!("3", "4", "5"),
                "vcvtph2ps ymm15, [{w2} + {i}]",
                fma_row!("6", "7", "8"),
                "vcvtph2ps ymm15, [{w3} + {i}]",
                fma_row!("9", "10", "11")
            );
        }
    }
    [a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11]
}

/// Low half + high half, then lanes (0 + 2) + (1 + 3): `dot::hsum`'s and the bf16 dot's order.
#[target_feature(enable = "avx")]
unsafe fn reduce_pairs_02_13(v: __m256) -> f32 {
    let q = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let q = _mm_add_ps(q, _mm_movehl_ps(q, q));
    _mm_cvtss_f32(_mm_add_ss(q, _mm_movehdup_ps(q)))
}

/// [`reduce_pairs_02_13`] of four vectors at once, the same additions on the same pairs:
/// lane k of the result is vector k's sum.
#[target_feature(enable = "avx")]
unsafe fn reduce4_pairs_02_13(a: __m256, b: __m256, c: __m256, d: __m256) -> __m128 {
    // Low half + high half of each: [a lo+hi | b lo+hi], [c lo+hi | d lo+hi].
    let ab = _mm256_add_ps(_mm256_permute2f128_ps::<0x20>(a, b), _mm256_permute2f128_ps::<0x31>(a, b));
    let cd = _mm256_add_ps(_mm256_permute2f128_ps::<0x20>(c, d), _mm256_permute2f128_ps::<0x31>(c, d));
    let (qa, qb) = (_mm256_castps256_ps128(ab), _mm256_extractf128_ps::<1>(ab));
    let (qc, qd) = (_mm256_castps256_ps128(cd), _mm256_extractf128_ps::<1>(cd));
    // Lanes 0 + 2 and 1 + 3 of each: [a02, a13, b02, b13] and [c02, c13, d02, d13].
    let ab = _mm_add_ps(_mm_movelh_ps(qa, qb), _mm_movehl_ps(qb, qa));
    let cd = _mm_add_ps(_mm_movelh_ps(qc, qd), _mm_movehl_ps(qd, qc));
    // (0 + 2) + (1 + 3) of each.
    _mm_hadd_ps(ab, cd)
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

    /// `w` stored as bf16 (else f16) bits, and those values widened back to f32.
    fn stored_and_widened(w: &[f32], bf: bool) -> (Vec<u16>, Vec<f32>) {
        let halves: Vec<u16> = if bf {
            w.iter().map(|v| bf16::from_f32(*v).to_bits()).collect()
        } else {
            w.iter().map(|v| f16::from_f32(*v).to_bits()).collect()
        };
        let wide = halves
            .iter()
            .map(|h| if bf { bf16::from_bits(*h).to_f32() } else { f16::from_bits(*h).to_f32() })
            .collect();
        (halves, wide)
    }

    /// The tile on stored 16-bit weights gives the widened tile's bits, every token count, with
    /// and without a tail past the last vector.
    #[test]
    fn direct_tile_sums_as_the_widened_tile() {
        if !CpuPath::Avx2.supported() {
            return;
        }
        let mut rng = Rng::new(9);
        for n in [8, 13, 64, 100, 576, 1000] {
            let x = rng.vec(DIRECT_TOKENS * n, 3.0);
            let w = rng.vec(2 * n, 1.0);
            for bf in [false, true] {
                let (halves, wide) = stored_and_widened(&w, bf);
                for tokens in 1..=DIRECT_TOKENS {
                    let mut got = [0f32; 2 * DIRECT_TOKENS];
                    // SAFETY: `got` holds tokens × 2 cells.
                    unsafe { tile_2x6_direct(&halves, bf, &x, n, tokens, TileOut::of(&mut got, 2)) };
                    for r in 0..2 {
                        for t in 0..tokens {
                            // The widened tile's rows 2 and 3 repeat rows 0 and 1; token t is
                            // its first of three.
                            let rows4: Vec<f32> = [&wide[..], &wide[..]].concat();
                            let x3: Vec<f32> = x[t * n..(t + 1) * n].repeat(3);
                            let mut want = [0f32; 12];
                            tile_4x3(&rows4, &x3, n, &mut want);
                            let (g, w) = (got[t * 2 + r], want[r * 3]);
                            assert_eq!(
                                g.to_bits(),
                                w.to_bits(),
                                "n={n} bf16={bf} tokens={tokens} r={r} t={t}"
                            );
                        }
                    }
                }
            }
        }
    }

    /// The assembly 4 × 3 tile on stored 16-bit weights gives the widened tile's bits, with and
    /// without a tail past the last vector.
    #[test]
    fn assembly_tile_sums_as_the_widened_tile() {
        if !CpuPath::Avx2.supported() {
            return;
        }
        let mut rng = Rng::new(11);
        for n in [5, 8, 13, 64, 100, 576, 1000] {
            let x = rng.vec(3 * n, 3.0);
            let w = rng.vec(4 * n, 1.0);
            for bf in [false, true] {
                let (halves, wide) = stored_and_widened(&w, bf);
                let (mut got, mut want) = ([0f32; 12], [0f32; 12]);
                // SAFETY: `got` holds 3 × 4 cells.
                unsafe { tile_4x3_direct(&halves, bf, &x, n, TileOut::of(&mut got, 4)) };
                tile_4x3(&wide, &x, n, &mut want);
                for (r, t) in (0..4).flat_map(|r| (0..3).map(move |t| (r, t))) {
                    let (g, w) = (got[t * 4 + r], want[r * 3 + t]);
                    assert_eq!(g.to_bits(), w.to_bits(), "n={n} bf16={bf} r={r} t={t}");
                }
            }
        }
    }

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
