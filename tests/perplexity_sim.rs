//! rs-llama-perplexity with `-dev sim`: the simulated GPU runs the CPU's kernels, so the perplexity
//! figures are the CPU run's exactly, with the virtual speed reported on stderr. Skipped with a
//! note when the model is not in the cache (`~/.cache/rs-llama/models`, or `$RS_LLAMA_MODELS`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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

fn perplexity(model: &Path, extra: &[&str]) -> Output {
    let text = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/perplexity/genesis-1.txt");
    Command::new(env!("CARGO_BIN_EXE_rs-llama-perplexity"))
        .arg("-m")
        .arg(model)
        .arg("-f")
        .arg(text)
        .args(["-c", "48", "-b", "48", "--chunks", "2", "-t", "2"])
        .args(extra)
        .output()
        .unwrap()
}

/// The `[i]` values (stdout) and the final estimate (stderr): everything but timings.
fn figures(out: &Output) -> (String, String) {
    assert_eq!(out.status.code(), Some(0), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout.clone()).unwrap();
    let stderr = String::from_utf8(out.stderr.clone()).unwrap();
    let values = stdout.lines().find(|l| l.starts_with("[1]")).unwrap_or_default().to_string();
    let estimate = stderr.lines().find(|l| l.contains("Final estimate")).unwrap_or_default();
    let estimate = estimate[estimate.find("Final estimate").unwrap_or(0)..].to_string();
    (values, estimate)
}

#[test]
fn sim_perplexity_equals_the_cpu_run() {
    let Some(model) = model_path() else { return };
    let cpu = perplexity(&model, &[]);
    let sim = perplexity(&model, &["-dev", "sim", "--gpu-mem", "64M"]);
    let (cpu_values, cpu_estimate) = figures(&cpu);
    assert!(cpu_values.starts_with("[1]2.70") && cpu_values.contains("[2]2.73"), "{cpu_values}");
    assert!(cpu_estimate.starts_with("Final estimate: PPL = "), "{cpu_estimate}");
    assert_eq!(figures(&sim), (cpu_values, cpu_estimate));
    let err = String::from_utf8(sim.stderr).unwrap();
    assert!(err.contains("sim (rtx4090-ddr5, auto): virtual prefill "), "{err}");
    assert!(!String::from_utf8(cpu.stderr).unwrap().contains("virtual prefill"));
}

#[test]
fn bad_device_values_fail_in_one_line() {
    // The flags are checked before the model is opened, so none is needed.
    // (`-dev cuda0` is a device now: without a GPU it falls back to the CPU with one line.)
    for (flag, value) in [("-dev", "tpu0"), ("--policy", "best"), ("-ngl", "x")] {
        let out = perplexity(Path::new("missing.gguf"), &[flag, value]);
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(1), "{flag} {value}: {err}");
        assert_eq!(err.lines().count(), 1, "{flag} {value}: {err}");
        assert!(err.contains(value) && !err.contains("panicked"), "{flag} {value}: {err}");
    }
}
