//! Token → bytes: the text of one token (`token_to_piece`) and of a sequence (`detokenize`), with
//! llama.cpp's space handling.

use super::unicode::{decode_lenient, push_utf8, ByteMap};
use super::vocab::{attr, Vocab, VocabKind};
use crate::TokenId;

const ESCAPED_SPACE: &str = "\u{2581}"; // '▁'

/// The piece of every token as llama.cpp caches it (control tokens included).
pub fn build_pieces(vocab: &Vocab) -> Vec<Box<[u8]>> {
    let byte_map = ByteMap::new();
    vocab.tokens.iter().map(|t| piece_of(vocab, &byte_map, &t.text, t.attr).into_boxed_slice()).collect()
}

fn piece_of(vocab: &Vocab, byte_map: &ByteMap, text: &str, attrs: u16) -> Vec<u8> {
    if attrs & (attr::UNKNOWN | attr::CONTROL | attr::USER_DEFINED) != 0 {
        return text.as_bytes().to_vec();
    }
    if attrs & attr::NORMAL != 0 {
        return match vocab.kind {
            VocabKind::Bpe if !vocab.escape_whitespaces => decode_byte_chars(byte_map, text),
            _ => text.replace(ESCAPED_SPACE, " ").into_bytes(),
        };
    }
    if attrs & attr::BYTE != 0 {
        return vec![byte_token_value(text)];
    }
    Vec::new()
}

/// GPT-2 byte characters back to bytes. A character outside the 256 is written as
/// `[UNK_BYTE_0x<its UTF-8 in hex><the whole token text>]`, as llama.cpp does.
fn decode_byte_chars(byte_map: &ByteMap, text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    for cpt in decode_lenient(text.as_bytes()) {
        match byte_map.byte_of(cpt) {
            Some(b) => out.push(b),
            None => {
                let mut utf8 = Vec::new();
                push_utf8(&mut utf8, cpt);
                out.extend_from_slice(b"[UNK_BYTE_0x");
                for b in utf8 {
                    out.extend_from_slice(format!("{b:02x}").as_bytes());
                }
                out.extend_from_slice(text.as_bytes());
                out.push(b']');
            }
        }
    }
    out
}

/// The value of a byte token `<0xXX>`: the two characters after `<0x` read as hex (as `strtol`
/// would: leading blanks, a sign and a partial number are accepted; nothing readable gives 0).
fn byte_token_value(text: &str) -> u8 {
    let digits = text.as_bytes().get(3..).unwrap_or_default();
    let digits = &digits[..digits.len().min(2)];
    let mut i = 0;
    while i < digits.len() && matches!(digits[i], b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r') {
        i += 1;
    }
    let negative = digits.get(i) == Some(&b'-');
    if matches!(digits.get(i), Some(b'-' | b'+')) {
        i += 1;
    }
    let mut value: i64 = 0;
    while let Some(d) = digits.get(i).and_then(|&c| (c as char).to_digit(16)) {
        value = value * 16 + d as i64;
        i += 1;
    }
    (if negative { -value } else { value }) as u8
}

/// `token_to_piece(id, lstrip = 0, special)`.
pub fn piece<'a>(vocab: &Vocab, pieces: &'a [Box<[u8]>], id: TokenId, special: bool) -> &'a [u8] {
    if !special && vocab.attr(id) & (attr::UNKNOWN | attr::CONTROL) != 0 {
        return &[];
    }
    pieces.get(id as usize).map_or(&[], |p| p)
}

/// `detokenize(ids, remove_special, unparse_special)` as bytes.
pub fn detokenize(
    vocab: &Vocab,
    pieces: &[Box<[u8]>],
    mut ids: &[TokenId],
    remove_special: bool,
    unparse_special: bool,
) -> Vec<u8> {
    let mut remove_space = vocab.add_space_prefix;
    if remove_special && vocab.add_bos && !ids.is_empty() && Some(ids[0]) == vocab.ids.bos {
        // llama.cpp keeps the leading space once it has dropped a BOS.
        remove_space = false;
        ids = &ids[1..];
    }
    if remove_special && vocab.add_eos && ids.last().is_some_and(|&id| Some(id) == vocab.ids.eos) {
        ids = &ids[..ids.len() - 1];
    }
    let mut text = Vec::new();
    for &id in ids {
        let mut p = piece(vocab, pieces, id, unparse_special);
        if remove_space {
            p = p.strip_prefix(b" ").unwrap_or(p);
        }
        remove_space = false;
        text.extend_from_slice(p);
    }
    if vocab.clean_spaces {
        clean_up_spaces(&mut text);
    }
    text
}

/// HF's `clean_up_tokenization_spaces`, in llama.cpp's three in-place passes (kept literal, since
/// pass 2 reads back what it wrote).
fn clean_up_spaces(text: &mut Vec<u8>) {
    // " ?", " !", " .", " ," lose the space.
    let n = text.len();
    let mut total = usize::from(n > 0);
    for i in 1..n {
        let x = text[i];
        if text[i - 1] == b' ' && matches!(x, b'?' | b'!' | b'.' | b',') {
            total -= 1;
        }
        text[total] = x;
        total += 1;
    }
    text.truncate(total);

    // " ' " becomes "'".
    let n = text.len();
    let mut total = usize::from(n > 0);
    let mut i = 1;
    while i < n {
        let x = text[i];
        if x == b'\'' && i + 1 < n && text[i - 1] == b' ' && text[i + 1] == b' ' {
            total -= 1;
            i += 1;
            text[i] = 0;
        }
        text[total] = x;
        total += 1;
        i += 1;
    }
    text.truncate(total);

    // " 's", " 'm", " 're", " 've" lose the space; " 't", " 'd", " 'll" keep it.
    let n = text.len();
    let mut total = usize::from(n > 0);
    for i in 1..n {
        let x = text[i];
        if text[i - 1] == b' ' && x == b'\'' && i + 1 < n {
            let x1 = text[i + 1];
            let x2 = text.get(i + 2).copied().filter(|_| i + 2 < n);
            let drop = match (x1, x2) {
                (b't' | b'd', _) => false,
                (b's' | b'm', _) => true,
                (b'r', Some(b'e')) | (b'v', Some(b'e')) => true,
                _ => false,
            };
            if drop {
                total -= 1;
            }
        }
        text[total] = x;
        total += 1;
    }
    text.truncate(total);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clean(s: &str) -> String {
        let mut v = s.as_bytes().to_vec();
        clean_up_spaces(&mut v);
        String::from_utf8_lossy(&v).into_owned()
    }

    #[test]
    fn clean_up_matches_hf_rules() {
        assert_eq!(clean("Hello , world !"), "Hello, world!");
        assert_eq!(clean("it ' s"), "it's");
        assert_eq!(clean("I 'm sure they 're , don 't"), "I'm sure they're, don 't");
        assert_eq!(clean(" ."), ".");
        assert_eq!(clean(""), "");
    }

    #[test]
    fn byte_token_values() {
        assert_eq!(byte_token_value("<0x0A>"), 0x0A);
        assert_eq!(byte_token_value("<0xFF>"), 0xFF);
        assert_eq!(byte_token_value("<0xZZ>"), 0);
    }
}
