//! GGUF reader (`gguf::fuzz_parse`), then the tokenizer loader on what parses.
fn main() {
    afl::fuzz!(|data: &[u8]| {
        if let Some(file) = gguf::fuzz_parse(data) {
            rs_llama::tokenizer::fuzz_from_gguf(&file);
        }
    });
}
