//! `rs-llama-gguf info`. (To be written.)

#[derive(clap::Args)]
pub struct Args {
    /// Input or output file.
    file: Option<std::path::PathBuf>,
}

pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("info is not implemented yet")
}
