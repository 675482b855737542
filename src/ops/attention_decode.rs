//! One query row of the f16-accumulating attention (decode and short prompts) with the whole
//! per-position step fused on AVX-512: the score as `ggml_vec_dot_f16` sums it (four 16-lane
//! accumulators per 64 dims, folded 0+2, 1+3), the V sum kept as f32 lanes that are rounded to
//! f16 after every update — the values `ggml_vec_mad_f16` / `ggml_vec_scale_f16` store — so one
//! step costs no calls and no stores. Same arithmetic as [`portable_row`].
//!
//! Both run over a range of positions and can stop before the division (`*_partial`): the
//! running maximum, the sum of weights and the (f16-valued) weighted V sum of that range, which
//! [`combine_partials`] merges the way ggml merges the KV chunks of its split decode (see
//! `attention::KvSplit`).

use half::f16;

use crate::cpu::ggml_dot::vec_dot_f16;
use crate::cpu::numerics::{mad_f16, scale_f16};

/// Shape of one row's work: positions `start..n_pos`, K/V rows `k_stride`/`v_stride` apart.
pub(super) struct DecodeRow<'a> {
    pub q16: &'a [f16],
    /// K and V from this row's KV head on: position `j` at `j * k_stride` / `j * v_stride`.
    pub k: &'a [f16],
    pub v: &'a [f16],
    pub k_stride: usize,
    pub v_stride: usize,
    /// First position of the range (0 for a whole row).
    pub start: usize,
    /// One past the last position of the range.
    pub n_pos: usize,
    pub scale: f32,
}

/// What a range of positions leaves before the division: the largest score (−∞ when the range
/// is empty) and the sum of the weights `exp(s − max)` (0 when empty).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Partial {
    pub max: f32,
    pub sum: f32,
}

impl Partial {
    const EMPTY: Partial = Partial { max: f32::NEG_INFINITY, sum: 0.0 };
}

/// `o *= 1/sum` (`o = 0` when the sum is 0), as ggml scales the row at the end.
pub(super) fn normalize(sum: f32, o: &mut [f32]) {
    let inv = if sum == 0.0 { 0.0 } else { 1.0 / sum };
    o.iter_mut().for_each(|x| *x *= inv);
}

/// Merge the partials of consecutive ranges of one row, in order, into `o = softmax·V`: ggml's
/// `reduce_partials`. Empty ranges (sum 0) are skipped; for each other one `m = max(M, m_c)`,
/// `a = exp(M − m)`, `b = exp(m_c − m)`, `VKQ = VKQ·a + vkq_c·b`, `S = S·a + s_c·b` (each the
/// product by `b` rounded first, then one FMA where the CPU path has FMA, as GCC contracts it);
/// finally `VKQ · (1/S)`. `vkq`: `[parts.len()][o.len()]`, each range's unnormalized sum.
pub(super) fn combine_partials(parts: &[Partial], vkq: &[f32], o: &mut [f32]) {
    let fma = crate::cpu::path::active() != crate::cpu::path::CpuPath::Scalar;
    let (mut max, mut sum) = (f32::NEG_INFINITY, 0f32);
    o.iter_mut().for_each(|x| *x = 0.0);
    for (p, v) in parts.iter().zip(vkq.chunks_exact(o.len())) {
        if p.sum == 0.0 {
            continue;
        }
        let m = max.max(p.max);
        let (a, b) = ((max - m).exp(), (p.max - m).exp());
        for (x, y) in o.iter_mut().zip(v) {
            *x = if fma { x.mul_add(a, y * b) } else { *x * a + y * b };
        }
        sum = if fma { sum.mul_add(a, p.sum * b) } else { sum * a + p.sum * b };
        max = m;
    }
    if sum != 0.0 {
        let inv = 1.0 / sum;
        o.iter_mut().for_each(|x| *x *= inv);
    }
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
    let p = decode_row_partial(r, o);
    normalize(p.sum, o);
}

/// [`decode_row`] without the division: `o` gets the weighted V sum (f16 values).
pub(super) fn decode_row_partial(r: &DecodeRow<'_>, o: &mut [f32]) -> Partial {
    #[cfg(target_arch = "x86_64")]
    {
        let dk = r.q16.len();
        assert!(fused_row_available(dk, o.len()), "decode_row: unsupported head size or CPU path");
        if r.start >= r.n_pos {
            o.iter_mut().for_each(|x| *x = 0.0);
            return Partial::EMPTY;
        }
        assert!(r.k.len() >= (r.n_pos - 1) * r.k_stride + dk, "decode_row: short K");
        assert!(r.v.len() >= (r.n_pos - 1) * r.v_stride + o.len(), "decode_row: short V");
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
    let p = portable_row_partial(r, o);
    normalize(p.sum, o);
}

/// [`portable_row`] without the division: `o` gets the weighted V sum (f16 values).
pub(super) fn portable_row_partial(r: &DecodeRow<'_>, o: &mut [f32]) -> Partial {
    let (dk, dv) = (r.q16.len(), o.len());
    let fma = crate::cpu::path::active() != crate::cpu::path::CpuPath::Scalar;
    let mut acc = vec![f16::ZERO; dv];
    let (mut max, mut sum) = (f32::NEG_INFINITY, 0f32);
    for j in r.start..r.n_pos {
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
    for (d, a) in o.iter_mut().zip(&acc) {
        *d = a.to_f32();
    }
    Partial { max, sum }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{DecodeRow, Partial, MAX_DV};

    /// f32 lanes → nearest f16 → f32: what storing to and reloading from an f16 vector gives.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn round_f16(v: __m512) -> __m512 {
        _mm512_cvtph_ps(_mm512_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(v))
    }

    #[target_feature(enable = "avx512f,fma")]
    pub(super) unsafe fn decode_row_avx512(r: &DecodeRow<'_>, o: &mut [f32]) -> Partial {
        let (dk, dv) = (r.q16.len(), o.len());
        let (n_blocks, n_vecs) = (dk / 64, dv / 16);
        let q: Vec<__m512> = (0..dk / 16)
            .map(|i| _mm512_cvtph_ps(_mm256_loadu_si256(r.q16.as_ptr().add(16 * i).cast())))
            .collect();
        let mut acc = [_mm512_setzero_ps(); MAX_DV / 16];
        let (mut max, mut sum) = (f32::NEG_INFINITY, 0f32);
        for j in r.start..r.n_pos {
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
        for (i, a) in acc[..n_vecs].iter().enumerate() {
            _mm512_storeu_ps(o.as_mut_ptr().add(16 * i), *a);
        }
        Partial { max, sum }
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
                start: 0,
                n_pos,
                scale: 0.125,
            };
            let (mut fused, mut portable) = (vec![0f32; dv], vec![0f32; dv]);
            decode_row(&r, &mut fused);
            portable_row(&r, &mut portable);
            for (d, (a, b)) in fused.iter().zip(&portable).enumerate() {
                assert_eq!(a.to_bits(), b.to_bits(), "dk {dk} dv {dv} n_pos {n_pos} dim {d}: {a} vs {b}");
            }
            // A range from the middle, and an empty one, before the division.
            for start in [n_pos / 2, n_pos] {
                let r = DecodeRow { start, ..r };
                let (pf, pp) = (decode_row_partial(&r, &mut fused), portable_row_partial(&r, &mut portable));
                assert_eq!((pf.max.to_bits(), pf.sum.to_bits()), (pp.max.to_bits(), pp.sum.to_bits()));
                for (d, (a, b)) in fused.iter().zip(&portable).enumerate() {
                    assert_eq!(a.to_bits(), b.to_bits(), "dk {dk} start {start} dim {d}: {a} vs {b}");
                }
            }
        }
    }

    /// ggml's merge written out plainly for two ranges: the same bits as `combine_partials`, and
    /// an empty range changes nothing.
    #[test]
    fn combining_two_ranges_is_ggml_merge() {
        let mut rng = Rng::new(5);
        let (dv, n_pos, cut) = (24usize, 90usize, 40usize);
        let f16s = |v: Vec<f32>| v.into_iter().map(f16::from_f32).collect::<Vec<f16>>();
        let (k, v, q16) =
            (f16s(rng.vec(n_pos * dv, 3.0)), f16s(rng.vec(n_pos * dv, 3.0)), f16s(rng.vec(dv, 3.0)));
        let row = |start, end| DecodeRow {
            q16: &q16,
            k: &k,
            v: &v,
            k_stride: dv,
            v_stride: dv,
            start,
            n_pos: end,
            scale: 0.2,
        };
        let mut vkq = vec![0f32; 3 * dv];
        let (a, rest) = vkq.split_at_mut(dv);
        let (b, c) = rest.split_at_mut(dv);
        let parts = [
            portable_row_partial(&row(0, cut), a),
            portable_row_partial(&row(n_pos, n_pos), b),
            portable_row_partial(&row(cut, n_pos), c),
        ];
        assert_eq!(parts[1], Partial::EMPTY);
        let mut got = vec![0f32; dv];
        combine_partials(&parts, &vkq, &mut got);
        let fma = crate::cpu::path::active() != crate::cpu::path::CpuPath::Scalar;
        let (p0, p2) = (parts[0], parts[2]);
        let m = p0.max.max(p2.max);
        let (s0, s2) = ((p0.max - m).exp(), (p2.max - m).exp());
        let sum = if fma { p0.sum.mul_add(s0, p2.sum * s2) } else { p0.sum * s0 + p2.sum * s2 };
        for d in 0..dv {
            let (x, y) = (vkq[d], vkq[2 * dv + d]);
            let want = if fma { x.mul_add(s0, y * s2) } else { x * s0 + y * s2 } * (1.0 / sum);
            assert_eq!(got[d].to_bits(), want.to_bits(), "dim {d}: {} vs {want}", got[d]);
        }
    }
}
