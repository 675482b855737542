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

fn load(name: &str) -> Result<Tokenizer> {
    let path = vocab_dir().join(format!("ggml-vocab-{name}.gguf"));
    let file = GgufFile::open(&path).with_context(|| format!("{}", path.display()))?;
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
    let tok = load(name)?;
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
    assert_eq!(cases.len(), 46, "{name}: the suite has 46 inputs");
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
