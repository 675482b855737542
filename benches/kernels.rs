//! Criterion benches of the CPU kernels, per weight type and kernel path: GEMV (decode: bytes/s
//! against the memory-bandwidth ceiling), GEMM (prefill: flops/s against the FMA peak), attention
//! over an f16 KV cache, and tokenizer throughput. Beside criterion's figures, each kernel prints
//! the fraction of its ceiling it reached (the ceilings are measured once, in the same thread pool,
//! as `rs-llama-bench` measures them).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use half::{bf16, f16};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rs_llama::bench::Ceilings;
use rs_llama::cpu::dot::kernels_for;
use rs_llama::cpu::{matmul_with, CpuPath, WeightView};
use rs_llama::ops::attention::{attention, AttnShape, KvSplit};

fn rand_vec(seed: u64, n: usize) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect()
}

fn ceilings() -> &'static Ceilings {
    static C: OnceLock<Ceilings> = OnceLock::new();
    C.get_or_init(|| {
        let c = rs_llama::bench::ceilings::measure();
        eprintln!(
            "ceilings ({} threads): read {:.1} GB/s, fma {:.1} GFLOP/s",
            rayon::current_num_threads(),
            c.read_gbps,
            c.fma_gflops
        );
        c
    })
}

/// What a kernel is measured against: its work per call and the matching ceiling.
enum Work {
    /// Bytes of weights read per call, against the read ceiling.
    Bytes(usize),
    /// Flops per call, against the FMA peak.
    Flops(usize),
}

/// Prints `label`'s achieved rate over about 0.3 s of calls as a fraction of its ceiling.
fn achieved(label: &str, work: Work, mut f: impl FnMut()) {
    let c = ceilings();
    f();
    let (mut calls, start) = (0u32, Instant::now());
    while start.elapsed() < Duration::from_millis(300) {
        f();
        calls += 1;
    }
    let per_call = start.elapsed().as_secs_f64() / f64::from(calls);
    let (rate, ceiling, unit) = match work {
        Work::Bytes(b) => (b as f64 / per_call / 1e9, c.read_gbps, "GB/s of the read ceiling"),
        Work::Flops(n) => (n as f64 / per_call / 1e9, c.fma_gflops, "GFLOP/s of the FMA peak"),
    };
    eprintln!("achieved {label}: {rate:.1} {unit} {ceiling:.1} = {:.0}%", 100.0 * rate / ceiling);
}

/// The kernel path this process runs. Under `ggml` numerics parts of the matmul (the decode GEMV,
/// the bf16 tiles) follow the process's path whatever kernels are passed in, so a path is benched
/// in its own process: `RS_LLAMA_CPU=avx2 cargo bench --bench kernels` for the AVX2 one.
fn path() -> CpuPath {
    rs_llama::cpu::path::active()
}

/// Bytes of weights the GEMV cycles through: past the L3 (32 MiB here), so that it streams from
/// memory as decode does, not from cache.
const GEMV_WORKING_SET: usize = 96 << 20;

/// SmolLM2's FFN up projection, and a Mixtral-shape expert's.
const SHAPES: [(usize, usize); 2] = [(576, 1536), (1024, 2816)];

fn matmuls(c: &mut Criterion) {
    let path = path();
    let k = kernels_for(path);
    for (n_in, n_out) in SHAPES {
        let w32 = rand_vec(1, n_in * n_out);
        let w16: Vec<f16> = w32.iter().map(|&v| f16::from_f32(v)).collect();
        let wb: Vec<bf16> = w32.iter().map(|&v| bf16::from_f32(v)).collect();
        for (n_tok, kind) in [(1usize, "gemv"), (64, "gemm")] {
            // Copies of the weights, used in turn (one for the GEMM, whose weights stay in cache).
            let copies = if n_tok == 1 { GEMV_WORKING_SET / (n_in * n_out * 2) + 1 } else { 1 };
            let w16s = vec![w16.clone(); copies];
            let wbs = vec![wb.clone(); copies];
            let x = rand_vec(2, n_tok * n_in);
            let mut y = vec![0f32; n_tok * n_out];
            let mut g = c.benchmark_group(format!("{kind}_{n_in}x{n_out}"));
            if n_tok == 1 {
                g.throughput(Throughput::Bytes((n_in * n_out * 2) as u64));
            } else {
                g.throughput(Throughput::Elements((2 * n_tok * n_in * n_out) as u64));
            }
            for dt in ["f16", "bf16"] {
                let view = |i: usize| match dt {
                    "f16" => WeightView::F16(&w16s[i % copies]),
                    _ => WeightView::BF16(&wbs[i % copies]),
                };
                let mut i = 0;
                let mut call = || {
                    i += 1;
                    matmul_with(&k, &x, view(i), n_in, n_out, &mut y)
                };
                g.bench_function(BenchmarkId::new(dt, path.name()), |b| b.iter(&mut call));
                let work = if n_tok == 1 {
                    Work::Bytes(n_in * n_out * 2)
                } else {
                    Work::Flops(2 * n_tok * n_in * n_out)
                };
                achieved(&format!("{kind}_{n_in}x{n_out}/{dt}/{}", path.name()), work, call);
            }
            g.finish();
        }
    }
}

fn attn(c: &mut Criterion) {
    let s = AttnShape::heads(9, 3, 64, 64);
    let n_ctx = 512;
    let kv: Vec<f16> = rand_vec(3, n_ctx * 3 * 64).iter().map(|&v| f16::from_f32(v)).collect();
    let mut g = c.benchmark_group("attention");
    for (n_tok, name) in [(1usize, "decode@511"), (64, "prefill64@448")] {
        let q = rand_vec(4, n_tok * 9 * 64);
        let mut out = vec![0f32; n_tok * 9 * 64];
        let pos0 = n_ctx - n_tok;
        g.throughput(Throughput::Elements((n_tok * 9 * n_ctx * 64 * 4) as u64));
        let (k, v) = (&kv[..n_ctx * 192], &kv[..n_ctx * 192]);
        // The decode token is split over the KV as a real decode at that position would be.
        let split = if n_tok == 1 { KvSplit::for_decode(n_ctx, pos0) } else { None };
        g.bench_function(name, |b| b.iter(|| attention(&q, k, v, pos0, s, 0.125, split, &mut out)));
        let work = Work::Flops(n_tok * 9 * n_ctx * 64 * 4);
        achieved(&format!("attention/{name}"), work, || attention(&q, k, v, pos0, s, 0.125, split, &mut out));
        if split.is_some() {
            // The same token in one sweep (what llama.cpp does below a view of 512).
            let one = format!("{name}-one-sweep");
            g.bench_function(&one, |b| b.iter(|| attention(&q, k, v, pos0, s, 0.125, None, &mut out)));
        }
    }
    g.finish();
}

fn tokenizer(c: &mut Criterion) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/vocab/ggml-vocab-gpt-2.gguf");
    let Ok(file) = gguf::GgufFile::open(path) else { return };
    let Ok(tok) = rs_llama::tokenizer::Tokenizer::from_gguf(&file) else { return };
    let text = include_str!("../compare/README.md").repeat(4);
    let mut g = c.benchmark_group("tokenizer");
    g.throughput(Throughput::Bytes(text.len() as u64));
    g.bench_function("gpt2_encode", |b| b.iter(|| tok.encode(&text, false, false)));
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(std::time::Duration::from_millis(300))
        .measurement_time(std::time::Duration::from_secs(1));
    targets = matmuls, attn, tokenizer
}
criterion_main!(benches);
