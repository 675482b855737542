//! rs-llama-bench's device flags end to end: `-dev none,sim` rows side by side, one sim row per
//! `--policy`, and bad values refused in one line. Skipped with a note when the model is not in
//! the cache (`~/.cache/rs-llama/models`, or `$RS_LLAMA_MODELS`).

use std::path::PathBuf;
use std::process::{Command, Output};

fn model_path(name: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("RS_LLAMA_MODELS").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/rs-llama/models")
    });
    let path = dir.join(name);
    if path.exists() {
        Some(path)
    } else {
        eprintln!("skipped: {} not found", path.display());
        None
    }
}

fn bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rs-llama-bench")).args(args).output().unwrap()
}

fn json_rows(out: &Output) -> Vec<serde_json::Value> {
    assert_eq!(out.status.code(), Some(0), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v.as_array().unwrap().clone()
}

#[test]
fn cpu_and_sim_rows_side_by_side() {
    let Some(m) = model_path("synth-moe8x2-s42.f16.gguf") else { return };
    let m = m.to_str().unwrap();
    let out = bench(&[
        "-m", m, "-p", "64", "-n", "4", "-r", "1", "-t", "2", "-dev", "none,sim", "--policy", "auto", "-o",
        "json",
    ]);
    let rows = json_rows(&out);
    assert_eq!(rows.len(), 4, "pp64 and tg4 on each device");
    let devices: Vec<&str> = rows.iter().map(|r| r["devices"].as_str().unwrap()).collect();
    assert_eq!(devices, ["none", "none", "sim", "sim"]);
    for r in &rows {
        let sim = r["devices"] == "sim";
        assert!(r["avg_ts"].as_f64().unwrap() > 0.0, "{r}");
        assert_eq!(r["virtual_time"].as_bool(), Some(sim));
        assert_eq!(r["backends"].as_str(), Some(if sim { "SIM" } else { "CPU" }));
        assert_eq!(r["policy"].as_str(), Some(if sim { "auto" } else { "" }));
        if sim {
            assert_eq!(r["sim_hw"].as_str(), Some("rtx4090-ddr5"));
            assert!(!r["plan"].as_str().unwrap().is_empty());
        }
    }

    // The markdown table says which rows are virtual.
    let md = bench(&["-m", m, "-p", "16", "-n", "0", "-r", "1", "-t", "2", "-dev", "none,sim"]);
    assert_eq!(md.status.code(), Some(0));
    let text = String::from_utf8(md.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("| model | size | params | backend | ngl | threads | dev | policy | test |"));
    assert!(lines[2].contains("| CPU | 0 | 2 | none | - | pp16 |"), "{}", lines[2]);
    assert!(lines[3].contains("| SIM | auto | 2 | sim | auto | pp16 |"), "{}", lines[3]);
    assert!(
        text.contains(
            "\nsim rows: t/s from virtual time on rtx4090-ddr5 (the simulated GPU's clock), not measured\n"
        ),
        "{text}"
    );
}

#[test]
fn one_sim_row_per_policy() {
    let Some(m) = model_path("synth-moe8x2-s42.f16.gguf") else { return };
    let out = bench(&[
        "-m",
        m.to_str().unwrap(),
        "-p",
        "64",
        "-n",
        "0",
        "-r",
        "1",
        "-t",
        "2",
        "--policy",
        "auto,layers,fiddler",
        "-dev",
        "sim",
        "--gpu-mem",
        "48M",
        "-ub",
        "64",
        "-o",
        "json",
    ]);
    let rows = json_rows(&out);
    let policies: Vec<&str> = rows.iter().map(|r| r["policy"].as_str().unwrap()).collect();
    assert_eq!(policies, ["auto", "layers", "fiddler"]);
    for r in &rows {
        assert_eq!((r["devices"].as_str(), r["n_ubatch"].as_u64()), (Some("sim"), Some(64)));
        assert!(r["avg_ts"].as_f64().unwrap() > 0.0, "{r}");
    }
}

#[test]
fn bad_device_values_fail_in_one_line() {
    // Values are checked before any model is opened, so no model file is needed.
    for (flag, value, says) in [
        ("-dev", "tpu0", "'tpu0'"),
        ("--policy", "best", "'best'"),
        ("-dev", "cuda0", "no CUDA rows yet"),
        ("-ngl", "x", "'x'"),
        ("-fa", "2", "'2'"),
    ] {
        let out = bench(&["-m", "missing.gguf", flag, value]);
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(1), "{flag} {value}: {err}");
        assert_eq!(err.lines().count(), 1, "{flag} {value}: {err}");
        assert!(err.starts_with("error: ") && err.contains(says), "{flag} {value}: {err}");
        assert!(!err.contains("panicked"));
    }
}

#[test]
fn override_tensor_keeps_the_experts_on_the_host() {
    let Some(m) = model_path("synth-mixtral-shape-s7.f16.gguf") else { return };
    let m = m.to_string_lossy().into_owned();
    let base = [
        "-m",
        &m,
        "-p",
        "64",
        "-n",
        "0",
        "-r",
        "1",
        "-dev",
        "sim",
        "--gpu-mem",
        "128M",
        "-ub",
        "64",
        "-o",
        "json",
    ];
    let resident = |extra: &[&str]| -> u64 {
        let out = bench(&[&base[..], extra].concat());
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let rows = json_rows(&out);
        let plan = rows[0]["plan"].as_str().unwrap_or_default().to_string();
        plan.split(' ').next().and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("plan: {plan}"))
    };
    let free = resident(&[]);
    let pinned_host = resident(&["-ot", "exps=CPU", "--hot-experts", "off"]);
    // 4 layers: attention and router each, and the head, at most: 9 tasks.
    assert!(
        pinned_host <= 9 && pinned_host < free,
        "{pinned_host} resident with -ot exps=CPU, {free} without"
    );
    let out = bench(&["-m", &m, "-ot", "exps=TPU"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.lines().next().unwrap_or_default().contains("unknown buffer type 'TPU'"), "{err}");
}
