//! Starting the GPU where there is none is a clean one-line error, never a panic; with the `cuda`
//! feature off it says the build has no GPU support.

use rs_llama::gpu::{Gpu, GpuError, GpuOptions};

#[test]
fn starting_without_a_gpu_is_an_error_not_a_panic() {
    let started = std::panic::catch_unwind(|| Gpu::new(&GpuOptions::default()).map(|g| g.describe()));
    let started = started.unwrap_or_else(|_| panic!("Gpu::new panicked"));
    match started {
        // A machine with a GPU: the description names it.
        Ok(description) => assert!(description.contains("budget"), "{description}"),
        Err(e) => {
            let message = e.to_string();
            assert!(!message.is_empty() && !message.contains('\n'), "{message:?}");
            if cfg!(feature = "cuda") {
                assert!(!matches!(e, GpuError::NotBuilt), "{message}");
            } else {
                assert!(matches!(e, GpuError::NotBuilt), "{message}");
            }
        }
    }
}

#[test]
fn a_bad_device_ordinal_is_an_error() {
    let r = std::panic::catch_unwind(|| {
        Gpu::new(&GpuOptions { device: 4096, mem_limit: None }).err().map(|e| e.to_string())
    });
    let message = r.unwrap_or_else(|_| panic!("Gpu::new panicked"));
    assert!(message.is_some_and(|m| !m.contains('\n')));
}

/// The device-check binary, on a machine with no CUDA driver: one clear line and exit code 2.
#[cfg(feature = "cuda")]
#[test]
fn the_check_binary_says_why_it_cannot_start() {
    let driver_present = rs_llama::gpu::library_report().first().is_some_and(|(_, present)| *present);
    if driver_present {
        eprintln!("skipped: this machine has a CUDA driver");
        return;
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rs-llama-gpu-check"))
        .args(["--seed", "1"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run rs-llama-gpu-check: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    let fails: Vec<&str> = stdout.lines().filter(|l| l.starts_with("[FAIL]")).collect();
    assert_eq!(fails, vec!["[FAIL] start: the CUDA driver (libcuda.so.1) could not be loaded"], "{stdout}");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
}
