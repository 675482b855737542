//! `rs-llama -dev sim`: the text on stdout is byte for byte the CPU run's under every policy (the
//! simulated GPU runs the same kernels), stderr carries one line of virtual speeds, `--trace`
//! writes Chrome trace-event JSON with a track per lane, and bad device flags are one-line errors.

use std::path::PathBuf;
use std::process::Command;

fn model(name: &str) -> Option<PathBuf> {
    let home = std::env::var("HOME").ok()?;
    let cache = std::env::var("RS_LLAMA_CACHE").unwrap_or(format!("{home}/.cache/rs-llama"));
    let p = PathBuf::from(format!("{cache}/models/{name}"));
    if !p.exists() {
        eprintln!("skipping: {} is missing (run scripts/fetch-models.sh)", p.display());
        return None;
    }
    Some(p)
}

/// (exit code, stdout, stderr)
fn rs_llama(args: &[&str]) -> (Option<i32>, Vec<u8>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rs-llama")).args(args).output().expect("rs-llama runs");
    (out.status.code(), out.stdout, String::from_utf8_lossy(&out.stderr).into_owned())
}

const PROMPT: &str =
    "The capital of France is Paris. The capital of Germany is Berlin. The capital of Italy is";

fn same_text_as_the_cpu(name: &str, gpu_mem: &str) {
    let Some(m) = model(name) else { return };
    let m = m.to_string_lossy().into_owned();
    let base = ["-m", &m, "-p", PROMPT, "-n", "16", "--temp", "0", "-no-cnv", "-c", "256", "-ub", "64"];
    let (code, cpu, err) = rs_llama(&[&base[..], &["-dev", "none"]].concat());
    assert_eq!(code, Some(0), "{err}");
    assert!(cpu.len() > PROMPT.len(), "the CPU run generated text");
    for policy in ["auto", "layers", "fiddler"] {
        let args = [&base[..], &["-dev", "sim", "--gpu-mem", gpu_mem, "--policy", policy]].concat();
        let (code, out, err) = rs_llama(&args);
        assert_eq!(code, Some(0), "{policy}: {err}");
        assert_eq!(out, cpu, "{name} {policy}: stdout differs from the CPU run's\n{err}");
        let line = err.lines().find(|l| l.starts_with("sim (rtx4090-ddr5, ")).unwrap_or_default();
        assert!(line.contains(&format!("{policy}): virtual prefill ")), "{policy}: {err}");
        assert!(line.contains(" t/s, decode ") && line.contains("busy cpu "), "{line}");
    }
}

#[test]
fn dense_model_prints_the_cpu_text_under_every_policy() {
    same_text_as_the_cpu("smollm2-135m-f16.gguf", "48M");
}

#[test]
fn upcycled_moe_prints_the_cpu_text_under_every_policy() {
    same_text_as_the_cpu("smollm2-135m-upcycled8x2-s42.f16.gguf", "80M");
}

#[test]
fn trace_has_a_track_per_lane_and_an_event_per_operation() {
    let Some(m) = model("synth-moe8x2-s42.f16.gguf") else { return };
    let dir = std::env::temp_dir().join(format!("rs-llama-trace-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let trace = dir.join("trace.json");
    let m = m.to_string_lossy().into_owned();
    let t = trace.to_string_lossy().into_owned();
    let args = ["-m", &m, "-p", PROMPT, "-n", "4", "--temp", "0", "-no-cnv", "-c", "256", "-ub", "64"];
    let sim = ["-dev", "sim", "--gpu-mem", "40M", "--trace", &t];
    let (code, _, err) = rs_llama(&[&args[..], &sim].concat());
    assert_eq!(code, Some(0), "{err}");
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&trace).expect("trace written")).expect("JSON");
    let events = v["traceEvents"].as_array().expect("traceEvents");
    let names: Vec<&str> =
        events.iter().filter(|e| e["ph"] == "M").filter_map(|e| e["args"]["name"].as_str()).collect();
    for track in ["cpu", "gpu", "h2d", "d2h"] {
        assert!(names.contains(&track), "no {track} track in {names:?}");
    }
    let ops: Vec<&serde_json::Value> = events.iter().filter(|e| e["ph"] == "X").collect();
    assert!(ops.len() > 100, "{} operations", ops.len());
    for e in &ops {
        assert!(e["dur"].as_f64().is_some_and(|d| d >= 0.0) && e["ts"].as_f64().is_some(), "{e}");
        let a = &e["args"];
        assert!(
            a["layer"].is_u64() && a["task"].is_string() && a["tokens"].is_u64() && a["bytes"].is_u64(),
            "{e}"
        );
    }
    // Weight copies ran (the budget streams), and on the copy track.
    assert!(ops.iter().any(|e| e["tid"] == 2 && e["name"].as_str().is_some_and(|n| n.starts_with("copy "))));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_device_flags_are_one_line_errors() {
    let Some(m) = model("synth-moe8x2-s42.f16.gguf") else { return };
    let m = m.to_string_lossy().into_owned();
    for (flags, want) in [
        (vec!["-dev", "tpu0"], "invalid device 'tpu0'"),
        (vec!["--policy", "best"], "unknown policy 'best'"),
        (vec!["-dev", "sim", "--sim-hw", "/nonexistent/profile.json"], "--sim-hw"),
        (vec!["-fa", "sometimes"], "--flash-attn"),
        (vec!["--hot-experts", "maybe"], "--hot-experts"),
    ] {
        let args = [&["-m", m.as_str(), "-p", "hi", "-n", "1", "-no-cnv"][..], &flags].concat();
        let (code, out, err) = rs_llama(&args);
        assert_eq!(code, Some(1), "{flags:?}: {err}");
        assert!(out.is_empty(), "{flags:?}");
        assert!(!err.contains("panicked"), "{flags:?}: {err}");
        // llama.cpp's own form for a bad value: `error while handling argument "-dev": ...`
        // and a usage hint; a bad profile is one line after the load log.
        assert!(err.lines().any(|l| l.contains(want)), "{flags:?}: {err}");
    }
    let (code, out, _) = rs_llama(&["--list-devices"]);
    assert_eq!(code, Some(0));
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("Available devices:\n") && text.contains("  sim: "), "{text}");
}
