//! rs-llama-gpu-check: the device check. On a machine with an NVIDIA GPU it prints which CUDA
//! libraries were found and loaded, checks every kernel and the GEMMs against the naive f64
//! references of `rs_llama::gpu::reference` on fresh seeded random inputs (relative L2 error, with
//! pass/fail per check), then measures pinned and pageable H2D bandwidth and GEMM throughput.
//!
//! Exit code: 0 all checks passed, 1 some check failed, 2 no usable GPU.

mod bench;
mod forward;
mod gemm;
mod kernels;
mod model;

use clap::Parser;
use rs_llama::gpu::{self, reference::Rng, Gpu, GpuError, GpuOptions};
use std::time::Instant;

#[derive(Parser)]
#[command(about = "Check the GPU kernels and GEMMs against the CPU, and measure the device")]
struct Args {
    /// Seed of the random inputs (default: from the clock, printed so a run can be repeated).
    #[arg(long)]
    seed: Option<u64>,
    /// CUDA device ordinal.
    #[arg(long, default_value_t = 0)]
    device: usize,
    /// GPU memory budget (e.g. 16G; binary units: 16G = 16GB = 16GiB = 16·2^30 bytes); default: free
    /// memory minus a margin.
    #[arg(long = "gpu-mem")]
    gpu_mem: Option<String>,
    /// Skip the bandwidth and throughput measurements.
    #[arg(long)]
    no_bench: bool,
    /// GGUF models to run on the GPU against the CPU engine (greedy, teacher forced).
    #[arg(long = "model")]
    models: Vec<std::path::PathBuf>,
    /// Only the --model comparisons (skip the kernel checks and the measurements).
    #[arg(long)]
    models_only: bool,
    /// Prompt length (random token ids) for --model.
    #[arg(long, default_value_t = 32)]
    n_prompt: usize,
    /// Greedy tokens generated for --model.
    #[arg(long, default_value_t = 32)]
    n_gen: usize,
}

/// Pass/fail bookkeeping; every check prints one line.
pub struct Checks {
    pub passed: usize,
    pub failed: usize,
}

impl Checks {
    /// Record a relative error against its tolerance.
    pub fn error(&mut self, name: &str, err: f64, tol: f64) {
        let ok = err <= tol; // NaN fails
        self.line(ok, &format!("{name}: rel_err {err:.3e} (tol {tol:.0e})"));
    }

    /// Record an exact comparison.
    pub fn exact(&mut self, name: &str, mismatches: usize, total: usize) {
        self.line(mismatches == 0, &format!("{name}: {mismatches} of {total} differ"));
    }

    /// Record the outcome of a step that could not run to the comparison.
    pub fn outcome(&mut self, name: &str, r: Result<(), GpuError>) {
        if let Err(e) = r {
            self.line(false, &format!("{name}: {e}"));
        }
    }

    fn line(&mut self, ok: bool, text: &str) {
        if ok {
            self.passed += 1;
            println!("[PASS] {text}");
        } else {
            self.failed += 1;
            println!("[FAIL] {text}");
        }
    }
}

fn main() {
    let args = Args::parse();
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    println!("== rs-llama-gpu-check (seed {seed})");
    println!("LD_LIBRARY_PATH={}", std::env::var("LD_LIBRARY_PATH").unwrap_or_default());
    for (lib, present) in gpu::library_report() {
        println!("library {lib}: {}", if present { "found" } else { "NOT FOUND" });
    }
    if let Some((major, minor)) = gpu::nvrtc_version() {
        println!("nvrtc version {major}.{minor}");
    }
    let mem_limit = match args.gpu_mem.as_deref().map(gpu::parse_size).transpose() {
        Ok(limit) => limit,
        Err(e) => {
            eprintln!("error: --gpu-mem: {e}");
            std::process::exit(1);
        }
    };
    let gpu = match Gpu::new(&GpuOptions { device: args.device, mem_limit }) {
        Ok(gpu) => gpu,
        Err(e) => {
            println!("[FAIL] start: {e}");
            std::process::exit(2);
        }
    };
    println!("device: {}", gpu.describe());
    match gpu.cublas_version() {
        Ok(v) => println!("cublas version {v}"),
        Err(e) => println!("cublas version unknown: {e}"),
    }
    let mut checks = Checks { passed: 0, failed: 0 };
    let t = Instant::now();
    let warm = gpu.warm_up();
    let compiled_in = t.elapsed();
    checks.outcome("nvrtc compile + load of every kernel", warm);
    println!("kernels compiled and loaded in {compiled_in:.2?}");

    let mut rng = Rng::new(seed);
    if !args.models_only {
        kernels::run_all(&gpu, &mut rng, &mut checks);
        gemm::run_all(&gpu, &mut rng, &mut checks);
        forward::run_all(&gpu, &mut rng, &mut checks);
        checks.outcome("synchronize", gpu.synchronize());
        if !args.no_bench {
            bench::run_all(&gpu, &mut rng);
        }
    }
    for path in &args.models {
        model::run(&gpu, path, args.n_prompt, args.n_gen, &mut rng, &mut checks);
    }
    for path in gpu::loaded_libraries() {
        println!("loaded: {path}");
    }
    println!("== {} passed, {} failed", checks.passed, checks.failed);
    std::process::exit(if checks.failed == 0 { 0 } else { 1 });
}
