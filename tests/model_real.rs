//! Tests on model files from the cache (~/.cache/rs-llama/models), each skipped with a note when
//! its file is absent: a smoke test on SmolLM2-135M (f16/bf16 made by llama-quantize) that must
//! continue "The capital of France is" with " Paris"; the Q4_1 original against its f16
//! conversion (must be bit-identical); the synthetic MoE in both expert layouts (bit-identical).
//! Parity with llama.cpp itself is checked by the golden fixtures.
//!
//! Token ids from llama.cpp (build 11434):
//!   llama-tokenize -m smollm2-135m-f16.gguf -p "The capital of France is" --ids
//!   → [504, 3575, 282, 4649, 314];  -p " Paris" → [7042]

use std::path::PathBuf;
use std::time::Instant;

use rs_llama::exec::Session;
use rs_llama::model::{LoadOptions, Logits, Model};

const PROMPT: [u32; 5] = [504, 3575, 282, 4649, 314];
const PARIS: u32 = 7042;

fn model_path(name: &str) -> Option<PathBuf> {
    let home = std::env::var_os("HOME")?;
    let p = PathBuf::from(home).join(".cache/rs-llama").join(name);
    if p.exists() {
        Some(p)
    } else {
        eprintln!("skipping: {name} is not in ~/.cache/rs-llama");
        None
    }
}

/// Logits `[n][n_vocab]` of a fresh session over `tokens`.
fn all_logits(model: &Model, tokens: &[u32]) -> Vec<f32> {
    let mut s = Session::new(model, 128, 512).expect("session");
    s.decode(tokens, Logits::All).expect("decode")
}

const TEXT: [u32; 14] = [504, 3575, 282, 4649, 314, 7042, 30, 378, 3575, 282, 4521, 314, 11452, 28];

#[test]
fn q4_1_file_gives_exactly_the_logits_of_its_f16_conversion() {
    // models/smollm2-135m-f16.gguf was made by `llama-quantize SmolLM2-135M-Instruct.Q4_1.gguf
    // ... F16`; dequantizing at load with the same f16 rounding must give the same weights.
    let (Some(q), Some(f)) =
        (model_path("SmolLM2-135M-Instruct.Q4_1.gguf"), model_path("models/smollm2-135m-f16.gguf"))
    else {
        return;
    };
    let quant = match Model::open(&q, &LoadOptions::default()) {
        Ok(m) => m,
        Err(rs_llama::model::ModelError::Invalid(msg)) if msg.contains("is not supported") => {
            eprintln!("skipping: gguf cannot dequantize this file yet ({msg})");
            return;
        }
        Err(e) => panic!("Q4_1 model: {e}"),
    };
    let f16 = Model::open(&f, &LoadOptions::default()).expect("f16 model");
    assert_eq!(all_logits(&quant, &TEXT), all_logits(&f16, &TEXT));
}

#[test]
fn synthetic_moe_in_both_expert_layouts_gives_identical_logits() {
    let (Some(a), Some(b)) = (
        model_path("models/synth-moe8x2-s42.f16.gguf"),
        model_path("models/synth-moe8x2-s42-perexpert.f16.gguf"),
    ) else {
        return;
    };
    let stacked = Model::open(&a, &LoadOptions::default()).expect("stacked");
    let legacy = Model::open(&b, &LoadOptions::default()).expect("per-expert");
    assert_eq!(stacked.hparams().n_expert, 8);
    let logits = all_logits(&stacked, &TEXT);
    assert!(logits.iter().all(|v| v.is_finite()));
    assert_eq!(logits, all_logits(&legacy, &TEXT));
}

/// CPU seconds used by this process so far (Linux `/proc/self/stat`, 100 Hz ticks), to report speed
/// on a shared, busy machine where wall time says little.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

fn argmax(v: &[f32]) -> u32 {
    v.iter().enumerate().fold((0, f32::NEG_INFINITY), |b, (i, &x)| if x > b.1 { (i, x) } else { b }).0 as u32
}

#[test]
fn smollm2_continues_with_paris() {
    for name in ["models/smollm2-135m-f16.gguf", "models/smollm2-135m-bf16.gguf"] {
        let Some(path) = model_path(name) else {
            continue;
        };
        let model = Model::open(&path, &LoadOptions::default()).expect("model loads");
        eprintln!("{name}: {}", model.describe());
        assert_eq!(model.n_vocab(), 49152);
        let mut s = Session::new(&model, 256, 512).expect("session");
        let t0 = Instant::now();
        let logits = s.decode(&PROMPT, Logits::Last).expect("prompt");
        let prefill = t0.elapsed();
        let mut tok = argmax(&logits);
        assert_eq!(tok, PARIS, "{name}: greedy continuation should be ' Paris'");
        let mut generated = vec![tok];
        let t1 = Instant::now();
        let c1 = cpu_seconds();
        for _ in 0..16 {
            tok = argmax(&s.decode(&[tok], Logits::Last).expect("decode"));
            generated.push(tok);
        }
        let dt = t1.elapsed().as_secs_f64();
        let cpu = c1.zip(cpu_seconds()).map_or(f64::NAN, |(a, b)| b - a);
        eprintln!(
            "{name}: generated {generated:?}; prefill {:.1} ms for {} tokens, decode {:.1} tokens/s \
             (wall), {:.1} ms CPU time per token",
            prefill.as_secs_f64() * 1e3,
            PROMPT.len(),
            16.0 / dt,
            cpu / 16.0 * 1e3
        );
        assert!(logits.iter().all(|v| v.is_finite()));
    }
}
