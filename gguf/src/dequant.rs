//! Dequantization of ggml block formats into f32, and f32 into f16/bf16 bits rounded exactly as ggml
//! rounds them.
//!
//! Each block decoder does its arithmetic in the same order as ggml's reference C code (which is built
//! without FMA contraction), so the f32 results are bit-identical; converting them to f16 then gives the
//! same bytes as `llama-quantize`.

use crate::dtype::DType;
use crate::error::{GgufError, Result};
use half::{bf16, f16};

/// Elements per K-quant super-block (ggml's QK_K).
const QK_K: usize = 256;

/// Whether [`dequantize_into`] can decode this type.
pub fn supports(dtype: DType) -> bool {
    block_decoder(dtype).is_some() || matches!(dtype, DType::F32 | DType::F16 | DType::BF16)
}

/// Convert `bytes` holding `n` elements of `dtype` to f32.
pub fn to_f32(dtype: DType, bytes: &[u8], n: usize) -> Result<Vec<f32>> {
    // Check before allocating: `n` may come from a file.
    check_len(dtype, bytes, n)?;
    let mut out = vec![0f32; n];
    dequantize_into(dtype, bytes, &mut out)?;
    Ok(out)
}

fn check_len(dtype: DType, bytes: &[u8], n: usize) -> Result<()> {
    let need = dtype.bytes_for(n as u64).ok_or_else(|| {
        GgufError::Unsupported(format!("{n} elements is not a whole number of {dtype} blocks"))
    })?;
    if need != bytes.len() as u64 {
        return Err(GgufError::Unsupported(format!(
            "{} bytes given for {n} {dtype} elements ({need} needed)",
            bytes.len()
        )));
    }
    Ok(())
}

/// Decode `bytes` (whole blocks of `dtype`) into `out`, which must hold exactly their element count.
pub fn dequantize_into(dtype: DType, bytes: &[u8], out: &mut [f32]) -> Result<()> {
    check_len(dtype, bytes, out.len())?;
    match dtype {
        DType::F32 => {
            for (y, c) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                *y = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
        DType::F16 => {
            for (y, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *y = f16::from_le_bytes([c[0], c[1]]).to_f32();
            }
        }
        DType::BF16 => {
            for (y, c) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *y = bf16::from_le_bytes([c[0], c[1]]).to_f32();
            }
        }
        other => {
            let decode = block_decoder(other).ok_or_else(|| {
                GgufError::Unsupported(format!("dequantization of {other} is not supported"))
            })?;
            let block_bytes = other.block_bytes() as usize;
            let block_elems = other.block_elems() as usize;
            for (block, y) in bytes.chunks_exact(block_bytes).zip(out.chunks_exact_mut(block_elems)) {
                decode(block, y);
            }
        }
    }
    Ok(())
}

/// f32 to IEEE half bits, rounding to nearest even like ggml's `GGML_FP32_TO_FP16`: overflow gives
/// ±inf, and every NaN becomes the quiet NaN `0x7e00` with its sign kept.
pub fn f32_to_f16_bits(x: f32) -> u16 {
    let bits = x.to_bits();
    if bits & 0x7fff_ffff > 0x7f80_0000 {
        return ((bits >> 16) as u16 & 0x8000) | 0x7e00;
    }
    // `half` rounds to nearest even (in software or with F16C); the tests check it against numpy.
    f16::from_f32(x).to_bits()
}

/// f32 to bfloat16 bits like ggml's `ggml_compute_fp32_to_bf16`: round to nearest even on the raw bits
/// (so large finite values may round up to ±inf), and a NaN keeps its top bits with the quiet bit set.
pub fn f32_to_bf16_bits(x: f32) -> u16 {
    let bits = x.to_bits();
    if bits & 0x7fff_ffff > 0x7f80_0000 {
        return ((bits >> 16) as u16) | 0x40;
    }
    let rounding = 0x7fff + ((bits >> 16) & 1);
    // Non-NaN inputs are at most 0xff80_0000, so this cannot wrap.
    (bits.wrapping_add(rounding) >> 16) as u16
}

/// Append `src` as little-endian f16.
pub fn encode_f16(src: &[f32], dst: &mut Vec<u8>) {
    dst.reserve(src.len() * 2);
    for &x in src {
        dst.extend_from_slice(&f32_to_f16_bits(x).to_le_bytes());
    }
}

/// Append `src` as little-endian bf16.
pub fn encode_bf16(src: &[f32], dst: &mut Vec<u8>) {
    dst.reserve(src.len() * 2);
    for &x in src {
        dst.extend_from_slice(&f32_to_bf16_bits(x).to_le_bytes());
    }
}

/// Convert `bytes` holding `n` elements of `dtype` to f16 (via f32, as ggml does).
pub fn to_f16(dtype: DType, bytes: &[u8], n: usize) -> Result<Vec<f16>> {
    Ok(to_f32(dtype, bytes, n)?.into_iter().map(|x| f16::from_bits(f32_to_f16_bits(x))).collect())
}

/// Convert `bytes` holding `n` elements of `dtype` to bf16 (via f32, as ggml does).
pub fn to_bf16(dtype: DType, bytes: &[u8], n: usize) -> Result<Vec<bf16>> {
    Ok(to_f32(dtype, bytes, n)?.into_iter().map(|x| bf16::from_bits(f32_to_bf16_bits(x))).collect())
}

/// Decodes one block: `block` has exactly `block_bytes` bytes, `y` exactly `block_elems` values.
type BlockDecoder = fn(&[u8], &mut [f32]);

fn block_decoder(dtype: DType) -> Option<BlockDecoder> {
    Some(match dtype {
        DType::Q4_0 => q4_0,
        DType::Q4_1 => q4_1,
        DType::Q5_0 => q5_0,
        DType::Q5_1 => q5_1,
        DType::Q8_0 => q8_0,
        DType::MXFP4 => mxfp4,
        DType::Q2K => q2_k,
        DType::Q3K => q3_k,
        DType::Q4K => q4_k,
        DType::Q5K => q5_k,
        DType::Q6K => q6_k,
        DType::Q8K => q8_k,
        _ => return None,
    })
}

fn half_at(b: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
}

// ---- 32-element blocks -----------------------------------------------------------------------
// Layouts: Q4_0 = d | qs[16]; Q4_1 = d m | qs[16]; Q5_0 = d | qh[4] qs[16]; Q5_1 = d m | qh[4] qs[16];
// Q8_0 = d | qs[32] (i8). Nibble j of byte i: the low nibble is element i, the high one element i+16.

fn q4_0(b: &[u8], y: &mut [f32]) {
    let d = half_at(b, 0);
    let qs = &b[2..18];
    for (i, &q) in qs.iter().enumerate() {
        y[i] = ((q & 0x0f) as i32 - 8) as f32 * d;
        y[i + 16] = ((q >> 4) as i32 - 8) as f32 * d;
    }
}

fn q4_1(b: &[u8], y: &mut [f32]) {
    let (d, m) = (half_at(b, 0), half_at(b, 2));
    let qs = &b[4..20];
    for (i, &q) in qs.iter().enumerate() {
        y[i] = (q & 0x0f) as f32 * d + m;
        y[i + 16] = (q >> 4) as f32 * d + m;
    }
}

/// The 5-bit values of a Q5 block: low nibbles from `qs`, fifth bits from the 32-bit mask `qh`.
fn five_bit(qh: u32, qs: &[u8], i: usize) -> (u8, u8) {
    let high_lo = (((qh >> i) & 1) << 4) as u8;
    let high_hi = (((qh >> (i + 16)) & 1) << 4) as u8;
    ((qs[i] & 0x0f) | high_lo, (qs[i] >> 4) | high_hi)
}

fn q5_0(b: &[u8], y: &mut [f32]) {
    let d = half_at(b, 0);
    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
    let qs = &b[6..22];
    for i in 0..16 {
        let (lo, hi) = five_bit(qh, qs, i);
        y[i] = (lo as i32 - 16) as f32 * d;
        y[i + 16] = (hi as i32 - 16) as f32 * d;
    }
}

fn q5_1(b: &[u8], y: &mut [f32]) {
    let (d, m) = (half_at(b, 0), half_at(b, 2));
    let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    let qs = &b[8..24];
    for i in 0..16 {
        let (lo, hi) = five_bit(qh, qs, i);
        y[i] = lo as f32 * d + m;
        y[i + 16] = hi as f32 * d + m;
    }
}

fn q8_0(b: &[u8], y: &mut [f32]) {
    let d = half_at(b, 0);
    for (out, &q) in y.iter_mut().zip(&b[2..34]) {
        *out = (q as i8) as f32 * d;
    }
}

/// MXFP4 = e (E8M0 scale) | qs[16] (E2M1 codes): element = code value · 2^(e − 127). ggml keeps
/// the codes doubled (`0, 1, 2, 3, 4, 6, 8, 12` and their negatives) and halves the scale; every
/// value is exact in f32 and in bf16.
fn mxfp4(b: &[u8], y: &mut [f32]) {
    const CODES: [i8; 16] = [0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12];
    let e = b[0];
    let half_scale = f32::from_bits(if e < 2 { 0x0020_0000 << e } else { u32::from(e - 1) << 23 });
    let (lo, hi) = y.split_at_mut(16);
    for ((l, h), &q) in lo.iter_mut().zip(hi).zip(&b[1..17]) {
        *l = f32::from(CODES[(q & 0x0f) as usize]) * half_scale;
        *h = f32::from(CODES[(q >> 4) as usize]) * half_scale;
    }
}

// ---- 256-element K-quant super-blocks ----------------------------------------------------------

/// Q2_K = scales[16] (4-bit scale | 4-bit min) | qs[64] (2-bit) | d | dmin.
/// Each 128-element half reads 32 bytes of `qs` four times, two bits at a time; each run of 16
/// elements has its own scale byte.
fn q2_k(b: &[u8], y: &mut [f32]) {
    let scales = &b[0..16];
    let (d, dmin) = (half_at(b, 80), half_at(b, 82));
    let mut out = 0;
    for half in 0..2 {
        let qs = &b[16 + 32 * half..16 + 32 * (half + 1)];
        for shift in [0, 2, 4, 6] {
            for run in 0..2 {
                let sc = scales[half * 8 + shift + run];
                let dl = d * (sc & 0x0f) as f32;
                let ml = dmin * (sc >> 4) as f32;
                for &q in &qs[16 * run..16 * run + 16] {
                    y[out] = dl * ((q >> shift) & 3) as f32 - ml;
                    out += 1;
                }
            }
        }
    }
}

/// The sixteen signed 6-bit scales of Q3_K: low four bits from bytes 0..8 (low nibble for scales 0..8,
/// high nibble for 8..16), top two bits from bytes 8..12.
fn q3_k_scales(packed: &[u8]) -> [i32; 16] {
    let mut scales = [0i32; 16];
    for (i, s) in scales.iter_mut().enumerate() {
        let low = if i < 8 { packed[i] & 0x0f } else { packed[i - 8] >> 4 };
        let high = (packed[8 + i % 4] >> (2 * (i / 4))) & 3;
        *s = (low | (high << 4)) as i32 - 32;
    }
    scales
}

/// Q3_K = hmask[32] | qs[64] (low 2 bits) | scales[12] | d. A clear hmask bit subtracts 4.
fn q3_k(b: &[u8], y: &mut [f32]) {
    let hmask = &b[0..32];
    let scales = q3_k_scales(&b[96..108]);
    let d = half_at(b, 108);
    let mut out = 0;
    let mut mask_bit = 1u8;
    for half in 0..2 {
        let qs = &b[32 + 32 * half..32 + 32 * (half + 1)];
        for shift in [0, 2, 4, 6] {
            for run in 0..2 {
                let dl = d * scales[half * 8 + shift + run] as f32;
                for l in 16 * run..16 * run + 16 {
                    let low = ((qs[l] >> shift) & 3) as i32;
                    let sub = if hmask[l] & mask_bit != 0 { 0 } else { 4 };
                    y[out] = dl * (low - sub) as f32;
                    out += 1;
                }
            }
            mask_bit = mask_bit.wrapping_shl(1);
        }
    }
}

/// Scale and min number `j` (0..8) of the 12 packed bytes of Q4_K/Q5_K (6 bits each).
fn k4_scale_min(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    }
}

/// Q4_K = d | dmin | scales[12] | qs[128]; each 64 elements use 32 bytes (low nibbles, then high).
fn q4_k(b: &[u8], y: &mut [f32]) {
    let (d, dmin) = (half_at(b, 0), half_at(b, 2));
    let scales = &b[4..16];
    for chunk in 0..QK_K / 64 {
        let qs = &b[16 + 32 * chunk..16 + 32 * (chunk + 1)];
        let (sc1, m1) = k4_scale_min(2 * chunk, scales);
        let (sc2, m2) = k4_scale_min(2 * chunk + 1, scales);
        let (d1, min1) = (d * sc1 as f32, dmin * m1 as f32);
        let (d2, min2) = (d * sc2 as f32, dmin * m2 as f32);
        let y = &mut y[64 * chunk..64 * (chunk + 1)];
        for (l, &q) in qs.iter().enumerate() {
            y[l] = d1 * (q & 0x0f) as f32 - min1;
            y[l + 32] = d2 * (q >> 4) as f32 - min2;
        }
    }
}

/// Q5_K = d | dmin | scales[12] | qh[32] | qs[128]; like Q4_K with a fifth bit from `qh`, two bit
/// planes per 64 elements.
fn q5_k(b: &[u8], y: &mut [f32]) {
    let (d, dmin) = (half_at(b, 0), half_at(b, 2));
    let scales = &b[4..16];
    let qh = &b[16..48];
    for chunk in 0..QK_K / 64 {
        let qs = &b[48 + 32 * chunk..48 + 32 * (chunk + 1)];
        let (sc1, m1) = k4_scale_min(2 * chunk, scales);
        let (sc2, m2) = k4_scale_min(2 * chunk + 1, scales);
        let (d1, min1) = (d * sc1 as f32, dmin * m1 as f32);
        let (d2, min2) = (d * sc2 as f32, dmin * m2 as f32);
        let (bit1, bit2) = (1u8 << (2 * chunk), 1u8 << (2 * chunk + 1));
        let y = &mut y[64 * chunk..64 * (chunk + 1)];
        for (l, &q) in qs.iter().enumerate() {
            let h1 = if qh[l] & bit1 != 0 { 16 } else { 0 };
            let h2 = if qh[l] & bit2 != 0 { 16 } else { 0 };
            y[l] = d1 * ((q & 0x0f) + h1) as f32 - min1;
            y[l + 32] = d2 * ((q >> 4) + h2) as f32 - min2;
        }
    }
}

/// Q6_K = ql[128] (low 4 bits) | qh[64] (high 2 bits) | scales[16] (i8) | d.
fn q6_k(b: &[u8], y: &mut [f32]) {
    let d = half_at(b, 208);
    for half in 0..2 {
        let ql = &b[64 * half..64 * (half + 1)];
        let qh = &b[128 + 32 * half..128 + 32 * (half + 1)];
        let sc = &b[192 + 8 * half..192 + 8 * (half + 1)];
        let y = &mut y[128 * half..128 * (half + 1)];
        for l in 0..32 {
            let is = l / 16;
            let q1 = ((ql[l] & 0x0f) | ((qh[l] & 3) << 4)) as i32 - 32;
            let q2 = ((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
            let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
            let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
            // (d * scale) * q, in this order, as ggml computes it.
            y[l] = d * (sc[is] as i8) as f32 * q1 as f32;
            y[l + 32] = d * (sc[is + 2] as i8) as f32 * q2 as f32;
            y[l + 64] = d * (sc[is + 4] as i8) as f32 * q3 as f32;
            y[l + 96] = d * (sc[is + 6] as i8) as f32 * q4 as f32;
        }
    }
}

/// Q8_K = d (f32) | qs[256] (i8) | bsums[16] (i16, only used by dot products).
fn q8_k(b: &[u8], y: &mut [f32]) {
    let d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    for (out, &q) in y.iter_mut().zip(&b[4..4 + QK_K]) {
        *out = d * (q as i8) as f32;
    }
}

#[cfg(test)]
mod tests {
    /// MXFP4 against the OCP spec's arithmetic in f64: E2M1 values times 2^(e − 127), including
    /// the denormal scales (e = 0, 1) and a large one.
    #[test]
    fn mxfp4_blocks_decode_to_e2m1_times_the_e8m0_scale() {
        const E2M1: [f64; 8] = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0];
        for e in [0u8, 1, 2, 100, 127, 130, 200] {
            let mut block = vec![e];
            block.extend((0..16u8).map(|i| i | ((15 - i) << 4)));
            let y = super::to_f32(crate::dtype::DType::MXFP4, &block, 32).unwrap();
            for (j, &v) in y.iter().enumerate() {
                let code = if j < 16 { j } else { 15 - (j - 16) };
                let mag = E2M1[code & 7] * 2f64.powi(i32::from(e) - 127);
                let want = if code & 8 != 0 { -mag } else { mag };
                assert_eq!(v as f64, want, "e {e} element {j}");
                assert_eq!(half::bf16::from_f32(v).to_f32(), v, "bf16 holds it exactly");
            }
        }
    }

    use super::*;

    #[test]
    fn q8_k_matches_a_naive_decoding() {
        // Q8_K is not in gguf-py; check it against the format's definition with f64 arithmetic.
        let mut block = vec![0u8; 292];
        block[0..4].copy_from_slice(&0.37f32.to_le_bytes());
        for (i, b) in block[4..260].iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(37).wrapping_add(11);
        }
        let y = to_f32(DType::Q8K, &block, 256).unwrap();
        for (i, v) in y.iter().enumerate() {
            let q = (i as u8).wrapping_mul(37).wrapping_add(11) as i8;
            assert_eq!(*v as f64, (0.37f32 as f64 * q as f64) as f32 as f64);
        }
    }

    #[test]
    fn wrong_sizes_are_errors() {
        assert!(to_f32(DType::Q4_0, &[0u8; 17], 32).is_err());
        assert!(to_f32(DType::Q4_0, &[0u8; 18], 31).is_err());
        assert!(to_f32(DType::IQ2XXS, &[0u8; 66], 256).is_err());
        assert!(!supports(DType::IQ2XXS) && supports(DType::Q6K));
    }

    #[test]
    fn bf16_nan_is_quieted_and_ties_go_to_even() {
        assert_eq!(f32_to_bf16_bits(f32::from_bits(0x7f80_0001)), 0x7fc0);
        assert_eq!(f32_to_bf16_bits(f32::from_bits(0x3f80_8000)), 0x3f80); // tie, even stays
        assert_eq!(f32_to_bf16_bits(f32::from_bits(0x3f81_8000)), 0x3f82); // tie, odd rounds up
        assert_eq!(f32_to_f16_bits(f32::from_bits(0xff80_0001)), 0xfe00);
    }
}
