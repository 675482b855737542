//! Execution: sessions (a KV cache and a position counter), the layer tasks every lane runs, the
//! CPU forward pass that composes them, and the hybrid executor that runs a plan's steps on the
//! CPU, GPU and copy lanes of a [`device::Device`].
//!
//! - [`tasks`]: one function per sub-layer task over a step's activations; [`forward`]: the CPU
//!   composition (bit-exact with llama.cpp); [`binding`]: task ids → weights;
//! - [`device`]: the device trait, the simulated GPU and (with `cuda`) the CUDA device;
//! - [`lanes`]: lane workers with FIFO queues and fences; [`hybrid`]: a plan's steps on them;
//!   [`hot_experts`]: which experts stay resident follows their measured popularity;
//!   [`trace`]: Chrome trace-event JSON of the lanes;
//! - [`session`], [`engine`]: what callers hold.

pub mod binding;
pub mod device;
pub mod dump;
pub mod engine;
pub mod forward;
pub mod hot_experts;
pub mod hybrid;
pub mod kv_cache;
pub mod lanes;
pub mod row_order;
pub mod session;
pub mod tasks;
pub mod trace;

pub use engine::EngineSession;
pub use forward::{forward, forward_batch, forward_hidden, OutputRows, SeqChunk};
pub use kv_cache::{KvCache, KvSnapshot};
pub use session::Session;

/// Why the executor cannot run a plan.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("plan does not match the model: {0}")]
    PlanMismatch(String),
    #[error("device: {0}")]
    Device(String),
    #[error("{0}")]
    Plan(#[from] crate::plan::PlanError),
}
