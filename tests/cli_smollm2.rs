//! `rs-llama` end to end against llama-completion on SmolLM2-135M (f16 made by llama-quantize):
//! same stdout byte for byte (seeded sampling included), same sampler log lines and perf counts.
//! Reference outputs and the commands that made them: tests/fixtures/cli/README.md.
//!
//! Runs when the model is in the cache (`~/.cache/rs-llama/models/`, made by the fixtures script)
//! and the tokenizer can read it; otherwise it says why and passes.

use rs_llama::tokenizer::Tokenizer;
use std::path::PathBuf;
use std::process::Command;

fn model_path() -> Option<PathBuf> {
    let home = std::env::var_os("HOME")?;
    let path = PathBuf::from(home).join(".cache/rs-llama/models/smollm2-135m-f16.gguf");
    path.exists().then_some(path)
}

fn ready() -> Option<PathBuf> {
    let Some(path) = model_path() else {
        eprintln!("skipped: SmolLM2 f16 model not in ~/.cache/rs-llama/models");
        return None;
    };
    let tokenizer_ok = gguf::GgufFile::open(&path).ok().is_some_and(|f| Tokenizer::from_gguf(&f).is_ok());
    if !tokenizer_ok {
        eprintln!("skipped: the tokenizer cannot read {} yet", path.display());
        return None;
    }
    Some(path)
}

fn rs_llama(model: &PathBuf, extra: &[&str]) -> (Option<i32>, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rs-llama"));
    cmd.arg("-m")
        .arg(model)
        .args(["-p", "The capital of France is", "-n", "24", "-no-cnv", "-t", "2"])
        .args(extra);
    match cmd.output() {
        Ok(o) => (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        ),
        Err(e) => panic!("cannot run rs-llama: {e}"),
    }
}

fn check(name: &str, extra: &[&str], expected_stdout: &str, chain_line: &str) {
    let Some(model) = ready() else { return };
    let (code, stdout, stderr) = rs_llama(&model, extra);
    assert_eq!(code, Some(0), "{name}: {stderr}");
    assert_eq!(stdout, expected_stdout, "{name}");
    assert!(stderr.contains(chain_line), "{name}: {stderr}");
    assert!(
        stderr.contains("generate: n_ctx = 8192, n_batch = 2048, n_predict = 24, n_keep = 0\n"),
        "{stderr}"
    );
    // 5 prompt tokens, 24 sampled: 29 accepts, one prompt decode, 23 eval runs.
    for counts in ["ms /    29 tokens", "ms /     5 tokens (", "ms /    23 runs   (", "ms /    28 tokens"] {
        assert!(stderr.contains(counts), "{name}: missing '{counts}' in {stderr}");
    }
}

#[test]
fn seeded_default_sampling_matches_llama_completion() {
    check(
        "seed42",
        &["-s", "42"],
        include_str!("fixtures/cli/smollm2_f16_seed42.out"),
        "sampler chain: logits -> ?penalties -> ?dry -> ?top-n-sigma -> top-k -> ?typical -> top-p -> min-p -> ?xtc -> temp-ext -> dist \n",
    );
}

#[test]
fn greedy_matches_llama_completion() {
    check(
        "greedy",
        &["--temp", "0"],
        include_str!("fixtures/cli/smollm2_f16_greedy.out"),
        "sampler chain: logits -> ?penalties -> ?dry -> ?top-n-sigma -> top-k -> ?typical -> top-p -> min-p -> ?xtc -> temp-ext -> dist \n",
    );
}
