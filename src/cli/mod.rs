//! The `rs-llama` command: llama-completion's command line and behaviour (text completion, and
//! interactive and conversation mode through [`interactive`] and [`crate::chat`]).
//!
//! [`flags`] is the one table of flags; [`args`] turns argv into a typed [`args::RunConfig`];
//! [`run`] loads the model and drives [`completion`]'s loop over the [`engine`] traits; [`perf`]
//! formats llama.cpp's timing block; [`log`] routes text to stdout and logs to stderr; [`device`]
//! sets up the device and the hybrid executor (`-dev sim`, `--policy`, `--trace`).

pub mod args;
pub mod completion;
pub mod device;
pub mod engine;
pub mod flags;
pub mod interactive;
pub mod interrupt;
pub mod log;
pub mod perf;
pub mod run;
pub mod threads;
pub mod utf8;

pub use args::RunConfig;
pub use run::main_with_args;
