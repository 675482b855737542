//! `rs-llama-gguf convert`. (To be written.)

#[derive(clap::Args)]
pub struct Args {
    /// Input or output file.
    file: Option<std::path::PathBuf>,
}

pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("convert is not implemented yet")
}
