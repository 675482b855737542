//! rs-llama: text completion with llama-completion's command line.

fn main() {
    let args = rs_llama::cli::lossy_args();
    std::process::exit(rs_llama::cli::main_with_args("rs-llama", &args));
}
