//! BPE pre-tokenization: cutting text into words before merges, per `tokenizer.ggml.pre`.
//!
//! llama.cpp applies a list of regexes in turn, each one splitting every piece left by the previous
//! one (unmatched stretches stay pieces too). Its most used patterns (GPT-2, Llama-3, Qwen2, Qwen3.5,
//! Kimi-K2, AFMoE digits, newline runs) are hand-written scanners there with their own corner cases
//! (for instance `\s+(?!\S)` at the end of a piece), so they are scanners here with the same
//! behaviour, and so are a few simple class patterns (`\p{N}`, `[0-9]{3}`, punctuation runs). Every
//! other pattern llama.cpp gives to `std::regex`; here it goes to fancy-regex on the same transformed
//! text (see `regex_split`). Every pre-type name llama.cpp 11434 knows is in the table.

use super::regex_split::{PatternError, PatternSplit};
use super::unicode::Flags;
use std::ops::Range;

/// One splitting pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
    Gpt2,
    /// Llama-3: case-insensitive contractions, `[^\r\n\p{L}\p{N}]?\p{L}+`, `\p{N}{1,3}`,
    /// ` ?[^\s\p{L}\p{N}]+[\r\n]*`, `\s*[\r\n]+`, `\s+(?!\S)`, `\s+`.
    Llama3,
    /// As [`Split::Llama3`] with single digits (`\p{N}`).
    Qwen2,
    /// As [`Split::Qwen2`] with combining marks counted as letters.
    Qwen35,
    /// `[^\n]+|[\n]+`
    Newlines,
    /// `\p{N}`: every number character alone.
    SingleNumber,
    /// `\p{N}+`
    NumberRun,
    /// `[\p{P}\$\+<=>\^~\|]+`, with the backtick too when `backtick` (Falcon).
    PunctRun { backtick: bool },
    /// `[0-9][0-9][0-9]`
    AsciiDigitTriples,
    /// Kimi-K2: Han runs, then the Llama-3 pattern with Han left out of the letters and optional
    /// contractions after a word (llama.cpp's scanner for it, which ignores marks).
    KimiK2,
    /// Number runs cut into threes from the right; the text before a run joins its first group
    /// (llama.cpp's AFMoE scanner, also what it runs for Tiny Aya's `\d{1,3}(?=(?:\d{3})*\b)`).
    AfmoeDigits,
    /// A pattern as llama.cpp writes it, run by the regex engine (see `regex_split`).
    Regex(&'static str),
}

/// What a `tokenizer.ggml.pre` name means for a BPE vocab.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PreConfig {
    pub steps: &'static [Split],
    /// A word that is itself a token is not merged (Llama-3 style).
    pub ignore_merges: bool,
    /// The pre-type turns BOS on by default (a GGUF key still overrides).
    pub force_add_bos: bool,
    pub clean_spaces: bool,
    /// The pre-type has no BOS token by default.
    pub no_bos: bool,
    /// Words are GPT-2 byte characters (false: raw UTF-8, byte tokens spelled `<0xXX>`).
    pub byte_encode: bool,
    /// Spaces become `▁` before splitting (SPM-style BPE: Gemma 4, Sarvam, mmBERT).
    pub escape_whitespaces: bool,
    /// Gemma 4 / mmBERT: a word of newlines only is one token when the vocab has it.
    pub newline_words: bool,
    /// mmBERT: each `▁` starts a new word, and every word starts with one.
    pub metaspace_words: bool,
    /// BOS forced on even when the file says false (llama.cpp's Gemma 4 workaround).
    pub always_add_bos: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PreError {
    Unknown(String),
}

const DEFAULT: &[Split] =
    &[Split::PunctRun { backtick: false }, Split::Gpt2, Split::NumberRun, Split::AsciiDigitTriples];
const GPT2: &[Split] = &[Split::Gpt2];
const LLAMA3: &[Split] = &[Split::Llama3];
const QWEN2: &[Split] = &[Split::Qwen2];
const QWEN35: &[Split] = &[Split::Qwen35];
const STARCODER: &[Split] = &[Split::SingleNumber, Split::Gpt2];
const FALCON: &[Split] = &[Split::PunctRun { backtick: true }, Split::Gpt2, Split::AsciiDigitTriples];
const LAGUNA: &[Split] = &[Split::Newlines, Split::Qwen2];
const NEWLINES: &[Split] = &[Split::Newlines];
const KIMI_K2: &[Split] = &[Split::KimiK2];

// The patterns llama.cpp hands to std::regex, per pre-type (as written there, C escapes resolved).
const JAIS2: &[Split] = &[Split::Regex(
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s{512}(?!\S)|\s{256}(?!\S)|\s{128}(?!\S)|\s{64}(?!\S)|\s{32}(?!\S)|\s{16}(?!\S)|\s{8}(?!\S)|\s{4}(?!\S)|\s{1,2}(?!\S)|\s{1}",
)];
const DEEPSEEK_LLM: &[Split] = &[
    Split::Regex(r"[\r\n]"),
    Split::Regex("\\s?[A-Za-z\u{B5}\u{C0}-\u{D6}\u{D8}-\u{F6}\u{F8}-\u{1BA}\u{1BC}-\u{1BF}\u{1C4}-\u{293}\u{295}-\u{2AF}\u{370}-\u{373}\u{376}\u{377}\u{37B}-\u{37D}\u{37F}\u{386}\u{388}-\u{38A}\u{38C}\u{38E}-\u{3A1}\u{3A3}-\u{3F5}\u{3F7}-\u{481}\u{48A}-\u{52F}\u{531}-\u{556}\u{10A0}-\u{10C5}\u{13A0}-\u{13F5}\u{13F8}-\u{13FD}\u{1C90}-\u{1CBA}\u{1CBD}-\u{1CBF}\u{1D00}-\u{1D2B}\u{1D6B}-\u{1D77}\u{1D79}-\u{1D9A}\u{1E00}-\u{1F15}\u{1F18}-\u{1F1D}\u{1F20}-\u{1F45}\u{1F48}-\u{1F4D}\u{1F50}-\u{1F57}\u{1F59}\u{1F5B}\u{1F5D}\u{1F5F}-\u{1F7D}\u{1F80}-\u{1FB4}\u{1FB6}-\u{1FBC}\u{1FBE}\u{1FC2}-\u{1FC4}\u{1FC6}-\u{1FCC}\u{1FD0}-\u{1FD3}\u{1FD6}-\u{1FDB}\u{1FE0}-\u{1FEC}\u{1FF2}-\u{1FF4}\u{1FF6}-\u{1FFC}\u{2102}\u{2107}\u{210A}-\u{2113}\u{2115}\u{2119}-\u{211D}\u{2124}\u{2126}\u{2128}\u{212A}-\u{212D}\u{212F}-\u{2134}\u{2139}\u{213C}-\u{213F}\u{2145}-\u{2149}\u{214E}\u{2183}\u{2184}\u{2C00}-\u{2C7B}\u{2C7E}-\u{2CE4}\u{2CEB}-\u{2CEE}\u{2CF2}\u{2CF3}\u{A640}-\u{A66D}\u{A680}-\u{A69B}\u{A722}-\u{A76F}\u{A771}-\u{A787}\u{A78B}-\u{A78E}\u{AB70}-\u{ABBF}\u{FB00}-\u{FB06}\u{FB13}-\u{FB17}\u{FF21}-\u{FF3A}\u{FF41}-\u{FF5A}\u{10400}-\u{1044F}\u{104B0}-\u{104D3}\u{104D8}-\u{104FB}\u{10C80}-\u{10CB2}\u{10CC0}-\u{10CF2}\u{118A0}-\u{118DF}\u{1E900}-\u{1E943}]+"),
    Split::Regex("\\s?[!-/:-~\u{FF01}-\u{FF0F}\u{FF1A}-\u{FF5E}\u{2018}-\u{201F}\u{3000}-\u{3002}]+"),
    Split::Regex(r"\s+$"),
    Split::Regex("[\u{4E00}-\u{9FA5}\u{800}-\u{4E00}\u{AC00}-\u{D7FF}]+"),
    Split::NumberRun,
];
const DEEPSEEK3_MAIN: &str = r##"[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"##;
const DEEPSEEK3: &[Split] = &[
    Split::Regex(r"\p{N}{1,3}"),
    Split::Regex("[\u{4E00}-\u{9FA5}\u{3040}-\u{309F}\u{30A0}-\u{30FF}]+"),
    Split::Regex(DEEPSEEK3_MAIN),
];
const SPARK2_5: &[Split] = &[
    Split::Regex(r"\p{N}{1,3}"),
    Split::Regex("[\u{4E00}-\u{9FA5}\u{3040}-\u{309F}\u{30A0}-\u{30FF}]+"),
    Split::Regex(
        r##"[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+|[\r\n]|\s+(?!\S)|\s+"##,
    ),
    Split::SingleNumber,
];
const YOUTU: &[Split] = &[
    Split::Regex("[\u{AC00}-\u{D7A3}\u{3131}-\u{318E}]+|[\u{FF01}\u{2026}\u{201C}\u{201D}\u{2018}\u{2019}\u{2014}\u{FF1A}\u{FF1B}\u{FF0C}\u{3001}-\u{303F}\u{FE30}-\u{FE4F}]+|[\u{3105}-\u{312F}]+|[\u{4E00}-\u{9FA5}\u{3040}-\u{309F}\u{30A0}-\u{30FF}]+"),
    Split::Regex(
        r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+",
    ),
];
const DEEPSEEK_CODER: &[Split] = &[
    Split::Regex(r"[\r\n]"),
    Split::Regex(r"\s?\p{L}+"),
    Split::Regex(r"\s?\p{P}+"),
    Split::Regex("[\u{4E00}-\u{9FA5}\u{800}-\u{4E00}\u{AC00}-\u{D7FF}]+"),
    Split::SingleNumber,
];
const BLOOM: &[Split] =
    &[Split::Regex(" ?[^(\\s|.,!?\u{2026}\u{3002}\u{FF0C}\u{3001}\u{964}\u{6D4}\u{60C})]+")];
const VIKING: &[Split] = &[
    Split::Regex(" ?[^(\\s|.,!?\u{2026}\u{3002}\u{FF0C}\u{3001}\u{964}\u{6D4}\u{60C})]+"),
    Split::SingleNumber,
];
const TEKKEN: &[Split] = &[Split::Regex(
    r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+",
)];
const CHAMELEON: &[Split] = &[
    Split::Regex(r"<sentinel:[0-9]+>"),
    Split::Regex(r"(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z"),
    Split::Regex(r"([\t\n]|    |  )"),
    Split::SingleNumber,
    Split::Regex(r"[\p{P}!-/:-@\[-`{-~]"),
    Split::Gpt2,
];
const GPT4O: &[Split] = &[Split::Regex(
    r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+",
)];
const GRANITE_EMB_MULTI: &[Split] = &[Split::Regex(
    r"[^\r\n\p{L}\p{N}]?((?=[\p{L}\p{M}])([^a-z]))*((?=[\p{L}\p{M}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?((?=[\p{L}\p{M}])([^a-z]))+((?=[\p{L}\p{M}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+",
)];
const TINY_AYA: &[Split] = &[
    Split::AfmoeDigits,
    Split::Regex(
        r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+",
    ),
];
const SUPERBPE: &[Split] = &[Split::NumberRun, Split::Regex(r"(?=(\d{3})+(?!\d))")];
const BAILINGMOE: &[Split] = &[Split::Regex(
    r"'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+",
)];
const SEED_CODER: &[Split] = &[Split::Regex(
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1}| ?[^\s\p{L}\p{N}\r\n]+|\s*[\r\n]+|\s+(?!\S)|\s+",
)];
const UFAKZEKA: &[Split] =
    &[Split::Regex(r"[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")];
const AFMOE: &[Split] = &[
    Split::AfmoeDigits,
    Split::Regex("[\u{4E00}-\u{9FFF}\u{3400}-\u{4DBF}\u{8C48}-\u{FAFF}\u{3040}-\u{309F}\u{30A0}-\u{30FF}\u{FF65}-\u{FF9F}\u{2F00}-\u{2FDF}\u{E40}-\u{E7F}\u{E80}-\u{EFF}\u{1780}-\u{17FF}\u{1000}-\u{109F}\u{AA60}-\u{AA7F}\u{A9E0}-\u{A9FF}\u{AC00}-\u{D7AF}\u{1100}-\u{11FF}]+"),
    Split::Regex(
        r##"[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"##,
    ),
];
const EXAONE_MOE: &[Split] = &[Split::Regex(
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?(?:\p{L}\p{M}*(?: \p{L}\p{M}*)*)+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]?|\s*[\r\n]|\s+(?!\S)|\s+",
)];
const MINICPM5: &[Split] = &[
    Split::Regex(r"\p{N}{1,3}"),
    Split::Regex(
        r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}+| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
    ),
];
const WHITESPACE: &[Split] = &[Split::Regex(r"\S+")];

impl PreConfig {
    /// The configuration for a pre-type name; an absent name means `default`.
    pub fn from_name(name: &str) -> Result<PreConfig, PreError> {
        let base = PreConfig {
            steps: DEFAULT,
            ignore_merges: false,
            force_add_bos: false,
            clean_spaces: true,
            no_bos: false,
            byte_encode: true,
            escape_whitespaces: false,
            newline_words: false,
            metaspace_words: false,
            always_add_bos: false,
        };
        let plain = |steps| PreConfig { steps, ..base };
        let unclean = |steps| PreConfig { steps, clean_spaces: false, ..base };
        let spm_style = PreConfig { steps: NEWLINES, byte_encode: false, escape_whitespaces: true, ..base };
        Ok(match name {
            "" | "default" => base,
            "minicpm5" => PreConfig { ignore_merges: true, ..plain(MINICPM5) },
            "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0"
            | "lfm2" | "jina-v5-nano" => {
                PreConfig { ignore_merges: true, force_add_bos: true, ..plain(LLAMA3) }
            }
            "deepseek-llm" => unclean(DEEPSEEK_LLM),
            "deepseek-coder" => unclean(DEEPSEEK_CODER),
            "deepseek-v3" | "hunyuan-dense" | "hy_v4" | "joyai-llm" => unclean(DEEPSEEK3),
            "spark2_5" => unclean(SPARK2_5),
            "youtu" => PreConfig { ignore_merges: true, ..unclean(YOUTU) },
            "falcon" => plain(FALCON),
            "jais-2" => plain(JAIS2),
            "gemma4" | "granite-embed-multi-311m" => {
                PreConfig { newline_words: true, always_add_bos: true, ..spm_style }
            }
            "mmbert" => PreConfig { newline_words: true, metaspace_words: true, ..spm_style },
            "sarvam-moe" => PreConfig { clean_spaces: false, ..spm_style },
            "whitespace" => PreConfig { byte_encode: false, ..plain(WHITESPACE) },
            "dbrx" | "smaug-bpe" => plain(LLAMA3),
            "chatglm-bpe" => PreConfig { no_bos: true, ..plain(LLAMA3) },
            "glm4" | "glm5" => PreConfig { no_bos: true, ignore_merges: true, ..plain(LLAMA3) },
            "gpt-2" | "phi-2" | "jina-es" | "jina-de" | "gigachat" | "jina-v2-es" | "jina-v2-de"
            | "a.x-4.0" | "mellum" | "modern-bert" | "jina-v1-en" | "jina-v2-code" | "roberta-bpe"
            | "mpt" | "olmo" | "jais" | "exaone4" => plain(GPT2),
            "trillion" | "granite-docling" => unclean(GPT2),
            "starcoder" | "refact" | "codeshell" | "exaone" | "minerva-7b" | "mellum2" => plain(STARCODER),
            "command-r" | "smollm" => unclean(STARCODER),
            "qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" | "hunyuan" | "grok-2" | "solar-open" => {
                unclean(QWEN2)
            }
            "stablelm2" | "megrez" => plain(QWEN2),
            "qwen35" => unclean(QWEN35),
            "laguna" => unclean(LAGUNA),
            "poro-chat" => unclean(BLOOM),
            "bloom" | "gpt3-finnish" => plain(BLOOM),
            "viking" => unclean(VIKING),
            "tekken" => PreConfig { ignore_merges: true, force_add_bos: true, ..unclean(TEKKEN) },
            "exaone-moe" => plain(EXAONE_MOE),
            "chameleon" => PreConfig { force_add_bos: true, ..unclean(CHAMELEON) },
            "gpt-4o" | "llama4" | "kanana2" | "talkie" | "minimax-m2" => unclean(GPT4O),
            "granite-embed-multi-97m" => PreConfig { ignore_merges: true, ..unclean(GRANITE_EMB_MULTI) },
            "tiny_aya" | "cohere2moe" => unclean(TINY_AYA),
            "superbpe" => unclean(SUPERBPE),
            "bailingmoe" | "bailingmoe2" | "llada-moe" => unclean(BAILINGMOE),
            "seed-coder" => unclean(SEED_CODER),
            "kimi-k2" => unclean(KIMI_K2),
            "ufakzeka" => unclean(UFAKZEKA),
            "afmoe" => unclean(AFMOE),
            other => return Err(PreError::Unknown(other.to_string())),
        })
    }
}

/// Every pre-type name llama.cpp 11434 knows.
#[cfg(test)]
pub const KNOWN_NAMES: &[&str] = &[
    "default",
    "minicpm5",
    "llama3",
    "llama-v3",
    "llama-bpe",
    "falcon3",
    "falcon-h1",
    "pixtral",
    "midm-2.0",
    "lfm2",
    "jina-v5-nano",
    "deepseek-llm",
    "deepseek-coder",
    "deepseek-v3",
    "spark2_5",
    "youtu",
    "falcon",
    "mpt",
    "starcoder",
    "gpt-2",
    "phi-2",
    "jina-es",
    "jina-de",
    "gigachat",
    "jina-v2-es",
    "jina-v2-de",
    "a.x-4.0",
    "mellum",
    "modern-bert",
    "jais-2",
    "gemma4",
    "granite-embed-multi-311m",
    "mmbert",
    "sarvam-moe",
    "jina-v1-en",
    "jina-v2-code",
    "roberta-bpe",
    "whitespace",
    "refact",
    "command-r",
    "qwen2",
    "deepseek-r1-qwen",
    "kormo",
    "f2llmv2",
    "qwen35",
    "stablelm2",
    "olmo",
    "dbrx",
    "smaug-bpe",
    "poro-chat",
    "chatglm-bpe",
    "glm4",
    "glm5",
    "viking",
    "jais",
    "tekken",
    "smollm",
    "codeshell",
    "bloom",
    "gpt3-finnish",
    "exaone",
    "exaone4",
    "exaone-moe",
    "chameleon",
    "minerva-7b",
    "megrez",
    "gpt-4o",
    "llama4",
    "kanana2",
    "talkie",
    "granite-embed-multi-97m",
    "tiny_aya",
    "cohere2moe",
    "superbpe",
    "trillion",
    "granite-docling",
    "bailingmoe",
    "bailingmoe2",
    "llada-moe",
    "seed-coder",
    "hunyuan",
    "hunyuan-dense",
    "hy_v4",
    "joyai-llm",
    "kimi-k2",
    "ufakzeka",
    "grok-2",
    "afmoe",
    "laguna",
    "minimax-m2",
    "solar-open",
    "mellum2",
];

/// A pre-tokenizer ready to run: its patterns compiled once.
pub struct Splitter {
    steps: Vec<Step>,
}

enum Step {
    Scan(Split),
    Pattern(Box<PatternSplit>),
}

impl Splitter {
    pub fn new(steps: &[Split]) -> Result<Splitter, PatternError> {
        let steps = steps
            .iter()
            .map(|&step| match step {
                Split::Regex(pattern) => PatternSplit::new(pattern).map(|p| Step::Pattern(Box::new(p))),
                other => Ok(Step::Scan(other)),
            })
            .collect::<Result<_, _>>()?;
        Ok(Splitter { steps })
    }

    /// Cut `cpts` into words (ranges of code-point indices, in order, covering everything).
    pub fn split(&self, cpts: &[u32]) -> Vec<Range<usize>> {
        let flags: Vec<Flags> = cpts.iter().map(|&c| Flags::of(c)).collect();
        let mut pieces: Vec<Range<usize>> = std::iter::once(0..cpts.len()).collect();
        for step in &self.steps {
            let mut next = Vec::with_capacity(pieces.len() * 2);
            match step {
                Step::Pattern(pattern) => {
                    let prepared = pattern.prepare(cpts);
                    for piece in pieces {
                        pattern.split(&prepared, piece, &mut next);
                    }
                }
                Step::Scan(split) => {
                    for piece in pieces {
                        let scan = Scan { cpts, flags: &flags, end: piece.end };
                        let mut out = Out { prev_end: piece.start, pieces: &mut next };
                        scan_piece(*split, &scan, piece.start, &mut out);
                        out.emit(piece.end);
                    }
                }
            }
            pieces = next;
        }
        pieces
    }
}

/// A one-off [`Splitter`] run (tests).
#[cfg(test)]
pub fn split_words(steps: &[Split], cpts: &[u32]) -> Vec<Range<usize>> {
    match Splitter::new(steps) {
        Ok(splitter) => splitter.split(cpts),
        Err(_) => std::iter::once(0..cpts.len()).filter(|r| !r.is_empty()).collect(),
    }
}

fn scan_piece(step: Split, scan: &Scan, start: usize, out: &mut Out) {
    match step {
        Split::Gpt2 => scan_gpt2(scan, start, out),
        Split::Llama3 => scan_llama3_like(scan, start, Digits::UpToThree, false, out),
        Split::Qwen2 => scan_llama3_like(scan, start, Digits::One, false, out),
        Split::Qwen35 => scan_llama3_like(scan, start, Digits::One, true, out),
        Split::Newlines => scan_newlines(scan, start, out),
        Split::KimiK2 => scan_kimi_k2(scan, start, out),
        Split::AfmoeDigits => scan_afmoe_digits(scan, start, out),
        Split::SingleNumber => scan_matches(scan, start, out, |s, i| s.flags(i).number.then_some(i + 1)),
        Split::NumberRun => {
            scan_matches(scan, start, out, |s, i| s.flags(i).number.then(|| s.run_end(i, |f, _| f.number)))
        }
        Split::PunctRun { backtick } => scan_matches(scan, start, out, |s, i| {
            let is_punct = |f: Flags, c: u32| {
                f.punctuation
                    || matches!(char::from_u32(c), Some('$' | '+' | '<' | '=' | '>' | '^' | '~' | '|'))
                    || (backtick && c == u32::from(b'`'))
            };
            is_punct(s.flags(i), s.cpt(i)).then(|| s.run_end(i, is_punct))
        }),
        Split::AsciiDigitTriples => scan_matches(scan, start, out, |s, i| {
            (i..i + 3).all(|k| s.cpt(k).wrapping_sub(u32::from(b'0')) < 10).then_some(i + 3)
        }),
        // Patterns are compiled by `Splitter::new` and never reach the scanners.
        Split::Regex(_) => {}
    }
}

/// Read access to one piece: positions at or past `end` read as "nothing" (llama.cpp's scanners
/// look ahead past the end of a piece and see no character there).
struct Scan<'a> {
    cpts: &'a [u32],
    flags: &'a [Flags],
    end: usize,
}

const NONE: u32 = u32::MAX;

impl Scan<'_> {
    fn cpt(&self, i: usize) -> u32 {
        if i < self.end {
            self.cpts[i]
        } else {
            NONE
        }
    }
    fn flags(&self, i: usize) -> Flags {
        if i < self.end {
            self.flags[i]
        } else {
            Flags::default()
        }
    }
    /// First position at or after `i` where `keep` fails.
    fn run_end(&self, mut i: usize, keep: impl Fn(Flags, u32) -> bool) -> usize {
        while i < self.end && keep(self.flags[i], self.cpts[i]) {
            i += 1;
        }
        i
    }
}

/// Collects pieces; an empty piece is never emitted.
struct Out<'a> {
    prev_end: usize,
    pieces: &'a mut Vec<Range<usize>>,
}

impl Out<'_> {
    fn emit(&mut self, end: usize) {
        if end > self.prev_end {
            self.pieces.push(self.prev_end..end);
        }
        self.prev_end = end;
    }
}

fn is_char(cpt: u32, c: char) -> bool {
    cpt == c as u32
}

fn is_cr_or_lf(cpt: u32) -> bool {
    is_char(cpt, '\r') || is_char(cpt, '\n')
}

/// `'s|'t|'re|'ve|'m|'ll|'d` (`fold`: ASCII case-insensitive) starting at `pos`; the end if matched.
fn contraction_end(s: &Scan, pos: usize, fold: bool) -> Option<usize> {
    if !is_char(s.cpt(pos), '\'') || pos + 1 >= s.end {
        return None;
    }
    let lower =
        |c: u32| if fold { char::from_u32(c).map_or(c, |ch| ch.to_ascii_lowercase() as u32) } else { c };
    let next = lower(s.cpt(pos + 1));
    if ['s', 't', 'm', 'd'].iter().any(|&c| is_char(next, c)) {
        return Some(pos + 2);
    }
    if pos + 2 < s.end {
        let after = lower(s.cpt(pos + 2));
        let pair = |a, b| is_char(next, a) && is_char(after, b);
        if pair('r', 'e') || pair('v', 'e') || pair('l', 'l') {
            return Some(pos + 3);
        }
    }
    None
}

/// Length of the white-space run at `pos`, and the position just past its last CR/LF (if any).
fn whitespace_run(s: &Scan, pos: usize) -> (usize, Option<usize>) {
    let mut n = 0;
    let mut past_last_newline = None;
    while s.flags(pos + n).whitespace {
        if is_cr_or_lf(s.cpt(pos + n)) {
            past_last_newline = Some(pos + n + 1);
        }
        n += 1;
    }
    (n, past_last_newline)
}

/// `\s+(?!\S)|\s+` for a run of `n` white-space characters at `pos`: a run followed by more text
/// gives its last character to the next word.
fn whitespace_end(s: &Scan, pos: usize, n: usize) -> Option<usize> {
    if n > 1 && s.cpt(pos + n) != NONE {
        Some(pos + n - 1)
    } else if n > 0 {
        Some(pos + n)
    } else {
        None
    }
}

fn scan_gpt2(s: &Scan, start: usize, out: &mut Out) {
    let mut pos = start;
    while pos < s.end {
        let cpt = s.cpt(pos);
        let end = contraction_end(s, pos, false).unwrap_or_else(|| {
            let space = usize::from(is_char(cpt, ' '));
            let lead = s.flags(pos + space);
            let other = |f: Flags| !(f.whitespace || f.letter || f.number) && f.present;
            if lead.letter {
                s.run_end(pos + space, |f, _| f.letter)
            } else if lead.number {
                s.run_end(pos + space, |f, _| f.number)
            } else if other(lead) {
                s.run_end(pos + space, |f, _| other(f))
            } else {
                let (n, _) = whitespace_run(s, pos);
                whitespace_end(s, pos, n).unwrap_or(pos + 1)
            }
        });
        out.emit(end);
        pos = end;
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Digits {
    One,
    UpToThree,
}

fn scan_llama3_like(s: &Scan, start: usize, digits: Digits, marks: bool, out: &mut Out) {
    let wordy = |f: Flags| f.letter || (marks && f.mark);
    let mut pos = start;
    while pos < s.end {
        if let Some(end) = contraction_end(s, pos, true) {
            out.emit(end);
            pos = end;
            continue;
        }
        let cpt = s.cpt(pos);
        let flags = s.flags(pos);
        // [^\r\n\p{L}\p{N}]?\p{L}+ : any one non-newline, non-digit character may lead the letters.
        if !(is_cr_or_lf(cpt) || flags.number) && (wordy(flags) || wordy(s.flags(pos + 1))) {
            pos = s.run_end(pos + 1, |f, _| wordy(f));
            out.emit(pos);
            continue;
        }
        if flags.number {
            match digits {
                Digits::One => pos += 1,
                Digits::UpToThree => {
                    let mut group_start = pos;
                    while s.flags(pos).number {
                        pos += 1;
                        if pos - group_start >= 3 {
                            out.emit(pos);
                            group_start = pos;
                        }
                    }
                }
            }
            out.emit(pos);
            continue;
        }
        // ` ?[^\s\p{L}\p{N}]+[\r\n]*` (the first character itself only needs to exist).
        let space = usize::from(is_char(cpt, ' '));
        let other = |f: Flags| !(f.whitespace || wordy(f) || f.number);
        if other(s.flags(pos + space)) && flags.present {
            pos = s.run_end(pos + space, |f, _| other(f) && f.present);
            while is_cr_or_lf(s.cpt(pos)) {
                pos += 1;
            }
            out.emit(pos);
            continue;
        }
        let (n, past_last_newline) = whitespace_run(s, pos);
        pos = past_last_newline.or_else(|| whitespace_end(s, pos, n)).unwrap_or(pos + 1);
        out.emit(pos);
    }
}

/// The Han ideograph blocks llama.cpp's Kimi-K2 scanner sets apart.
fn is_han(cpt: u32) -> bool {
    matches!(
        cpt,
        0x4E00..=0x9FFF
            | 0x3400..=0x4DBF
            | 0x20000..=0x2A6DF
            | 0x2A700..=0x2B73F
            | 0x2B740..=0x2B81F
            | 0x2B820..=0x2CEAF
            | 0x2CEB0..=0x2EBEF
            | 0xF900..=0xFAFF
            | 0x2F800..=0x2FA1F
    )
}

fn scan_kimi_k2(s: &Scan, start: usize, out: &mut Out) {
    let letter = |i: usize| s.flags(i).letter && !is_han(s.cpt(i));
    let mut pos = start;
    while pos < s.end {
        let cpt = s.cpt(pos);
        let flags = s.flags(pos);
        if is_han(cpt) {
            pos = s.run_end(pos, |_, c| is_han(c));
            out.emit(pos);
            continue;
        }
        // [^\r\n\p{L}\p{N}]?[letters but Han]+ then an optional contraction.
        let may_lead = !(is_cr_or_lf(cpt) || flags.letter || flags.number);
        if letter(pos) || (may_lead && letter(pos + 1)) {
            pos += usize::from(may_lead);
            while letter(pos) {
                pos += 1;
            }
            if let Some(end) = contraction_end(s, pos, true) {
                pos = end;
            }
            out.emit(pos);
            continue;
        }
        if flags.number {
            let mut group_start = pos;
            while s.flags(pos).number {
                pos += 1;
                if pos - group_start >= 3 {
                    out.emit(pos);
                    group_start = pos;
                }
            }
            out.emit(pos);
            continue;
        }
        // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
        let space = usize::from(is_char(cpt, ' '));
        let other = |f: Flags| !(f.whitespace || f.letter || f.number) && f.present;
        if other(s.flags(pos + space)) {
            pos = s.run_end(pos + space, |f, _| other(f));
            while is_cr_or_lf(s.cpt(pos)) {
                pos += 1;
            }
            out.emit(pos);
            continue;
        }
        let (n, past_last_newline) = whitespace_run(s, pos);
        pos = past_last_newline.or_else(|| whitespace_end(s, pos, n)).unwrap_or(pos + 1);
        out.emit(pos);
    }
}

/// Number runs in groups of three counted from the right (a short group first). Whatever came
/// before a run since the last cut becomes part of the run's first group, as in llama.cpp.
fn scan_afmoe_digits(s: &Scan, start: usize, out: &mut Out) {
    let mut pos = start;
    while pos < s.end {
        if !s.flags(pos).number {
            pos += 1;
            continue;
        }
        let run_start = pos;
        pos = s.run_end(pos, |f, _| f.number);
        let mut cut = run_start + (pos - run_start) % 3;
        if cut > run_start {
            out.emit(cut);
        }
        while cut < pos {
            cut += 3;
            out.emit(cut);
        }
    }
}

fn scan_newlines(s: &Scan, start: usize, out: &mut Out) {
    let mut pos = start;
    while pos < s.end {
        let newline = is_char(s.cpt(pos), '\n');
        pos = s.run_end(pos, |_, c| is_char(c, '\n') == newline);
        out.emit(pos);
    }
}

/// Leftmost, non-overlapping matches of a simple pattern: `match_at(i)` gives the end of a match
/// starting at `i`. The stretches between matches stay pieces of their own.
fn scan_matches(s: &Scan, start: usize, out: &mut Out, match_at: impl Fn(&Scan, usize) -> Option<usize>) {
    let mut pos = start;
    while pos < s.end {
        match match_at(s, pos) {
            Some(end) => {
                out.emit(pos);
                out.emit(end);
                pos = end;
            }
            None => pos += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(steps: &[Split], text: &str) -> Vec<String> {
        let cpts: Vec<u32> = text.chars().map(|c| c as u32).collect();
        split_words(steps, &cpts)
            .into_iter()
            .map(|r| cpts[r].iter().filter_map(|&c| char::from_u32(c)).collect())
            .collect()
    }

    // Expected splits below are what the original patterns give under Python's `regex` module.
    #[test]
    fn gpt2_pattern() {
        assert_eq!(words(GPT2, "Hello world's  end!!\n"), ["Hello", " world", "'s", " ", " end", "!!", "\n"]);
        assert_eq!(words(GPT2, "a   b"), ["a", "  ", " b"]);
        assert_eq!(words(GPT2, "x 123 4.5"), ["x", " 123", " 4", ".", "5"]);
    }

    #[test]
    fn llama3_pattern() {
        assert_eq!(
            words(LLAMA3, "I'M 12345 ok\n\n  x"),
            ["I", "'M", " ", "123", "45", " ok", "\n\n", " ", " x"]
        );
        assert_eq!(words(LLAMA3, "(hello) ...\r\nend"), ["(hello", ")", " ...\r\n", "end"]);
    }

    #[test]
    fn qwen2_and_starcoder_split_digits() {
        assert_eq!(words(QWEN2, "ab 123"), ["ab", " ", "1", "2", "3"]);
        assert_eq!(words(STARCODER, "ab 123x"), ["ab", " ", "1", "2", "3", "x"]);
    }

    #[test]
    fn default_pattern_isolates_punctuation_and_digit_triples() {
        assert_eq!(words(DEFAULT, "a+=b 12345"), ["a", "+=", "b", " ", "123", "45"]);
    }

    #[test]
    fn every_known_pre_type_compiles() {
        for name in KNOWN_NAMES {
            let config = PreConfig::from_name(name).unwrap_or_else(|_| panic!("{name}"));
            Splitter::new(config.steps).unwrap_or_else(|e| panic!("{name}: {}", e.0));
        }
    }

    #[test]
    fn kimi_k2_and_afmoe_scanners() {
        assert_eq!(words(KIMI_K2, "我们Hello's 12345"), ["我们", "Hello's", " ", "123", "45"]);
        assert_eq!(words(KIMI_K2, "(中文"), ["(", "中文"]);
        assert_eq!(words(&[Split::AfmoeDigits], "ab1234 x12"), ["ab1", "234", " x12"]);
    }

    #[test]
    fn pre_names() {
        assert_eq!(PreConfig::from_name("smollm").map(|c| (c.steps, c.clean_spaces)), Ok((STARCODER, false)));
        assert!(PreConfig::from_name("llama-bpe").is_ok_and(|c| c.ignore_merges && c.force_add_bos));
        assert!(PreConfig::from_name("tekken").is_ok_and(|c| c.ignore_merges && !c.clean_spaces));
        assert_eq!(PreConfig::from_name("nope"), Err(PreError::Unknown("nope".into())));
    }
}
