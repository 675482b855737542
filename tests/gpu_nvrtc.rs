//! CI compile check: every kernel of cuda/ compiles with NVRTC (CUDA 13), with no GPU and no
//! driver, through the same code path and options as the engine. Needs libnvrtc.so.13 and
//! libnvrtc-builtins.so.13.0 on LD_LIBRARY_PATH (the `nvidia-cuda-nvrtc` wheel: see
//! scripts/nvrtc-check.sh). Without them the test is skipped, unless RS_LLAMA_REQUIRE_NVRTC=1,
//! which CI sets so that a missing library fails instead of passing silently.
#![cfg(feature = "cuda")]

use rs_llama::gpu::kernels::{KernelFile, CI_ARCH, KERNEL_FILES};
use rs_llama::gpu::{compile_file, nvrtc_version, GpuError};

fn nvrtc_or_skip() -> bool {
    if nvrtc_version().is_some() {
        return true;
    }
    let required = std::env::var("RS_LLAMA_REQUIRE_NVRTC").is_ok_and(|v| v == "1");
    assert!(
        !required,
        "RS_LLAMA_REQUIRE_NVRTC=1 but libnvrtc (CUDA 13) cannot be opened; LD_LIBRARY_PATH={:?}",
        std::env::var("LD_LIBRARY_PATH").unwrap_or_default()
    );
    eprintln!("skipped: libnvrtc (CUDA 13) not found (run scripts/nvrtc-check.sh)");
    false
}

#[test]
fn every_kernel_compiles_with_nvrtc() {
    if !nvrtc_or_skip() {
        return;
    }
    let (major, minor) = nvrtc_version().unwrap_or_default();
    eprintln!("NVRTC {major}.{minor}, target {CI_ARCH}");
    for file in KERNEL_FILES {
        let ptx = compile_file(file, CI_ARCH).unwrap_or_else(|e| panic!("{e}"));
        let text = ptx.to_src();
        assert!(text.contains(&format!(".target {CI_ARCH}")), "{}", file.name);
        for entry in file.entries {
            assert!(text.contains(&format!(".entry {entry}(")), "{} lacks entry {entry}", file.name);
        }
        eprintln!("compiled cuda/{} ({} bytes of PTX)", file.name, text.len());
    }
}

#[test]
fn a_syntax_error_is_reported_with_its_file_and_line() {
    if !nvrtc_or_skip() {
        return;
    }
    let broken = KernelFile {
        name: "broken.cu",
        source: "extern \"C\" __global__ void f(float *y) {\n    y[0] = ;\n}\n",
        entries: &["f"],
    };
    match compile_file(&broken, CI_ARCH) {
        Err(GpuError::Compile { file, log }) => {
            assert_eq!(file, "broken.cu");
            assert!(log.contains("broken.cu(2)"), "{log}");
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("a broken kernel compiled"),
    }
}
