//! Which rounding the engine reproduces. llama.cpp's CPU backend does not keep activations in f32 all
//! the way: before a dot product with f16 (bf16) weights it rounds the activations to f16 (bf16),
//! and its flash attention for small batches keeps Q and the running V sum in f16. Those roundings
//! move SmolLM2-scale logits by up to 0.1, which is more than any other difference between the two
//! engines, so by default rs-llama rounds at the same places (`ggml`). `RS_LLAMA_NUMERICS=f32`
//! keeps activations in f32 everywhere instead (closer to the exact result, further from llama.cpp).
//!
//! Also here: the f16 vector helpers that the ggml-style attention needs (`y = f16(y·s)`,
//! `y = f16(y + x·s)`), with one F16C+FMA implementation and a scalar one that round identically.

use std::sync::OnceLock;

use half::{bf16, f16};

/// Environment variable that picks the numerics (`ggml` or `f32`).
pub const NUMERICS_ENV: &str = "RS_LLAMA_NUMERICS";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Numerics {
    /// Round where llama.cpp's CPU backend rounds (the default).
    Ggml,
    /// Activations stay f32 (weights and the KV cache are still f16/bf16 as stored).
    F32,
}

impl Numerics {
    pub fn parse(s: &str) -> Option<Numerics> {
        match s.trim().to_ascii_lowercase().as_str() {
            "ggml" => Some(Numerics::Ggml),
            "f32" => Some(Numerics::F32),
            _ => None,
        }
    }
}

static ACTIVE: OnceLock<Numerics> = OnceLock::new();

/// The numerics of this process (read once from [`NUMERICS_ENV`]).
pub fn active() -> Numerics {
    *ACTIVE.get_or_init(|| match std::env::var(NUMERICS_ENV) {
        Ok(v) => Numerics::parse(&v).unwrap_or_else(|| {
            eprintln!("warning: {NUMERICS_ENV}={v:?} is not one of ggml, f32; using ggml");
            Numerics::Ggml
        }),
        Err(_) => Numerics::Ggml,
    })
}

/// `x[i] = f32(f16(x[i]))`, round to nearest even (what F16C's `vcvtps2ph` with imm 0 does).
pub fn round_to_f16(x: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if f16c_fma() {
            // SAFETY: features checked just above.
            unsafe { round_to_f16_f16c(x) };
            return;
        }
    }
    for v in x {
        *v = f16::from_f32(*v).to_f32();
    }
}

/// `x[i] = f32(bf16(x[i]))`, round to nearest even (NaN stays NaN), as ggml's f32 → bf16.
pub fn round_to_bf16(x: &mut [f32]) {
    for v in x {
        *v = bf16::from_f32(*v).to_f32();
    }
}

/// `y[i] = f16(f32(y[i]) · s)`.
pub fn scale_f16(y: &mut [f16], s: f32) {
    #[cfg(target_arch = "x86_64")]
    {
        if f16c_fma() {
            // SAFETY: features checked just above.
            unsafe { scale_f16_simd(y, s) };
            return;
        }
    }
    for v in y {
        *v = f16::from_f32(v.to_f32() * s);
    }
}

/// `y[i] = f16(fma(f32(x[i]), s, f32(y[i])))` over the common length.
pub fn mad_f16(y: &mut [f16], x: &[f16], s: f32) {
    #[cfg(target_arch = "x86_64")]
    {
        if f16c_fma() {
            // SAFETY: features checked just above.
            unsafe { mad_f16_simd(y, x, s) };
            return;
        }
    }
    for (a, b) in y.iter_mut().zip(x) {
        *a = f16::from_f32(b.to_f32().mul_add(s, a.to_f32()));
    }
}

#[cfg(target_arch = "x86_64")]
fn f16c_fma() -> bool {
    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("f16c") && is_x86_feature_detected!("fma")
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,f16c")]
unsafe fn round_to_f16_f16c(x: &mut [f32]) {
    use std::arch::x86_64::*;
    let mut chunks = x.chunks_exact_mut(8);
    for c in &mut chunks {
        let v = _mm256_loadu_ps(c.as_ptr());
        let h = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(v);
        _mm256_storeu_ps(c.as_mut_ptr(), _mm256_cvtph_ps(h));
    }
    for v in chunks.into_remainder() {
        *v = f16::from_f32(*v).to_f32();
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,f16c")]
unsafe fn scale_f16_simd(y: &mut [f16], s: f32) {
    use std::arch::x86_64::*;
    let vs = _mm256_set1_ps(s);
    let mut chunks = y.chunks_exact_mut(8);
    for c in &mut chunks {
        let p = c.as_mut_ptr().cast::<__m128i>();
        let v = _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128(p)), vs);
        _mm_storeu_si128(p, _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(v));
    }
    for v in chunks.into_remainder() {
        *v = f16::from_f32(v.to_f32() * s);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,f16c,fma")]
unsafe fn mad_f16_simd(y: &mut [f16], x: &[f16], s: f32) {
    use std::arch::x86_64::*;
    let n = y.len().min(x.len());
    let (y, x) = (&mut y[..n], &x[..n]);
    let vs = _mm256_set1_ps(s);
    let mut i = 0;
    while i + 8 <= n {
        let py = y.as_mut_ptr().add(i).cast::<__m128i>();
        let vx = _mm256_cvtph_ps(_mm_loadu_si128(x.as_ptr().add(i).cast()));
        let v = _mm256_fmadd_ps(vx, vs, _mm256_cvtph_ps(_mm_loadu_si128(py)));
        _mm_storeu_si128(py, _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(v));
        i += 8;
    }
    for j in i..n {
        y[j] = f16::from_f32(x[j].to_f32().mul_add(s, y[j].to_f32()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> Vec<f32> {
        let mut s = 0x2545_f491_4f6c_dd1du64;
        (0..203)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 7.0
            })
            .collect()
    }

    #[test]
    fn rounding_equals_the_half_crate_round_to_nearest_even() {
        let x = values();
        let mut r = x.clone();
        round_to_f16(&mut r);
        for (a, b) in x.iter().zip(&r) {
            assert_eq!(f16::from_f32(*a).to_f32().to_bits(), b.to_bits());
        }
        // A tie: 1 + 2^-11 lies halfway between two f16 values and must go to the even one (1.0).
        let mut tie = [1.0 + 2f32.powi(-11); 9];
        round_to_f16(&mut tie);
        assert_eq!(tie, [1.0; 9]);
        let mut rb = x.clone();
        round_to_bf16(&mut rb);
        for (a, b) in x.iter().zip(&rb) {
            assert_eq!(bf16::from_f32(*a).to_f32().to_bits(), b.to_bits());
            assert!((a - b).abs() <= a.abs() * 2f32.powi(-8));
        }
    }

    #[test]
    fn f16_vector_ops_round_each_element_like_the_f64_reference() {
        let x: Vec<f16> = values().into_iter().map(f16::from_f32).collect();
        let y0: Vec<f16> = values().into_iter().rev().map(f16::from_f32).collect();
        let s = 0.377f32;
        let mut y = y0.clone();
        mad_f16(&mut y, &x, s);
        for ((got, a), b) in y.iter().zip(&y0).zip(&x) {
            // One fused multiply-add is exact before its single rounding, so f64 gives the same f32.
            let want = f16::from_f32((b.to_f64() * s as f64 + a.to_f64()) as f32);
            assert_eq!(got.to_bits(), want.to_bits());
        }
        let mut z = y0.clone();
        scale_f16(&mut z, s);
        for (got, a) in z.iter().zip(&y0) {
            assert_eq!(got.to_bits(), f16::from_f32(a.to_f32() * s).to_bits());
        }
        assert_eq!(Numerics::parse(" F32 "), Some(Numerics::F32));
        assert_eq!(Numerics::parse("exact"), None);
    }
}
