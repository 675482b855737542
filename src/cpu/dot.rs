//! Dot products of f32 slices (and fused f16/bf16 × f32 ones), with AVX2+FMA paths picked at run
//! time.

use half::{bf16, f16};

use super::path::{active, CpuPath};

/// A dot-product kernel: `Σ a[i]·b[i]` over the common length.
pub type DotFn = fn(&[f32], &[f32]) -> f32;

/// A tile of 4 weight rows against `tokens` activation rows: `f(w, x, n, out)` with `w`: `[4][n]`,
/// `x`: `[tokens][n]`, `out[r*tokens + t] = w[r] · x[t]`. Each loaded vector feeds several FMAs,
/// which is what batched prefill needs.
#[derive(Clone, Copy)]
pub struct Tile {
    pub tokens: usize,
    pub f: fn(&[f32], &[f32], usize, &mut [f32]),
}

/// The kernels of one path. Within a path every kernel reduces a row in the same order, so the
/// result for a row does not depend on the batch size.
#[derive(Clone, Copy)]
pub struct Kernels {
    pub path: CpuPath,
    pub dot: DotFn,
    pub dot_f16: Option<DotF16Fn>,
    pub dot_bf16: Option<DotBf16Fn>,
    pub tile: Option<Tile>,
}

/// The kernels of `path` (clamped to what this CPU supports).
pub fn kernels_for(path: CpuPath) -> Kernels {
    let path = CpuPath::clamp(path);
    #[cfg(target_arch = "x86_64")]
    {
        use super::{avx2, avx512};
        match path {
            CpuPath::Avx512 => {
                return Kernels {
                    path,
                    dot: avx512::dot_f32,
                    dot_f16: Some(avx512::dot_f16),
                    dot_bf16: Some(avx512::dot_bf16),
                    tile: Some(Tile { tokens: 4, f: avx512::tile_4x4 }),
                }
            }
            CpuPath::Avx2 => {
                return Kernels {
                    path,
                    dot: dot_avx2_fma,
                    dot_f16: Some(dot_f16_avx2),
                    dot_bf16: Some(dot_bf16_avx2),
                    tile: Some(Tile { tokens: avx2::TILE_TOKENS, f: avx2::tile_4x3 }),
                }
            }
            CpuPath::Scalar => {}
        }
    }
    Kernels { path: CpuPath::Scalar, dot: dot_scalar, dot_f16: None, dot_bf16: None, tile: None }
}

/// The kernels of the active path (see `path::active`).
pub fn kernels() -> Kernels {
    kernels_for(active())
}

/// The dot product of the active path; look it up once per kernel call, not per row.
pub fn best_dot() -> DotFn {
    kernels().dot
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
    // SAFETY: only handed out for CpuPath::Avx2 after the features were detected.
    unsafe { dot_avx2_fma_impl(a, b) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_avx2_fma_impl(a: &[f32], b: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let n = a.len().min(b.len());
    let pa = a.as_ptr();
    let pb = b.as_ptr();
    // One 8-lane chain in the same order as the f16/bf16 and tile kernels (tail included), so that
    // a row gives bit-identical results whichever kernel (GEMV, batched tile) computes it.
    let mut acc = _mm256_setzero_ps();
    let mut i = 0;
    while i + 8 <= n {
        acc = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), acc);
        i += 8;
    }
    if i < n {
        let tail = |p: *const f32| super::avx2::load_partial(p, n - i);
        acc = _mm256_fmadd_ps(tail(pa.add(i)), tail(pb.add(i)), acc);
    }
    hsum(acc)
}

/// Dot products of a stored weight row with f32 activations, converting in registers.
pub type DotF16Fn = fn(&[f16], &[f32]) -> f32;
pub type DotBf16Fn = fn(&[bf16], &[f32]) -> f32;

#[cfg(target_arch = "x86_64")]
fn dot_f16_avx2(w: &[f16], x: &[f32]) -> f32 {
    // SAFETY: only handed out for CpuPath::Avx2 after the features were detected.
    unsafe { dot_half_impl::<false>(w.as_ptr().cast(), x, w.len()) }
}

#[cfg(target_arch = "x86_64")]
fn dot_bf16_avx2(w: &[bf16], x: &[f32]) -> f32 {
    // SAFETY: only handed out for CpuPath::Avx2 after the features were detected.
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
    if i < n {
        // The tail zero-padded into the same lanes, as the tile and tinyBLAS finish a row.
        let mut halves = [0u16; 8];
        std::ptr::copy_nonoverlapping(w.add(i), halves.as_mut_ptr(), n - i);
        let xv = super::avx2::load_partial(px.add(i), n - i);
        acc = _mm256_fmadd_ps(widen(halves.as_ptr()), xv, acc);
    }
    hsum(acc)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn tol(n: usize) -> f64 {
        1e-5 * (n as f64).sqrt()
    }

    #[test]
    fn every_path_matches_f64_reference() {
        let mut state = 0x1234_5678_9abc_def0u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        };
        for path in CpuPath::ALL {
            let k = kernels_for(path);
            for n in [1usize, 7, 8, 15, 16, 31, 32, 33, 100, 577] {
                let a: Vec<f32> = (0..n).map(|_| next()).collect();
                let b: Vec<f32> = (0..n).map(|_| next()).collect();
                let exact: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
                for f in [dot_scalar as DotFn, k.dot] {
                    let got = f(&a, &b) as f64;
                    assert!((got - exact).abs() < tol(n), "{path:?} n={n}: {got} vs {exact}");
                }
                let ah: Vec<f16> = a.iter().map(|&v| f16::from_f32(v)).collect();
                let ab: Vec<bf16> = a.iter().map(|&v| bf16::from_f32(v)).collect();
                let exact_h: f64 = ah.iter().zip(&b).map(|(x, y)| x.to_f64() * *y as f64).sum();
                let exact_b: f64 = ab.iter().zip(&b).map(|(x, y)| x.to_f64() * *y as f64).sum();
                if let Some(f) = k.dot_f16 {
                    assert!((f(&ah, &b) as f64 - exact_h).abs() < tol(n), "{path:?} f16 n={n}");
                }
                if let Some(f) = k.dot_bf16 {
                    assert!((f(&ab, &b) as f64 - exact_b).abs() < tol(n), "{path:?} bf16 n={n}");
                }
                if let Some(tile) = k.tile {
                    let w: Vec<f32> = (0..4 * n).map(|_| next()).collect();
                    let x: Vec<f32> = (0..tile.tokens * n).map(|_| next()).collect();
                    let mut got = vec![0f32; 4 * tile.tokens];
                    (tile.f)(&w, &x, n, &mut got);
                    for r in 0..4 {
                        for t in 0..tile.tokens {
                            let (wr, xt) = (&w[r * n..][..n], &x[t * n..][..n]);
                            let want: f64 = wr.iter().zip(xt).map(|(p, q)| *p as f64 * *q as f64).sum();
                            let g = got[r * tile.tokens + t];
                            assert!((g as f64 - want).abs() < tol(n), "{path:?} tile n={n}");
                            // The tile must reduce like the path's dot product, bit for bit.
                            assert_eq!(g, (k.dot)(wr, xt), "{path:?} tile vs dot n={n}");
                        }
                    }
                }
            }
        }
    }
}
