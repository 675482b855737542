//! rs-llama-server: llama-server's HTTP API (native and OpenAI-compatible) over slots that a
//! scheduler batches into one forward per step.

pub mod api;
pub mod scheduler;
pub mod slot;
