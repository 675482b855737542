//! `--model FILE`: a GGUF model on the GPU against the CPU engine. The CPU generates greedily from
//! a seeded random prompt; the GPU is fed the same tokens (teacher forcing) and must pick the same
//! top token at every step, with close logits. Also prints prefill and decode speed of both.

use crate::Checks;
use rs_llama::exec::Session;
use rs_llama::gpu::reference::{rel_error, Rng};
use rs_llama::gpu::{Gpu, GpuError, GpuLlama, GpuLlamaSession};
use rs_llama::model::{LoadOptions, Logits, Model};
use std::path::Path;
use std::time::Instant;

fn argmax(v: &[f32]) -> u32 {
    v.iter().enumerate().fold((0, f32::NEG_INFINITY), |b, (i, &x)| if x > b.1 { (i, x) } else { b }).0 as u32
}

/// Top-1 minus top-2 of the logits (how close the choice was).
fn margin(v: &[f32]) -> f32 {
    let (mut a, mut b) = (f32::NEG_INFINITY, f32::NEG_INFINITY);
    for &x in v {
        if x > a {
            b = a;
            a = x;
        } else if x > b {
            b = x;
        }
    }
    a - b
}

pub fn run(gpu: &Gpu, path: &Path, n_prompt: usize, n_gen: usize, rng: &mut Rng, c: &mut Checks) {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let t = Instant::now();
    let model = match Model::open(path, &LoadOptions { progress: false }) {
        Ok(m) => m,
        Err(e) => {
            c.outcome(&format!("model {name}"), Err(GpuError::Shape { op: "load", msg: e.to_string() }));
            return;
        }
    };
    println!("model {name}: {} (loaded in {:.2?})", model.describe(), t.elapsed());
    let r = compare(gpu, &model, &name, n_prompt, n_gen, rng, c);
    c.outcome(&format!("model {name}"), r);
}

fn compare(
    gpu: &Gpu,
    model: &Model,
    name: &str,
    n_prompt: usize,
    n_gen: usize,
    rng: &mut Rng,
    c: &mut Checks,
) -> Result<(), GpuError> {
    let n_vocab = model.n_vocab();
    let prompt: Vec<u32> = (0..n_prompt).map(|_| rng.below(n_vocab) as u32).collect();
    let n_ctx = n_prompt + n_gen + 1;
    let cpu_err = |e: rs_llama::model::ModelError| GpuError::Shape { op: "cpu", msg: e.to_string() };

    // CPU: greedy, timing prefill and decode.
    let mut cpu = Session::new(model, n_ctx, 512).map_err(cpu_err)?;
    let t = Instant::now();
    let mut logits = cpu.decode(&prompt, Logits::Last).map_err(cpu_err)?;
    let cpu_prefill = t.elapsed();
    let mut cpu_steps = vec![logits.clone()];
    let mut tokens = Vec::new();
    let t = Instant::now();
    for _ in 0..n_gen {
        let next = argmax(&logits);
        tokens.push(next);
        logits = cpu.decode(&[next], Logits::Last).map_err(cpu_err)?;
        cpu_steps.push(logits.clone());
    }
    let cpu_decode = t.elapsed();

    // GPU: upload, then the same tokens.
    let t = Instant::now();
    let gm = GpuLlama::from_model(gpu, model)?;
    gpu.synchronize()?;
    println!(
        "model {name}: uploaded to the GPU in {:.2?}, {:.2} GiB in use",
        t.elapsed(),
        gpu.used() as f64 / (1u64 << 30) as f64
    );
    let mut session = GpuLlamaSession::new(gpu, &gm, n_ctx, 512)?;
    session.decode(&prompt[..1], false)?; // warm-up: kernels compiled, cuBLAS initialised
    session.clear();
    let t = Instant::now();
    let mut gpu_steps = vec![session.decode(&prompt, false)?];
    let gpu_prefill = t.elapsed();
    let t = Instant::now();
    for &tok in &tokens {
        gpu_steps.push(session.decode(&[tok], false)?);
    }
    let gpu_decode = t.elapsed();

    let mut differ = 0;
    let mut worst = 0f64;
    for (i, (g, cl)) in gpu_steps.iter().zip(&cpu_steps).enumerate() {
        worst = worst.max(rel_error(g, cl));
        if argmax(g) != argmax(cl) {
            differ += 1;
            println!(
                "  step {i}: GPU top {} vs CPU top {} (CPU margin {:.4})",
                argmax(g),
                argmax(cl),
                margin(cl)
            );
        }
    }
    let per_s = |n: usize, d: std::time::Duration| n as f64 / d.as_secs_f64();
    println!(
        "model {name}: prefill {n_prompt} tokens: CPU {:.1} tok/s, GPU {:.1} tok/s; decode {n_gen} tokens: CPU {:.2} tok/s, GPU {:.2} tok/s",
        per_s(n_prompt, cpu_prefill),
        per_s(n_prompt, gpu_prefill),
        per_s(n_gen, cpu_decode),
        per_s(n_gen, gpu_decode)
    );
    println!("model {name}: CPU greedy tokens {tokens:?}");
    c.error(&format!("model {name}: GPU vs CPU logits, worst of {} steps", gpu_steps.len()), worst, 1e-3);
    c.exact(
        &format!("model {name}: GPU top token == CPU greedy token (teacher forced)"),
        differ,
        gpu_steps.len(),
    );
    Ok(())
}
