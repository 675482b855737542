//! Byte-level BPE (`tokenizer.ggml.model = gpt2`).
//!
//! Each pre-tokenized word is turned into GPT-2's printable byte characters and merged pair by pair,
//! lowest merge rank first (ties: leftmost). Merge parts are interned to integer ids once at load,
//! so the merge loop compares ids and never builds strings: every vocab token keeps its token id,
//! and merge strings that are not tokens get ids past the end of the vocab.

use super::pretokenize::{PreConfig, Splitter};
use super::unicode::{decode_lenient, push_utf8, utf8_len_from_lead, ByteMap};
use super::vocab::{FastMap, Vocab};
use super::TokenizerError;
use crate::TokenId;
use gguf::names::TOK_MERGES;
use gguf::value::Metadata;
use gguf::GgufFile;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

const METASPACE: u32 = 0x2581;

/// No interned string: a symbol that takes part in no merge.
const NO_ID: u32 = u32::MAX;

struct Merge {
    rank: u32,
    merged: u32,
}

pub struct Bpe {
    splitter: Splitter,
    pre: PreConfig,
    ignore_merges: bool,
    n_vocab: u32,
    byte_map: ByteMap,
    /// `[byte] → id` of the one-character string standing for that byte.
    byte_symbol: [u32; 256],
    /// `[byte] → token` for that byte alone: the token whose text is the raw byte, or with raw
    /// UTF-8 words (`byte_encode` off) the `<0xXX>` token (the last-resort fallback).
    raw_byte_token: [Option<TokenId>; 256],
    /// Merge strings that are not tokens, with their ids (`n_vocab` and up).
    extra: FastMap<Box<[u8]>, u32>,
    /// `(left id << 32 | right id) → merge`.
    merges: FastMap<u64, Merge>,
}

fn pair_key(left: u32, right: u32) -> u64 {
    (left as u64) << 32 | right as u64
}

impl Bpe {
    pub fn from_gguf(file: &GgufFile, vocab: &Vocab) -> Result<Bpe, TokenizerError> {
        let pre =
            vocab.pre.ok_or_else(|| TokenizerError::Invalid("BPE vocab without pre-tokenizer".into()))?;
        let merge_texts = file.get_str_array(TOK_MERGES)?.unwrap_or_default();
        let n_vocab = vocab.n_vocab() as u32;

        // Strings from merges that are not tokens, with ids n_vocab, n_vocab + 1, ...
        let mut extra: FastMap<Box<[u8]>, u32> = FastMap::default();
        let mut intern = |text: &[u8]| -> u32 {
            if let Some(id) = vocab.id_of(text) {
                return id;
            }
            let next = n_vocab + extra.len() as u32;
            *extra.entry(text.into()).or_insert(next)
        };
        let mut merges = FastMap::with_capacity_and_hasher(merge_texts.len(), Default::default());
        let mut joined = Vec::new();
        for (rank, text) in merge_texts.iter().enumerate() {
            // The split is at the first space after the first byte, so a merge may start with a space.
            let Some(split) = text.bytes().skip(1).position(|b| b == b' ').map(|p| p + 1) else { continue };
            let (left, right) = (&text.as_bytes()[..split], &text.as_bytes()[split + 1..]);
            if right.is_empty() {
                continue;
            }
            joined.clear();
            joined.extend_from_slice(left);
            joined.extend_from_slice(right);
            let (l, r, m) = (intern(left), intern(right), intern(&joined));
            // A repeated pair keeps its first (best) rank.
            merges.entry(pair_key(l, r)).or_insert(Merge { rank: rank as u32, merged: m });
        }

        let byte_map = ByteMap::new();
        let mut byte_symbol = [NO_ID; 256];
        let mut raw_byte_token = [None; 256];
        let mut buf = Vec::new();
        for b in 0..=255u8 {
            buf.clear();
            byte_map.encode_byte(&mut buf, b);
            byte_symbol[b as usize] =
                vocab.id_of(&buf).or_else(|| extra.get(buf.as_slice()).copied()).unwrap_or(NO_ID);
            raw_byte_token[b as usize] = if pre.byte_encode {
                vocab.id_of(&[b])
            } else {
                vocab.id_of(format!("<0x{b:02X}>").as_bytes())
            };
        }
        let splitter = Splitter::new(pre.steps)
            .map_err(|e| TokenizerError::Invalid(format!("pre-tokenizer '{}': {}", vocab.pre_name, e.0)))?;
        Ok(Bpe {
            splitter,
            pre,
            ignore_merges: vocab.ignore_merges,
            n_vocab,
            byte_map,
            byte_symbol,
            raw_byte_token,
            extra,
            merges,
        })
    }

    /// Tokenize one raw-text fragment (no special tokens inside), appending to `out`.
    pub fn encode(&self, vocab: &Vocab, text: &[u8], out: &mut Vec<TokenId>) {
        let cpts = if self.pre.escape_whitespaces {
            let mut escaped = Vec::with_capacity(text.len() + text.len() / 4);
            for &b in text {
                if b == b' ' {
                    escaped.extend_from_slice("\u{2581}".as_bytes());
                } else {
                    escaped.push(b);
                }
            }
            decode_lenient(&escaped)
        } else {
            decode_lenient(text)
        };
        let mut session = Session::default();
        for range in self.splitter.split(&cpts) {
            let word = &cpts[range];
            if self.pre.metaspace_words && word.iter().any(|&c| c != u32::from(b'\n')) {
                // Every word starts with `▁`, and each `▁` starts a new word.
                let mut start = 0;
                let mut owned = Vec::with_capacity(word.len() + 1);
                if word[0] != METASPACE {
                    owned.push(METASPACE);
                }
                owned.extend_from_slice(word);
                for k in 1..=owned.len() {
                    if k == owned.len() || owned[k] == METASPACE {
                        self.encode_cpts(vocab, &mut session, &owned[start..k], out);
                        start = k;
                    }
                }
            } else {
                self.encode_cpts(vocab, &mut session, word, out);
            }
        }
    }

    fn encode_cpts(&self, vocab: &Vocab, session: &mut Session, word: &[u32], out: &mut Vec<TokenId>) {
        session.word.clear();
        for &cpt in word {
            push_utf8(&mut session.word, cpt);
        }
        self.encode_word(vocab, session, out);
    }

    fn encode_word(&self, vocab: &Vocab, s: &mut Session, out: &mut Vec<TokenId>) {
        // s.word holds the raw UTF-8 bytes of the word; s.encoded gets the byte characters (or the
        // raw bytes again when words are not byte-encoded).
        s.encoded.clear();
        s.encoded_starts.clear();
        s.symbols.clear();
        if self.pre.byte_encode {
            for &b in &s.word {
                s.encoded_starts.push(s.encoded.len() as u32);
                self.byte_map.encode_byte(&mut s.encoded, b);
            }
        } else {
            s.encoded.extend_from_slice(&s.word);
            let mut pos = 0;
            while pos < s.word.len() {
                s.encoded_starts.push(pos as u32);
                pos += utf8_len_from_lead(s.word[pos]).min(s.word.len() - pos);
            }
        }
        if self.ignore_merges
            || (self.pre.newline_words && !s.word.is_empty() && s.word.iter().all(|&b| b == b'\n'))
        {
            if let Some(id) = vocab.id_of(&s.encoded) {
                out.push(id);
                return;
            }
        }
        let n = s.encoded_starts.len();
        for i in 0..n {
            let start = s.encoded_starts[i];
            let end = s.encoded_starts.get(i + 1).copied().unwrap_or(s.encoded.len() as u32);
            let id = if self.pre.byte_encode {
                self.byte_symbol[s.word[i] as usize]
            } else {
                let text = &s.encoded[start as usize..end as usize];
                vocab.id_of(text).or_else(|| self.extra.get(text).copied()).unwrap_or(NO_ID)
            };
            s.symbols.push(Symbol {
                start,
                len: end - start,
                prev: i as i32 - 1,
                next: if i + 1 == n { -1 } else { i as i32 + 1 },
                id,
            });
        }
        self.merge_all(s);
        self.emit(s, out);
    }

    fn push_pair(&self, s: &mut Session, left: i32, right: i32) {
        if left < 0 || right < 0 {
            return;
        }
        let (l, r) = (s.symbols[left as usize].id, s.symbols[right as usize].id);
        if let Some(m) = self.merges.get(&pair_key(l, r)) {
            s.heap.push(Reverse((m.rank, left as u32, l, r)));
        }
    }

    fn merge_all(&self, s: &mut Session) {
        s.heap.clear();
        for i in 1..s.symbols.len() as i32 {
            self.push_pair(s, i - 1, i);
        }
        while let Some(Reverse((_, left, l_id, r_id))) = s.heap.pop() {
            let left = left as usize;
            let right = s.symbols[left].next;
            // A queued pair is stale when either side has changed since it was queued.
            if s.symbols[left].len == 0 || right < 0 {
                continue;
            }
            let right = right as usize;
            if s.symbols[left].id != l_id || s.symbols[right].id != r_id || s.symbols[right].len == 0 {
                continue;
            }
            let Some(merge) = self.merges.get(&pair_key(l_id, r_id)) else { continue };
            let absorbed = s.symbols[right];
            let sym = &mut s.symbols[left];
            sym.len += absorbed.len;
            sym.next = absorbed.next;
            sym.id = merge.merged;
            s.symbols[right].len = 0;
            if absorbed.next >= 0 {
                s.symbols[absorbed.next as usize].prev = left as i32;
            }
            let prev = s.symbols[left].prev;
            let next = s.symbols[left].next;
            self.push_pair(s, prev, left as i32);
            self.push_pair(s, left as i32, next);
        }
    }

    fn emit(&self, s: &Session, out: &mut Vec<TokenId>) {
        for sym in s.symbols.iter().filter(|sym| sym.len > 0) {
            if sym.id < self.n_vocab {
                out.push(sym.id);
                continue;
            }
            // Not a token: fall back to tokens spelled as single bytes of the encoded text.
            let text = &s.encoded[sym.start as usize..(sym.start + sym.len) as usize];
            out.extend(text.iter().filter_map(|&b| self.raw_byte_token[b as usize]));
        }
    }
}

#[derive(Clone, Copy)]
struct Symbol {
    /// Byte range in the encoded word.
    start: u32,
    len: u32,
    prev: i32,
    next: i32,
    id: u32,
}

/// Buffers reused across the words of one call.
#[derive(Default)]
struct Session {
    word: Vec<u8>,
    encoded: Vec<u8>,
    encoded_starts: Vec<u32>,
    symbols: Vec<Symbol>,
    /// `(rank, left index, left id, right id)`, smallest first.
    heap: BinaryHeap<Reverse<(u32, u32, u32, u32)>>,
}
