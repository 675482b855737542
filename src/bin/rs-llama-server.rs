//! rs-llama-server: llama-server's HTTP API (native and OpenAI-compatible).

fn main() {
    let args = rs_llama::cli::lossy_args();
    std::process::exit(rs_llama::server::main_with_args("rs-llama-server", &args));
}
