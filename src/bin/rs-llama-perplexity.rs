//! rs-llama-perplexity: perplexity and KL divergence with llama-perplexity's command line.

fn main() {
    let args = rs_llama::cli::lossy_args();
    std::process::exit(rs_llama::perplexity::cli::main_with_args(&args));
}
