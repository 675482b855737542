//! Shared by the tests that replay llama.cpp's traces (tests/golden_parity.rs, tests/lora_parity.rs):
//! where the model files are, finding one by the sha256 a trace names, and re-running a test in a
//! child process on the AVX2 kernels, whose arithmetic is that of llama.cpp's AVX2 build.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use rs_llama::cpu::numerics::{self, Numerics};
use rs_llama::cpu::path::{self, CpuPath};
use serde_json::Value;
use sha2::{Digest, Sha256};

pub fn models_dir() -> PathBuf {
    std::env::var_os("RS_LLAMA_MODELS").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/rs-llama/models")
    })
}

pub fn sha256_file(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Our copy of a traced file: the same name, or ours without `.llamacpp` (our converter writes
/// byte-identical files), checked against the sha256 the trace names. `remake` says how to make it.
pub fn resolve(file: &str, sha256: &str, made_by: &Value, remake: &str) -> PathBuf {
    let dir = models_dir();
    let path = [dir.join(file.replace(".llamacpp", "")), dir.join(file)]
        .into_iter()
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("{file} not found in {} (run {remake})", dir.display()));
    let got = sha256_file(&path);
    assert_eq!(got, sha256, "{} differs from the file llama.cpp traced (made by: {made_by})", path.display());
    path
}

pub fn ids(v: &Value) -> Vec<u32> {
    v.as_array().expect("id array").iter().map(|x| x.as_u64().expect("id") as u32).collect()
}

/// The first index of the largest value, as llama.cpp's greedy sampler picks it.
pub fn argmax(row: &[f32]) -> u32 {
    (0..row.len()).fold(0, |best, i| if row[i] > row[best] { i } else { best }) as u32
}

pub fn ggml_numerics() -> bool {
    numerics::active() == Numerics::Ggml
}

/// Whether this process runs the AVX2 kernels under `ggml` numerics: llama.cpp's AVX2 build's
/// arithmetic, bit for bit.
pub fn avx2_build_numerics() -> bool {
    ggml_numerics() && path::active() == CpuPath::Avx2
}

/// Whether `rerun_on_avx2` can replay here: the CPU has the AVX2 path and `ggml` numerics are on.
pub fn avx2_replay_possible() -> bool {
    ggml_numerics() && CpuPath::Avx2.supported()
}

/// Runs the test `name` of this test binary again in a child process on the AVX2 kernels
/// (`RS_LLAMA_CPU=avx2`), asserts that it passed and returns its stderr, for the caller to check
/// that the child really replayed what it should.
pub fn rerun_on_avx2(name: &str) -> String {
    let exe = std::env::current_exe().expect("test binary");
    let out = std::process::Command::new(exe)
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(path::PATH_ENV, "avx2")
        .output()
        .expect("run the AVX2 replay");
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    eprintln!("{log}");
    assert!(out.status.success(), "the AVX2 replay failed:\n{}", String::from_utf8_lossy(&out.stdout));
    log
}
