//! AVX-512F kernels: 16-lane dot products (f32, and f16/bf16 weights widened in registers) and a
//! 4-row × 4-token tile for batched matmul. All of them reduce a row the same way (one 16-lane
//! FMA chain, the inputs past the last whole vector folded into lanes `0..len` by one masked FMA
//! as tinyBLAS does, then `_mm512_reduce_add_ps`), so a row's result does not depend on which of
//! them computed it — decode and prefill stay bit-identical on this path.
//!
//! Every `pub(super)` function here may only be called after `CpuPath::Avx512.supported()`.

#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;

use super::gemm::TileOut;

use half::{bf16, f16};

pub(super) fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    // SAFETY: handed out only for CpuPath::Avx512, whose features were detected.
    unsafe { dot_f32_impl(a, b) }
}

pub(super) fn dot_f16(w: &[f16], x: &[f32]) -> f32 {
    // SAFETY: as above.
    unsafe { dot_half_impl::<false>(w.as_ptr().cast(), x, w.len()) }
}

pub(super) fn dot_bf16(w: &[bf16], x: &[f32]) -> f32 {
    // SAFETY: as above.
    unsafe { dot_half_impl::<true>(w.as_ptr().cast(), x, w.len()) }
}

/// `out[r*4 + t] = w[r] · x[t]` for `w`: `[4][n]`, `x`: `[4][n]`.
pub(super) fn tile_4x4(w: &[f32], x: &[f32], n: usize, out: &mut [f32]) {
    assert!(w.len() >= 4 * n && x.len() >= 4 * n && out.len() >= 16, "tile_4x4: short buffers");
    // SAFETY: as above; lengths checked just now.
    unsafe { tile_4x4_impl(w, x, n, out) }
}

/// `ggml_vec_dot_f16`'s order on rows already widened to f32 (the values of f16 weights and
/// f16-rounded activations): four 16-lane accumulators over blocks of 64, folded 0+2, 1+3, then
/// 0+1, reduced, and the products past the last whole block added in f64.
pub(super) fn vec_dot_f16_order(w: &[f32], x: &[f32]) -> f32 {
    let n = w.len().min(x.len());
    let mut out = [0f32; 1];
    // SAFETY: as above; both rows hold n elements.
    unsafe { tile_vec_dot_order::<1, 1>(w.as_ptr(), x.as_ptr(), n, &mut out) };
    out[0]
}

/// [`vec_dot_f16_order`] for 4 weight rows × 4 tokens: `out[r*4 + t] = w[r] · x[t]`.
pub(super) fn tile_4x4_vec_dot_order(w: &[f32], x: &[f32], n: usize, out: &mut [f32]) {
    assert!(w.len() >= 4 * n && x.len() >= 4 * n && out.len() >= 16, "tile_4x4: short buffers");
    // SAFETY: as above; lengths checked just now.
    unsafe { tile_vec_dot_order::<4, 4>(w.as_ptr(), x.as_ptr(), n, out) }
}

/// One pass per accumulator of `ggml_vec_dot_f16` (the lanes at 16·j + 64·m), so that a tile
/// needs R·T registers instead of 4·R·T.
#[target_feature(enable = "avx512f")]
unsafe fn tile_vec_dot_order<const R: usize, const T: usize>(
    w: *const f32,
    x: *const f32,
    n: usize,
    out: &mut [f32],
) {
    let np = n / 64 * 64;
    let mut parts = [[[_mm512_setzero_ps(); T]; R]; 4];
    for (j, part) in parts.iter_mut().enumerate() {
        let mut i = 16 * j;
        while i < np {
            let xs: [__m512; T] = std::array::from_fn(|t| _mm512_loadu_ps(x.add(t * n + i)));
            for (r, acc_r) in part.iter_mut().enumerate() {
                let wv = _mm512_loadu_ps(w.add(r * n + i));
                for (a, xv) in acc_r.iter_mut().zip(xs) {
                    *a = _mm512_fmadd_ps(wv, xv, *a);
                }
            }
            i += 64;
        }
    }
    let folded = |r: usize, t: usize| {
        _mm512_add_ps(
            _mm512_add_ps(parts[0][r][t], parts[2][r][t]),
            _mm512_add_ps(parts[1][r][t], parts[3][r][t]),
        )
    };
    let sums: [f32; 16] = if R * T == 16 {
        reduce16(&std::array::from_fn(|k| folded(k / T, k % T)))
    } else {
        std::array::from_fn(|k| if k < R * T { _mm512_reduce_add_ps(folded(k / T, k % T)) } else { 0.0 })
    };
    for r in 0..R {
        for t in 0..T {
            let mut tail = 0f64;
            for i in np..n {
                tail += (*w.add(r * n + i) * *x.add(t * n + i)) as f64;
            }
            out[r * T + t] = (sums[r * T + t] as f64 + tail) as f32;
        }
    }
}

/// `_mm512_reduce_add_ps` of 16 vectors at once: `out[s]` is bit for bit the reduction of
/// `v[s]`. The same pairs of lanes are added in the same order (halves, quarters, pairs, then the
/// last two), but four vectors' worth of lanes share each instruction, which turns 16 serial
/// reductions into 15 adds and a few shuffles.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn reduce16(v: &[__m512; 16]) -> [f32; 16] {
    // Lanes 0..8 + 8..16 of a, then of b.
    let halves = |a: __m512, b: __m512| {
        _mm512_add_ps(
            _mm512_shuffle_f32x4::<0b01_00_01_00>(a, b),
            _mm512_shuffle_f32x4::<0b11_10_11_10>(a, b),
        )
    };
    // Within each 256-bit half: lanes 0..4 + 4..8.
    let quarters = |a: __m512, b: __m512| {
        _mm512_add_ps(
            _mm512_shuffle_f32x4::<0b10_00_10_00>(a, b),
            _mm512_shuffle_f32x4::<0b11_01_11_01>(a, b),
        )
    };
    // Within each 128-bit block: lanes 0,1 + 2,3.
    let pairs = |a: __m512, b: __m512| {
        _mm512_add_ps(_mm512_shuffle_ps::<0b01_00_01_00>(a, b), _mm512_shuffle_ps::<0b11_10_11_10>(a, b))
    };
    // Within each pair: lane 0 + lane 1.
    let last = |a: __m512, b: __m512| {
        _mm512_add_ps(_mm512_shuffle_ps::<0b10_00_10_00>(a, b), _mm512_shuffle_ps::<0b11_01_11_01>(a, b))
    };
    let c: [__m512; 8] = std::array::from_fn(|i| halves(v[2 * i], v[2 * i + 1]));
    let e: [__m512; 4] = std::array::from_fn(|i| quarters(c[2 * i], c[2 * i + 1]));
    let g = [pairs(e[0], e[1]), pairs(e[2], e[3])];
    // Lane 4b + j now holds v[4j + b]'s sum; put source s at lane s.
    let r = last(g[0], g[1]);
    let idx = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    let mut out = [0f32; 16];
    _mm512_storeu_ps(out.as_mut_ptr(), _mm512_permutexvar_ps(idx, r));
    out
}

#[target_feature(enable = "avx512f")]
unsafe fn dot_f32_impl(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc = _mm512_setzero_ps();
    let mut i = 0;
    while i + 16 <= n {
        acc = _mm512_fmadd_ps(_mm512_loadu_ps(pa.add(i)), _mm512_loadu_ps(pb.add(i)), acc);
        i += 16;
    }
    if i < n {
        let m = tail_mask(n - i);
        acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, pa.add(i)), _mm512_maskz_loadu_ps(m, pb.add(i)), acc);
    }
    _mm512_reduce_add_ps(acc)
}

/// Lanes `0..len` (`len < 16`) of a masked load.
fn tail_mask(len: usize) -> __mmask16 {
    ((1u32 << len) - 1) as __mmask16
}

/// `w` points at `n_w` 16-bit floats (bf16 when `BF16`, else IEEE f16).
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn dot_half_impl<const BF16: bool>(w: *const u16, x: &[f32], n_w: usize) -> f32 {
    let n = n_w.min(x.len());
    let px = x.as_ptr();
    let widen = |p: *const u16| -> __m512 {
        let h = _mm256_loadu_si256(p.cast());
        if BF16 {
            _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(h)))
        } else {
            _mm512_cvtph_ps(h)
        }
    };
    let mut acc = _mm512_setzero_ps();
    let mut i = 0;
    while i + 16 <= n {
        acc = _mm512_fmadd_ps(widen(w.add(i)), _mm512_loadu_ps(px.add(i)), acc);
        i += 16;
    }
    if i < n {
        let m = tail_mask(n - i);
        let h = _mm256_maskz_loadu_epi16(m, w.add(i).cast());
        let wv = if BF16 {
            _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(h)))
        } else {
            _mm512_cvtph_ps(h)
        };
        acc = _mm512_fmadd_ps(wv, _mm512_maskz_loadu_ps(m, px.add(i)), acc);
    }
    _mm512_reduce_add_ps(acc)
}

#[target_feature(enable = "avx512f")]
unsafe fn tile_4x4_impl(w: &[f32], x: &[f32], n: usize, out: &mut [f32]) {
    let pw = w.as_ptr();
    let px = x.as_ptr();
    // 16 accumulators (4 rows × 4 tokens) + 4 activation vectors + 1 weight vector: 21 of the 32
    // zmm registers. Each loaded vector feeds four FMAs.
    let mut acc = [[_mm512_setzero_ps(); 4]; 4];
    let mut i = 0;
    while i + 16 <= n {
        let xs = [
            _mm512_loadu_ps(px.add(i)),
            _mm512_loadu_ps(px.add(n + i)),
            _mm512_loadu_ps(px.add(2 * n + i)),
            _mm512_loadu_ps(px.add(3 * n + i)),
        ];
        for (r, acc_r) in acc.iter_mut().enumerate() {
            let wv = _mm512_loadu_ps(pw.add(r * n + i));
            for (a, xv) in acc_r.iter_mut().zip(xs) {
                *a = _mm512_fmadd_ps(wv, xv, *a);
            }
        }
        i += 16;
    }
    if i < n {
        let m = tail_mask(n - i);
        let xs: [__m512; 4] = std::array::from_fn(|t| _mm512_maskz_loadu_ps(m, px.add(t * n + i)));
        for (r, acc_r) in acc.iter_mut().enumerate() {
            let wv = _mm512_maskz_loadu_ps(m, pw.add(r * n + i));
            for (a, xv) in acc_r.iter_mut().zip(xs) {
                *a = _mm512_fmadd_ps(wv, xv, *a);
            }
        }
    }
    out[..16].copy_from_slice(&reduce16(&std::array::from_fn(|k| acc[k / 4][k % 4])));
}

/// Most tokens per [`tile_4_direct`] call: 8 accumulators and a weight vector of the 32 zmm.
pub(super) const DIRECT_TOKENS: usize = 8;

/// tinyBLAS's order (as [`tile_4x4`]) for 4 rows of 16-bit weights read as stored (`bf16`, else
/// f16) and widened in registers, × `tokens` (1 to 8) f32 activations: for batches too small to
/// pay for widening the rows into a buffer first. Widening is exact, so the bits are
/// [`tile_4x4`]'s. `w[r] · x[t]` goes to `out.at(t, r)`. One row at a time, as the decode GEMV
/// reads: the hardware prefetcher follows one sequential stream best, and the activations stay in L1.
///
/// SAFETY: `out`'s cells `(t, r)`, `t < tokens`, `r < 4`, are valid and the caller's alone.
pub(super) unsafe fn tile_4_direct(w: &[u16], bf16: bool, x: &[f32], n: usize, tokens: usize, out: TileOut) {
    assert!((1..=DIRECT_TOKENS).contains(&tokens), "tile_4_direct: {tokens} tokens");
    assert!(w.len() >= 4 * n && x.len() >= tokens * n, "tile_4_direct: short buffers");
    for r in 0..4 {
        let (w, x, out) = (w[r * n..].as_ptr(), x.as_ptr(), out.past_rows(r));
        // SAFETY: handed out only for this path, whose features were detected; lengths above;
        // `out` by the caller.
        unsafe {
            match (tokens, bf16) {
                (1, false) => direct_row::<1, false>(w, x, n, out),
                (2, false) => direct_row::<2, false>(w, x, n, out),
                (3, false) => direct_row::<3, false>(w, x, n, out),
                (4, false) => direct_row::<4, false>(w, x, n, out),
                (5, false) => direct_row::<5, false>(w, x, n, out),
                (6, false) => direct_row::<6, false>(w, x, n, out),
                (7, false) => direct_row::<7, false>(w, x, n, out),
                (8, false) => direct_row::<8, false>(w, x, n, out),
                (1, true) => direct_row::<1, true>(w, x, n, out),
                (2, true) => direct_row::<2, true>(w, x, n, out),
                (3, true) => direct_row::<3, true>(w, x, n, out),
                (4, true) => direct_row::<4, true>(w, x, n, out),
                (5, true) => direct_row::<5, true>(w, x, n, out),
                (6, true) => direct_row::<6, true>(w, x, n, out),
                (7, true) => direct_row::<7, true>(w, x, n, out),
                _ => direct_row::<8, true>(w, x, n, out),
            }
        }
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn direct_row<const T: usize, const BF16: bool>(w: *const u16, x: *const f32, n: usize, out: TileOut) {
    let widen = |h: __m256i| -> __m512 {
        if BF16 {
            _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(h)))
        } else {
            _mm512_cvtph_ps(h)
        }
    };
    let mut acc = [_mm512_setzero_ps(); T];
    let mut i = 0;
    while i + 16 <= n {
        let wv = widen(_mm256_loadu_si256(w.add(i).cast()));
        for (t, a) in acc.iter_mut().enumerate() {
            *a = _mm512_fmadd_ps(wv, _mm512_loadu_ps(x.add(t * n + i)), *a);
        }
        i += 16;
    }
    if i < n {
        let m = tail_mask(n - i);
        let wv = widen(_mm256_maskz_loadu_epi16(m, w.add(i).cast()));
        for (t, a) in acc.iter_mut().enumerate() {
            *a = _mm512_fmadd_ps(wv, _mm512_maskz_loadu_ps(m, x.add(t * n + i)), *a);
        }
    }
    for (t, a) in acc.into_iter().enumerate() {
        *out.at(t, 0) = _mm512_reduce_add_ps(a);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reduce16_gives_each_vectors_own_reduction() {
        if !crate::cpu::CpuPath::Avx512.supported() {
            return;
        }
        let mut seed = 0x1234_5678_9abc_def0u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            // Wide exponents, so that any change of summation order shows in the bits.
            let bits = ((seed >> 41) as u32) | (((seed >> 20) as u32 % 40 + 107) << 23);
            f32::from_bits(bits) * if seed & 1 == 0 { 1.0 } else { -1.0 }
        };
        for _ in 0..50 {
            let vals: Vec<f32> = (0..256).map(|_| next()).collect();
            // SAFETY: AVX-512F checked above.
            unsafe {
                let v: [__m512; 16] = std::array::from_fn(|k| _mm512_loadu_ps(vals[16 * k..].as_ptr()));
                let got = reduce16(&v);
                for (k, g) in got.iter().enumerate() {
                    assert_eq!(g.to_bits(), _mm512_reduce_add_ps(v[k]).to_bits(), "vector {k}");
                }
            }
        }
    }
}
