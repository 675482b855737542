//! rs-llama: text completion with llama-completion's command line.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(rs_llama::cli::main_with_args("rs-llama", &args));
}
