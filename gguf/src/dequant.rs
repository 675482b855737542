//! Dequantization of ggml block formats into f32 (and from there f16/bf16).
//! (Q8_0, Q4_0, Q4_1 and the K-quants: filled in by the gguf issue work.)

use crate::dtype::DType;
use crate::error::{GgufError, Result};
use half::{bf16, f16};

/// Convert `bytes` holding `n` elements of `dtype` to f32.
pub fn to_f32(dtype: DType, bytes: &[u8], n: usize) -> Result<Vec<f32>> {
    let need = dtype
        .bytes_for(n as u64)
        .ok_or_else(|| GgufError::Unsupported(format!("{n} elements is not whole {dtype} blocks")))?;
    if need != bytes.len() as u64 {
        return Err(GgufError::Unsupported(format!("{} bytes for {n} {dtype} elements", bytes.len())));
    }
    match dtype {
        DType::F32 => {
            Ok(bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
        }
        DType::F16 => Ok(bytes.chunks_exact(2).map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32()).collect()),
        DType::BF16 => {
            Ok(bytes.chunks_exact(2).map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect())
        }
        other => Err(GgufError::Unsupported(format!("dequantization of {other} is not supported"))),
    }
}
