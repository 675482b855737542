//! GGUF vocab → tokenizer: SPM (`tokenizer.ggml.model = llama`), byte-level BPE (`gpt2`) with
//! llama.cpp's pre-tokenizers, WordPiece (`bert`) and unigram (`t5`), special tokens,
//! detokenization.
//!
//! The behaviour follows llama.cpp (src/llama-vocab.cpp, src/unicode.cpp) token for token, including
//! its quirks; the test suites in tests/tokenizer_suites.rs hold it to llama.cpp's own vectors.
//! Layout: [`vocab`] reads the tables and special ids, [`special`] cuts a prompt at special tokens,
//! [`spm`] / [`bpe`] (with [`pretokenize`]) / [`wpm`] / [`ugm`] encode plain text, [`detok`] turns
//! tokens back into text.

mod bpe;
mod detok;
pub mod fuzz;
mod pretokenize;
mod regex_split;
mod special;
mod spm;
mod ugm;
mod unicode;
mod unicode_table;
mod vocab;
mod wpm;

use crate::TokenId;
use gguf::GgufFile;
use special::Fragment;
use vocab::{attr, Vocab, VocabKind};

pub use fuzz::{fuzz_from_gguf, fuzz_one, fuzz_tokenizer};

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error(transparent)]
    Gguf(#[from] gguf::GgufError),
    #[error("tokenizer: {0}")]
    Invalid(String),
}

enum Engine {
    Spm(Box<spm::Spm>),
    Bpe(Box<bpe::Bpe>),
    Wpm(wpm::Wpm),
    Ugm(Box<ugm::Ugm>),
}

pub struct Tokenizer {
    vocab: Vocab,
    engine: Engine,
    specials: special::SpecialMatcher,
    /// `[id] → piece` with `special = true`.
    pieces: Vec<Box<[u8]>>,
}

/// Kind of a token, from `tokenizer.ggml.token_type` after llama.cpp's fix-ups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenAttr(u16);

impl TokenAttr {
    pub fn is_normal(self) -> bool {
        self.0 & attr::NORMAL != 0
    }
    pub fn is_control(self) -> bool {
        self.0 & attr::CONTROL != 0
    }
    pub fn is_user_defined(self) -> bool {
        self.0 & attr::USER_DEFINED != 0
    }
    pub fn is_unknown(self) -> bool {
        self.0 & attr::UNKNOWN != 0
    }
    pub fn is_byte(self) -> bool {
        self.0 & attr::BYTE != 0
    }
    pub fn is_unused(self) -> bool {
        self.0 & attr::UNUSED != 0
    }
}

impl Tokenizer {
    /// Build from the `tokenizer.ggml.*` keys of a GGUF file.
    pub fn from_gguf(file: &GgufFile) -> Result<Tokenizer, TokenizerError> {
        let vocab = Vocab::from_gguf(file)?;
        let engine = match vocab.kind {
            VocabKind::Spm => Engine::Spm(Box::new(spm::Spm::new(&vocab))),
            VocabKind::Bpe => Engine::Bpe(Box::new(bpe::Bpe::from_gguf(file, &vocab)?)),
            VocabKind::Wpm => Engine::Wpm(wpm::Wpm::new(&vocab)),
            VocabKind::Ugm => Engine::Ugm(Box::new(ugm::Ugm::from_gguf(file, &vocab)?)),
        };
        let pieces = detok::build_pieces(&vocab);
        let specials = special::SpecialMatcher::new(&vocab);
        Ok(Tokenizer { vocab, engine, specials, pieces })
    }

    /// llama.cpp's `llama_tokenize(text, add_special, parse_special)`: `add_special` adds BOS/EOS as
    /// the vocab says (WPM: always CLS first and SEP last); `parse_special` turns the text of
    /// control/user-defined tokens into those tokens.
    pub fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<TokenId> {
        self.encode_bytes(text.as_bytes(), add_special, parse_special)
    }

    /// [`Tokenizer::encode`] for text that may not be valid UTF-8 (llama.cpp accepts any bytes; BPE
    /// reads each invalid byte as U+FFFD, SPM spells it with byte tokens).
    pub fn encode_bytes(&self, text: &[u8], add_special: bool, parse_special: bool) -> Vec<TokenId> {
        let v = &self.vocab;
        let fragments = self.specials.partition(text, parse_special);
        let mut out = Vec::with_capacity(text.len() / 3 + 2);
        // llama.cpp's WPM path adds CLS (the BOS id) and SEP whatever add_bos / add_sep say.
        let wpm = matches!(self.engine, Engine::Wpm(_));
        if add_special && (v.add_bos || wpm) {
            out.extend(v.ids.bos);
        }
        match &self.engine {
            Engine::Spm(spm) => {
                // The space prefix goes before the first text and before text that follows a token.
                let mut after_special = true;
                let mut buf = Vec::new();
                for fragment in &fragments {
                    match fragment {
                        Fragment::Text(range) => {
                            buf.clear();
                            if v.add_space_prefix && after_special {
                                buf.extend_from_slice("\u{2581}".as_bytes());
                            }
                            escape_spaces(&text[range.clone()], &mut buf);
                            spm.encode(v, &buf, &mut out);
                            after_special = false;
                        }
                        Fragment::Token(id) => {
                            out.push(*id);
                            after_special = true;
                        }
                    }
                }
            }
            Engine::Bpe(bpe) => {
                for fragment in &fragments {
                    match fragment {
                        Fragment::Text(range) => bpe.encode(v, &text[range.clone()], &mut out),
                        Fragment::Token(id) => out.push(*id),
                    }
                }
            }
            Engine::Wpm(wpm) => {
                for fragment in &fragments {
                    match fragment {
                        Fragment::Text(range) => wpm.encode(v, &text[range.clone()], &mut out),
                        Fragment::Token(id) => out.push(*id),
                    }
                }
            }
            Engine::Ugm(ugm) => {
                for fragment in &fragments {
                    match fragment {
                        Fragment::Text(range) => ugm.encode(v, &text[range.clone()], &mut out),
                        Fragment::Token(id) => out.push(*id),
                    }
                }
            }
        }
        if wpm {
            if add_special {
                out.extend(v.ids.sep);
            }
        } else if add_special && v.add_eos {
            out.extend(v.ids.eos);
        }
        out
    }

    /// llama.cpp's `llama_token_to_piece(id, lstrip = 0, special)`: the bytes of one token (a piece may
    /// be a partial UTF-8 sequence). Control tokens give nothing unless `special`.
    pub fn token_to_piece(&self, id: TokenId, special: bool) -> Vec<u8> {
        detok::piece(&self.vocab, &self.pieces, id, special).to_vec()
    }

    /// llama.cpp's `llama_detokenize(ids, remove_special, unparse_special)`.
    pub fn detokenize(&self, ids: &[TokenId], remove_special: bool, unparse_special: bool) -> String {
        String::from_utf8_lossy(&self.detokenize_bytes(ids, remove_special, unparse_special)).into_owned()
    }

    /// [`Tokenizer::detokenize`] without the UTF-8 repair.
    pub fn detokenize_bytes(&self, ids: &[TokenId], remove_special: bool, unparse_special: bool) -> Vec<u8> {
        detok::detokenize(&self.vocab, &self.pieces, ids, remove_special, unparse_special)
    }

    pub fn n_vocab(&self) -> usize {
        self.vocab.n_vocab()
    }
    pub fn bos(&self) -> Option<TokenId> {
        self.vocab.ids.bos
    }
    pub fn eos(&self) -> Option<TokenId> {
        self.vocab.ids.eos
    }
    /// End of turn (given by key, or found by text such as `<|im_end|>`).
    pub fn eot(&self) -> Option<TokenId> {
        self.vocab.ids.eot
    }
    pub fn unk(&self) -> Option<TokenId> {
        self.vocab.ids.unk
    }
    pub fn pad(&self) -> Option<TokenId> {
        self.vocab.ids.pad
    }
    /// Whether `encode(.., add_special = true, ..)` prepends BOS.
    pub fn add_bos(&self) -> bool {
        self.vocab.add_bos
    }
    pub fn add_eos(&self) -> bool {
        self.vocab.add_eos
    }
    /// llama.cpp's `llama_vocab_get_add_sep`: SEP belongs between the two texts of a pair (BERT,
    /// RoBERTa-like BPE); callers that build pairs (rerank) add it.
    pub fn add_sep(&self) -> bool {
        self.vocab.add_sep
    }
    /// Fill-in-the-middle tokens (given by key, or found by text as llama.cpp finds them):
    /// `(prefix, suffix, middle, repo, file separator)`.
    pub fn fim(&self) -> [Option<TokenId>; 5] {
        let ids = &self.vocab.ids;
        [ids.fim_pre, ids.fim_suf, ids.fim_mid, ids.fim_rep, ids.fim_sep]
    }
    /// The separator id (`[SEP]` for BERT).
    pub fn sep(&self) -> Option<TokenId> {
        self.vocab.ids.sep
    }
    /// End-of-generation token (EOS, EOT, EOM, and tokens whose text llama.cpp treats as EOG).
    pub fn is_eog(&self, id: TokenId) -> bool {
        self.vocab.eog.contains(&id)
    }
    /// All end-of-generation tokens (for `--ignore-eos`), ascending.
    pub fn eog_tokens(&self) -> Vec<TokenId> {
        self.vocab.eog.iter().copied().collect()
    }

    /// The token's text as stored in the vocab (`Ġ`/`▁` spellings included).
    pub fn token_text(&self, id: TokenId) -> Option<&str> {
        self.vocab.tokens.get(id as usize).map(|t| t.text.as_str())
    }
    pub fn token_attr(&self, id: TokenId) -> TokenAttr {
        TokenAttr(self.vocab.attr(id))
    }
    /// The token whose text is exactly `text`.
    pub fn token_id(&self, text: &str) -> Option<TokenId> {
        self.vocab.id_of(text.as_bytes())
    }
    /// `tokenizer.ggml.model`-level kind: `"SPM"`, `"BPE"`, `"WPM"` or `"UGM"` (as llama.cpp prints it).
    pub fn kind_name(&self) -> &'static str {
        match self.vocab.kind {
            VocabKind::Spm => "SPM",
            VocabKind::Bpe => "BPE",
            VocabKind::Wpm => "WPM",
            VocabKind::Ugm => "UGM",
        }
    }
    /// `tokenizer.ggml.pre` as read (empty if absent).
    pub fn pre_name(&self) -> &str {
        &self.vocab.pre_name
    }
}

/// SPM sees spaces as `▁`.
fn escape_spaces(text: &[u8], out: &mut Vec<u8>) {
    for &b in text {
        if b == b' ' {
            out.extend_from_slice("\u{2581}".as_bytes());
        } else {
            out.push(b);
        }
    }
}
