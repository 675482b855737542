//! AVX-512F kernels: 16-lane dot products (f32, and f16/bf16 weights widened in registers) and a
//! 4-row × 4-token tile for batched matmul. All of them reduce a row the same way (one 16-lane
//! FMA chain, `_mm512_reduce_add_ps`, then a sequential scalar tail), so a row's result does not
//! depend on which of them computed it — decode and prefill stay bit-identical on this path.
//!
//! Every `pub(super)` function here may only be called after `CpuPath::Avx512.supported()`.

#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;

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

/// [`vec_dot_f16_order`] with the weights still in f16, widened in registers (decode: each weight
/// row is read once, so widening it into a buffer first would only add traffic).
pub(super) fn vec_dot_f16_order_h(w: &[f16], x: &[f32]) -> f32 {
    let n = w.len().min(x.len());
    // SAFETY: as above; both rows hold n elements.
    unsafe { vec_dot_f16_order_h_impl(w.as_ptr(), x.as_ptr(), n) }
}

#[target_feature(enable = "avx512f")]
unsafe fn vec_dot_f16_order_h_impl(w: *const f16, x: *const f32, n: usize) -> f32 {
    let np = n / 64 * 64;
    let mut acc = [_mm512_setzero_ps(); 4];
    let mut i = 0;
    while i < np {
        for (j, a) in acc.iter_mut().enumerate() {
            let wv = _mm512_cvtph_ps(_mm256_loadu_si256(w.add(i + 16 * j).cast()));
            *a = _mm512_fmadd_ps(wv, _mm512_loadu_ps(x.add(i + 16 * j)), *a);
        }
        i += 64;
    }
    let folded = _mm512_add_ps(_mm512_add_ps(acc[0], acc[2]), _mm512_add_ps(acc[1], acc[3]));
    let mut tail = 0f64;
    for i in np..n {
        tail += ((*w.add(i)).to_f32() * *x.add(i)) as f64;
    }
    (_mm512_reduce_add_ps(folded) as f64 + tail) as f32
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
    for r in 0..R {
        for t in 0..T {
            let folded = _mm512_add_ps(
                _mm512_add_ps(parts[0][r][t], parts[2][r][t]),
                _mm512_add_ps(parts[1][r][t], parts[3][r][t]),
            );
            let mut tail = 0f64;
            for i in np..n {
                tail += (*w.add(r * n + i) * *x.add(t * n + i)) as f64;
            }
            out[r * T + t] = (_mm512_reduce_add_ps(folded) as f64 + tail) as f32;
        }
    }
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
    let mut sum = _mm512_reduce_add_ps(acc);
    while i < n {
        sum += *pa.add(i) * *pb.add(i);
        i += 1;
    }
    sum
}

/// `w` points at `n_w` 16-bit floats (bf16 when `BF16`, else IEEE f16).
#[target_feature(enable = "avx512f,avx512bw")]
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
    let mut sum = _mm512_reduce_add_ps(acc);
    while i < n {
        let bits = *w.add(i);
        let v = if BF16 { f32::from_bits((bits as u32) << 16) } else { f16::from_bits(bits).to_f32() };
        sum += v * *px.add(i);
        i += 1;
    }
    sum
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
    for r in 0..4 {
        for t in 0..4 {
            let mut sum = _mm512_reduce_add_ps(acc[r][t]);
            for j in i..n {
                sum += *pw.add(r * n + j) * *px.add(t * n + j);
            }
            out[r * 4 + t] = sum;
        }
    }
}
