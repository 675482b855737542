//! Measurements (printed, not checked): H2D bandwidth from pinned and pageable memory, D2H into
//! pinned memory, GEMM throughput and a decode-shaped GEMV, attention decode time. Medians of
//! several runs timed with CUDA events after a warm-up; inputs are random, never zeros.

use crate::gemm::to_words;
use crate::kernels::poisoned;
use rs_llama::gpu::reference::Rng;
use rs_llama::gpu::{median, Gpu, GpuError, HostMemory, Linear, WeightType};

pub fn run_all(gpu: &Gpu, rng: &mut Rng) {
    let report = |name: &str, r: Result<(), GpuError>| {
        if let Err(e) = r {
            println!("bench {name}: error: {e}");
        }
    };
    report("bandwidth", bandwidth(gpu));
    for ty in [WeightType::F16, WeightType::Bf16] {
        report("gemm", gemm(gpu, rng, ty, 4096, 4096, 4096));
        report("gemv", gemm(gpu, rng, ty, 1, 4096, 14336));
        report("gemm", gemm(gpu, rng, ty, 512, 4096, 14336));
    }
    report("attention", attention(gpu, rng));
}

fn bandwidth(gpu: &Gpu) -> Result<(), GpuError> {
    let bytes = 256usize << 20;
    let gbs = |ms: f32| bytes as f64 / (ms as f64 / 1e3) / 1e9;
    for host in [HostMemory::Pinned, HostMemory::Pageable] {
        let t = gpu.time_h2d(bytes, host, 7)?;
        println!(
            "bench H2D {host:?} 256 MiB: median {:.1} GB/s (min {:.1}, max {:.1})",
            gbs(median(&t)),
            gbs(t.iter().cloned().fold(0.0, f32::max)),
            gbs(t.iter().cloned().fold(f32::MAX, f32::min))
        );
    }
    let t = gpu.time_d2h_pinned(bytes, 7)?;
    println!("bench D2H Pinned 256 MiB: median {:.1} GB/s", gbs(median(&t)));
    Ok(())
}

fn gemm(
    gpu: &Gpu,
    rng: &mut Rng,
    ty: WeightType,
    n_tokens: usize,
    n_in: usize,
    n_out: usize,
) -> Result<(), GpuError> {
    let (words, _) = to_words(&rng.vec(n_out * n_in, 0.05), ty);
    let w = Linear::upload_words(gpu, ty, &words, n_in, n_out, 1)?;
    let x = gpu.upload(&rng.vec(n_tokens * n_in, 1.0))?;
    let mut y = poisoned(gpu, n_tokens * n_out)?;
    gpu.linear(&mut y, &x, &w, 0, n_tokens)?; // warm-up (cuBLAS picks its kernel)
    let mut times = Vec::new();
    for _ in 0..10 {
        times.push(gpu.time_compute(|| gpu.linear(&mut y, &x, &w, 0, n_tokens))?);
    }
    let ms = median(&times) as f64;
    let tflops = 2.0 * (n_tokens * n_in * n_out) as f64 / (ms / 1e3) / 1e12;
    let weight_gbs = (n_in * n_out * 2) as f64 / (ms / 1e3) / 1e9;
    println!("bench linear {ty:?} {n_tokens}x{n_in} -> {n_out}: median {ms:.3} ms, {tflops:.1} TFLOP/s, weights read at {weight_gbs:.0} GB/s (activation split included)");
    Ok(())
}

fn attention(gpu: &Gpu, rng: &mut Rng) -> Result<(), GpuError> {
    let (n_head, n_kv, hd) = (32, 8, 128);
    for n_past in [512usize, 4096] {
        let row = n_kv * hd;
        let kv = rng.vec((n_past + 1) * row, 1.0);
        let mut kc = gpu.alloc::<u16>((n_past + 1) * row)?;
        let mut vc = gpu.alloc::<u16>((n_past + 1) * row)?;
        let kd = gpu.upload(&kv)?;
        gpu.kv_store(&mut kc, &kd, row, 0)?;
        gpu.kv_store(&mut vc, &kd, row, 0)?;
        let q = gpu.upload(&rng.vec(n_head * hd, 1.0))?;
        let mut out = poisoned(gpu, n_head * hd)?;
        let scale = 1.0 / (hd as f32).sqrt();
        gpu.attention(&mut out, &q, &kc, &vc, n_head, n_kv, hd, n_past, scale)?;
        let mut times = Vec::new();
        for _ in 0..10 {
            times.push(
                gpu.time_compute(|| gpu.attention(&mut out, &q, &kc, &vc, n_head, n_kv, hd, n_past, scale))?,
            );
        }
        let ms = median(&times) as f64;
        let kv_gbs = (2 * (n_past + 1) * row * 2) as f64 / (ms / 1e3) / 1e9;
        println!("bench attention decode {n_head}/{n_kv} heads hd {hd} at {n_past} past: median {ms:.3} ms, KV read at {kv_gbs:.0} GB/s");
    }
    Ok(())
}
