//! Fuzzing entry points (fuzz/ and tests/fuzz_corpus.rs). None of them may panic on any input.

use super::Tokenizer;
use gguf::GgufFile;
use std::path::PathBuf;
use std::sync::OnceLock;

/// The vocab GGUFs the `tokenizer` target picks from (one of each engine and many pre-tokenizers),
/// in tests/fixtures/vocab.
pub const FUZZ_VOCABS: &[&str] = &[
    "ggml-vocab-llama-spm.gguf",
    "ggml-vocab-llama-bpe.gguf",
    "ggml-vocab-bert-bge.gguf",
    "ggml-vocab-ugm-synth.gguf",
    "ggml-vocab-ugm-synth-raw.gguf",
    "ggml-vocab-phi-3.gguf",
    "ggml-vocab-gpt-2.gguf",
    "ggml-vocab-qwen2.gguf",
    "ggml-vocab-deepseek-coder.gguf",
    "ggml-vocab-deepseek-llm.gguf",
    "ggml-vocab-falcon.gguf",
    "ggml-vocab-mpt.gguf",
    "ggml-vocab-refact.gguf",
    "ggml-vocab-starcoder.gguf",
];

/// Where the vocab GGUFs are: `$RS_LLAMA_VOCAB_DIR`, else this checkout's tests/fixtures/vocab.
fn vocab_dir() -> PathBuf {
    match std::env::var_os("RS_LLAMA_VOCAB_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vocab"),
    }
}

/// The tokenizer of `FUZZ_VOCABS[i]`, loaded once; None when the file is missing or refused.
fn vocab(i: usize) -> Option<&'static Tokenizer> {
    static SLOTS: [OnceLock<Option<Tokenizer>>; FUZZ_VOCABS.len()] =
        [const { OnceLock::new() }; FUZZ_VOCABS.len()];
    SLOTS[i]
        .get_or_init(|| {
            let file = GgufFile::open(vocab_dir().join(FUZZ_VOCABS[i])).ok()?;
            Tokenizer::from_gguf(&file).ok()
        })
        .as_ref()
}

/// Run one tokenizer over `text`: encode it with every `add_special`/`parse_special` pair, as bytes
/// and as (lossy) UTF-8, detokenize each result both ways, and the raw input bytes read as token
/// ids (in and out of range).
pub fn fuzz_tokenizer(tok: &Tokenizer, text: &[u8]) {
    let lossy = String::from_utf8_lossy(text);
    for (add_special, parse_special) in [(false, false), (true, false), (false, true), (true, true)] {
        let ids = tok.encode_bytes(text, add_special, parse_special);
        let _ = tok.detokenize_bytes(&ids, false, false);
        let _ = tok.detokenize_bytes(&ids, true, true);
        let ids = tok.encode(&lossy, add_special, parse_special);
        let _ = tok.detokenize(&ids, add_special, parse_special);
    }
    let n = tok.n_vocab().max(1) as u32;
    let raw: Vec<u32> =
        text.chunks(2).map(|c| u32::from(c[0]) << 8 | u32::from(*c.get(1).unwrap_or(&0))).collect();
    let in_range: Vec<u32> = raw.iter().map(|&id| id % n).collect();
    let _ = tok.detokenize_bytes(&in_range, false, false);
    let _ = tok.detokenize_bytes(&in_range, true, true);
    for &id in in_range.iter().take(64) {
        let _ = (tok.token_to_piece(id, true), tok.token_to_piece(id, false), tok.token_text(id));
        let _ = (tok.token_attr(id), tok.is_eog(id));
    }
    // Ids past the vocabulary, as a client may send them.
    let _ = tok.detokenize_bytes(&[n, n + 1, u32::MAX], true, false);
}

/// The `tokenizer` target: byte 0 picks a vocab of [`FUZZ_VOCABS`], the rest is the text.
pub fn fuzz_one(data: &[u8]) {
    let Some((&pick, text)) = data.split_first() else { return };
    if let Some(tok) = vocab(usize::from(pick) % FUZZ_VOCABS.len()) {
        fuzz_tokenizer(tok, text);
    }
}

/// The `gguf` target's second half: a file that parses is loaded as a vocabulary (an `Err` for
/// most), and a tokenizer that loads runs on a fixed text.
pub fn fuzz_from_gguf(file: &GgufFile) {
    if let Ok(tok) = Tokenizer::from_gguf(file) {
        fuzz_tokenizer(&tok, "Hello world! <s></s> <|endoftext|> 123 \u{00e9}\u{4e2d}\t\n".as_bytes());
    }
}
