//! Execution of the forward pass: the f16 KV cache and the llama-family layer loop on the CPU.
//! (The hybrid CPU/GPU plan executor will run the same layer tasks over lanes.)

pub mod dump;
pub mod forward;
pub mod kv_cache;
pub mod moe;

pub use forward::{forward, OutputRows};
pub use kv_cache::KvCache;
