//! Widening f16/bf16 → f32, with F16C/AVX2 paths picked at run time. (Both conversions are exact.)

use half::{bf16, f16};

/// `dst[i] = src[i] as f32` over the common length.
pub fn f16_to_f32(src: &[f16], dst: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("f16c") && is_x86_feature_detected!("avx") {
            // SAFETY: features checked just above.
            unsafe { f16_to_f32_f16c(src, dst) };
            return;
        }
    }
    for (d, s) in dst.iter_mut().zip(src) {
        *d = s.to_f32();
    }
}

/// `dst[i] = src[i] as f32` over the common length (bf16 is the top half of an f32).
pub fn bf16_to_f32(src: &[bf16], dst: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx2") {
            // SAFETY: feature checked just above.
            unsafe { bf16_to_f32_avx2(src, dst) };
            return;
        }
    }
    for (d, s) in dst.iter_mut().zip(src) {
        *d = f32::from_bits((s.to_bits() as u32) << 16);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx,f16c")]
unsafe fn f16_to_f32_f16c(src: &[f16], dst: &mut [f32]) {
    use std::arch::x86_64::*;
    let n = src.len().min(dst.len());
    let mut i = 0;
    while i + 8 <= n {
        let h = _mm_loadu_si128(src.as_ptr().add(i).cast());
        _mm256_storeu_ps(dst.as_mut_ptr().add(i), _mm256_cvtph_ps(h));
        i += 8;
    }
    for j in i..n {
        dst[j] = src[j].to_f32();
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn bf16_to_f32_avx2(src: &[bf16], dst: &mut [f32]) {
    use std::arch::x86_64::*;
    let n = src.len().min(dst.len());
    let mut i = 0;
    while i + 8 <= n {
        let h = _mm_loadu_si128(src.as_ptr().add(i).cast());
        let w = _mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16);
        _mm256_storeu_ps(dst.as_mut_ptr().add(i), _mm256_castsi256_ps(w));
        i += 8;
    }
    for j in i..n {
        dst[j] = f32::from_bits((src[j].to_bits() as u32) << 16);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_are_exact_including_specials_and_tails() {
        let bits: Vec<u16> = (0..=u16::MAX).step_by(7).chain([0x7c00, 0xfc00, 0x0001, 0x8000]).collect();
        for n in [bits.len(), 13, 5] {
            let h: Vec<f16> = bits[..n].iter().map(|&b| f16::from_bits(b)).collect();
            let mut out = vec![0f32; n];
            f16_to_f32(&h, &mut out);
            for (a, b) in h.iter().zip(&out) {
                assert!(a.to_f32().to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()));
            }
            let bh: Vec<bf16> = bits[..n].iter().map(|&b| bf16::from_bits(b)).collect();
            bf16_to_f32(&bh, &mut out);
            for (a, b) in bh.iter().zip(&out) {
                assert!(a.to_f32().to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()));
            }
        }
    }
}
