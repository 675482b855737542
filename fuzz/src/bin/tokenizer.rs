//! Tokenizers: byte 0 picks a vocab, the rest is encoded and decoded (`rs_llama::tokenizer::fuzz_one`).
fn main() {
    afl::fuzz!(|data: &[u8]| rs_llama::tokenizer::fuzz_one(data));
}
