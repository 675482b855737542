//! SentencePiece unigram (`tokenizer.ggml.model = t5`), as llama.cpp runs it.
//!
//! The text is first normalized: a user-defined token's text is kept as it is, else the longest
//! prefix found in the precompiled charsmap (SentencePiece's normalization rules, a double-array
//! trie) is replaced by its rule's output, else one UTF-8 character is kept (an invalid byte becomes
//! U+FFFD); spaces become `▁`, with one put before the text and, if the vocab says so, runs of spaces
//! merged. Then the best segmentation by summed token scores is found (Viterbi over byte offsets):
//! user-defined tokens score 0, a character no token covers costs the lowest normal score minus 10
//! and becomes the unknown token (runs of them one unknown token).

use super::vocab::{attr, attr_of_type, FastMap, Vocab};
use super::TokenizerError;
use crate::TokenId;
use gguf::names::{TOK_PRECOMPILED_CHARSMAP, TOK_TOKEN_TYPE};
use gguf::value::{Metadata, Value};
use gguf::GgufFile;

const ESCAPED_SPACE: &[u8] = "\u{2581}".as_bytes();
const REPLACEMENT_UTF8: &[u8] = "\u{FFFD}".as_bytes();
/// What a character no token covers costs, below the lowest normal token score.
const UNKNOWN_PENALTY: f32 = 10.0;

pub struct Ugm {
    /// Normal, user-defined and unused tokens (by their types as stored in the file).
    tokens: Trie,
    /// User-defined tokens: text that starts like one of them is not normalized.
    user_defined: Trie,
    charsmap: Option<Charsmap>,
    unknown_score: f32,
}

fn invalid(msg: impl Into<String>) -> TokenizerError {
    TokenizerError::Invalid(msg.into())
}

impl Ugm {
    pub fn from_gguf(file: &GgufFile, vocab: &Vocab) -> Result<Ugm, TokenizerError> {
        let charsmap = match file.get(TOK_PRECOMPILED_CHARSMAP) {
            None => None,
            Some(value) => Charsmap::parse(&charsmap_bytes(value)?)?,
        };
        // llama.cpp builds its matchers before it adjusts token attributes (EOG texts, "unused"
        // names, ...): go by the types in the file.
        let types = file.get_i32_array(TOK_TOKEN_TYPE)?;
        let stored_attr = |id: usize| types.as_ref().map_or(attr::NORMAL, |t| attr_of_type(t[id]));
        let mut tokens = Trie::default();
        let mut user_defined = Trie::default();
        let mut min_score = f32::MAX;
        for (id, token) in vocab.tokens.iter().enumerate() {
            let a = stored_attr(id);
            if a & attr::NORMAL != 0 && token.score < min_score {
                min_score = token.score;
            }
            if a & (attr::NORMAL | attr::USER_DEFINED | attr::UNUSED) != 0 {
                tokens.insert(token.text.as_bytes(), id as TokenId);
            }
            if a & attr::USER_DEFINED != 0 {
                user_defined.insert(token.text.as_bytes(), id as TokenId);
            }
        }
        Ok(Ugm { tokens, user_defined, charsmap, unknown_score: min_score - UNKNOWN_PENALTY })
    }

    /// Tokenize one fragment of plain text, appending to `out`.
    pub fn encode(&self, vocab: &Vocab, text: &[u8], out: &mut Vec<TokenId>) {
        let normalized = self.normalize(vocab, text);
        let n = normalized.len();
        if n == 0 {
            return;
        }
        let unk = vocab.ids.unk;
        // best[end]: the best segmentation of normalized[..end] found so far, by its last token.
        let mut best = vec![Best { token: unk, start: 0, score: -f64::MAX }; n + 1];
        best[0].score = 0.0;
        let mut pos = 0;
        while pos < n {
            let char_len = super::unicode::utf8_len_from_lead(normalized[pos]).min(n - pos);
            let base = best[pos].score;
            let mut whole_char = false;
            let mut node = Some(0);
            let mut end = pos;
            while let Some(next) = node.and_then(|at| self.tokens.child(at, normalized[end])) {
                end += 1;
                node = Some(next);
                if let Some(id) = self.tokens.value(next) {
                    if end - pos == char_len {
                        whole_char = true;
                    }
                    let user = vocab.attr(id) & attr::USER_DEFINED != 0;
                    let score = base + if user { 0.0 } else { vocab.tokens[id as usize].score as f64 };
                    if score > best[end].score {
                        best[end] = Best { token: Some(id), start: pos, score };
                    }
                }
                if end == n {
                    break;
                }
            }
            if !whole_char {
                let score = base + self.unknown_score as f64;
                let end = pos + char_len;
                if score > best[end].score {
                    best[end] = Best { token: unk, start: pos, score };
                }
            }
            pos += char_len;
        }

        // Walk back from the end; neighbouring unknowns collapse into one.
        let first = out.len();
        let mut at = n;
        let mut prev_unknown = false;
        loop {
            let b = best[at];
            let unknown = b.token == unk;
            if !(prev_unknown && unknown) {
                out.extend(b.token);
            }
            if b.start == 0 {
                break;
            }
            prev_unknown = unknown;
            at = b.start;
        }
        out[first..].reverse();
    }

    fn normalize(&self, vocab: &Vocab, input: &[u8]) -> Vec<u8> {
        let space: &[u8] = if vocab.escape_whitespaces { ESCAPED_SPACE } else { b" " };
        let prepend = vocab.add_space_prefix;
        let merge = vocab.remove_extra_whitespaces;
        let mut out = Vec::with_capacity(input.len() * 3);
        let mut prepended = false;
        let mut in_word = false;
        let mut offset = 0;
        while offset < input.len() {
            let (piece, consumed) = self.normalize_prefix(&input[offset..]);
            for &c in piece {
                if c != b' ' {
                    if !in_word {
                        in_word = true;
                        if (prepend && !prepended) || merge {
                            out.extend_from_slice(space);
                            prepended = true;
                        }
                    }
                    out.push(c);
                } else {
                    in_word = false;
                    if !merge {
                        out.extend_from_slice(space);
                    }
                }
            }
            offset += consumed;
        }
        out
    }

    /// The normalized form of the start of `input` and how many bytes of it that consumed.
    fn normalize_prefix<'a>(&'a self, input: &'a [u8]) -> (&'a [u8], usize) {
        let user_len = self.user_defined.prefix_depth(input);
        if user_len > 0 {
            return (&input[..user_len], user_len);
        }
        if let Some((replacement, len)) = self.charsmap.as_ref().and_then(|m| m.longest_match(input)) {
            return (replacement, len);
        }
        match utf8_sequence_len(input) {
            Some(len) => (&input[..len], len),
            None => (REPLACEMENT_UTF8, 1),
        }
    }
}

#[derive(Clone, Copy)]
struct Best {
    token: Option<TokenId>,
    start: usize,
    score: f64,
}

/// The length of the UTF-8 sequence at the start of `bytes` as llama.cpp's strict decoder reads it
/// (continuation bytes checked; overlong forms, surrogates and values past U+10FFFF let through).
fn utf8_sequence_len(bytes: &[u8]) -> Option<usize> {
    let lead = *bytes.first()?;
    let len = match lead {
        0x00..=0x7F => return Some(1),
        0x80..=0xBF => return None,
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF7 => 4,
        _ => return None,
    };
    let tail = bytes.get(1..len)?;
    tail.iter().all(|b| b & 0xC0 == 0x80).then_some(len)
}

/// The charsmap's bytes: an array of u8 or i8, as llama.cpp accepts it.
fn charsmap_bytes(value: &Value) -> Result<Vec<u8>, TokenizerError> {
    let bad = || invalid(format!("invalid gguf type for {TOK_PRECOMPILED_CHARSMAP}"));
    let Value::Array(_, items) = value else { return Err(bad()) };
    items
        .iter()
        .map(|v| match v {
            Value::U8(b) => Ok(*b),
            Value::I8(b) => Ok(*b as u8),
            _ => Err(bad()),
        })
        .collect()
}

/// A byte trie: nodes are numbers (0 is the root), edges live in one hash map.
#[derive(Default)]
struct Trie {
    edges: FastMap<u64, u32>,
    /// `[node] → token`: `None` for a node that only prefixes tokens.
    values: Vec<Option<TokenId>>,
}

impl Trie {
    fn insert(&mut self, key: &[u8], id: TokenId) {
        if self.values.is_empty() {
            self.values.push(None);
        }
        let mut node = 0u32;
        for &b in key {
            let fresh = self.values.len() as u32;
            node = *self.edges.entry(((node as u64) << 8) | b as u64).or_insert(fresh);
            if node == fresh {
                self.values.push(None);
            }
        }
        self.values[node as usize] = Some(id);
    }

    fn child(&self, node: u32, byte: u8) -> Option<u32> {
        self.edges.get(&(((node as u64) << 8) | byte as u64)).copied()
    }

    fn value(&self, node: u32) -> Option<TokenId> {
        self.values.get(node as usize).copied().flatten()
    }

    /// How far `input` follows the trie from the root (whether or not a token ends there), as
    /// llama.cpp's longest-prefix search measures it.
    fn prefix_depth(&self, input: &[u8]) -> usize {
        if self.values.is_empty() {
            return 0;
        }
        let mut node = 0;
        let mut depth = 0;
        while let Some(next) = input.get(depth).and_then(|&b| self.child(node, b)) {
            node = next;
            depth += 1;
        }
        depth
    }
}

/// SentencePiece's precompiled normalization rules: a little-endian u32 byte count, that many bytes
/// of XOR-compressed double array (one u32 per node: base in bits 10–30 shifted left by 8 when bit
/// 9 is set, leaf flag in bit 8, check byte in bits 0–7, bit 31 marking a value node whose low 31
/// bits index the replacement strings), then NUL-terminated replacement strings.
struct Charsmap {
    nodes: Vec<u32>,
    replacements: Vec<u8>,
}

impl Charsmap {
    /// `None` for an empty double array (llama.cpp then normalizes nothing).
    fn parse(bytes: &[u8]) -> Result<Option<Charsmap>, TokenizerError> {
        let Some(&[b0, b1, b2, b3]) = bytes.get(..4) else {
            return Err(invalid("precompiled_charsmap too small for its size header"));
        };
        let blob = u32::from_le_bytes([b0, b1, b2, b3]) as usize;
        if blob >= bytes.len().saturating_sub(4) {
            return Err(invalid(format!(
                "precompiled_charsmap: a double array of {blob} bytes does not fit in {} bytes",
                bytes.len()
            )));
        }
        let nodes: Vec<u32> = bytes[4..4 + blob]
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let replacements = bytes[4 + blob..].to_vec();
        if nodes.is_empty() {
            return Ok(None);
        }
        let map = Charsmap { nodes, replacements };
        map.validate()?;
        Ok(Some(map))
    }

    fn node(&self, index: u32) -> Option<u32> {
        self.nodes.get(index as usize).copied()
    }

    fn base(packed: u32) -> u32 {
        (packed >> 10) << ((packed & (1 << 9)) >> 6)
    }

    /// The child of state `state` by `byte`: whether it is a leaf, and the next state.
    fn step(&self, state: u32, byte: u8) -> Option<(bool, u32)> {
        let index = state ^ byte as u32;
        let packed = self.node(index)?;
        if packed & ((1 << 31) | 0xFF) != byte as u32 {
            return None;
        }
        Some(((packed >> 8) & 1 != 0, index ^ Self::base(packed)))
    }

    /// The replacement string a leaf state points at.
    fn replacement(&self, state: u32) -> Option<&[u8]> {
        let offset = (self.node(state)? & ((1 << 31) - 1)) as usize;
        let rest = self.replacements.get(offset..)?;
        let len = rest.iter().position(|&b| b == 0)?;
        Some(&rest[..len])
    }

    /// The longest rule matching the start of `input` (NUL ends the search): its output and the
    /// matched length.
    fn longest_match(&self, input: &[u8]) -> Option<(&[u8], usize)> {
        let mut state = Self::base(self.node(0)?);
        let mut found = None;
        for (i, &c) in input.iter().enumerate() {
            if c == 0 {
                break;
            }
            let Some((leaf, next)) = self.step(state, c) else { break };
            state = next;
            if leaf {
                found = Some((state, i + 1));
            }
        }
        // `validate` made sure every reachable leaf has its string.
        let (leaf, len) = found?;
        Some((self.replacement(leaf)?, len))
    }

    /// Walks every state reachable from the root: a reachable leaf whose replacement string is out
    /// of bounds or unterminated is an error (llama.cpp would throw mid-tokenization); so is a
    /// state whose children would fall outside the array.
    fn validate(&self) -> Result<(), TokenizerError> {
        let bad = |what: &str| invalid(format!("malformed precompiled_charsmap: {what}"));
        let root = Self::base(self.node(0).ok_or_else(|| bad("no root"))?);
        // Each state comes from one in-bounds node, so there are at most as many as nodes.
        let mut seen = std::collections::HashSet::from([root]);
        let mut stack = vec![root];
        while let Some(state) = stack.pop() {
            for c in 1..=255u8 {
                if self.node(state ^ c as u32).is_none() {
                    return Err(bad("a node's children lie outside the double array"));
                }
                let Some((leaf, next)) = self.step(state, c) else { continue };
                if leaf && self.replacement(next).is_none() {
                    return Err(bad("a rule's replacement is out of bounds or unterminated"));
                }
                if seen.insert(next) {
                    stack.push(next);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_utf8_lengths() {
        assert_eq!(utf8_sequence_len(b"a"), Some(1));
        assert_eq!(utf8_sequence_len("é".as_bytes()), Some(2));
        assert_eq!(utf8_sequence_len("🦙".as_bytes()), Some(4));
        assert_eq!(utf8_sequence_len(b"\xC0\x80"), Some(2)); // overlong, accepted
        assert_eq!(utf8_sequence_len(b"\xED\xA0\x80"), Some(3)); // surrogate, accepted
        assert_eq!(utf8_sequence_len(b"\xE2\x82"), None);
        assert_eq!(utf8_sequence_len(b"\x80"), None);
        assert_eq!(utf8_sequence_len(b"\xF8\x80\x80\x80"), None);
    }

    #[test]
    fn trie_prefix_depth_ignores_token_ends() {
        let mut t = Trie::default();
        t.insert(b"<abc>", 7);
        assert_eq!(t.prefix_depth(b"<ab"), 3);
        assert_eq!(t.prefix_depth(b"<abc>x"), 5);
        assert_eq!(t.prefix_depth(b"x"), 0);
        assert_eq!(t.value(t.child(0, b'<').unwrap()), None);
        assert_eq!(Trie::default().prefix_depth(b"abc"), 0);
    }

    #[test]
    fn malformed_charsmaps_are_errors() {
        assert!(Charsmap::parse(&[]).is_err());
        assert!(Charsmap::parse(&[1, 0]).is_err());
        // Size header says 8 bytes of array, but nothing is left for the strings.
        assert!(Charsmap::parse(&[8, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]).is_err());
        assert!(Charsmap::parse(&[0xFF, 0xFF, 0xFF, 0xFF, 0]).is_err());
        // An empty array is no charsmap at all.
        assert!(Charsmap::parse(&[0, 0, 0, 0, 0]).unwrap().is_none());
        // One root node whose base points far outside the array.
        let mut bytes = vec![4, 0, 0, 0];
        bytes.extend_from_slice(&(1000u32 << 10).to_le_bytes());
        bytes.push(0);
        assert!(Charsmap::parse(&bytes).is_err());
    }
}
