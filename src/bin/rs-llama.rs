//! rs-llama: text completion with llama-completion's command line.

fn main() {
    eprintln!("rs-llama: not implemented yet");
    std::process::exit(1);
}
