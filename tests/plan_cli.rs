//! rs-llama-plan's command line: the JSON report's top-level keys, GGUF input, and one-line errors.

use std::process::Command;

use gguf::names::{ArchKey, TensorKind, KEY_ARCHITECTURE};
use gguf::writer::GgufWriter;
use gguf::{DType, Value};

fn plan_cmd(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_rs-llama-plan")).args(args).output().unwrap()
}

#[test]
fn json_report_has_the_documented_top_level_keys() {
    let out = plan_cmd(&[
        "--shape",
        "qwen1.5-moe-a2.7b",
        "--hw",
        "rtx3090-ddr4",
        "--gpu-mem",
        "8GB",
        "--policy",
        "fiddler",
        "--prompt",
        "256",
        "--gen",
        "16",
        "--json",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["policy"], "fiddler");
    // 8GB is 8 GiB, as rs-llama --gpu-mem reads it (binary units in every tool).
    assert_eq!(v["gpu_mem_bytes"], 8u64 << 30);
    let resident = v["gpu_resident_bytes"].as_u64().unwrap();
    assert!(resident > 0 && resident < 8 << 30);
    assert!(v["prefill_tps"].as_f64().unwrap() > 0.0 && v["decode_tps"].as_f64().unwrap() > 0.0);
    assert_eq!(v["plan"]["placements"].as_array().unwrap().len(), 24 * (1 + 1 + 60 + 1) + 1);
}

#[test]
fn gpu_mem_units_are_binary_whatever_the_spelling() {
    let gpu_mem_bytes = |size: &str| {
        let out = plan_cmd(&["--shape", "mixtral-8x7b", "--hw", "rtx4090-ddr5", "--gpu-mem", size, "--json"]);
        assert!(out.status.success(), "{size}: {}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["gpu_mem_bytes"].as_u64().unwrap()
    };
    for size in ["20G", "20GB", "20GiB", "20gb", "20480M", "20480MB"] {
        assert_eq!(gpu_mem_bytes(size), 20 << 30, "{size}");
    }
    assert_eq!(gpu_mem_bytes("1.5GB"), 3 << 29);
    assert_eq!(gpu_mem_bytes("0"), 0);
    // Capped at the preset's memory (24 GiB): 24GB is all of it.
    assert_eq!(gpu_mem_bytes("24GB"), 24 << 30);
    assert_eq!(gpu_mem_bytes("64GB"), 24 << 30);
}

#[test]
fn layers_with_explicit_ngl_reports_it() {
    let out = plan_cmd(&[
        "--shape",
        "llama-2-13b",
        "--hw",
        "rtx4090-ddr4",
        "--gpu-mem",
        "24GB",
        "--policy",
        "layers",
        "--ngl",
        "10",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("plan: -ngl 10 "), "{text}");
    // -ngl 10 = the output head and the last 9 layers (31..39), as llama.cpp counts.
    let line = |name: &str| text.lines().find(|l| l.trim_start().starts_with(name)).unwrap_or("").to_string();
    assert!(line("blk.31.attn").contains("GPU: within the last -ngl layers"), "{text}");
    assert!(line("blk.30.attn").contains("host: below the -ngl layers"), "{text}");
    assert!(line("output").contains("GPU: the output layer"), "{text}");
}

#[test]
fn bad_input_is_one_line_and_exit_code_1() {
    for args in [
        vec!["--shape", "no-such-model", "--hw", "rtx3090-ddr4"],
        vec!["--shape", "mixtral-8x7b", "--hw", "/no/such/profile.json"],
        vec!["--shape", "mixtral-8x7b", "--hw", "rtx3090-ddr4", "--gpu-mem", "lots"],
        vec!["--shape", "mixtral-8x7b", "--hw", "rtx3090-ddr4", "--policy", "magic"],
        vec!["-m", "/no/such/file.gguf", "--hw", "rtx3090-ddr4"],
        vec![
            "--shape",
            "llama-2-13b",
            "--hw",
            "rtx3090-ddr4",
            "--gpu-mem",
            "4GB",
            "--policy",
            "layers",
            "--ngl",
            "41",
        ],
    ] {
        let out = plan_cmd(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("rs-llama-plan: error: "), "{err}");
    }
}

/// A tiny qwen2moe-style GGUF: 2 layers, 4 experts (fused), a gated shared expert, no output.weight.
fn tiny_moe_gguf(path: &std::path::Path) {
    let (n_embd, n_ff_exp, n_ff_sh, n_exp, n_vocab) = (64u64, 32u64, 48u64, 4u64, 100u64);
    let arch = "qwen2moe";
    let mut w = GgufWriter::new();
    w.set(KEY_ARCHITECTURE, Value::String(arch.into()));
    for (k, v) in [
        (ArchKey::BlockCount, 2u32),
        (ArchKey::EmbeddingLength, 64),
        (ArchKey::HeadCount, 4),
        (ArchKey::HeadCountKv, 2),
        (ArchKey::ExpertCount, 4),
        (ArchKey::ExpertUsedCount, 2),
        (ArchKey::ExpertFeedForwardLength, 32),
        (ArchKey::FeedForwardLength, 32),
    ] {
        w.set(&k.name(arch), Value::U32(v));
    }
    // Non-zero, varied f16 bytes; the planner only reads shapes.
    let data = |n: u64| (0..n * 2).map(|i| (i * 37 % 251) as u8 & 0x3b).collect::<Vec<u8>>();
    let mut add = |name: String, dims: &[u64]| {
        let n = dims.iter().product();
        w.add_tensor(&name, dims, DType::F16, data(n)).unwrap();
    };
    add(TensorKind::TokenEmbd.weight(0), &[n_embd, n_vocab]);
    for il in 0..2 {
        add(TensorKind::AttnQ.weight(il), &[n_embd, n_embd]);
        add(TensorKind::AttnK.weight(il), &[n_embd, 32]);
        add(TensorKind::AttnV.weight(il), &[n_embd, 32]);
        add(TensorKind::AttnOutput.weight(il), &[n_embd, n_embd]);
        add(TensorKind::FfnGateInp.weight(il), &[n_embd, n_exp]);
        add(TensorKind::FfnGateExps.weight(il), &[n_embd, n_ff_exp, n_exp]);
        add(TensorKind::FfnUpExps.weight(il), &[n_embd, n_ff_exp, n_exp]);
        add(TensorKind::FfnDownExps.weight(il), &[n_ff_exp, n_embd, n_exp]);
        add(TensorKind::FfnGateInpShexp.weight(il), &[n_embd]);
        add(TensorKind::FfnUpShexp.weight(il), &[n_embd, n_ff_sh]);
        add(TensorKind::FfnGateShexp.weight(il), &[n_embd, n_ff_sh]);
        add(TensorKind::FfnDownShexp.weight(il), &[n_ff_sh, n_embd]);
    }
    w.write(path).unwrap();
}

#[test]
fn shape_is_read_from_a_gguf_file() {
    let dir = std::env::temp_dir().join(format!("rs-llama-plan-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("tiny-moe.gguf");
    tiny_moe_gguf(&path);
    let file = gguf::GgufFile::open(&path).unwrap();
    let s = rs_llama::plan::shapes::ModelShape::from_gguf(&file, "tiny").unwrap();
    assert_eq!((s.n_layer, s.n_embd, s.n_head, s.n_head_kv, s.head_dim_k), (2, 64, 4, 2, 16));
    assert_eq!((s.n_expert, s.n_expert_used, s.n_ff_exp, s.n_ff_shexp, s.n_vocab), (4, 2, 32, 48, 100));
    assert!(s.shexp_gated && s.tied_output);
    // Tasks cover every matmul/norm-free weight in the file except the embedding: compare with the
    // file's own tensor sizes (the planner adds the 2 norms per layer and the output norm, absent here).
    let g = rs_llama::plan::tasks::TaskGraph::build(&s, 4, 64);
    let file_bytes: u64 =
        file.tensors.iter().filter(|t| t.name != "token_embd.weight").map(|t| t.n_bytes).sum();
    let norms = 2 * (2 * 2 * 64) + 2 * 64;
    // The tied head re-reads the embedding: n_embd · n_vocab · 2 bytes.
    assert_eq!(g.total_bytes(), file_bytes + norms + 64 * 100 * 2);
    let out = plan_cmd(&["-m", path.to_str().unwrap(), "--hw", "rtx3090-ddr4", "--gpu-mem", "1GB", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn ngl_caps_what_auto_keeps_resident() {
    let args = |ngl: &str| {
        let mut a = vec![
            "--shape",
            "llama-2-13b",
            "--hw",
            "rtx4090-ddr5",
            "--gpu-mem",
            "24GB",
            "--policy",
            "auto",
            "--json",
        ];
        if !ngl.is_empty() {
            a.extend(["--ngl", ngl]);
        }
        a.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    let resident = |ngl: &str| {
        let a = args(ngl);
        let out = plan_cmd(&a.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["gpu_resident_bytes"].as_u64().unwrap()
    };
    let free = resident("");
    let capped = resident("10");
    // -ngl 10 holds the output head and layers 31..39 with their KV cache (n_ctx = 512 + 128).
    let s = rs_llama::plan::shapes::ModelShape::named("llama-2-13b", rs_llama::plan::shapes::WeightType::F16)
        .unwrap();
    let g = rs_llama::plan::tasks::TaskGraph::build(&s, 8, 640);
    let cap: u64 = g.tasks.iter().filter(|t| t.layer >= 31).map(|t| g.footprint(t.id)).sum();
    // By hand: 9 · (634.4 MB weights + 13.1 MB KV) + 327.7 MB head = 6155 MB.
    assert!((cap as f64 / 1e6 - 6155.0).abs() < 1.0, "{cap}");
    assert!(capped < free && capped <= cap, "{capped} vs cap {cap}, uncapped {free}");
}
