//! Smoke test on the real SmolLM2-135M (f16 and bf16 files made by llama-quantize), when present in
//! the model cache. Parity with llama.cpp is checked by the golden fixtures; this only asks that
//! the model continues "The capital of France is" with " Paris".
//!
//! Token ids from llama.cpp (build 11434):
//!   llama-tokenize -m smollm2-135m-f16.llamacpp.gguf -p "The capital of France is" --ids
//!   → [504, 3575, 282, 4649, 314];  -p " Paris" → [7042]

use std::path::PathBuf;
use std::time::Instant;

use rs_llama::model::{LoadOptions, Logits, Model, Session};

const PROMPT: [u32; 5] = [504, 3575, 282, 4649, 314];
const PARIS: u32 = 7042;

fn model_path(name: &str) -> Option<PathBuf> {
    let home = std::env::var_os("HOME")?;
    let p = PathBuf::from(home).join(".cache/rs-llama/models").join(name);
    p.exists().then_some(p)
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
    for name in ["smollm2-135m-f16.llamacpp.gguf", "smollm2-135m-bf16.llamacpp.gguf"] {
        let Some(path) = model_path(name) else {
            eprintln!("skipping: {name} is not in ~/.cache/rs-llama/models");
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
