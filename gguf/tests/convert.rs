//! `rs-llama-gguf convert` against llama-quantize: converting the SmolLM2 Q4_1 file must give the same
//! header and the same tensor data as `llama-quantize --allow-requantize IN OUT F16|BF16`, checked
//! through the checksums in tests/fixtures/convert (commands in its README). Skipped with a note when
//! the Q4_1 file is absent.

use std::path::{Path, PathBuf};
use std::process::Command;

use gguf::GgufFile;

/// The checksum of `checksums.py`: zero-pad to 8 bytes, sum of little-endian u64 words times (2i+1).
fn checksum(bytes: &[u8]) -> u64 {
    bytes.chunks(8).enumerate().fold(0u64, |acc, (i, chunk)| {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        acc.wrapping_add(u64::from_le_bytes(word).wrapping_mul(2 * i as u64 + 1))
    })
}

fn parse_hex(s: &str) -> u64 {
    u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap()
}

fn smollm2() -> Option<PathBuf> {
    let path =
        PathBuf::from(std::env::var("HOME").ok()?).join(".cache/rs-llama/SmolLM2-135M-Instruct.Q4_1.gguf");
    path.exists().then_some(path)
}

fn check_against_llama_quantize(kind: &str) {
    let Some(input) = smollm2() else {
        eprintln!("note: SmolLM2 Q4_1 file not found, skipping the {kind} conversion check");
        return;
    };
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/convert/smollm2-135m-{kind}.txt"));
    let expected = std::fs::read_to_string(fixture).unwrap();
    let output = std::env::temp_dir().join(format!("rs-llama-convert-{kind}-{}.gguf", std::process::id()));
    let status = Command::new(env!("CARGO_BIN_EXE_rs-llama-gguf"))
        .args(["convert"])
        .arg(&input)
        .arg(&output)
        .args(["--type", kind])
        .status()
        .unwrap();
    assert!(status.success());
    let file = GgufFile::open(&output).unwrap();
    std::fs::remove_file(&output).ok();

    let mut tensors = file.tensors.iter();
    for line in expected.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        match fields.as_slice() {
            ["file", size] => assert_eq!(file.bytes().len(), size.parse::<usize>().unwrap(), "file size"),
            ["header", len, sum] => {
                let len: usize = len.parse().unwrap();
                assert_eq!(file.data_offset as usize, len);
                assert_eq!(
                    checksum(&file.bytes()[..len]),
                    parse_hex(sum),
                    "metadata and tensor table differ"
                );
            }
            ["tensor", name, dtype, dims, sum] => {
                let t = tensors.next().unwrap_or_else(|| panic!("missing tensor {name}"));
                assert_eq!(&t.name, name, "tensor order");
                assert_eq!(t.dtype.name(), *dtype, "{name}");
                let dims: Vec<u64> = dims.split(',').map(|d| d.parse().unwrap()).collect();
                assert_eq!(t.dims, dims, "{name}");
                assert_eq!(checksum(file.tensor_bytes(t)), parse_hex(sum), "{name} data");
            }
            other => panic!("bad fixture line {other:?}"),
        }
    }
    assert!(tensors.next().is_none(), "extra tensors");
}

#[test]
fn f16_conversion_matches_llama_quantize() {
    check_against_llama_quantize("f16");
}

#[test]
fn bf16_conversion_matches_llama_quantize() {
    check_against_llama_quantize("bf16");
}

#[test]
fn checksum_matches_its_python_definition() {
    // 9 bytes: words 0x0807060504030201 and 0x09, weights 1 and 3.
    let bytes = [1u8, 2, 3, 4, 5, 6, 7, 8, 9];
    assert_eq!(checksum(&bytes), 0x0807060504030201u64.wrapping_add(27));
}

#[test]
fn convert_errors_are_one_line_with_exit_code_1() {
    let dir = std::env::temp_dir().join(format!("rs-llama-convert-err-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_rs-llama-gguf"))
        .args(["convert"])
        .arg(dir.join("absent.gguf"))
        .arg(dir.join("out.gguf"))
        .args(["--type", "f16"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("error: cannot open"), "{stderr}");
    std::fs::remove_dir_all(&dir).ok();
}
