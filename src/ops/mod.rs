//! Each op of the llama family once, on the CPU: RMSNorm, RoPE, attention over the f16 KV cache,
//! SwiGLU, MoE routing and the linear layer. Buffers are row-major `[n_tokens][width]` f32.
//! Every op has a unit test against a naive f64 implementation on seeded random inputs.

pub mod attention;
mod attention_decode;
pub mod attention_tile_kernels;
pub mod attention_tiled;
pub mod ffn;
pub mod matmul;
pub mod moe;
pub mod rmsnorm;
pub mod rope;

#[cfg(test)]
pub(crate) mod test_rng;
