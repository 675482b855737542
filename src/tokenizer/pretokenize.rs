//! BPE pre-tokenization: cutting text into words before merges, per `tokenizer.ggml.pre`.
//!
//! llama.cpp applies a list of regexes in turn, each one splitting every piece left by the previous
//! one (unmatched stretches stay pieces too). Its most used patterns are hand-written scanners with
//! their own corner cases (for instance `\s+(?!\S)` at the end of a piece), so they are written here
//! as scanners with the same behaviour rather than handed to a regex engine. The few simple
//! patterns (`\p{N}`, `[0-9]{3}`, punctuation runs) are plain class scans.

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
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PreError {
    Unknown(String),
    Unsupported(String),
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

/// Pre-types llama.cpp knows whose patterns need a general regex engine (lookaheads, script ranges,
/// case classes); they are refused rather than approximated.
const UNSUPPORTED: &[&str] = &[
    "minicpm5",
    "deepseek-llm",
    "deepseek-coder",
    "deepseek-v3",
    "spark2_5",
    "youtu",
    "jais-2",
    "gemma4",
    "granite-embed-multi-311m",
    "mmbert",
    "sarvam-moe",
    "whitespace",
    "poro-chat",
    "viking",
    "tekken",
    "bloom",
    "gpt3-finnish",
    "exaone-moe",
    "chameleon",
    "gpt-4o",
    "llama4",
    "kanana2",
    "talkie",
    "granite-embed-multi-97m",
    "tiny_aya",
    "cohere2moe",
    "superbpe",
    "bailingmoe",
    "bailingmoe2",
    "llada-moe",
    "seed-coder",
    "hunyuan-dense",
    "hy_v4",
    "joyai-llm",
    "kimi-k2",
    "ufakzeka",
    "afmoe",
    "minimax-m2",
];

impl PreConfig {
    /// The configuration for a pre-type name; an absent name means `default`.
    pub fn from_name(name: &str) -> Result<PreConfig, PreError> {
        let base = PreConfig {
            steps: DEFAULT,
            ignore_merges: false,
            force_add_bos: false,
            clean_spaces: true,
            no_bos: false,
        };
        let unclean = |steps| PreConfig { steps, clean_spaces: false, ..base };
        Ok(match name {
            "" | "default" => base,
            "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0"
            | "lfm2" | "jina-v5-nano" => {
                PreConfig { steps: LLAMA3, ignore_merges: true, force_add_bos: true, ..base }
            }
            "dbrx" | "smaug-bpe" => PreConfig { steps: LLAMA3, ..base },
            "chatglm-bpe" => PreConfig { steps: LLAMA3, no_bos: true, ..base },
            "glm4" | "glm5" => PreConfig { steps: LLAMA3, no_bos: true, ignore_merges: true, ..base },
            "falcon" => PreConfig { steps: FALCON, ..base },
            "gpt-2" | "phi-2" | "jina-es" | "jina-de" | "gigachat" | "jina-v2-es" | "jina-v2-de"
            | "a.x-4.0" | "mellum" | "modern-bert" | "jina-v1-en" | "jina-v2-code" | "roberta-bpe"
            | "mpt" | "olmo" | "jais" | "exaone4" => PreConfig { steps: GPT2, ..base },
            "trillion" | "granite-docling" => unclean(GPT2),
            "starcoder" | "refact" | "codeshell" | "exaone" | "minerva-7b" | "mellum2" => {
                PreConfig { steps: STARCODER, ..base }
            }
            "command-r" | "smollm" => unclean(STARCODER),
            "qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" | "hunyuan" | "grok-2" | "solar-open" => {
                unclean(QWEN2)
            }
            "stablelm2" | "megrez" => PreConfig { steps: QWEN2, ..base },
            "qwen35" => unclean(QWEN35),
            "laguna" => unclean(LAGUNA),
            other if UNSUPPORTED.contains(&other) => return Err(PreError::Unsupported(other.to_string())),
            other => return Err(PreError::Unknown(other.to_string())),
        })
    }
}

/// Cut `cpts` into words (ranges of code-point indices, in order, covering everything).
pub fn split_words(steps: &[Split], cpts: &[u32]) -> Vec<Range<usize>> {
    let flags: Vec<Flags> = cpts.iter().map(|&c| Flags::of(c)).collect();
    let mut pieces: Vec<Range<usize>> = std::iter::once(0..cpts.len()).collect();
    for &step in steps {
        let mut next = Vec::with_capacity(pieces.len() * 2);
        for piece in pieces {
            let scan = Scan { cpts, flags: &flags, end: piece.end };
            let mut out = Out { prev_end: piece.start, pieces: &mut next };
            match step {
                Split::Gpt2 => scan_gpt2(&scan, piece.start, &mut out),
                Split::Llama3 => scan_llama3_like(&scan, piece.start, Digits::UpToThree, false, &mut out),
                Split::Qwen2 => scan_llama3_like(&scan, piece.start, Digits::One, false, &mut out),
                Split::Qwen35 => scan_llama3_like(&scan, piece.start, Digits::One, true, &mut out),
                Split::Newlines => scan_newlines(&scan, piece.start, &mut out),
                Split::SingleNumber => {
                    scan_matches(&scan, piece.start, &mut out, |s, i| s.flags(i).number.then_some(i + 1))
                }
                Split::NumberRun => scan_matches(&scan, piece.start, &mut out, |s, i| {
                    s.flags(i).number.then(|| s.run_end(i, |f, _| f.number))
                }),
                Split::PunctRun { backtick } => scan_matches(&scan, piece.start, &mut out, |s, i| {
                    let is_punct = |f: Flags, c: u32| {
                        f.punctuation
                            || matches!(
                                char::from_u32(c),
                                Some('$' | '+' | '<' | '=' | '>' | '^' | '~' | '|')
                            )
                            || (backtick && c == u32::from(b'`'))
                    };
                    is_punct(s.flags(i), s.cpt(i)).then(|| s.run_end(i, is_punct))
                }),
                Split::AsciiDigitTriples => scan_matches(&scan, piece.start, &mut out, |s, i| {
                    (i..i + 3).all(|k| s.cpt(k).wrapping_sub(u32::from(b'0')) < 10).then_some(i + 3)
                }),
            }
            out.emit(piece.end);
        }
        pieces = next;
    }
    pieces
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
    fn pre_names() {
        assert_eq!(PreConfig::from_name("smollm").map(|c| (c.steps, c.clean_spaces)), Ok((STARCODER, false)));
        assert!(PreConfig::from_name("llama-bpe").is_ok_and(|c| c.ignore_merges && c.force_add_bos));
        assert_eq!(PreConfig::from_name("tekken"), Err(PreError::Unsupported("tekken".into())));
        assert_eq!(PreConfig::from_name("nope"), Err(PreError::Unknown("nope".into())));
    }
}
