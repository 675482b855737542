//! rs-llama-server: llama-server's HTTP API (native and OpenAI-compatible) over slots that a
//! scheduler batches into one forward per step.
//!
//! [`args`] reads the command line and `LLAMA_ARG_*`; [`http`] answers requests in front of a
//! [`http::Backend`]; [`scheduler`] runs the slots, [`prompt_cache`] keeps their
//! KV in host memory (`--cache-ram`); [`run`] binds, loads the model in the background, serves and shuts down.

pub mod api;
pub mod args;
pub mod args_embed;
pub mod args_lora;
pub mod args_ui;
pub mod embed;
pub mod http;
pub mod lora;
pub mod prompt_cache;
pub mod run;
pub mod scheduler;
pub mod slot;
pub mod slot_file;

pub use run::main_with_args;
