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
pub mod lora;
pub mod perf;
pub mod run;
pub mod threads;
pub mod utf8;

pub use args::RunConfig;
pub use run::main_with_args;

/// The process's arguments after the program name, as text. `std::env::args` panics on an
/// argument that is not UTF-8; here such an argument is read lossily instead (each invalid byte
/// sequence becomes U+FFFD), so that no command line can make a binary panic. A prompt given this
/// way is tokenized as that text, as `-f` already reads a file that is not UTF-8.
pub fn lossy_args() -> Vec<String> {
    std::env::args_os().skip(1).map(|a| a.to_string_lossy().into_owned()).collect()
}
