//! Dot products summed in the order llama.cpp's CPU backend sums them, so that rs-llama's logits
//! match its bit for bit (`ggml` numerics). Activations arrive already rounded to the weight type.
//!
//! ggml has two kinds of matmul: one token (and every expert matmul) goes through `ggml_vec_dot_*`,
//! one row at a time; two or more tokens through llamafile's tinyBLAS, one vector-lane chain per
//! output reduced at the end (which is what `dot`'s f32/f16 kernels already do). Each kind has an
//! AVX-512 and an AVX2 variant with its own accumulator layout; the one emulated is the one ggml
//! would be compiled with on this CPU (the active kernel path). tinyBLAS for bf16 on CPUs with
//! AVX-512 BF16 uses `vdpbf16ps`, which adds each lane's odd product before its even one.

use half::{bf16, f16};

use super::path::{active, CpuPath};

/// Whether this CPU has `vdpbf16ps` (and the AVX-512 path is active), as ggml's bf16 kernels check.
pub fn has_dpbf16() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        active() == CpuPath::Avx512 && is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `ggml_vec_dot_f16`: four accumulators over blocks of four vectors, folded 0+2, 1+3, then 0+1,
/// reduced, and the products past the last whole block added in f64.
pub fn vec_dot_f16(x: &[f16], y: &[f16]) -> f32 {
    let n = x.len().min(y.len());
    let (x, y) = (&x[..n], &y[..n]);
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the active path's features were detected when it was chosen.
    match active() {
        CpuPath::Avx512 => return unsafe { x86::vec_dot_f16_avx512(x, y) },
        CpuPath::Avx2 => return unsafe { x86::vec_dot_f16_avx2(x, y) },
        CpuPath::Scalar => {}
    }
    x.iter().zip(y).map(|(a, b)| (a.to_f32() * b.to_f32()) as f64).sum::<f64>() as f32
}

/// `out[o] = vec_dot_f16(w[o], xh)` for the consecutive rows of `w` (`out.len()` of them); on
/// AVX2, `x32` is `xh` widened to f32, which its kernel reads instead (elsewhere it may be empty).
pub fn vec_dot_f16_rows(w: &[f16], xh: &[f16], x32: &[f32], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    let avx2: Option<RowsKernel<f16>> = Some(x86::rows_f16_avx2);
    #[cfg(not(target_arch = "x86_64"))]
    let avx2 = None;
    rows_by(w, xh, x32, out, avx2, vec_dot_f16)
}

/// [`vec_dot_f16_rows`] for bf16: `out[o] = vec_dot_bf16(w[o], xb)`.
pub fn vec_dot_bf16_rows(w: &[bf16], xb: &[bf16], x32: &[f32], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    let avx2: Option<RowsKernel<bf16>> = Some(x86::rows_bf16_avx2);
    #[cfg(not(target_arch = "x86_64"))]
    let avx2 = None;
    rows_by(w, xb, x32, out, avx2, vec_dot_bf16)
}

/// `kernel(rows, widened activation, out)`, valid only where its path is active.
type RowsKernel<T> = unsafe fn(&[T], &[f32], &mut [f32]);

/// The rows through the AVX2 kernel where that path is active, else one dot each.
fn rows_by<T>(
    w: &[T],
    x: &[T],
    x32: &[f32],
    out: &mut [f32],
    avx2: Option<RowsKernel<T>>,
    dot: fn(&[T], &[T]) -> f32,
) {
    let n = x.len();
    assert!(w.len() >= out.len() * n, "vec_dot rows: shapes");
    if let (Some(kernel), CpuPath::Avx2) = (avx2, active()) {
        assert_eq!(x32.len(), n, "vec_dot rows: the widened activation");
        // SAFETY: the AVX2 path is active, so its features were detected when it was chosen.
        return unsafe { kernel(w, x32, out) };
    }
    for (o, row) in out.iter_mut().zip(w.chunks_exact(n)) {
        *o = dot(row, x);
    }
}

/// `ggml_vec_dot_bf16`: with `vdpbf16ps`, two accumulators over 64-element blocks; with AVX-512F
/// only, two over 32-element blocks; with AVX2, four over 32-element blocks; then the rest in f64.
/// ggml writes the last two as a multiply then an add (which GCC contracts into an FMA anyway,
/// as the AVX2 build's `ggml_vec_dot_bf16` shows); either is exact here, since the product of two
/// bf16 values (8-bit significands) fits an f32, so they are written as one FMA.
pub fn vec_dot_bf16(x: &[bf16], y: &[bf16]) -> f32 {
    let n = x.len().min(y.len());
    let (x, y) = (&x[..n], &y[..n]);
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the active path's features were detected when it was chosen (and BF16 just now).
    match active() {
        CpuPath::Avx512 if has_dpbf16() => return unsafe { x86::vec_dot_bf16_dp(x, y) },
        CpuPath::Avx512 => return unsafe { x86::vec_dot_bf16_avx512(x, y) },
        CpuPath::Avx2 => return unsafe { x86::vec_dot_bf16_avx2(x, y) },
        CpuPath::Scalar => {}
    }
    x.iter().zip(y).map(|(a, b)| (a.to_f32() * b.to_f32()) as f64).sum::<f64>() as f32
}

/// `ggml_vec_dot_f32`: four accumulators over blocks of four vectors, folded like f16's, then the
/// rest added in f32.
pub fn vec_dot_f32(x: &[f32], y: &[f32]) -> f32 {
    let n = x.len().min(y.len());
    let (x, y) = (&x[..n], &y[..n]);
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the active path's features were detected when it was chosen.
    match active() {
        CpuPath::Avx512 => return unsafe { x86::vec_dot_f32_avx512(x, y) },
        CpuPath::Avx2 => return unsafe { x86::vec_dot_f32_avx2(x, y) },
        CpuPath::Scalar => {}
    }
    x.iter().zip(y).map(|(a, b)| (a * b) as f64).sum::<f64>() as f32
}

/// tinyBLAS's bf16 dot with `vdpbf16ps`: one 16-lane chain over 32-element blocks (the last one
/// zero-padded), reduced at the end. Only valid when [`has_dpbf16`].
pub fn gemm_dot_bf16_dp(w: &[bf16], x: &[bf16]) -> f32 {
    assert!(has_dpbf16(), "gemm_dot_bf16_dp without AVX-512 BF16");
    let n = w.len().min(x.len());
    #[cfg(target_arch = "x86_64")]
    // SAFETY: features asserted above.
    unsafe {
        x86::gemm_dot_bf16_dp(&w[..n], &x[..n])
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!()
}

/// [`gemm_dot_bf16_dp`] for 4 weight rows × `T` tokens at once: `out[r*T + t] = dot(w[r], x[t])`
/// with `w`: `[4][n]`, `x`: `[T][n]`. Only valid when [`has_dpbf16`].
pub fn tile_bf16_dp<const T: usize>(w: &[bf16], x: &[bf16], n: usize, out: &mut [f32]) {
    assert!(has_dpbf16(), "tile_bf16_dp without AVX-512 BF16");
    assert!(w.len() >= 4 * n && x.len() >= T * n && out.len() >= 4 * T, "tile_bf16_dp: short buffers");
    #[cfg(target_arch = "x86_64")]
    // SAFETY: features and lengths asserted above.
    unsafe {
        x86::tile_bf16_dp::<T>(w.as_ptr(), x.as_ptr(), n, out)
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!()
}

/// [`vec_dot_bf16`]'s order with `vdpbf16ps` (the expert matmuls' order) for 4 weight rows × 4
/// tokens: `out[r*4 + t] = vec_dot_bf16(w[r], x[t])`. Only valid when [`has_dpbf16`].
pub fn tile_4x4_vec_dot_bf16_dp(w: &[bf16], x: &[bf16], n: usize, out: &mut [f32]) {
    assert!(has_dpbf16(), "tile_4x4_vec_dot_bf16_dp without AVX-512 BF16");
    assert!(
        w.len() >= 4 * n && x.len() >= 4 * n && out.len() >= 16,
        "tile_4x4_vec_dot_bf16_dp: short buffers"
    );
    #[cfg(target_arch = "x86_64")]
    // SAFETY: features and lengths asserted above.
    unsafe {
        x86::tile_4x4_vec_dot_bf16_dp(w, x, n, out)
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!()
}

/// [`tile_bf16_dp`] with 4 tokens, as a plain function pointer.
pub fn tile_4x4_bf16_dp(w: &[bf16], x: &[bf16], n: usize, out: &mut [f32]) {
    tile_bf16_dp::<4>(w, x, n, out)
}

/// ggml's AVX2 f16 dot whatever the active path (tests of the AVX2 tiles). SAFETY: AVX2, FMA
/// and F16C must be present.
#[cfg(all(test, target_arch = "x86_64"))]
pub(super) unsafe fn x86_avx2_vec_dot_f16(x: &[f16], y: &[f16]) -> f32 {
    x86::vec_dot_f16_avx2(x, y)
}

/// ggml's AVX2 bf16 dot whatever the active path. SAFETY: as above.
#[cfg(all(test, target_arch = "x86_64"))]
pub(super) unsafe fn x86_avx2_vec_dot_bf16(x: &[bf16], y: &[bf16]) -> f32 {
    x86::vec_dot_bf16_avx2(x, y)
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use half::{bf16, f16};
    use std::arch::x86_64::*;

    // Inlined: a GEMV calls it once per row, mostly with nothing past the last block.
    #[inline(always)]
    fn tail_f64<T: Copy + Into<f32>>(x: &[T], y: &[T], from: usize) -> f64 {
        x[from..].iter().zip(&y[from..]).map(|(a, b)| ((*a).into() * (*b).into()) as f64).sum()
    }

    /// [`vec_dot_bf16_avx2`] of consecutive rows of `w` against one activation widened to f32
    /// (exact), as [`rows_f16_avx2`] does for f16.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn rows_bf16_avx2(w: &[bf16], x: &[f32], out: &mut [f32]) {
        let n = x.len();
        let np = n / 32 * 32;
        let widen = |p: *const bf16| {
            _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(_mm_loadu_si128(p.cast()))))
        };
        for (o, row) in out.iter_mut().zip(w.chunks_exact(n)) {
            let mut c = [_mm256_setzero_ps(); 4];
            for i in (0..np).step_by(32) {
                for (j, a) in c.iter_mut().enumerate() {
                    let xv = _mm256_loadu_ps(x.as_ptr().add(i + 8 * j));
                    *a = _mm256_fmadd_ps(widen(row.as_ptr().add(i + 8 * j)), xv, *a);
                }
            }
            let f = _mm256_add_ps(_mm256_add_ps(c[0], c[2]), _mm256_add_ps(c[1], c[3]));
            let g = _mm_add_ps(_mm256_extractf128_ps::<1>(f), _mm256_castps256_ps128(f));
            let g = _mm_add_ps(g, _mm_movehl_ps(g, g));
            let g = _mm_add_ss(g, _mm_movehdup_ps(g));
            let mut tail = 0f64;
            for (a, b) in row[np..].iter().zip(&x[np..]) {
                tail += (a.to_f32() * b) as f64;
            }
            *o = (_mm_cvtss_f32(g) as f64 + tail) as f32;
        }
    }

    /// [`vec_dot_f16_avx2`] of consecutive rows of `w` against one activation given widened to
    /// f32 (exact): the same bits, without widening the activation again for every row, which on
    /// AVX2 takes as many conversions as the weights do.
    #[target_feature(enable = "avx2,f16c,fma")]
    pub(super) unsafe fn rows_f16_avx2(w: &[f16], x: &[f32], out: &mut [f32]) {
        let n = x.len();
        let np = n / 32 * 32;
        for (o, row) in out.iter_mut().zip(w.chunks_exact(n)) {
            let mut acc = [_mm256_setzero_ps(); 4];
            for i in (0..np).step_by(32) {
                for (j, a) in acc.iter_mut().enumerate() {
                    let wv = _mm256_cvtph_ps(_mm_loadu_si128(row.as_ptr().add(i + 8 * j).cast()));
                    *a = _mm256_fmadd_ps(_mm256_loadu_ps(x.as_ptr().add(i + 8 * j)), wv, *a);
                }
            }
            let mut tail = 0f64;
            for (a, b) in row[np..].iter().zip(&x[np..]) {
                tail += (a.to_f32() * b) as f64;
            }
            *o = (reduce_hadd(acc) as f64 + tail) as f32;
        }
    }

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn vec_dot_f16_avx512(x: &[f16], y: &[f16]) -> f32 {
        let np = x.len() / 64 * 64;
        let load = |p: *const f16| _mm512_cvtph_ps(_mm256_loadu_si256(p.cast()));
        let mut acc = [_mm512_setzero_ps(); 4];
        for i in (0..np).step_by(64) {
            for (j, a) in acc.iter_mut().enumerate() {
                *a = _mm512_fmadd_ps(load(x.as_ptr().add(i + 16 * j)), load(y.as_ptr().add(i + 16 * j)), *a);
            }
        }
        let folded = _mm512_add_ps(_mm512_add_ps(acc[0], acc[2]), _mm512_add_ps(acc[1], acc[3]));
        (_mm512_reduce_add_ps(folded) as f64 + tail_f64(x, y, np)) as f32
    }

    #[target_feature(enable = "avx2,f16c,fma")]
    pub(super) unsafe fn vec_dot_f16_avx2(x: &[f16], y: &[f16]) -> f32 {
        let np = x.len() / 32 * 32;
        let load = |p: *const f16| _mm256_cvtph_ps(_mm_loadu_si128(p.cast()));
        let mut acc = [_mm256_setzero_ps(); 4];
        for i in (0..np).step_by(32) {
            for (j, a) in acc.iter_mut().enumerate() {
                *a = _mm256_fmadd_ps(load(x.as_ptr().add(i + 8 * j)), load(y.as_ptr().add(i + 8 * j)), *a);
            }
        }
        (reduce_hadd(acc) as f64 + tail_f64(x, y, np)) as f32
    }

    /// ggml's AVX reduction: fold 0+2, 1+3, 0+1, then halves and two horizontal adds.
    #[target_feature(enable = "avx2")]
    unsafe fn reduce_hadd(acc: [__m256; 4]) -> f32 {
        let f = _mm256_add_ps(_mm256_add_ps(acc[0], acc[2]), _mm256_add_ps(acc[1], acc[3]));
        let t0 = _mm_add_ps(_mm256_castps256_ps128(f), _mm256_extractf128_ps::<1>(f));
        let t1 = _mm_hadd_ps(t0, t0);
        _mm_cvtss_f32(_mm_hadd_ps(t1, t1))
    }

    /// `ggml_vec_dot_f32`'s loop over the elements past its last whole step, as GCC compiles it
    /// in llama.cpp's builds (read off `objdump -d libggml-cpu.so`, both builds): vectorised four
    /// and eight at a time into plain products added one by one in order, and only the last
    /// `len % 4` contracted into FMAs.
    fn f32_leftovers(x: &[f32], y: &[f32], from: usize, mut sum: f32) -> f32 {
        let fused_from = from + (x.len() - from) / 4 * 4;
        for i in from..fused_from {
            sum += x[i] * y[i];
        }
        for i in fused_from..x.len() {
            sum = x[i].mul_add(y[i], sum);
        }
        sum
    }

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn vec_dot_f32_avx512(x: &[f32], y: &[f32]) -> f32 {
        let np = x.len() / 64 * 64;
        let mut acc = [_mm512_setzero_ps(); 4];
        for i in (0..np).step_by(64) {
            for (j, a) in acc.iter_mut().enumerate() {
                let (px, py) = (x.as_ptr().add(i + 16 * j), y.as_ptr().add(i + 16 * j));
                *a = _mm512_fmadd_ps(_mm512_loadu_ps(px), _mm512_loadu_ps(py), *a);
            }
        }
        let folded = _mm512_add_ps(_mm512_add_ps(acc[0], acc[2]), _mm512_add_ps(acc[1], acc[3]));
        let sum = _mm512_reduce_add_ps(folded);
        f32_leftovers(x, y, np, sum)
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn vec_dot_f32_avx2(x: &[f32], y: &[f32]) -> f32 {
        let np = x.len() / 32 * 32;
        let mut acc = [_mm256_setzero_ps(); 4];
        for i in (0..np).step_by(32) {
            for (j, a) in acc.iter_mut().enumerate() {
                let (px, py) = (x.as_ptr().add(i + 8 * j), y.as_ptr().add(i + 8 * j));
                *a = _mm256_fmadd_ps(_mm256_loadu_ps(px), _mm256_loadu_ps(py), *a);
            }
        }
        let sum = reduce_hadd(acc);
        f32_leftovers(x, y, np, sum)
    }

    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn vec_dot_bf16_dp(x: &[bf16], y: &[bf16]) -> f32 {
        let np = x.len() / 64 * 64;
        let load = |p: *const bf16| -> __m512bh { std::mem::transmute(_mm512_loadu_si512(p.cast())) };
        let (mut c1, mut c2) = (_mm512_setzero_ps(), _mm512_setzero_ps());
        for i in (0..np).step_by(64) {
            c1 = _mm512_dpbf16_ps(c1, load(x.as_ptr().add(i)), load(y.as_ptr().add(i)));
            c2 = _mm512_dpbf16_ps(c2, load(x.as_ptr().add(i + 32)), load(y.as_ptr().add(i + 32)));
        }
        let sum = _mm512_reduce_add_ps(c1) as f64 + _mm512_reduce_add_ps(c2) as f64;
        (sum + tail_f64(x, y, np)) as f32
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn widen512(p: *const bf16) -> __m512 {
        _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(_mm256_loadu_si256(p.cast()))))
    }

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn vec_dot_bf16_avx512(x: &[bf16], y: &[bf16]) -> f32 {
        let np = x.len() / 32 * 32;
        let (mut c1, mut c2) = (_mm512_setzero_ps(), _mm512_setzero_ps());
        for i in (0..np).step_by(32) {
            let (px, py) = (x.as_ptr().add(i), y.as_ptr().add(i));
            c1 = _mm512_fmadd_ps(widen512(px), widen512(py), c1);
            c2 = _mm512_fmadd_ps(widen512(px.add(16)), widen512(py.add(16)), c2);
        }
        let sum = _mm512_reduce_add_ps(c1) as f64 + _mm512_reduce_add_ps(c2) as f64;
        (sum + tail_f64(x, y, np)) as f32
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn vec_dot_bf16_avx2(x: &[bf16], y: &[bf16]) -> f32 {
        let widen = |p: *const bf16| {
            _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(_mm_loadu_si128(p.cast()))))
        };
        let np = x.len() / 32 * 32;
        let mut c = [_mm256_setzero_ps(); 4];
        for i in (0..np).step_by(32) {
            for (j, a) in c.iter_mut().enumerate() {
                let (px, py) = (x.as_ptr().add(i + 8 * j), y.as_ptr().add(i + 8 * j));
                *a = _mm256_fmadd_ps(widen(px), widen(py), *a);
            }
        }
        let f = _mm256_add_ps(_mm256_add_ps(c[0], c[2]), _mm256_add_ps(c[1], c[3]));
        let g = _mm_add_ps(_mm256_extractf128_ps::<1>(f), _mm256_castps256_ps128(f));
        let g = _mm_add_ps(g, _mm_movehl_ps(g, g));
        let g = _mm_add_ss(g, _mm_movehdup_ps(g));
        (_mm_cvtss_f32(g) as f64 + tail_f64(x, y, np)) as f32
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    pub(super) unsafe fn tile_bf16_dp<const T: usize>(
        w: *const bf16,
        x: *const bf16,
        n: usize,
        out: &mut [f32],
    ) {
        let load = |p: *const bf16| -> __m512bh { std::mem::transmute(_mm512_loadu_si512(p.cast())) };
        let mut acc = [[_mm512_setzero_ps(); T]; 4];
        let mut i = 0;
        while i + 32 <= n {
            let xs: [__m512bh; T] = std::array::from_fn(|t| load(x.add(t * n + i)));
            for (r, acc_r) in acc.iter_mut().enumerate() {
                let wv = load(w.add(r * n + i));
                for (a, xv) in acc_r.iter_mut().zip(xs) {
                    *a = _mm512_dpbf16_ps(*a, wv, xv);
                }
            }
            i += 32;
        }
        if i < n {
            let mask = (1u32 << (n - i)) - 1;
            let part = |p: *const bf16| -> __m512bh {
                std::mem::transmute(_mm512_maskz_loadu_epi16(mask, p.cast()))
            };
            let xs: [__m512bh; T] = std::array::from_fn(|t| part(x.add(t * n + i)));
            for (r, acc_r) in acc.iter_mut().enumerate() {
                let wv = part(w.add(r * n + i));
                for (a, xv) in acc_r.iter_mut().zip(xs) {
                    *a = _mm512_dpbf16_ps(*a, wv, xv);
                }
            }
        }
        if T == 4 {
            out[..16].copy_from_slice(&super::super::avx512::reduce16(&std::array::from_fn(|k| {
                acc[k / 4][k % 4]
            })));
            return;
        }
        for (r, acc_r) in acc.iter().enumerate() {
            for (t, a) in acc_r.iter().enumerate() {
                out[r * T + t] = _mm512_reduce_add_ps(*a);
            }
        }
    }

    /// One pass per accumulator of `vec_dot_bf16_dp` (the first and the second 32 elements of
    /// every 64), each pass's 16 chains reduced together.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    pub(super) unsafe fn tile_4x4_vec_dot_bf16_dp(w: &[bf16], x: &[bf16], n: usize, out: &mut [f32]) {
        let np = n / 64 * 64;
        let load = |p: *const bf16| -> __m512bh { std::mem::transmute(_mm512_loadu_si512(p.cast())) };
        let (pw, px) = (w.as_ptr(), x.as_ptr());
        let mut sums = [[0f32; 16]; 2];
        for (half, s) in sums.iter_mut().enumerate() {
            let mut acc = [[_mm512_setzero_ps(); 4]; 4];
            let mut i = 32 * half;
            while i < np {
                let xs: [__m512bh; 4] = std::array::from_fn(|t| load(px.add(t * n + i)));
                for (r, acc_r) in acc.iter_mut().enumerate() {
                    let wv = load(pw.add(r * n + i));
                    for (a, xv) in acc_r.iter_mut().zip(xs) {
                        *a = _mm512_dpbf16_ps(*a, wv, xv);
                    }
                }
                i += 64;
            }
            *s = super::super::avx512::reduce16(&std::array::from_fn(|k| acc[k / 4][k % 4]));
        }
        for r in 0..4 {
            for t in 0..4 {
                let k = r * 4 + t;
                let tail = tail_f64(&w[r * n..][..n], &x[t * n..][..n], np);
                out[k] = (sums[0][k] as f64 + sums[1][k] as f64 + tail) as f32;
            }
        }
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    pub(super) unsafe fn gemm_dot_bf16_dp(w: &[bf16], x: &[bf16]) -> f32 {
        let n = w.len();
        let load = |p: *const bf16| -> __m512bh { std::mem::transmute(_mm512_loadu_si512(p.cast())) };
        let mut acc = _mm512_setzero_ps();
        let mut i = 0;
        while i + 32 <= n {
            acc = _mm512_dpbf16_ps(acc, load(w.as_ptr().add(i)), load(x.as_ptr().add(i)));
            i += 32;
        }
        if i < n {
            let mask = (1u32 << (n - i)) - 1;
            let part = |p: *const bf16| -> __m512bh {
                std::mem::transmute(_mm512_maskz_loadu_epi16(mask, p.cast()))
            };
            acc = _mm512_dpbf16_ps(acc, part(w.as_ptr().add(i)), part(x.as_ptr().add(i)));
        }
        _mm512_reduce_add_ps(acc)
    }
}

#[cfg(test)]
mod tests {
    /// The AVX2 GEMV rows (activation widened once) give the one-row dots' AVX2 bits, f16 and bf16.
    #[test]
    fn avx2_gemv_rows_are_the_one_row_dot() {
        if !CpuPath::Avx2.supported() {
            return;
        }
        for n in [32usize, 45, 576, 621] {
            let xh: Vec<f16> = values(3 + n as u64, n).iter().map(|v| f16::from_f32(*v)).collect();
            let x32: Vec<f32> = xh.iter().map(|v| v.to_f32()).collect();
            let w: Vec<f16> = values(n as u64, 5 * n).iter().map(|v| f16::from_f32(*v)).collect();
            let mut out = [0f32; 5];
            // SAFETY: AVX2+FMA+F16C checked above.
            unsafe { x86::rows_f16_avx2(&w, &x32, &mut out) };
            for (r, got) in out.iter().enumerate() {
                // SAFETY: as above.
                let want = unsafe { x86::vec_dot_f16_avx2(&w[r * n..][..n], &xh) };
                assert_eq!(got.to_bits(), want.to_bits(), "n={n} row {r}");
            }
            let xb: Vec<bf16> = x32.iter().map(|v| bf16::from_f32(*v * 1.7)).collect();
            let xb32: Vec<f32> = xb.iter().map(|v| v.to_f32()).collect();
            let wb: Vec<bf16> = w.iter().map(|v| bf16::from_f32(v.to_f32())).collect();
            // SAFETY: as above.
            unsafe { x86::rows_bf16_avx2(&wb, &xb32, &mut out) };
            for (r, got) in out.iter().enumerate() {
                // SAFETY: as above.
                let want = unsafe { x86::vec_dot_bf16_avx2(&wb[r * n..][..n], &xb) };
                assert_eq!(got.to_bits(), want.to_bits(), "bf16 n={n} row {r}");
            }
        }
    }

    /// The few-token row kernels (`vec_dot_tokens`) give every token its one-row dot's bits.
    #[test]
    fn row_token_kernels_are_the_one_row_dots() {
        use crate::cpu::vec_dot_tokens::x86 as rows;
        let mut checked = 0;
        for n in [32usize, 45, 64, 130, 621] {
            let w = values(n as u64, n);
            let x = values(5 + n as u64, 6 * n);
            let (wh, wb): (Vec<f16>, Vec<bf16>) = (
                w.iter().map(|v| f16::from_f32(*v)).collect(),
                w.iter().map(|v| bf16::from_f32(*v)).collect(),
            );
            let (xh, xb): (Vec<f16>, Vec<bf16>) = (
                x.iter().map(|v| f16::from_f32(*v)).collect(),
                x.iter().map(|v| bf16::from_f32(*v)).collect(),
            );
            let xh32: Vec<f32> = xh.iter().map(|v| v.to_f32()).collect();
            let xb32: Vec<f32> = xb.iter().map(|v| v.to_f32()).collect();
            let bits_h: Vec<u16> = wh.iter().map(|v| v.to_bits()).collect();
            let bits_b: Vec<u16> = wb.iter().map(|v| v.to_bits()).collect();
            let mut check = |f: super::super::vec_dot_tokens::RowTokensFn,
                             tokens: usize,
                             bf: bool,
                             dot: &dyn Fn(usize) -> f32| {
                for t in 1..=tokens {
                    let mut out = vec![0f32; t];
                    let (bits, xs) = if bf { (&bits_b, &xb32) } else { (&bits_h, &xh32) };
                    f(bits, bf, &xs[..t * n], n, &mut out);
                    for (k, got) in out.iter().enumerate() {
                        assert_eq!(got.to_bits(), dot(k).to_bits(), "n={n} bf16={bf} {t} tokens, token {k}");
                        checked += 1;
                    }
                }
            };
            // SAFETY (each dot): the path's features are checked before it runs.
            if CpuPath::Avx2.supported() {
                check(rows::row_tokens_avx2, rows::AVX2_TOKENS, false, &|k| unsafe {
                    x86::vec_dot_f16_avx2(&wh, &xh[k * n..(k + 1) * n])
                });
                check(rows::row_tokens_avx2, rows::AVX2_TOKENS, true, &|k| unsafe {
                    x86::vec_dot_bf16_avx2(&wb, &xb[k * n..(k + 1) * n])
                });
            }
            if CpuPath::Avx512.supported() {
                check(rows::row_tokens_f16_avx512, rows::AVX512_TOKENS, false, &|k| unsafe {
                    x86::vec_dot_f16_avx512(&wh, &xh[k * n..(k + 1) * n])
                });
            }
        }
        eprintln!("{checked} outputs checked");
    }

    /// Each bf16 tile against the one-output dot whose order it keeps: the expert tile
    /// (`ggml_vec_dot_bf16`) and the tinyBLAS tile.
    #[test]
    fn the_bf16_tiles_give_each_outputs_own_dot() {
        if !has_dpbf16() {
            return;
        }
        type Tile = fn(&[bf16], &[bf16], usize, &mut [f32]);
        type Dot = fn(&[bf16], &[bf16]) -> f32;
        let cases: [(&str, Tile, Dot, [usize; 4], u64); 2] = [
            ("expert", tile_4x4_vec_dot_bf16_dp, vec_dot_bf16, [64, 100, 576, 1000], 5),
            ("tinyBLAS", tile_bf16_dp::<4>, gemm_dot_bf16_dp, [32, 40, 576, 1000], 3),
        ];
        for (name, tile, dot, sizes, seed) in cases {
            for n in sizes {
                let w: Vec<bf16> = values(n as u64, 4 * n).into_iter().map(bf16::from_f32).collect();
                let x: Vec<bf16> = values(seed + n as u64, 4 * n).into_iter().map(bf16::from_f32).collect();
                let mut out = [0f32; 16];
                tile(&w, &x, n, &mut out);
                for r in 0..4 {
                    for t in 0..4 {
                        let want = dot(&w[r * n..][..n], &x[t * n..][..n]);
                        assert_eq!(out[r * 4 + t].to_bits(), want.to_bits(), "{name} n={n} r={r} t={t}");
                    }
                }
            }
        }
    }

    use super::*;

    fn values(seed: u64, n: usize) -> Vec<f32> {
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

    #[test]
    fn every_dot_matches_f64_on_block_multiples_and_tails() {
        for n in [1usize, 15, 32, 63, 64, 65, 130, 576] {
            let (a, b) = (values(n as u64, n), values(7 + n as u64, n));
            let ah: Vec<f16> = a.iter().map(|v| f16::from_f32(*v)).collect();
            let bh: Vec<f16> = b.iter().map(|v| f16::from_f32(*v)).collect();
            let ab: Vec<bf16> = a.iter().map(|v| bf16::from_f32(*v)).collect();
            let bb: Vec<bf16> = b.iter().map(|v| bf16::from_f32(*v)).collect();
            let tol = 1e-5 * (n as f64).sqrt();
            let exact = |x: Vec<f64>, y: Vec<f64>| x.iter().zip(&y).map(|(p, q)| p * q).sum::<f64>();
            let e32 = exact(a.iter().map(|v| *v as f64).collect(), b.iter().map(|v| *v as f64).collect());
            let e16 = exact(ah.iter().map(|v| v.to_f64()).collect(), bh.iter().map(|v| v.to_f64()).collect());
            let eb = exact(ab.iter().map(|v| v.to_f64()).collect(), bb.iter().map(|v| v.to_f64()).collect());
            assert!((vec_dot_f32(&a, &b) as f64 - e32).abs() < tol, "f32 n={n}");
            assert!((vec_dot_f16(&ah, &bh) as f64 - e16).abs() < tol, "f16 n={n}");
            assert!((vec_dot_bf16(&ab, &bb) as f64 - eb).abs() < tol, "bf16 n={n}");
            if has_dpbf16() {
                let got = gemm_dot_bf16_dp(&ab, &bb);
                assert!((got as f64 - eb).abs() < tol, "dpbf16 n={n}");
                // vdpbf16ps per lane: the odd element's product, then the even one's, each rounded.
                let mut lanes = [0f32; 16];
                for (c, (wa, wb)) in ab.chunks(32).zip(bb.chunks(32)).enumerate() {
                    let _ = c;
                    for (l, lane) in lanes.iter_mut().enumerate() {
                        for idx in [2 * l + 1, 2 * l] {
                            if idx < wa.len() {
                                *lane = wa[idx].to_f32().mul_add(wb[idx].to_f32(), *lane);
                            }
                        }
                    }
                }
                // The reduction tree of _mm512_reduce_add_ps: halves, then quarters, ...
                let mut v = lanes.to_vec();
                while v.len() > 1 {
                    let h = v.len() / 2;
                    v = (0..h).map(|i| v[i] + v[i + h]).collect();
                }
                assert_eq!(got.to_bits(), v[0].to_bits(), "dpbf16 order n={n}");
            }
        }
    }
}
