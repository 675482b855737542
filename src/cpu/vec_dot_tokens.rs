//! One weight row against a few tokens, each output summed exactly as `ggml_vec_dot_f16` (or
//! the AVX2 `ggml_vec_dot_bf16`) sums it alone: for the small batches that must keep the
//! one-token order (expert matmuls, and the server's decode rows batched across sequences, see
//! `exec::row_order`). The row is read once, as stored, and converted in registers; every
//! (token, accumulator) pair of the one-row dot has its own register, so the lanes meet the
//! same products in the same order. Activations arrive rounded to the weight type and widened
//! to f32, which is exact.

use super::path::{active, CpuPath};

/// `f(row as stored, bf16, x: [tokens][n] (f32 values of the weight type), n, out[tokens])`.
pub(super) type RowTokensFn = fn(&[u16], bool, &[f32], usize, &mut [f32]);

/// The kernel for 16-bit weights (`bf16` or f16) on the active path and the most tokens it
/// takes per call, where the path has one.
pub(super) fn row_tokens_kernel(bf16: bool) -> Option<(RowTokensFn, usize)> {
    #[cfg(target_arch = "x86_64")]
    match (active(), bf16) {
        (CpuPath::Avx512, false) => return Some((x86::row_tokens_f16_avx512, x86::AVX512_TOKENS)),
        (CpuPath::Avx2, _) => return Some((x86::row_tokens_avx2, x86::AVX2_TOKENS)),
        _ => {}
    }
    let _ = bf16;
    None
}

#[cfg(target_arch = "x86_64")]
pub(super) mod x86 {
    use std::arch::x86_64::*;

    /// 4 accumulators a token: 6 tokens fill 24 of the 32 zmm registers.
    pub(in crate::cpu) const AVX512_TOKENS: usize = 6;
    /// 4 accumulators a token: 3 tokens fill 12 of the 16 ymm registers.
    pub(in crate::cpu) const AVX2_TOKENS: usize = 3;

    /// Products past the last whole block, in f64, as ggml adds them.
    #[inline(always)]
    fn tail_f64(row: &[u16], x: &[f32], from: usize, widen: impl Fn(u16) -> f32) -> f64 {
        row[from..].iter().zip(&x[from..]).map(|(w, v)| (widen(*w) * v) as f64).sum()
    }

    fn f16_value(bits: u16) -> f32 {
        half::f16::from_bits(bits).to_f32()
    }

    fn bf16_value(bits: u16) -> f32 {
        f32::from_bits((bits as u32) << 16)
    }

    pub(in crate::cpu) fn row_tokens_f16_avx512(
        row: &[u16],
        _bf16: bool,
        x: &[f32],
        n: usize,
        out: &mut [f32],
    ) {
        assert!(row.len() >= n && x.len() >= out.len() * n, "row_tokens: shapes");
        // SAFETY: handed out only for CpuPath::Avx512, whose features were detected; shapes above.
        unsafe {
            match out.len() {
                1 => f16_avx512::<1>(row, x, n, out),
                2 => f16_avx512::<2>(row, x, n, out),
                3 => f16_avx512::<3>(row, x, n, out),
                4 => f16_avx512::<4>(row, x, n, out),
                5 => f16_avx512::<5>(row, x, n, out),
                6 => f16_avx512::<6>(row, x, n, out),
                t => panic!("row_tokens: {t} tokens"),
            }
        }
    }

    /// `ggml_vec_dot_f16` on AVX-512: accumulators at 16·j + 64·m, folded 0+2, 1+3, then 0+1.
    #[target_feature(enable = "avx512f")]
    unsafe fn f16_avx512<const T: usize>(row: &[u16], x: &[f32], n: usize, out: &mut [f32]) {
        let np = n / 64 * 64;
        let (w, xp) = (row.as_ptr(), x.as_ptr());
        let mut acc = [[_mm512_setzero_ps(); 4]; T];
        for i in (0..np).step_by(64) {
            for j in 0..4 {
                let wv = _mm512_cvtph_ps(_mm256_loadu_si256(w.add(i + 16 * j).cast()));
                for (t, a) in acc.iter_mut().enumerate() {
                    a[j] = _mm512_fmadd_ps(wv, _mm512_loadu_ps(xp.add(t * n + i + 16 * j)), a[j]);
                }
            }
        }
        for (t, (o, a)) in out.iter_mut().zip(acc).enumerate() {
            let folded = _mm512_add_ps(_mm512_add_ps(a[0], a[2]), _mm512_add_ps(a[1], a[3]));
            let tail = tail_f64(&row[..n], &x[t * n..(t + 1) * n], np, f16_value);
            *o = (_mm512_reduce_add_ps(folded) as f64 + tail) as f32;
        }
    }

    pub(in crate::cpu) fn row_tokens_avx2(row: &[u16], bf16: bool, x: &[f32], n: usize, out: &mut [f32]) {
        assert!(row.len() >= n && x.len() >= out.len() * n, "row_tokens: shapes");
        // SAFETY: handed out only for CpuPath::Avx2, whose features were detected; shapes above.
        unsafe {
            match (out.len(), bf16) {
                (1, false) => avx2::<1, false>(row, x, n, out),
                (2, false) => avx2::<2, false>(row, x, n, out),
                (3, false) => avx2::<3, false>(row, x, n, out),
                (1, true) => avx2::<1, true>(row, x, n, out),
                (2, true) => avx2::<2, true>(row, x, n, out),
                (3, true) => avx2::<3, true>(row, x, n, out),
                (t, _) => panic!("row_tokens: {t} tokens"),
            }
        }
    }

    /// ggml's AVX2 dots: accumulators at 8·j + 32·m, folded 0+2, 1+3, then 0+1; the f16 dot
    /// reduces the last vector with two horizontal adds, the bf16 one as `hsum` does.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn avx2<const T: usize, const BF16: bool>(row: &[u16], x: &[f32], n: usize, out: &mut [f32]) {
        let np = n / 32 * 32;
        let (w, xp) = (row.as_ptr(), x.as_ptr());
        let widen = |p: *const u16| -> __m256 {
            let h = _mm_loadu_si128(p.cast());
            if BF16 {
                _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(h)))
            } else {
                _mm256_cvtph_ps(h)
            }
        };
        let mut acc = [[_mm256_setzero_ps(); 4]; T];
        for i in (0..np).step_by(32) {
            for j in 0..4 {
                let wv = widen(w.add(i + 8 * j));
                for (t, a) in acc.iter_mut().enumerate() {
                    a[j] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(xp.add(t * n + i + 8 * j)), a[j]);
                }
            }
        }
        for (t, (o, a)) in out.iter_mut().zip(acc).enumerate() {
            let f = _mm256_add_ps(_mm256_add_ps(a[0], a[2]), _mm256_add_ps(a[1], a[3]));
            let q = _mm_add_ps(_mm256_castps256_ps128(f), _mm256_extractf128_ps::<1>(f));
            let sum = if BF16 {
                let q = _mm_add_ps(q, _mm_movehl_ps(q, q));
                _mm_cvtss_f32(_mm_add_ss(q, _mm_movehdup_ps(q)))
            } else {
                let q = _mm_hadd_ps(q, q);
                _mm_cvtss_f32(_mm_hadd_ps(q, q))
            };
            let widen_one = if BF16 { bf16_value } else { f16_value };
            let tail = tail_f64(&row[..n], &x[t * n..(t + 1) * n], np, widen_one);
            *o = (sum as f64 + tail) as f32;
        }
    }
}
