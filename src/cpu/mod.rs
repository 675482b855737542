//! CPU kernels: the matmul of f32 activations with f32/f16/bf16 weights, and the dot products under
//! it. SIMD paths are chosen at run time (`is_x86_feature_detected!`) with a scalar fallback.
//! Threads come from the global rayon pool (its size is set by the CLI from `-t`).

pub mod convert;
pub mod dot;
pub mod matmul;

pub use matmul::{matmul, WeightView};
