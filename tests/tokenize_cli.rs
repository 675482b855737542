//! `rs-llama-tokenize` against llama.cpp's `llama-tokenize`: the stdout of every case in
//! tests/fixtures/tokenize_cli/cases.txt must equal the stored llama-tokenize output byte for byte
//! (commands in commands.txt there); bad input must give one line on stderr and exit code 1.

use anyhow::{Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn cli_dir() -> PathBuf {
    manifest().join("tests/fixtures/tokenize_cli")
}

fn smollm2() -> Option<PathBuf> {
    let path = Path::new(&std::env::var_os("HOME")?).join(".cache/rs-llama/SmolLM2-135M-Instruct.Q4_1.gguf");
    path.exists().then_some(path)
}

fn run(args: &[String], stdin: &[u8]) -> Result<Output> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rs-llama-tokenize"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child.stdin.take().context("stdin")?.write_all(stdin)?;
    Ok(child.wait_with_output()?)
}

#[test]
fn matches_llama_tokenize_output() -> Result<()> {
    let cases = std::fs::read_to_string(cli_dir().join("cases.txt"))?;
    let smollm2 = smollm2();
    let (mut ran, mut skipped) = (0, 0);
    for line in cases.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let mut fields = line.split('\t');
        let name = fields.next().context("name")?;
        if line.contains("{smollm2}") && smollm2.is_none() {
            skipped += 1;
            continue;
        }
        let args: Vec<String> = fields
            .map(|a| {
                let a = a.replace("{dir}", &cli_dir().display().to_string());
                let a =
                    smollm2.as_ref().map_or(a.clone(), |p| a.replace("{smollm2}", &p.display().to_string()));
                match a.strip_prefix("{vocab:").and_then(|v| v.strip_suffix('}')) {
                    Some(v) => manifest()
                        .join(format!("tests/fixtures/vocab/ggml-vocab-{v}.gguf"))
                        .display()
                        .to_string(),
                    None => a,
                }
            })
            .collect();
        let stdin = std::fs::read(cli_dir().join(format!("{name}.stdin"))).unwrap_or_default();
        let expected = std::fs::read(cli_dir().join(format!("{name}.out")))?;
        let out = run(&args, &stdin)?;
        assert!(
            out.status.success(),
            "{name}: exit {:?}, stderr {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&expected),
            "{name}: stdout differs from llama-tokenize"
        );
        assert_eq!(out.stdout, expected, "{name}: stdout bytes differ from llama-tokenize");
        ran += 1;
    }
    eprintln!("{ran} cases matched llama-tokenize, {skipped} skipped (no SmolLM2 model)");
    assert!(ran >= 7, "the vocab-fixture cases always run");
    Ok(())
}

/// One line on stderr, exit code 1, nothing on stdout, no panic.
fn assert_clean_failure(args: &[&str], what: &str) -> Result<()> {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let out = run(&args, b"")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{what}: exit status, stderr {stderr}");
    assert_eq!(stderr.lines().count(), 1, "{what}: one stderr line, got {stderr:?}");
    assert!(stderr.starts_with("error"), "{what}: {stderr:?}");
    assert!(!stderr.contains("panicked"), "{what}: {stderr:?}");
    assert!(out.stdout.is_empty(), "{what}: stdout should be empty");
    Ok(())
}

#[test]
fn bad_input_is_one_line_and_exit_1() -> Result<()> {
    let vocab = manifest().join("tests/fixtures/vocab/ggml-vocab-gpt-2.gguf").display().to_string();
    let not_gguf = manifest().join("tests/fixtures/tokenize_cli/cases.txt").display().to_string();
    assert_clean_failure(&["-m", "/nonexistent/model.gguf", "-p", "hi"], "missing model")?;
    assert_clean_failure(&["-m", &not_gguf, "-p", "hi"], "not a GGUF")?;
    assert_clean_failure(&["-m", &vocab, "-p", "hi", "--bogus"], "unknown flag")?;
    assert_clean_failure(&["-p", "hi"], "no model")?;
    assert_clean_failure(&["-m", &vocab], "no prompt")?;
    assert_clean_failure(&["-m", &vocab, "-p", ""], "empty prompt")?;
    assert_clean_failure(&["-m", &vocab, "-f", "/nonexistent/prompt.txt"], "missing prompt file")?;
    assert_clean_failure(&["-m", &vocab, "-p"], "flag without value")?;

    let out = run(&["-m".into(), vocab.clone(), "-p".into(), "hi".into(), "--bogus".into()], b"")?;
    assert_eq!(String::from_utf8_lossy(&out.stderr).trim(), "error: invalid argument: --bogus");
    Ok(())
}

#[test]
fn a_truncated_gguf_is_an_error_not_a_panic() -> Result<()> {
    let vocab = std::fs::read(manifest().join("tests/fixtures/vocab/ggml-vocab-llama-spm.gguf"))?;
    let dir = std::env::temp_dir().join(format!("rs-llama-tokenize-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    for cut in [3, 100, vocab.len() / 2] {
        let path = dir.join(format!("cut{cut}.gguf"));
        std::fs::write(&path, &vocab[..cut])?;
        assert_clean_failure(
            &["-m", &path.display().to_string(), "-p", "hi"],
            &format!("truncated at {cut}"),
        )?;
    }
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
