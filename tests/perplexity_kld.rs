//! rs-llama's perplexity and KL divergence against a base file written by llama.cpp for SmolLM2
//! f16 (tests/fixtures/perplexity, command in its README). Skipped with a note when the model is
//! not in the cache (`~/.cache/rs-llama/models`, or `$RS_LLAMA_MODELS`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use rs_llama::exec::Session;
use rs_llama::gguf::GgufFile;
use rs_llama::model::{LoadOptions, Model};
use rs_llama::perplexity::base_file::{BaseReader, BaseWriter};
use rs_llama::perplexity::eval::ChunkPlan;
use rs_llama::perplexity::run::{kl_divergence, perplexity};
use rs_llama::tokenizer::Tokenizer;

/// llama.cpp's cumulative `[i]` values for the fixture (llamacpp-f16-c48.stdout).
const LLAMACPP_PPL: [f64; 2] = [2.7027, 2.7311];

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/perplexity").join(name)
}

fn model_path() -> Option<PathBuf> {
    let dir = std::env::var_os("RS_LLAMA_MODELS").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/rs-llama/models")
    });
    let path = dir.join("smollm2-135m-f16.gguf");
    if path.exists() {
        Some(path)
    } else {
        eprintln!("skipped: {} not found", path.display());
        None
    }
}

fn load(path: &Path) -> (Model, Tokenizer) {
    let file = Arc::new(GgufFile::open(path).unwrap());
    let tokenizer = Tokenizer::from_gguf(&file).unwrap();
    (Model::load(file, &LoadOptions { progress: false }).unwrap(), tokenizer)
}

/// The token that replaces the first of each chunk: BOS only where the vocabulary adds one.
fn chunk_bos(tok: &Tokenizer) -> Option<u32> {
    if tok.add_bos() {
        tok.bos()
    } else {
        None
    }
}

fn base_reader() -> BaseReader<std::io::BufReader<std::fs::File>> {
    let path = fixture("smollm2-f16-c48.kld");
    let f = std::fs::File::open(&path).unwrap();
    BaseReader::new(std::io::BufReader::new(f), &path.display().to_string()).unwrap()
}

#[test]
fn divergence_from_llamacpp_f16_base_is_at_the_storage_floor() {
    let Some(path) = model_path() else { return };
    let (model, tok) = load(&path);
    let mut reader = base_reader();
    assert_eq!((reader.header.n_ctx, reader.header.n_chunk, reader.header.n_vocab), (48, 2, 49152));
    let mut session = Session::new(&model, 48, 48).unwrap();
    let mut cumulative = Vec::new();
    let out = kl_divergence(&mut session, model.n_vocab(), &mut reader, chunk_bos(&tok), 48, |_, s| {
        cumulative.push((s.sum_nll / s.count as f64).exp());
    })
    .unwrap();
    let s = &out.sums;
    assert_eq!(s.count, 2 * 23);
    let mean_kld = s.sum_kld / s.count as f64;
    assert!(mean_kld.abs() <= 2e-5, "mean KLD {mean_kld}");
    assert!(s.n_same_top as f64 >= 0.995 * s.count as f64, "same top {} of {}", s.n_same_top, s.count);
    for (ours, theirs) in cumulative.iter().zip(LLAMACPP_PPL) {
        assert!((ours / theirs - 1.0).abs() < 1e-3, "PPL {ours} vs llama.cpp {theirs}");
    }
    // The base file's own PPL is llama.cpp's, up to the 4 printed decimals and the u16 storage.
    let base_ppl = (s.sum_nll_base / s.count as f64).exp();
    assert!((base_ppl / LLAMACPP_PPL[1] - 1.0).abs() < 2e-4, "base PPL {base_ppl}");
}

#[test]
fn text_tokenizes_to_the_file_tokens_and_our_base_file_reads_back() {
    let Some(path) = model_path() else { return };
    let (model, tok) = load(&path);
    let reader = base_reader();
    let text = std::fs::read_to_string(fixture("genesis-1.txt")).unwrap();
    let tokens = tok.encode(text.trim_end_matches('\n'), true, false);
    assert_eq!(tokens[..96], reader.header.tokens[..], "tokens as llama.cpp's -f path");

    let plan = ChunkPlan { n_ctx: 48, n_chunk: 2, bos: chunk_bos(&tok), n_batch: 48 };
    let mut session = Session::new(&model, 48, 48).unwrap();
    let mut writer = BaseWriter::new(Vec::new(), "ours", &reader.header).unwrap();
    let mut cumulative = Vec::new();
    let sums = perplexity(&mut session, model.n_vocab(), &tokens, &plan, Some(&mut writer), |_, s| {
        cumulative.push(s.ppl())
    })
    .unwrap();
    assert_eq!(sums.count, 46);
    for (ours, theirs) in cumulative.iter().zip(LLAMACPP_PPL) {
        assert!((ours / theirs - 1.0).abs() < 1e-3, "PPL {ours} vs llama.cpp {theirs}");
    }
    let ours = writer.finish().unwrap();
    let theirs = std::fs::read(fixture("smollm2-f16-c48.kld")).unwrap();
    assert_eq!(ours.len(), theirs.len());
    assert_eq!(ours[..20 + 4 * 96], theirs[..20 + 4 * 96], "identical header and tokens");
    // On a CPU with the features the fixture was made with (AVX-512 BF16), rs-llama's arithmetic is
    // llama.cpp's, so every stored log-probability is the same u16 (see golden_parity).
    let same_cpu = rs_llama::cpu::numerics::active() == rs_llama::cpu::numerics::Numerics::Ggml
        && rs_llama::cpu::path::active() == rs_llama::cpu::path::CpuPath::Avx512
        && rs_llama::cpu::ggml_dot::has_dpbf16();
    if same_cpu {
        assert!(ours == theirs, "base file differs from llama.cpp's");
    }

    // llama.cpp's rows scored against our file: the mirror image of the first test.
    let mut ours_reader = BaseReader::new(ours.as_slice(), "ours").unwrap();
    let out = kl_divergence(&mut session, model.n_vocab(), &mut ours_reader, chunk_bos(&tok), 48, |_, _| {})
        .unwrap();
    let self_kld = out.sums.sum_kld / out.sums.count as f64;
    // The floor of llama.cpp's u16 log-prob storage (llama.cpp against its own file: ~1e-6).
    assert!(self_kld.abs() < 1e-5, "our logits against our own file: {self_kld}");
}

#[test]
fn cli_prints_llamacpp_kld_table_and_fails_cleanly_on_bad_input() {
    let Some(path) = model_path() else { return };
    let exe = env!("CARGO_BIN_EXE_rs-llama-perplexity");
    let base = fixture("smollm2-f16-c48.kld");
    let out = Command::new(exe)
        .args(["-m", path.to_str().unwrap(), "-c", "48", "-b", "48", "-t", "2", "--kl-divergence"])
        .arg("--kl-divergence-base")
        .arg(&base)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    let header = lines.iter().position(|l| l.starts_with("chunk ")).unwrap();
    assert!(lines[header].ends_with("Δp RMS            Same top p"));
    assert!(lines[header + 1].starts_with("   1       2.70"), "{}", lines[header + 1]);
    assert!(lines[header + 2].starts_with("   2       2.73"), "{}", lines[header + 2]);
    assert!(lines[header + 2].ends_with("100.000 ±  0.000 %"), "{}", lines[header + 2]);

    let bad = Command::new(exe)
        .args(["-m", path.to_str().unwrap(), "--kl-divergence", "--kl-divergence-base"])
        .arg(fixture("genesis-1.txt"))
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    let err = String::from_utf8(bad.stderr).unwrap();
    assert!(err
        .trim_end()
        .lines()
        .last()
        .unwrap()
        .ends_with("does not look like a file containing log-probabilities"));

    let short = Command::new(exe)
        .args(["-m", path.to_str().unwrap(), "-c", "512", "-f"])
        .arg(fixture("genesis-1.txt"))
        .output()
        .unwrap();
    assert_eq!(short.status.code(), Some(0), "llama.cpp exits 0 on a short text");
    let err = String::from_utf8(short.stderr).unwrap();
    assert!(err
        .contains("perplexity: you need at least 1024 tokens to evaluate perplexity with a context of 512"));
}
