//! The vocabulary read from `tokenizer.ggml.*`: token texts, scores and attributes, special ids and
//! flags, with the defaults and text-based fix-ups llama.cpp applies when it loads a vocab.

use super::pretokenize::{PreConfig, PreError};
use super::TokenizerError;
use crate::TokenId;
use gguf::names::*;
use gguf::value::Metadata;
use gguf::GgufFile;
use std::collections::{BTreeSet, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

/// Token attribute bits (llama.cpp's `llama_token_attr`).
pub mod attr {
    pub const UNKNOWN: u16 = 1 << 0;
    pub const UNUSED: u16 = 1 << 1;
    pub const NORMAL: u16 = 1 << 2;
    pub const CONTROL: u16 = 1 << 3;
    pub const USER_DEFINED: u16 = 1 << 4;
    pub const BYTE: u16 = 1 << 5;
    pub const LSTRIP: u16 = 1 << 7;
    pub const RSTRIP: u16 = 1 << 8;
}

/// The attribute a `tokenizer.ggml.token_type` value stands for.
pub(super) fn attr_of_type(token_type: i32) -> u16 {
    match token_type {
        1 => attr::NORMAL,
        2 => attr::UNKNOWN,
        3 => attr::CONTROL,
        4 => attr::USER_DEFINED,
        5 => attr::UNUSED,
        6 => attr::BYTE,
        _ => 0,
    }
}

/// A small multiplicative hasher: vocab lookups hash short strings and id pairs millions of times,
/// where SipHash's DoS resistance buys nothing.
#[derive(Default, Clone, Copy)]
pub struct FastHasher(u64);

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }
    fn write_u8(&mut self, v: u8) {
        self.write_u64(v as u64);
    }
    fn write_u32(&mut self, v: u32) {
        self.write_u64(v as u64);
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_usize(&mut self, v: usize) {
        self.write_u64(v as u64);
    }
    fn finish(&self) -> u64 {
        // The multiply only carries low bits upwards, and hash tables index by the low bits: fold
        // the high half back down (murmur3's finalizer).
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h
    }
}

pub type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VocabKind {
    /// `llama`: SentencePiece-style merges by score.
    Spm,
    /// `gpt2`: byte-level BPE with ranked merges.
    Bpe,
    /// `bert`: WordPiece, longest match first.
    Wpm,
    /// `t5`: SentencePiece unigram (Viterbi over token scores).
    Ugm,
}

pub struct TokenData {
    pub text: String,
    pub score: f32,
    pub attr: u16,
}

/// Ids with a role. `None` is llama.cpp's `LLAMA_TOKEN_NULL`.
#[derive(Debug, Clone, Copy, Default)]
pub struct SpecialIds {
    pub bos: Option<TokenId>,
    pub eos: Option<TokenId>,
    pub eot: Option<TokenId>,
    pub eom: Option<TokenId>,
    pub unk: Option<TokenId>,
    pub sep: Option<TokenId>,
    pub pad: Option<TokenId>,
    pub mask: Option<TokenId>,
    pub fim_pre: Option<TokenId>,
    pub fim_suf: Option<TokenId>,
    pub fim_mid: Option<TokenId>,
    pub fim_pad: Option<TokenId>,
    pub fim_rep: Option<TokenId>,
    pub fim_sep: Option<TokenId>,
}

/// Picks one field of [`SpecialIds`] (so that role tables can list fields).
type IdSlot = fn(&mut SpecialIds) -> &mut Option<TokenId>;

pub struct Vocab {
    pub kind: VocabKind,
    pub pre_name: String,
    /// BPE only: the pre-tokenizer settings.
    pub pre: Option<PreConfig>,
    pub tokens: Vec<TokenData>,
    pub by_text: FastMap<Box<[u8]>, TokenId>,
    pub ids: SpecialIds,
    pub add_bos: bool,
    pub add_eos: bool,
    /// BERT-like: SEP goes between the texts of a pair (llama.cpp only reports it; `tokenize`
    /// itself adds SEP for WPM whatever this says).
    pub add_sep: bool,
    pub add_space_prefix: bool,
    /// UGM: runs of spaces become one, leading and trailing ones go.
    pub remove_extra_whitespaces: bool,
    /// WPM's BERT normalizer.
    pub lowercase: bool,
    pub strip_accents: bool,
    pub clean_spaces: bool,
    pub ignore_merges: bool,
    /// Spaces become `▁` before SPM merges.
    pub escape_whitespaces: bool,
    pub eog: BTreeSet<TokenId>,
    /// Control, user-defined and unknown tokens, longest text first: the order in which their
    /// text is searched for in a prompt.
    pub special_search_order: Vec<TokenId>,
}

fn invalid(msg: impl Into<String>) -> TokenizerError {
    TokenizerError::Invalid(msg.into())
}

/// Token texts that mark end of generation (llama.cpp's list, matched exactly).
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<｜end▁of▁sentence｜>",
    "[e~[",
];
const EOT_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "<｜end▁of▁sentence｜>",
    "<end_of_utterance>",
];
const EOM_TEXTS: &[&str] = &["<|eom_id|>"];
const FIM_PRE_TEXTS: &[&str] = &[
    "<|fim_prefix|>",
    "<fim-prefix>",
    "<fim_prefix>",
    "<｜fim▁begin｜>",
    "<PRE>",
    "▁<PRE>",
    "<|code_prefix|>",
    "<|prefix|>",
];
const FIM_SUF_TEXTS: &[&str] = &[
    "<|fim_suffix|>",
    "<fim-suffix>",
    "<fim_suffix>",
    "<｜fim▁hole｜>",
    "<SUF>",
    "▁<SUF>",
    "<|code_suffix|>",
    "<|suffix|>",
];
const FIM_MID_TEXTS: &[&str] = &[
    "<|fim_middle|>",
    "<fim-middle>",
    "<fim_middle>",
    "<｜fim▁end｜>",
    "<MID>",
    "▁<MID>",
    "<|code_middle|>",
    "<|middle|>",
];
const FIM_PAD_TEXTS: &[&str] = &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"];
const FIM_REP_TEXTS: &[&str] = &["<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"];
const FIM_SEP_TEXTS: &[&str] = &["<|file_sep|>"];
/// gpt-oss channel markers, always rendered as user-defined tokens.
const ALWAYS_USER_DEFINED: &[&str] = &["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"];

impl Vocab {
    pub fn from_gguf(file: &GgufFile) -> Result<Vocab, TokenizerError> {
        let model = file.require_str(TOK_MODEL)?;
        let mut pre_name = file.get_str(TOK_PRE)?.unwrap_or("").to_string();
        // A `gemma4` vocab is BPE whose pre-type is always `gemma4`, with no default special ids.
        let gemma4 = model == "gemma4";
        if gemma4 {
            pre_name = "gemma4".into();
        }
        let kind = match model {
            "llama" => VocabKind::Spm,
            "gpt2" | "gemma4" => VocabKind::Bpe,
            "bert" => VocabKind::Wpm,
            "t5" => VocabKind::Ugm,
            "no_vocab" | "none" | "rwkv" | "test" | "plamo2" | "hybriddna" | "whitespace" => {
                return Err(invalid(format!("tokenizer model '{model}' is not supported")))
            }
            other => return Err(invalid(format!("unknown tokenizer: '{other}'"))),
        };

        let mut ids = SpecialIds::default();
        // (add_bos, add_eos, add_space_prefix, clean_spaces, escape_whitespaces)
        let vocab_flags;
        let mut add_sep = false;
        let mut pre = None;
        let mut ignore_merges = false;
        match kind {
            VocabKind::Spm => {
                ids.bos = Some(1);
                ids.eos = Some(2);
                ids.unk = Some(0);
                vocab_flags = (true, false, true, false, true);
            }
            VocabKind::Wpm => {
                ids.bos = Some(101);
                ids.unk = Some(100);
                ids.sep = Some(102);
                ids.pad = Some(0);
                ids.mask = Some(103);
                add_sep = true;
                vocab_flags = (true, false, false, true, true);
            }
            VocabKind::Ugm => {
                ids.eos = Some(1);
                ids.unk = Some(2);
                ids.pad = Some(0);
                vocab_flags = (false, true, false, false, true);
            }
            VocabKind::Bpe => {
                if file.get(TOK_MERGES).is_none() {
                    return Err(invalid(format!(
                        "the vocab has no {TOK_MERGES} (byte-level BPE needs its merges)"
                    )));
                }
                let config = PreConfig::from_name(&pre_name).map_err(|e| match e {
                    PreError::Unknown(name) => invalid(format!("unknown pre-tokenizer type: '{name}'")),
                })?;
                if !gemma4 {
                    ids.bos = if config.no_bos { None } else { Some(11) };
                    ids.eos = Some(11);
                }
                vocab_flags =
                    (config.force_add_bos, false, false, config.clean_spaces, config.escape_whitespaces);
                // BERT-like BPE vocabs (RoBERTa, Jina v1/v2-code) put SEP between paired texts.
                add_sep = matches!(pre_name.as_str(), "jina-v1-en" | "jina-v2-code" | "roberta-bpe");
                ignore_merges = config.ignore_merges;
                pre = Some(config);
            }
        }
        let (mut add_bos, mut add_eos, mut add_space_prefix, clean_spaces, escape_whitespaces) = vocab_flags;
        if let Some(v) = file.get_bool(TOK_ADD_SPACE_PREFIX)? {
            add_space_prefix = v;
        }
        let remove_extra_whitespaces = file.get_bool(TOK_REMOVE_EXTRA_WS)?.unwrap_or(false);

        let (tokens, by_text) = read_tokens(file)?;
        let n_vocab = tokens.len();
        read_special_ids(file, &mut ids, n_vocab)?;

        if let Some(v) = file.get_bool(TOK_ADD_BOS)? {
            add_bos = v;
        }
        if let Some(v) = file.get_bool(TOK_ADD_EOS)? {
            add_eos = v;
        }
        if let Some(v) = file.get_bool(TOK_ADD_SEP)? {
            add_sep = v;
        }
        let lowercase = file.get_bool(TOK_NORMALIZER_LOWERCASE)?.unwrap_or(true);
        let strip_accents = file.get_bool(TOK_NORMALIZER_STRIP_ACCENTS)?.unwrap_or(lowercase);
        if pre.is_some_and(|p| p.always_add_bos) {
            add_bos = true;
        }

        let mut vocab = Vocab {
            kind,
            pre_name,
            pre,
            tokens,
            by_text,
            ids,
            add_bos,
            add_eos,
            add_sep,
            add_space_prefix,
            remove_extra_whitespaces,
            lowercase,
            strip_accents,
            clean_spaces,
            ignore_merges,
            escape_whitespaces,
            eog: BTreeSet::new(),
            special_search_order: Vec::new(),
        };
        vocab.detect_special_by_text();
        vocab.mark_unused();
        vocab.collect_eog();
        vocab.special_search_order = vocab.special_tokens_longest_first();
        let name = file.get_str(KEY_NAME)?.unwrap_or("").to_ascii_lowercase();
        let arch = file.get_str(KEY_ARCHITECTURE)?.unwrap_or("").to_string();
        vocab.apply_strip_attributes(&name, &arch);
        Ok(vocab)
    }

    pub fn n_vocab(&self) -> usize {
        self.tokens.len()
    }

    pub fn id_of(&self, text: &[u8]) -> Option<TokenId> {
        self.by_text.get(text).copied()
    }

    pub fn attr(&self, id: TokenId) -> u16 {
        self.tokens.get(id as usize).map_or(0, |t| t.attr)
    }

    fn id_of_str(&self, text: &str) -> Option<TokenId> {
        self.id_of(text.as_bytes())
    }

    fn add_attr(&mut self, id: TokenId, bits: u16) {
        if let Some(t) = self.tokens.get_mut(id as usize) {
            t.attr |= bits;
        }
    }

    /// EOT, EOM and FIM roles not given by keys are found by token text; a token that gets a role
    /// this way is made a control token. (llama.cpp takes the first match in hash order; the lowest
    /// id is taken here.)
    fn detect_special_by_text(&mut self) {
        let roles: [(IdSlot, &[&str]); 8] = [
            (|ids| &mut ids.eot, EOT_TEXTS),
            (|ids| &mut ids.eom, EOM_TEXTS),
            (|ids| &mut ids.fim_pre, FIM_PRE_TEXTS),
            (|ids| &mut ids.fim_suf, FIM_SUF_TEXTS),
            (|ids| &mut ids.fim_mid, FIM_MID_TEXTS),
            (|ids| &mut ids.fim_pad, FIM_PAD_TEXTS),
            (|ids| &mut ids.fim_rep, FIM_REP_TEXTS),
            (|ids| &mut ids.fim_sep, FIM_SEP_TEXTS),
        ];
        for (slot, texts) in roles {
            if slot(&mut self.ids).is_some() {
                continue;
            }
            if let Some(id) = texts.iter().filter_map(|t| self.id_of_str(t)).min() {
                *slot(&mut self.ids) = Some(id);
                self.add_attr(id, attr::CONTROL);
            }
        }
    }

    /// Control tokens named "...unused..." are unused slots.
    fn mark_unused(&mut self) {
        for t in &mut self.tokens {
            if t.attr & attr::CONTROL != 0 && t.text.contains("unused") {
                t.attr |= attr::UNUSED;
            }
        }
    }

    fn collect_eog(&mut self) {
        let mut eog: BTreeSet<TokenId> =
            [self.ids.fim_pad, self.ids.fim_rep, self.ids.fim_sep].into_iter().flatten().collect();
        for text in EOG_TEXTS {
            if let Some(id) = self.id_of_str(text) {
                eog.insert(id);
                self.add_attr(id, attr::CONTROL);
            }
        }
        for text in ALWAYS_USER_DEFINED {
            if let Some(id) = self.id_of_str(text) {
                self.tokens[id as usize].attr = attr::USER_DEFINED;
            }
        }
        eog.extend([self.ids.eos, self.ids.eot, self.ids.eom].into_iter().flatten());

        // Harmony-style vocabs use <|end|> between messages, not at the end of generation.
        let in_eog = |t: &str| self.id_of_str(t).filter(|id| eog.contains(id));
        let end_id = in_eog("<|end|>");
        let has_call = in_eog("<|call|>").is_some() || in_eog("<|calls|>").is_some();
        let harmony = has_call && (in_eog("<|return|>").is_some() || in_eog("<|flush|>").is_some());
        // Vocabs with these markers use </s> as ordinary text.
        let s_id = in_eog("</s>");
        let plain_s = in_eog("<|tool_response>").is_some() || in_eog("<|plamo:eos|>").is_some();
        if let (Some(id), true) = (end_id, harmony) {
            eog.remove(&id);
            self.tokens[id as usize].attr = attr::USER_DEFINED;
        }
        if let (Some(id), true) = (s_id, plain_s) {
            eog.remove(&id);
            self.tokens[id as usize].attr = attr::NORMAL;
        }
        self.eog = eog;
    }

    fn special_tokens_longest_first(&self) -> Vec<TokenId> {
        let special = attr::CONTROL | attr::USER_DEFINED | attr::UNKNOWN;
        let mut order: Vec<TokenId> = (0..self.tokens.len() as TokenId)
            .filter(|&id| self.tokens[id as usize].attr & special != 0)
            .collect();
        order.sort_by_key(|&id| std::cmp::Reverse(self.tokens[id as usize].text.len()));
        order
    }

    /// Per-model strip attributes (the GGUF has no field for them; llama.cpp keys them on names).
    fn apply_strip_attributes(&mut self, name_lower: &str, arch: &str) {
        let pre_has = |keys: &[&str]| keys.iter().any(|k| self.pre_name.contains(k));
        if pre_has(&["jina-v2-de", "jina-v2-es", "jina-v2-code", "mmbert"])
            || ["nomic-bert-moe", "jina-bert-v3"].iter().any(|k| arch.contains(k))
        {
            if let Some(id) = self.id_of_str("<mask>") {
                self.add_attr(id, attr::LSTRIP);
            }
        } else if name_lower.contains("phi-3") || name_lower.contains("phi3") {
            for id in self.special_search_order.clone() {
                self.add_attr(id, attr::RSTRIP);
            }
            if let Some(id) = self.id_of_str("</s>") {
                self.add_attr(id, attr::RSTRIP);
            }
            for text in ["<unk>", "<s>", "<|endoftext|>"] {
                if let Some(id) = self.id_of_str(text) {
                    self.tokens[id as usize].attr &= !attr::RSTRIP;
                }
            }
        } else if name_lower.contains("modern-bert") {
            if let Some(id) = self.id_of_str("[MASK]") {
                self.add_attr(id, attr::LSTRIP);
            }
        }
    }
}

type TokenTables = (Vec<TokenData>, FastMap<Box<[u8]>, TokenId>);

fn read_tokens(file: &GgufFile) -> Result<TokenTables, TokenizerError> {
    let texts = file
        .get_str_array(TOK_TOKENS)?
        .ok_or_else(|| invalid(format!("missing metadata key {TOK_TOKENS} (the vocab)")))?;
    let n = texts.len();
    if n == 0 || n > TokenId::MAX as usize {
        return Err(invalid(format!("vocab of {n} tokens")));
    }
    let scores = file.get_f32_array(TOK_SCORES)?;
    if let Some(s) = &scores {
        if s.len() < n {
            return Err(invalid(format!("{} scores for {n} tokens", s.len())));
        }
    }
    let types = file.get_i32_array(TOK_TOKEN_TYPE)?;
    if let Some(t) = &types {
        if t.len() < n {
            return Err(invalid(format!("{} token types for {n} tokens", t.len())));
        }
    }
    let mut tokens = Vec::with_capacity(n);
    let mut by_text = FastMap::with_capacity_and_hasher(n, Default::default());
    for (i, text) in texts.into_iter().enumerate() {
        let text = if text.is_empty() { format!("[EMPTY_{i}]") } else { text.to_string() };
        if by_text.insert(text.as_bytes().into(), i as TokenId).is_some() {
            return Err(invalid(format!("duplicate token text {text:?} (id {i})")));
        }
        tokens.push(TokenData {
            text,
            score: scores.as_ref().map_or(0.0, |s| s[i]),
            attr: types.as_ref().map_or(attr::NORMAL, |t| attr_of_type(t[i])),
        });
    }
    Ok((tokens, by_text))
}

/// Ids given by keys replace the defaults when they are inside the vocab; defaults outside it are
/// dropped.
fn read_special_ids(file: &GgufFile, ids: &mut SpecialIds, n_vocab: usize) -> Result<(), TokenizerError> {
    let slots: [(&str, IdSlot); 17] = [
        (TOK_BOS_ID, |ids| &mut ids.bos),
        (TOK_EOS_ID, |ids| &mut ids.eos),
        (TOK_EOT_ID, |ids| &mut ids.eot),
        (TOK_EOM_ID, |ids| &mut ids.eom),
        (TOK_UNK_ID, |ids| &mut ids.unk),
        (TOK_SEP_ID, |ids| &mut ids.sep),
        (TOK_PAD_ID, |ids| &mut ids.pad),
        (TOK_MASK_ID, |ids| &mut ids.mask),
        (TOK_FIM_PRE_ID, |ids| &mut ids.fim_pre),
        (TOK_FIM_SUF_ID, |ids| &mut ids.fim_suf),
        (TOK_FIM_MID_ID, |ids| &mut ids.fim_mid),
        (TOK_FIM_PAD_ID, |ids| &mut ids.fim_pad),
        (TOK_FIM_REP_ID, |ids| &mut ids.fim_rep),
        (TOK_FIM_SEP_ID, |ids| &mut ids.fim_sep),
        (TOK_PREFIX_ID, |ids| &mut ids.fim_pre),
        (TOK_SUFFIX_ID, |ids| &mut ids.fim_suf),
        (TOK_MIDDLE_ID, |ids| &mut ids.fim_mid),
    ];
    for (key, slot_of) in slots {
        let slot = slot_of(ids);
        if slot.is_some_and(|id| id as usize >= n_vocab) {
            *slot = None;
        }
        let Some(value) = file.get(key) else { continue };
        let id = value.as_i128().ok_or_else(|| invalid(format!("{key} must be an integer")))?;
        if (0..n_vocab as i128).contains(&id) {
            *slot = Some(id as TokenId);
        }
    }
    Ok(())
}
