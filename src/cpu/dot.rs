//! Dot products of f32 slices (and fused f16/bf16 × f32 ones), with AVX2+FMA paths picked at run
//! time.

use half::{bf16, f16};

/// A dot-product kernel: `Σ a[i]·b[i]` over the common length.
pub type DotFn = fn(&[f32], &[f32]) -> f32;

/// The fastest dot product this CPU supports; look it up once per kernel call, not per row.
pub fn best_dot() -> DotFn {
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            return dot_avx2_fma;
        }
    }
    dot_scalar
}

/// Portable dot product. Eight independent accumulators let the compiler vectorise without
/// reassociating a single sum.
pub fn dot_scalar(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; 8];
    let mut ca = a.chunks_exact(8);
    let mut cb = b.chunks_exact(8);
    for (xa, xb) in (&mut ca).zip(&mut cb) {
        for j in 0..8 {
            acc[j] += xa[j] * xb[j];
        }
    }
    let mut tail = 0f32;
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        tail += x * y;
    }
    let pairs = [acc[0] + acc[4], acc[1] + acc[5], acc[2] + acc[6], acc[3] + acc[7]];
    (pairs[0] + pairs[2]) + (pairs[1] + pairs[3]) + tail
}

#[cfg(target_arch = "x86_64")]
fn dot_avx2_fma(a: &[f32], b: &[f32]) -> f32 {
    // SAFETY: only handed out by `best_dot` after the features were detected.
    unsafe { dot_avx2_fma_impl(a, b) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_avx2_fma_impl(a: &[f32], b: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let n = a.len().min(b.len());
    let pa = a.as_ptr();
    let pb = b.as_ptr();
    // One 8-lane chain in the same order as the f16/bf16 and tile kernels, so that a row gives
    // bit-identical results whichever kernel (GEMV, batched tile) computes it.
    let mut acc = _mm256_setzero_ps();
    let mut i = 0;
    while i + 8 <= n {
        acc = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), acc);
        i += 8;
    }
    let mut sum = hsum(acc);
    while i < n {
        sum += *pa.add(i) * *pb.add(i);
        i += 1;
    }
    sum
}

/// Dot products of a stored weight row with f32 activations, converting in registers.
pub type DotF16Fn = fn(&[f16], &[f32]) -> f32;
pub type DotBf16Fn = fn(&[bf16], &[f32]) -> f32;

/// A fused f16·f32 dot product, if this CPU has F16C, AVX2 and FMA.
pub fn fused_dot_f16() -> Option<DotF16Fn> {
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c")
        {
            return Some(dot_f16_avx2);
        }
    }
    None
}

/// A fused bf16·f32 dot product, if this CPU has AVX2 and FMA.
pub fn fused_dot_bf16() -> Option<DotBf16Fn> {
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            return Some(dot_bf16_avx2);
        }
    }
    None
}

#[cfg(target_arch = "x86_64")]
fn dot_f16_avx2(w: &[f16], x: &[f32]) -> f32 {
    // SAFETY: only handed out by `fused_dot_f16` after the features were detected.
    unsafe { dot_half_impl::<false>(w.as_ptr().cast(), x, w.len()) }
}

#[cfg(target_arch = "x86_64")]
fn dot_bf16_avx2(w: &[bf16], x: &[f32]) -> f32 {
    // SAFETY: only handed out by `fused_dot_bf16` after the features were detected.
    unsafe { dot_half_impl::<true>(w.as_ptr().cast(), x, w.len()) }
}

/// `w` points at `n_w` 16-bit floats (bf16 when `BF16`, else IEEE f16).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_half_impl<const BF16: bool>(w: *const u16, x: &[f32], n_w: usize) -> f32 {
    use std::arch::x86_64::*;
    let n = n_w.min(x.len());
    let px = x.as_ptr();
    let widen = |p: *const u16| -> __m256 {
        let h = _mm_loadu_si128(p.cast());
        if BF16 {
            _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16))
        } else {
            _mm256_cvtph_ps(h)
        }
    };
    let mut acc = _mm256_setzero_ps();
    let mut i = 0;
    while i + 8 <= n {
        acc = _mm256_fmadd_ps(widen(w.add(i)), _mm256_loadu_ps(px.add(i)), acc);
        i += 8;
    }
    let mut sum = hsum(acc);
    while i < n {
        let bits = *w.add(i);
        let v = if BF16 { f32::from_bits((bits as u32) << 16) } else { f16::from_bits(bits).to_f32() };
        sum += v * *px.add(i);
        i += 1;
    }
    sum
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn hsum(s: std::arch::x86_64::__m256) -> f32 {
    use std::arch::x86_64::*;
    let q = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    let q = _mm_add_ps(q, _mm_movehl_ps(q, q));
    let q = _mm_add_ss(q, _mm_shuffle_ps(q, q, 1));
    _mm_cvtss_f32(q)
}

/// Four weight rows (`w`: `[4][n]`) against two activation rows: `out[r][t] = w[r] · x_t`. Each
/// loaded vector feeds two or four FMAs instead of one, which is what batched prefill needs.
pub type Tile4x2Fn = fn(w: &[f32], x0: &[f32], x1: &[f32]) -> [[f32; 2]; 4];

pub fn best_tile_4x2() -> Option<Tile4x2Fn> {
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            return Some(tile_4x2_avx2);
        }
    }
    None
}

#[cfg(target_arch = "x86_64")]
fn tile_4x2_avx2(w: &[f32], x0: &[f32], x1: &[f32]) -> [[f32; 2]; 4] {
    // SAFETY: only handed out by `best_tile_4x2` after the features were detected.
    unsafe { tile_4x2_impl(w, x0, x1) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile_4x2_impl(w: &[f32], x0: &[f32], x1: &[f32]) -> [[f32; 2]; 4] {
    use std::arch::x86_64::*;
    let n = x0.len().min(x1.len()).min(w.len() / 4);
    let rows = [w.as_ptr(), w.as_ptr().add(n), w.as_ptr().add(2 * n), w.as_ptr().add(3 * n)];
    let mut acc = [[_mm256_setzero_ps(); 2]; 4];
    let mut i = 0;
    while i + 8 <= n {
        let a = _mm256_loadu_ps(x0.as_ptr().add(i));
        let b = _mm256_loadu_ps(x1.as_ptr().add(i));
        for r in 0..4 {
            let wv = _mm256_loadu_ps(rows[r].add(i));
            acc[r][0] = _mm256_fmadd_ps(wv, a, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(wv, b, acc[r][1]);
        }
        i += 8;
    }
    let mut out = [[0f32; 2]; 4];
    for r in 0..4 {
        for t in 0..2 {
            let mut sum = hsum(acc[r][t]);
            let x = if t == 0 { x0 } else { x1 };
            for (a, b) in w[r * n + i..(r + 1) * n].iter().zip(&x[i..n]) {
                sum += a * b;
            }
            out[r][t] = sum;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dots_match_f64_reference() {
        let mut state = 0x1234_5678_9abc_def0u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        };
        for n in [1usize, 7, 8, 31, 32, 33, 100, 577] {
            let a: Vec<f32> = (0..n).map(|_| next()).collect();
            let b: Vec<f32> = (0..n).map(|_| next()).collect();
            let exact: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
            for f in [dot_scalar as DotFn, best_dot()] {
                let got = f(&a, &b) as f64;
                assert!((got - exact).abs() < 1e-5 * (n as f64).sqrt(), "n={n}: {got} vs {exact}");
            }
            let ah: Vec<f16> = a.iter().map(|&v| f16::from_f32(v)).collect();
            let ab: Vec<bf16> = a.iter().map(|&v| bf16::from_f32(v)).collect();
            let exact_h: f64 = ah.iter().zip(&b).map(|(x, y)| x.to_f64() * *y as f64).sum();
            let exact_b: f64 = ab.iter().zip(&b).map(|(x, y)| x.to_f64() * *y as f64).sum();
            if let Some(f) = fused_dot_f16() {
                assert!((f(&ah, &b) as f64 - exact_h).abs() < 1e-5 * (n as f64).sqrt());
            }
            if let Some(tile) = best_tile_4x2() {
                let w: Vec<f32> = (0..4 * n).map(|_| next()).collect();
                let got = tile(&w, &a, &b);
                for r in 0..4 {
                    for (t, x) in [&a, &b].into_iter().enumerate() {
                        let want: f64 =
                            w[r * n..][..n].iter().zip(x).map(|(p, q)| *p as f64 * *q as f64).sum();
                        assert!((got[r][t] as f64 - want).abs() < 1e-5 * (n as f64).sqrt());
                    }
                }
            }
            if let Some(f) = fused_dot_bf16() {
                assert!((f(&ab, &b) as f64 - exact_b).abs() < 1e-5 * (n as f64).sqrt());
            }
        }
    }
}
