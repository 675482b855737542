//! Dequantization and f16/bf16 rounding against llama.cpp's gguf-py (numpy) reference values.
//! The fixtures and the command that made them are in tests/fixtures/dequant/ (see its README).

use std::path::{Path, PathBuf};

use gguf::dequant::{self, f32_to_bf16_bits, f32_to_f16_bits};
use gguf::value::Metadata;
use gguf::{DType, GgufFile};

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dequant").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

fn u16s(bytes: &[u8]) -> Vec<u16> {
    bytes.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect()
}

#[test]
fn every_block_format_matches_gguf_py_bit_for_bit() {
    let types = [
        (DType::Q4_0, "q4_0"),
        (DType::Q4_1, "q4_1"),
        (DType::Q5_0, "q5_0"),
        (DType::Q5_1, "q5_1"),
        (DType::Q8_0, "q8_0"),
        (DType::Q2K, "q2_k"),
        (DType::Q3K, "q3_k"),
        (DType::Q4K, "q4_k"),
        (DType::Q5K, "q5_k"),
        (DType::Q6K, "q6_k"),
    ];
    for (dtype, name) in types {
        let blocks = fixture(&format!("{name}.bin"));
        let expected = f32s(&fixture(&format!("{name}.f32")));
        assert!(expected.iter().any(|&x| x != 0.0));
        let got = dequant::to_f32(dtype, &blocks, expected.len()).unwrap();
        for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
            assert_eq!(g.to_bits(), e.to_bits(), "{name} element {i}: {g} vs {e}");
        }
    }
}

#[test]
fn f16_rounding_matches_numpy() {
    let values = f32s(&fixture("values.f32"));
    let expected = u16s(&fixture("values.f16"));
    assert_eq!(values.len(), expected.len());
    for (x, e) in values.iter().zip(&expected) {
        assert_eq!(f32_to_f16_bits(*x), *e, "f16 of {x:e} ({:#010x})", x.to_bits());
    }
}

#[test]
fn bf16_rounding_matches_ggml_rule_in_gguf_py() {
    for (vals, bf) in [("values.f32", "values.bf16"), ("nans.f32", "nans.bf16")] {
        let values = f32s(&fixture(vals));
        let expected = u16s(&fixture(bf));
        assert_eq!(values.len(), expected.len());
        for (x, e) in values.iter().zip(&expected) {
            assert_eq!(f32_to_bf16_bits(*x), *e, "bf16 of {:#010x}", x.to_bits());
        }
    }
}

#[test]
fn f16_nans_become_the_ggml_quiet_nan() {
    // ggml's software conversion maps every NaN to 0x7e00 with the sign kept.
    for (bits, expected) in [(0x7fc0_0000u32, 0x7e00u16), (0xffc0_0001, 0xfe00), (0x7f80_0001, 0x7e00)] {
        assert_eq!(f32_to_f16_bits(f32::from_bits(bits)), expected);
    }
}

fn smollm2() -> Option<PathBuf> {
    let path =
        PathBuf::from(std::env::var("HOME").ok()?).join(".cache/rs-llama/SmolLM2-135M-Instruct.Q4_1.gguf");
    path.exists().then_some(path)
}

/// The first and last values of `blk.0.ffn_down.weight` (Q4_1) and `token_embd.weight` (Q8_0) of the
/// SmolLM2 Q4_1 file, and the f64 sum of all their values, as gguf-py dequantizes them
/// (command in tests/fixtures/dequant/README.md).
const SMOLLM2_REFERENCE: &[(&str, [u32; 4], [u32; 4], f64)] = include!("fixtures/dequant/smollm2.in");

#[test]
fn smollm2_tensors_match_gguf_py() {
    let Some(path) = smollm2() else {
        eprintln!("note: SmolLM2 Q4_1 file not found, skipping");
        return;
    };
    let file = GgufFile::open(&path).unwrap();
    assert_eq!(file.architecture().unwrap(), "llama");
    assert_eq!(file.get_u32("general.file_type").unwrap(), Some(3));
    for (name, head, tail, sum) in SMOLLM2_REFERENCE {
        let info = file.tensor(name).unwrap();
        let values = dequant::to_f32(info.dtype, file.tensor_bytes(info), info.n_elems() as usize).unwrap();
        let head_bits: Vec<u32> = values[..4].iter().map(|x| x.to_bits()).collect();
        let tail_bits: Vec<u32> = values[values.len() - 4..].iter().map(|x| x.to_bits()).collect();
        assert_eq!(head_bits, head, "{name} head");
        assert_eq!(tail_bits, tail, "{name} tail");
        let total: f64 = values.iter().map(|&x| x as f64).sum();
        assert!((total - sum).abs() <= 1e-9 * sum.abs().max(1.0), "{name}: sum {total} vs {sum}");
    }
}
