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

fn run_convert(input: &Path, output: &Path, kind: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_rs-llama-gguf"))
        .arg("convert")
        .arg(input)
        .arg(output)
        .args(["--type", kind])
        .output()
        .unwrap()
}

#[test]
fn tiny_model_converts_matrices_and_keeps_norms() {
    use gguf::dequant::{f32_to_bf16_bits, f32_to_f16_bits, to_f32};
    use gguf::value::Metadata;
    let dir = std::env::temp_dir().join(format!("rs-llama-convert-tiny-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let input_path = dir.join("in.gguf");
    std::fs::write(&input_path, gguf::malformed::valid_model()).unwrap();
    let input = GgufFile::open(&input_path).unwrap();
    for (kind, file_type) in [("f16", 1), ("bf16", 32)] {
        let output_path = dir.join(format!("out-{kind}.gguf"));
        let out = run_convert(&input_path, &output_path, kind);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let output = GgufFile::open(&output_path).unwrap();
        assert_eq!(output.get_u32("general.file_type").unwrap(), Some(file_type));
        assert_eq!(output.kv.last().unwrap().0, "general.file_type");
        assert_eq!(output.kv.len(), input.kv.len());
        // Tensors outside blocks first, then by name.
        assert_eq!(output.tensors[0].name, "output_norm.weight");
        assert_eq!(output.tensors[1].name, "token_embd.weight");
        assert_eq!(output.tensors[2].name, "blk.0.attn_k.weight");
        for t in &input.tensors {
            let converted = output.tensor(&t.name).unwrap();
            assert_eq!(converted.dims, t.dims);
            let original = to_f32(t.dtype, input.tensor_bytes(t), t.n_elems() as usize).unwrap();
            if t.dims.len() == 1 {
                assert_eq!(converted.dtype, t.dtype, "{}", t.name);
                assert_eq!(output.tensor_bytes(converted), input.tensor_bytes(t));
                continue;
            }
            assert_eq!(converted.dtype.name(), kind, "{}", t.name);
            let bits: Vec<u16> = output
                .tensor_bytes(converted)
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect();
            for (x, b) in original.iter().zip(&bits) {
                let expected = if kind == "f16" { f32_to_f16_bits(*x) } else { f32_to_bf16_bits(*x) };
                assert_eq!(*b, expected, "{}", t.name);
            }
        }
    }
    let same = run_convert(&input_path, &input_path, "f16");
    assert_eq!(same.status.code(), Some(1));
    assert!(GgufFile::open(&input_path).is_ok(), "the input must survive");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn convert_reports_each_malformed_file_in_one_line_with_exit_code_1() {
    let dir = std::env::temp_dir().join(format!("rs-llama-convert-corpus-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for case in gguf::malformed::corpus().into_iter().filter(|c| c.stage == gguf::malformed::Stage::Parse) {
        let input = dir.join(format!("{}.gguf", case.name));
        std::fs::write(&input, &case.bytes).unwrap();
        let out = run_convert(&input, &dir.join("out.gguf"), "bf16");
        assert_eq!(out.status.code(), Some(1), "{}", case.name);
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{}: {stderr}", case.name);
        assert!(stderr.starts_with("error: "), "{}", case.name);
    }
    std::fs::remove_dir_all(&dir).ok();
}
