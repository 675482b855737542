//! The malformed-file corpus: every parse-stage case is an error (never a panic) from memory and from
//! disk, and `rs-llama-gguf info` reports it in one line with exit code 1. Truncating the valid base
//! file anywhere, or flipping bytes in it, must never panic.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::Command;

use gguf::malformed::{corpus, valid_model, Stage};
use gguf::value::Metadata;
use gguf::{dequant, GgufFile};

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rs-llama-gguf-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Parse, then touch everything a loader would (metadata, every tensor's bytes, dequantization).
fn parse_and_touch(bytes: Vec<u8>) -> Result<(), gguf::GgufError> {
    let file = GgufFile::from_bytes(bytes)?;
    for (key, _) in &file.kv {
        let _ = file.get_str(key);
        let _ = file.get_u32(key);
        let _ = file.get_str_array(key);
    }
    for t in &file.tensors {
        let data = file.tensor_bytes(t);
        assert_eq!(data.len() as u64, t.n_bytes);
        if dequant::supports(t.dtype) {
            dequant::to_f32(t.dtype, data, t.n_elems() as usize)?;
        }
    }
    Ok(())
}

#[test]
fn base_model_is_valid_and_complete() {
    let file = GgufFile::from_bytes(valid_model()).unwrap();
    assert_eq!(file.architecture().unwrap(), "llama");
    assert_eq!(file.get_u32("llama.block_count").unwrap(), Some(1));
    assert_eq!(file.get_str("tokenizer.ggml.model").unwrap(), Some("gpt2"));
    let tokens = file.get_str_array("tokenizer.ggml.tokens").unwrap().unwrap();
    assert_eq!(tokens.len(), 3 + 256 + 5);
    assert_eq!(tokens[3 + 32], "Ġ", "byte 0x20 maps to U+0120 as in GPT-2");
    assert_eq!(file.tensors.len(), 11);
    let embd = file.tensor("token_embd.weight").unwrap();
    assert_eq!(embd.dims, vec![32, tokens.len() as u64]);
    let values = dequant::to_f32(embd.dtype, file.tensor_bytes(embd), embd.n_elems() as usize).unwrap();
    assert!(values.iter().any(|&v| v != 0.0));
}

#[test]
fn corpus_is_large_and_named_uniquely() {
    let cases = corpus();
    let names: HashSet<&str> = cases.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names.len(), cases.len());
    assert!(cases.iter().filter(|c| c.stage == Stage::Parse).count() >= 30);
    assert!(cases.iter().filter(|c| c.stage == Stage::Load).count() >= 10);
}

#[test]
fn parse_cases_fail_from_memory_and_from_disk_and_load_cases_parse() {
    let dir = temp_dir("corpus");
    for case in corpus() {
        let path = dir.join(format!("{}.gguf", case.name));
        std::fs::write(&path, &case.bytes).unwrap();
        let from_memory = GgufFile::from_bytes(case.bytes.clone());
        let from_disk = GgufFile::open(&path);
        match case.stage {
            Stage::Parse => {
                let err = from_memory.expect_err(&case.name).to_string();
                assert!(err.contains(&case.expect), "{}: '{err}' lacks '{}'", case.name, case.expect);
                let disk_err = from_disk.expect_err(&case.name).to_string();
                assert_eq!(disk_err, err, "{}: memory and disk disagree", case.name);
            }
            Stage::Load => {
                assert!(from_memory.is_ok(), "{}: {:?}", case.name, from_memory.err());
                assert!(from_disk.is_ok(), "{}", case.name);
            }
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn truncation_at_every_offset_never_panics() {
    let bytes = valid_model();
    for n in 0..bytes.len() {
        // The final padding is optional, so the last bytes may still parse.
        let result = parse_and_touch(bytes[..n].to_vec());
        if n < bytes.len() - 32 {
            assert!(result.is_err(), "truncated to {n} bytes parsed");
        }
    }
    assert!(parse_and_touch(bytes).is_ok());
}

#[test]
fn byte_flips_never_panic() {
    let bytes = valid_model();
    let file = GgufFile::from_bytes(bytes.clone()).unwrap();
    let header_end = file.data_offset as usize;
    // Every header byte with several patterns, then a stride through the data.
    let offsets = (0..header_end).chain((header_end..bytes.len()).step_by(97));
    let mut failures = 0;
    for pos in offsets {
        for pattern in [0xffu8, 0x80, 0x01, 0x7f] {
            let mut b = bytes.clone();
            b[pos] ^= pattern;
            failures += parse_and_touch(b).is_err() as usize;
        }
    }
    assert!(failures > 1000, "only {failures} flips were refused");
}

#[test]
fn info_reports_each_parse_case_in_one_line_with_exit_code_1() {
    let dir = temp_dir("info");
    let exe = env!("CARGO_BIN_EXE_rs-llama-gguf");
    for case in corpus().into_iter().filter(|c| c.stage == Stage::Parse) {
        let path = dir.join(format!("{}.gguf", case.name));
        std::fs::write(&path, &case.bytes).unwrap();
        let out = Command::new(exe).arg("info").arg(&path).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{}", case.name);
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{}: {stderr}", case.name);
        assert!(stderr.starts_with("error: "), "{}: {stderr}", case.name);
        assert!(out.stdout.is_empty(), "{}", case.name);
    }
    let missing = Command::new(exe).arg("info").arg(dir.join("absent.gguf")).output().unwrap();
    assert_eq!(missing.status.code(), Some(1));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn info_prints_header_metadata_and_tensors_of_the_base_model() {
    let dir = temp_dir("info-ok");
    let path = dir.join("base.gguf");
    std::fs::write(&path, valid_model()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_rs-llama-gguf")).arg("info").arg(&path).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let first = text.lines().next().unwrap();
    assert!(first.starts_with("GGUF v3: 23 key/value pairs, 11 tensors, alignment 32"), "{first}");
    assert!(text.contains("| general.architecture = \"llama\""), "{text}");
    assert!(text.contains("[STRING]   |      264 | tokenizer.ggml.tokens = [\"<|endoftext|>\""), "{text}");
    assert!(text.contains("q8_0    | offset"), "{text}");
    assert!(text.lines().last().unwrap().ends_with("blk.0.ffn_down.weight"), "{text}");
    std::fs::remove_dir_all(&dir).ok();
}
