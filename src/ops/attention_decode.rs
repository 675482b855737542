//! One query row of the f16-accumulating attention (decode and short prompts) with the whole
//! per-position step fused on AVX-512: the score as `ggml_vec_dot_f16` sums it (four 16-lane
//! accumulators per 64 dims, folded 0+2, 1+3), the V sum kept as f32 lanes that are rounded to
//! f16 after every update — the values `ggml_vec_mad_f16` / `ggml_vec_scale_f16` store — so one
//! step costs no calls and no stores. Same arithmetic as [`portable_row`].

use half::f16;

use crate::cpu::ggml_dot::vec_dot_f16;
use crate::cpu::numerics::{mad_f16, scale_f16};

/// Shape of one row's work: `n_pos` visible positions, K/V rows `k_stride`/`v_stride` apart.
pub(super) struct DecodeRow<'a> {
    pub q16: &'a [f16],
    /// K and V from this row's KV head on: position `j` at `j * k_stride` / `j * v_stride`.
    pub k: &'a [f16],
    pub v: &'a [f16],
    pub k_stride: usize,
    pub v_stride: usize,
    pub n_pos: usize,
    pub scale: f32,
}

/// Whether [`decode_row`] handles heads of these sizes on this CPU.
pub(super) fn fused_row_available(dk: usize, dv: usize) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use crate::cpu::path::{active, CpuPath};
        active() == CpuPath::Avx512 && dk.is_multiple_of(64) && dv.is_multiple_of(16) && dv <= MAX_DV
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (dk, dv);
        false
    }
}

/// Largest V head the fused row keeps in registers.
pub(super) const MAX_DV: usize = 256;

/// `o = softmax(q·K)·V` for one row; only call where [`fused_row_available`] said yes.
pub(super) fn decode_row(r: &DecodeRow<'_>, o: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        let dk = r.q16.len();
        assert!(fused_row_available(dk, o.len()), "decode_row: unsupported head size or CPU path");
        assert!(r.n_pos == 0 || r.k.len() >= (r.n_pos - 1) * r.k_stride + dk, "decode_row: short K");
        assert!(r.n_pos == 0 || r.v.len() >= (r.n_pos - 1) * r.v_stride + o.len(), "decode_row: short V");
        // SAFETY: AVX-512F (with FMA and F16C) is the active path; the bounds were checked above.
        unsafe { x86::decode_row_avx512(r, o) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (r, o);
        unreachable!("decode_row: no fused row on this architecture")
    }
}

/// The same row on any path: per visible position `s = (k·q)·scale`; a new maximum rescales the
/// f16 V sum by `exp(M_old − s)`, else `v` is weighted by `exp(s − M)`; `VKQ = f16(VKQ + v·w)`.
pub(super) fn portable_row(r: &DecodeRow<'_>, o: &mut [f32]) {
    let (dk, dv) = (r.q16.len(), o.len());
    let fma = crate::cpu::path::active() != crate::cpu::path::CpuPath::Scalar;
    let mut acc = vec![f16::ZERO; dv];
    let (mut max, mut sum) = (f32::NEG_INFINITY, 0f32);
    for j in 0..r.n_pos {
        let score = vec_dot_f16(&r.k[j * r.k_stride..][..dk], r.q16) * r.scale;
        let (mut rescale, mut weight) = (1f32, 1f32);
        if score > max {
            rescale = (max - score).exp();
            max = score;
            scale_f16(&mut acc, rescale);
        } else {
            weight = (score - max).exp();
        }
        mad_f16(&mut acc, &r.v[j * r.v_stride..][..dv], weight);
        // ggml's `S = S*ms + vs`, contracted to one FMA where the CPU has it.
        sum = if fma { sum.mul_add(rescale, weight) } else { sum * rescale + weight };
    }
    let inv = if sum == 0.0 { 0.0 } else { 1.0 / sum };
    for (d, a) in o.iter_mut().zip(&acc) {
        *d = a.to_f32() * inv;
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{DecodeRow, MAX_DV};

    /// f32 lanes → nearest f16 → f32: what storing to and reloading from an f16 vector gives.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn round_f16(v: __m512) -> __m512 {
        _mm512_cvtph_ps(_mm512_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(v))
    }

    #[target_feature(enable = "avx512f,fma")]
    pub(super) unsafe fn decode_row_avx512(r: &DecodeRow<'_>, o: &mut [f32]) {
        let (dk, dv) = (r.q16.len(), o.len());
        let (n_blocks, n_vecs) = (dk / 64, dv / 16);
        let q: Vec<__m512> = (0..dk / 16)
            .map(|i| _mm512_cvtph_ps(_mm256_loadu_si256(r.q16.as_ptr().add(16 * i).cast())))
            .collect();
        let mut acc = [_mm512_setzero_ps(); MAX_DV / 16];
        let (mut max, mut sum) = (f32::NEG_INFINITY, 0f32);
        for j in 0..r.n_pos {
            let kj = r.k.as_ptr().add(j * r.k_stride);
            let mut part = [_mm512_setzero_ps(); 4];
            for b in 0..n_blocks {
                for (i, p) in part.iter_mut().enumerate() {
                    let kv = _mm512_cvtph_ps(_mm256_loadu_si256(kj.add(64 * b + 16 * i).cast()));
                    *p = _mm512_fmadd_ps(kv, q[4 * b + i], *p);
                }
            }
            let folded = _mm512_add_ps(_mm512_add_ps(part[0], part[2]), _mm512_add_ps(part[1], part[3]));
            // ggml sums the dot in double (no tail here: dk is a multiple of 64), then stores f32.
            let score = (_mm512_reduce_add_ps(folded) as f64) as f32 * r.scale;
            let (mut rescale, mut weight) = (1f32, 1f32);
            if score > max {
                rescale = (max - score).exp();
                max = score;
                let s = _mm512_set1_ps(rescale);
                for a in acc[..n_vecs].iter_mut() {
                    *a = round_f16(_mm512_mul_ps(*a, s));
                }
            } else {
                weight = (score - max).exp();
            }
            let w = _mm512_set1_ps(weight);
            let vj = r.v.as_ptr().add(j * r.v_stride);
            for (i, a) in acc[..n_vecs].iter_mut().enumerate() {
                let vv = _mm512_cvtph_ps(_mm256_loadu_si256(vj.add(16 * i).cast()));
                *a = round_f16(_mm512_fmadd_ps(vv, w, *a));
            }
            sum = sum.mul_add(rescale, weight);
        }
        let inv = if sum == 0.0 { 0.0 } else { 1.0 / sum };
        for (i, a) in acc[..n_vecs].iter().enumerate() {
            _mm512_storeu_ps(o.as_mut_ptr().add(16 * i), _mm512_mul_ps(*a, _mm512_set1_ps(inv)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_rng::Rng;

    #[test]
    fn fused_row_matches_the_portable_row_bit_for_bit() {
        if !fused_row_available(64, 64) {
            return; // no AVX-512 here: the portable row is the only one
        }
        let mut rng = Rng::new(17);
        for (dk, dv, n_pos) in [(64, 64, 1), (64, 64, 97), (128, 80, 300)] {
            let stride = 3 * dk.max(dv);
            let f16s = |v: Vec<f32>| v.into_iter().map(f16::from_f32).collect::<Vec<f16>>();
            let k = f16s(rng.vec(n_pos * stride, 3.0));
            let v = f16s(rng.vec(n_pos * stride, 3.0));
            let q16 = f16s(rng.vec(dk, 3.0));
            let r = DecodeRow {
                q16: &q16,
                k: &k,
                v: &v,
                k_stride: stride,
                v_stride: stride,
                n_pos,
                scale: 0.125,
            };
            let (mut fused, mut portable) = (vec![0f32; dv], vec![0f32; dv]);
            decode_row(&r, &mut fused);
            portable_row(&r, &mut portable);
            for (d, (a, b)) in fused.iter().zip(&portable).enumerate() {
                assert_eq!(a.to_bits(), b.to_bits(), "dk {dk} dv {dv} n_pos {n_pos} dim {d}: {a} vs {b}");
            }
        }
    }
}
