//! WordPiece (`tokenizer.ggml.model = bert`), as llama.cpp runs it.
//!
//! The text is normalized the BERT way (optional accent stripping through llama.cpp's one-code-point
//! "NFD", optional lowercasing, control characters dropped) and cut into words at white space; each
//! punctuation character, ASCII symbol and CJK ideograph is a word of its own. Every word, written
//! with a leading `▁`, is then covered greedily by the longest tokens from the left; a word that
//! cannot be covered completely becomes one unknown token.

use super::unicode::{class_of, decode_lenient, is_whitespace, nfd_first, push_utf8, to_lower, CharClass};
use super::vocab::Vocab;
use crate::TokenId;

const WORD_PREFIX: &str = "\u{2581}"; // '▁'

pub struct Wpm {
    /// Longest token text, in bytes: no match is tried beyond it.
    max_token_len: usize,
}

impl Wpm {
    pub fn new(vocab: &Vocab) -> Wpm {
        Wpm { max_token_len: vocab.tokens.iter().map(|t| t.text.len()).max().unwrap_or(0) }
    }

    /// Tokenize one fragment of plain text, appending to `out`.
    pub fn encode(&self, vocab: &Vocab, text: &[u8], out: &mut Vec<TokenId>) {
        let mut word = Vec::new();
        for w in split_words(text, vocab.lowercase, vocab.strip_accents) {
            word.clear();
            word.extend_from_slice(WORD_PREFIX.as_bytes());
            word.extend_from_slice(&w);
            self.encode_word(vocab, &word, out);
        }
    }

    fn encode_word(&self, vocab: &Vocab, word: &[u8], out: &mut Vec<TokenId>) {
        let start_len = out.len();
        let n = word.len();
        let mut i = 0;
        while i < n {
            let longest = n.min(i + self.max_token_len + 1);
            let found = (i + 1..=longest).rev().find_map(|j| vocab.id_of(&word[i..j]).map(|id| (id, j)));
            match found {
                Some((id, end)) => {
                    out.push(id);
                    i = end;
                }
                None => {
                    // One piece without a token spoils the whole word.
                    out.truncate(start_len);
                    break;
                }
            }
        }
        if out.len() == start_len {
            out.extend(vocab.ids.unk);
        }
    }
}

/// CJK ideographs that BERT puts in words of their own (the ranges of HF's tokenizer, including its
/// 0x2B920 where the Unicode block starts at 0x2B820).
fn is_chinese_char(cpt: u32) -> bool {
    matches!(
        cpt,
        0x4E00..=0x9FFF
            | 0x3400..=0x4DBF
            | 0x20000..=0x2A6DF
            | 0x2A700..=0x2B73F
            | 0x2B740..=0x2B81F
            | 0x2B920..=0x2CEAF
            | 0xF900..=0xFAFF
            | 0x2F800..=0x2FA1F
    )
}

/// The normalized words of a text, as UTF-8 (never empty).
fn split_words(text: &[u8], lowercase: bool, strip_accents: bool) -> Vec<Vec<u8>> {
    let mut words = Vec::new();
    let mut current = Vec::new();
    for cpt in decode_lenient(text) {
        let cpt = if strip_accents { nfd_first(cpt) } else { cpt };
        if is_whitespace(cpt) {
            if !current.is_empty() {
                words.push(std::mem::take(&mut current));
            }
            continue;
        }
        let class = class_of(cpt);
        if cpt == 0 || cpt == 0xFFFD || class == CharClass::Other {
            continue;
        }
        if strip_accents && class == CharClass::Mark {
            continue;
        }
        let shown = if lowercase { to_lower(cpt) } else { cpt };
        let alone = class == CharClass::Punctuation
            || (cpt < 0x7F && class == CharClass::Symbol)
            || is_chinese_char(cpt);
        if alone {
            if !current.is_empty() {
                words.push(std::mem::take(&mut current));
            }
            let mut single = Vec::with_capacity(4);
            push_utf8(&mut single, shown);
            words.push(single);
        } else {
            push_utf8(&mut current, shown);
        }
    }
    if !current.is_empty() {
        words.push(current);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str, lowercase: bool, strip: bool) -> Vec<String> {
        split_words(s.as_bytes(), lowercase, strip)
            .into_iter()
            .map(|w| String::from_utf8(w).unwrap())
            .collect()
    }

    #[test]
    fn bert_word_splitting() {
        assert_eq!(words("Hello, World!", true, true), ["hello", ",", "world", "!"]);
        assert_eq!(words("  Héllo\tthe\u{3000}re ", true, true), ["hello", "the", "re"]);
        assert_eq!(words("Héllo", false, false), ["Héllo"]);
        // A combining mark is stripped with accents, kept (as part of the word) without.
        assert_eq!(words("e\u{0301}x", true, true), ["ex"]);
        assert_eq!(words("e\u{0301}x", true, false), ["e\u{0301}x"]);
        assert_eq!(words("我想a$b€", true, true), ["我", "想", "a", "$", "b€"]);
        // Control characters, NUL and invalid bytes vanish without splitting.
        assert_eq!(split_words(b"a\x00b\x07c\xffd", true, true), [b"abcd".to_vec()]);
    }
}
