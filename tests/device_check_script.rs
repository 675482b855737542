//! scripts/device-check.sh without a GPU: with stand-in programs for the binaries, `nvidia-smi` and
//! the CUDA library search, only its accounting is checked. A run that cannot find its binaries
//! (and so makes no model) must fail: every missing binary or model is a failed step and the exit
//! status is 1. With every step there and passing, the status is 0.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn write_program(path: &Path, body: &str) {
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A scratch folder with `path/` (stand-ins for `nvidia-smi` and `python3`, which names a folder
/// holding a `libnvrtc.so.13` so the script does not search the disk) and an empty `bin/`.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rs-llama-device-check-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for sub in ["path", "bin", "cu13/lib", "models", "out", "cwd"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    std::fs::write(dir.join("cu13/lib/libnvrtc.so.13"), b"").unwrap();
    write_program(&dir.join("path/nvidia-smi"), "exit 0");
    write_program(&dir.join("path/python3"), &format!("echo '{}'", dir.join("cu13").display()));
    dir
}

fn run_script(dir: &Path) -> (Output, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/device-check.sh");
    let path = format!("{}:{}", dir.join("path").display(), std::env::var("PATH").unwrap_or_default());
    let out = Command::new("bash")
        .arg(&script)
        .arg(dir.join("bin"))
        .current_dir(dir.join("cwd"))
        .env("PATH", path)
        .env("OUT", dir.join("out"))
        .env("MODEL_DIR", dir.join("models"))
        .env("DEADLINE", "120")
        .output()
        .expect("run bash");
    let results = std::fs::read_to_string(dir.join("out/device-check.txt")).unwrap_or_default();
    (out, results)
}

#[test]
fn missing_binaries_and_models_are_failed_steps_and_a_failed_run() {
    let dir = scratch("missing");
    let (out, results) = run_script(&dir);
    assert_eq!(out.status.code(), Some(1), "{results}");
    let bin = dir.join("bin");
    for line in [
        format!("== step: gpu-check FAILED (missing: {}/rs-llama-gpu-check)", bin.display()),
        format!("== step: synth-dense FAILED (missing: {}/rs-llama-gguf)", bin.display()),
        format!("== step: bench synth-dense.gguf FAILED (missing: {}/rs-llama-bench)", bin.display()),
        format!("== step: CLI greedy GPU == CPU FAILED (missing: {}/rs-llama)", bin.display()),
        format!("== step: hybrid cuda0 checks FAILED (missing: {}/rs-llama-perplexity)", bin.display()),
    ] {
        assert!(results.lines().any(|l| l == line), "missing line '{line}' in:\n{results}");
    }
    assert!(!results.to_lowercase().contains("skipped"), "{results}");
    // gpu-check, the two synth steps, two models for gpu-vs-cpu, gpu-vs-cpu itself, rs-llama and
    // its model for the CLI comparison, rs-llama-perplexity and its model for the hybrid checks,
    // and the two benchmarks: 12.
    assert!(results.contains("summary: 12 failed step(s)"), "{results}");
    assert!(results.trim_end().ends_with("failed steps: 12"), "{results}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_run_where_every_step_passes_exits_0() {
    let dir = scratch("pass");
    let bin = dir.join("bin");
    write_program(&bin.join("rs-llama-gpu-check"), "exit 0");
    // `rs-llama-gguf synth ... -o FILE` makes FILE; the bench must be called without -ngl/--policy,
    // which rs-llama-bench rejects.
    write_program(
        &bin.join("rs-llama-gguf"),
        r#"while [ $# -gt 0 ]; do [ "$1" = -o ] && : > "$2"; shift; done"#,
    );
    write_program(
        &bin.join("rs-llama-bench"),
        r#"for a in "$@"; do case "$a" in -ngl|--policy) echo "invalid parameter for argument: $a" >&2; exit 1;; esac; done"#,
    );
    write_program(&bin.join("rs-llama"), r#"echo "gpu: stand-in device" >&2; echo "the same text""#);
    // The KL-divergence run against the CPU's base file reports the top-1 agreement.
    write_program(&bin.join("rs-llama-perplexity"), r#"echo "Same top p: 99.5 ± 0.3 %""#);
    let (out, results) = run_script(&dir);
    for policy in ["auto", "layers", "fiddler"] {
        let line = format!("[PASS] -dev cuda0 --policy {policy}: same top-1 as the CPU on 99.5% of tokens");
        assert!(results.contains(&line), "{results}");
    }
    assert!(results.contains("[PASS] CLI greedy text GPU == CPU on synth-dense.gguf"), "{results}");
    assert!(results.contains("== step: bench synth-mixtral.gguf rc=0"), "{results}");
    assert!(results.contains("summary: 0 failed step(s)"), "{results}");
    assert_eq!(out.status.code(), Some(0), "{results}");
    std::fs::remove_dir_all(&dir).ok();
}
