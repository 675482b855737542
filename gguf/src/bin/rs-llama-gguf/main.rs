//! rs-llama-gguf: inspect, convert and synthesise GGUF files.

mod convert;
mod info;
mod synth;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "rs-llama-gguf", version, about = "Inspect, convert and synthesise GGUF files")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print metadata and the tensor table (like gguf-dump).
    Info(info::Args),
    /// Convert a GGUF file's tensors to f16 or bf16 (like llama-quantize F16|BF16).
    Convert(convert::Args),
    /// Write a seeded synthetic model.
    Synth(synth::Args),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Info(args) => info::run(args),
        Command::Convert(args) => convert::run(args),
        Command::Synth(args) => synth::run(args),
    };
    if let Err(e) = result {
        eprintln!("error: {}", one_line(&format!("{e:#}")));
        std::process::exit(1);
    }
}

/// Error text can quote names read from a file; escape control characters so it stays one line.
fn one_line(message: &str) -> String {
    message
        .chars()
        .flat_map(|c| if c.is_control() { c.escape_default().collect() } else { vec![c] })
        .collect()
}
