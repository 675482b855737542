//! CPU kernels: the matmul of f32 activations with f32/f16/bf16 weights, and the dot products under
//! it. Three kernel paths (AVX-512, AVX2+FMA+F16C, scalar) are chosen once at run time
//! (`path::active`, overridable with `RS_LLAMA_CPU`). Threads come from the global rayon pool (its
//! size is set by the CLI from `-t`).

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
pub mod convert;
pub mod dot;
mod gemm;
pub mod ggml_dot;
mod ggml_matmul;
pub mod matmul;
pub mod numerics;
pub mod path;
pub mod vexp;

pub use matmul::{matmul, matmul_many, matmul_per_row, matmul_with, WeightView};
pub use path::CpuPath;
