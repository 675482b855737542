//! rs-llama-perplexity: perplexity and KL divergence with llama-perplexity's command line.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(rs_llama::perplexity::cli::main_with_args(&args));
}
