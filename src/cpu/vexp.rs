//! The vectorised `exp` that llama.cpp's CPU backend uses inside SiLU and softmax: a degree-5
//! polynomial after a range reduction by ln 2 (at most ~1.5 ulp from the exact value). libm's
//! `expf` is correctly rounded more often, but an ulp here flips f16/bf16 roundings of the FFN's
//! down-projection input downstream, so under `ggml` numerics we compute what ggml computes, with
//! the variant it picks on this CPU: the AVX-512 one (scale by `vscalefps`) or the AVX2 one
//! (`k + k·p`). The scalar path uses libm, as ggml without SIMD does.

use super::numerics::{self, Numerics};
use super::path::{active, CpuPath};

/// `gate[i] = silu(gate[i]) · up[i]` with `silu(x) = x / (1 + e^-x)`.
pub fn swiglu(gate: &mut [f32], up: &[f32]) {
    let n = gate.len().min(up.len());
    let (gate, up) = (&mut gate[..n], &up[..n]);
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if numerics::active() == Numerics::Ggml {
        // SAFETY: the active path's features were detected when it was chosen.
        done = unsafe {
            match active() {
                CpuPath::Avx512 => avx512::swiglu(gate, up),
                CpuPath::Avx2 => avx2::swiglu(gate, up),
                CpuPath::Scalar => 0,
            }
        };
    }
    for (g, u) in gate[done..].iter_mut().zip(&up[done..]) {
        *g = *g / (1.0 + (-*g).exp()) * u;
    }
}

/// `x[i] = exp(x[i] − max)` and their sum, as `ggml_vec_soft_max_f32` computes them: the vector
/// exp on whole vectors, each vector's lanes reduced and added to an f64 sum, the rest with libm.
pub fn exp_shifted_sum(x: &mut [f32], max: f32) -> f64 {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the active path's features were detected when it was chosen.
    let (done, mut sum) = unsafe {
        match active() {
            CpuPath::Avx512 => avx512::exp_shifted_sum(x, max),
            CpuPath::Avx2 => avx2::exp_shifted_sum(x, max),
            CpuPath::Scalar => (0, 0.0),
        }
    };
    #[cfg(not(target_arch = "x86_64"))]
    let (done, mut sum) = (0, 0f64);
    for v in &mut x[done..] {
        *v = (*v - max).exp();
        sum += *v as f64;
    }
    sum
}

// Shared by both variants: n = round(x / ln 2) by the 1.5·2^23 trick, b = x − n·ln 2 in two parts.
const SHIFT: f32 = 12_582_912.0; // 0x1.8p23
const INV_LN2: f32 = f32::from_bits(0x3fb8_aa3b); // 0x1.715476p+0
const LN2_HI: f32 = f32::from_bits(0x3f31_7200); // 0x1.62e4p-1
const LN2_LO: f32 = f32::from_bits(0x35bf_be8e); // 0x1.7f7d1cp-20
const C5: f32 = f32::from_bits(0x3c07_2010); // 0x1.0e4020p-7
const C4: f32 = f32::from_bits(0x3d2b_9f17); // 0x1.573e2ep-5
const C3: f32 = f32::from_bits(0x3e2a_af33); // 0x1.555e66p-3
const C2: f32 = f32::from_bits(0x3eff_fedb); // 0x1.fffdb6p-2
const C1: f32 = f32::from_bits(0x3f7f_fff6); // 0x1.ffffecp-1

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::*;
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx512f,avx512dq")]
    pub(super) unsafe fn exp(x: __m512) -> __m512 {
        let r = _mm512_set1_ps(SHIFT);
        let z = _mm512_fmadd_ps(x, _mm512_set1_ps(INV_LN2), r);
        let n = _mm512_sub_ps(z, r);
        let b = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_LO), _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_HI), x));
        let huge = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(_mm512_abs_ps(n), _mm512_set1_ps(192.0));
        let u = _mm512_mul_ps(b, b);
        let hi = _mm512_fmadd_ps(_mm512_set1_ps(C5), b, _mm512_set1_ps(C4));
        let lo = _mm512_fmadd_ps(_mm512_set1_ps(C3), b, _mm512_set1_ps(C2));
        let p = _mm512_fmadd_ps(
            _mm512_fmadd_ps(hi, u, lo),
            u,
            _mm512_fmadd_ps(_mm512_set1_ps(C1), b, _mm512_set1_ps(1.0)),
        );
        let res = _mm512_scalef_ps(p, n);
        if huge == 0 {
            return res;
        }
        let non_positive = _mm512_cmp_ps_mask::<_CMP_LE_OQ>(n, _mm512_setzero_ps());
        let alt = _mm512_mask_blend_ps(non_positive, _mm512_set1_ps(f32::INFINITY), _mm512_setzero_ps());
        _mm512_mask_blend_ps(huge, res, alt)
    }

    #[target_feature(enable = "avx512f,avx512dq")]
    pub(super) unsafe fn exp_shifted_sum(x: &mut [f32], max: f32) -> (usize, f64) {
        let n = x.len() / 16 * 16;
        let mut sum = 0f64;
        for i in (0..n).step_by(16) {
            let p = x.as_mut_ptr().add(i);
            let v = exp(_mm512_sub_ps(_mm512_loadu_ps(p), _mm512_set1_ps(max)));
            _mm512_storeu_ps(p, v);
            sum += _mm512_reduce_add_ps(v) as f64;
        }
        (n, sum)
    }

    /// Returns how many leading elements it did (a multiple of 16).
    #[target_feature(enable = "avx512f,avx512dq")]
    pub(super) unsafe fn swiglu(gate: &mut [f32], up: &[f32]) -> usize {
        let n = gate.len() / 16 * 16;
        let mut i = 0;
        while i < n {
            let x = _mm512_loadu_ps(gate.as_ptr().add(i));
            let e = exp(_mm512_sub_ps(_mm512_setzero_ps(), x));
            let silu = _mm512_div_ps(x, _mm512_add_ps(_mm512_set1_ps(1.0), e));
            _mm512_storeu_ps(
                gate.as_mut_ptr().add(i),
                _mm512_mul_ps(silu, _mm512_loadu_ps(up.as_ptr().add(i))),
            );
            i += 16;
        }
        n
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::*;
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn exp(x: __m256) -> __m256 {
        let r = _mm256_set1_ps(SHIFT);
        let z = _mm256_fmadd_ps(x, _mm256_set1_ps(INV_LN2), r);
        let n = _mm256_sub_ps(z, r);
        let b = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_LO), _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_HI), x));
        let e = _mm256_slli_epi32::<23>(_mm256_castps_si256(z));
        let k = _mm256_castsi256_ps(_mm256_add_epi32(e, _mm256_castps_si256(_mm256_set1_ps(1.0))));
        let abs_n = _mm256_andnot_ps(_mm256_set1_ps(-0.0), n);
        let c = _mm256_castps_si256(_mm256_cmp_ps::<_CMP_GT_OQ>(abs_n, _mm256_set1_ps(126.0)));
        let u = _mm256_mul_ps(b, b);
        let hi = _mm256_fmadd_ps(_mm256_set1_ps(C5), b, _mm256_set1_ps(C4));
        let lo = _mm256_fmadd_ps(_mm256_set1_ps(C3), b, _mm256_set1_ps(C2));
        let j = _mm256_fmadd_ps(_mm256_fmadd_ps(hi, u, lo), u, _mm256_mul_ps(_mm256_set1_ps(C1), b));
        if _mm256_movemask_ps(_mm256_castsi256_ps(c)) == 0 {
            return _mm256_fmadd_ps(j, k, k);
        }
        // Results that over- or underflow the exponent field: scale in two steps.
        let g = _mm256_and_si256(
            _mm256_castps_si256(_mm256_cmp_ps::<_CMP_LE_OQ>(n, _mm256_setzero_ps())),
            _mm256_set1_epi32(0x8200_0000u32 as i32),
        );
        let s1 = _mm256_castsi256_ps(_mm256_add_epi32(g, _mm256_set1_epi32(0x7f00_0000)));
        let s2 = _mm256_castsi256_ps(_mm256_sub_epi32(e, g));
        let d = _mm256_castps_si256(_mm256_cmp_ps::<_CMP_GT_OQ>(abs_n, _mm256_set1_ps(192.0)));
        let (d, c) = (_mm256_castsi256_ps(d), _mm256_castsi256_ps(c));
        let two_step = _mm256_mul_ps(_mm256_fmadd_ps(s2, j, s2), s1);
        let normal = _mm256_fmadd_ps(k, j, k);
        _mm256_or_ps(
            _mm256_and_ps(d, _mm256_mul_ps(s1, s1)),
            _mm256_andnot_ps(d, _mm256_or_ps(_mm256_and_ps(c, two_step), _mm256_andnot_ps(c, normal))),
        )
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn exp_shifted_sum(x: &mut [f32], max: f32) -> (usize, f64) {
        let n = x.len() / 8 * 8;
        let mut sum = 0f64;
        for i in (0..n).step_by(8) {
            let p = x.as_mut_ptr().add(i);
            let v = exp(_mm256_sub_ps(_mm256_loadu_ps(p), _mm256_set1_ps(max)));
            _mm256_storeu_ps(p, v);
            let h = _mm_add_ps(_mm256_extractf128_ps::<1>(v), _mm256_castps256_ps128(v));
            let h = _mm_add_ps(h, _mm_movehl_ps(h, h));
            let h = _mm_add_ss(h, _mm_movehdup_ps(h));
            sum += _mm_cvtss_f32(h) as f64;
        }
        (n, sum)
    }

    /// Returns how many leading elements it did (a multiple of 8).
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn swiglu(gate: &mut [f32], up: &[f32]) -> usize {
        let n = gate.len() / 8 * 8;
        let mut i = 0;
        while i < n {
            let x = _mm256_loadu_ps(gate.as_ptr().add(i));
            let e = exp(_mm256_sub_ps(_mm256_setzero_ps(), x));
            let silu = _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0), e));
            _mm256_storeu_ps(
                gate.as_mut_ptr().add(i),
                _mm256_mul_ps(silu, _mm256_loadu_ps(up.as_ptr().add(i))),
            );
            i += 8;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constants_are_the_decimal_values_they_stand_for() {
        // The hex-float literals of the algorithm, checked independently of their bit patterns.
        assert_eq!(INV_LN2 as f64, 1.0 + 0x715476 as f64 / 2f64.powi(24));
        assert_eq!(LN2_HI as f64, (1.0 + 0x62e4 as f64 / 2f64.powi(16)) / 2.0);
        assert_eq!(LN2_LO as f64, (1.0 + 0x7f7d1c as f64 / 2f64.powi(24)) * 2f64.powi(-20));
        assert_eq!(C5 as f64, (1.0 + 0x0e4020 as f64 / 2f64.powi(24)) * 2f64.powi(-7));
        assert_eq!(C4 as f64, (1.0 + 0x573e2e as f64 / 2f64.powi(24)) * 2f64.powi(-5));
        assert_eq!(C3 as f64, (1.0 + 0x555e66 as f64 / 2f64.powi(24)) * 2f64.powi(-3));
        assert_eq!(C2 as f64, (1.0 + 0xfffdb6 as f64 / 2f64.powi(24)) * 2f64.powi(-2));
        assert_eq!(C1 as f64, (1.0 + 0xffffec as f64 / 2f64.powi(24)) * 2f64.powi(-1));
    }

    #[test]
    fn shifted_exp_handles_masked_and_extreme_inputs() {
        let mut x = [0f32; 32];
        let specials = [f32::NEG_INFINITY, 0.0, -200.0, -90.0, 80.0, -1e-3, 3.5, -150.0];
        for (i, v) in x.iter_mut().enumerate() {
            *v = specials[i % specials.len()];
        }
        let want: Vec<f64> = x.iter().map(|v| (*v as f64 - 1.0).exp()).collect();
        let sum = exp_shifted_sum(&mut x, 1.0);
        for (g, w) in x.iter().zip(&want) {
            assert!(
                g.is_finite() && ((*g as f64) - w).abs() <= w * 4.0 * f32::EPSILON as f64 + 1e-38,
                "{g} vs {w}"
            );
        }
        let total: f64 = want.iter().sum();
        assert!((sum - total).abs() <= total * 1e-6, "{sum} vs {total}");
    }

    #[test]
    fn swiglu_stays_within_two_ulp_of_f64_on_every_path() {
        let xs: Vec<f32> = (0..4099).map(|i| (i as f32 - 2049.0) * 0.0191).collect();
        let ups: Vec<f32> = (0..4099).map(|i| 1.0 + (i % 7) as f32 * 0.25).collect();
        let mut got = xs.clone();
        swiglu(&mut got, &ups);
        for ((x, u), g) in xs.iter().zip(&ups).zip(&got) {
            let want = (*x as f64 / (1.0 + (-*x as f64).exp())) * *u as f64;
            let ulp = (want.abs() as f32).max(f32::MIN_POSITIVE) * f32::EPSILON;
            assert!(((*g as f64) - want).abs() <= 4.0 * ulp as f64, "x={x}: {g} vs {want}");
        }
    }
}
