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
pub mod scratch;
mod vec_dot_tokens;
pub mod vexp;

pub use matmul::{matmul, matmul_many, matmul_per_row, matmul_with, WeightView};
pub use path::CpuPath;

use std::sync::atomic::{AtomicUsize, Ordering};

/// See [`set_decode_threads`]; 0: not set.
static DECODE_THREADS: AtomicUsize = AtomicUsize::new(0);

/// llama.cpp's thread count for one-token batches (`-t`), where it differs from the pool's size
/// (the pool is sized for the larger of `-t` and `-tb`). 0 unsets it.
pub fn set_decode_threads(n: usize) {
    DECODE_THREADS.store(n, Ordering::Relaxed);
}

/// The threads llama.cpp would compute a one-token batch with: as set by
/// [`set_decode_threads`], else the current rayon pool's size. Some of its kernels cut their work
/// by thread count in a way that changes the result (the split-KV decode attention), so rs-llama
/// cuts it the same way whatever the threads that run it.
pub fn decode_threads() -> usize {
    match DECODE_THREADS.load(Ordering::Relaxed) {
        0 => rayon::current_num_threads(),
        n => n,
    }
}
