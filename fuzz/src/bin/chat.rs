//! Chat templates: Jinja and built-in rendering (`rs_llama::chat::fuzz_render`).
fn main() {
    afl::fuzz!(|data: &[u8]| rs_llama::chat::fuzz_render(data));
}
