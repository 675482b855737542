//! The hardware profile: what the cost model knows about the CPU, the GPU, the PCIe link and the
//! host DRAM they share. Saved and loaded as JSON; measured by `rs-llama-plan --profile`.
//!
//! Units: bandwidths in GB/s (1e9 bytes), rates in GFLOP/s, latencies in microseconds.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::probe::measure_kernels;
pub use super::probe::{KernelRates, TypeRates};
use super::PlanError;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HwProfile {
    pub name: String,
    /// Where the figures come from (preset sources, or "measured on ...").
    pub source: String,
    pub cpu: CpuProfile,
    /// Host DRAM read bandwidth, shared by the CPU lane and the PCIe lane.
    pub dram_gbs: f64,
    pub gpu: Option<GpuProfile>,
    pub pcie: Option<PcieProfile>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CpuProfile {
    pub description: String,
    /// Thread count the engine runs with; `at()` picks the matching point.
    pub threads: u32,
    /// One point per measured thread count, ascending.
    pub points: Vec<CpuPoint>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CpuPoint {
    pub threads: u32,
    /// Large-buffer read bandwidth with this many threads.
    pub mem_gbs: f64,
    /// FMA ceilings (2 flops per FMA): a simple register-resident loop, not a GEMM.
    pub f32_gflops: f64,
    pub f16_gflops: f64,
    pub bf16_gflops: f64,
    /// What rs-llama's own kernels reach here, when measured (`--profile`); the cost model then
    /// uses these instead of fractions of the ceilings above.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernels: Option<KernelRates>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuProfile {
    pub name: String,
    pub mem_bytes: u64,
    pub mem_gbs: f64,
    /// Dense tensor-core rate with f32 accumulation.
    pub f16_tflops: f64,
    pub bf16_tflops: f64,
    /// Per kernel launch.
    pub launch_us: f64,
    /// Rate at which our decode attention kernel reads the KV cache on this card, where it was
    /// measured (`None`: [`crate::plan::cost::GPU_ATTN_KV_GBS_MEASURED`], the H200 figure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attn_kv_gbs: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PcieProfile {
    pub pinned_gbs: f64,
    pub pageable_gbs: f64,
    pub latency_us: f64,
}

impl CpuProfile {
    /// The point for the configured thread count (the largest measured count not above it).
    pub fn at(&self) -> CpuPoint {
        let mut best = self.points.first().copied().unwrap_or(CpuPoint {
            threads: 1,
            mem_gbs: 10.0,
            f32_gflops: 50.0,
            f16_gflops: 50.0,
            bf16_gflops: 50.0,
            kernels: None,
        });
        for p in &self.points {
            if p.threads <= self.threads.max(1) {
                best = *p;
            }
        }
        best
    }
}

impl HwProfile {
    pub fn from_json(text: &str) -> Result<HwProfile, PlanError> {
        let p: HwProfile =
            serde_json::from_str(text).map_err(|e| PlanError::BadArg(format!("profile JSON: {e}")))?;
        p.validate()?;
        Ok(p)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Every figure the cost model divides by must be positive and finite.
    pub fn validate(&self) -> Result<(), PlanError> {
        let pos = |v: f64, what: &str| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(PlanError::BadArg(format!("profile '{}': {what} must be positive, got {v}", self.name)))
            }
        };
        pos(self.dram_gbs, "dram_gbs")?;
        if self.cpu.points.is_empty() {
            return Err(PlanError::BadArg(format!("profile '{}': no CPU points", self.name)));
        }
        for p in &self.cpu.points {
            pos(p.mem_gbs, "cpu mem_gbs")?;
            pos(p.f32_gflops, "cpu f32_gflops")?;
            pos(p.f16_gflops, "cpu f16_gflops")?;
            pos(p.bf16_gflops, "cpu bf16_gflops")?;
        }
        if let Some(g) = &self.gpu {
            pos(g.mem_gbs, "gpu mem_gbs")?;
            pos(g.f16_tflops, "gpu f16_tflops")?;
            pos(g.bf16_tflops, "gpu bf16_tflops")?;
            if self.pcie.is_none() {
                return Err(PlanError::BadArg(format!("profile '{}': a GPU needs a PCIe link", self.name)));
            }
        }
        if let Some(l) = &self.pcie {
            pos(l.pinned_gbs, "pcie pinned_gbs")?;
            pos(l.pageable_gbs, "pcie pageable_gbs")?;
        }
        Ok(())
    }
}

/// Measures this machine's CPU with 1 thread and with all threads: read bandwidth and FMA ceiling
/// (a register-resident loop), then what rs-llama's own kernels reach (`probe`), which the cost
/// model uses in place of fractions of the ceilings. Takes about sixteen seconds.
pub fn measure_cpu() -> CpuProfile {
    let n_threads = std::thread::available_parallelism().map(|n| n.get() as u32).unwrap_or(1);
    let mut counts = vec![1];
    if n_threads > 1 {
        counts.push(n_threads);
    }
    // 256 MiB: well past any last-level cache, small enough for a shared machine.
    let words = 32usize << 20;
    let buffer: Vec<u64> = (0..words as u64).map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15)).collect();
    let bf16_native = has_avx512_bf16();
    let ceilings: Vec<(f64, f64)> =
        counts.iter().map(|&t| (read_bandwidth_gbs(&buffer, t as usize), fma_gflops(t as usize))).collect();
    drop(buffer);
    let kernels = measure_kernels(&counts.iter().map(|&t| t as usize).collect::<Vec<_>>());
    let points = counts
        .iter()
        .zip(ceilings)
        .zip(kernels)
        .map(|((&t, (mem_gbs, f32_gflops)), kernels)| {
            CpuPoint {
                threads: t,
                mem_gbs,
                f32_gflops,
                // f16 weights are widened in registers and fed to the same f32 FMAs; bf16 has a native
                // dot product (two FMAs per lane) only with AVX512-BF16.
                f16_gflops: f32_gflops,
                bf16_gflops: if bf16_native { 2.0 * f32_gflops } else { f32_gflops },
                kernels,
            }
        })
        .collect();
    CpuProfile {
        description: format!(
            "measured: {n_threads} threads{}{}",
            if bf16_native { ", AVX512-BF16" } else { "" },
            if cfg!(debug_assertions) { " (DEBUG BUILD: figures are low, use --release)" } else { "" }
        ),
        threads: n_threads,
        points,
    }
}

fn has_avx512_bf16() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Best of three passes over `buffer`, split between `threads` threads.
fn read_bandwidth_gbs(buffer: &[u64], threads: usize) -> f64 {
    let chunk = buffer.len().div_ceil(threads);
    let mut best: f64 = 0.0;
    for _ in 0..3 {
        let start = Instant::now();
        let sum: u64 = std::thread::scope(|s| {
            let handles: Vec<_> = buffer
                .chunks(chunk)
                .map(|part| s.spawn(move || part.iter().fold(0u64, |a, &x| a.wrapping_add(x))))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or(0)).fold(0u64, u64::wrapping_add)
        });
        std::hint::black_box(sum);
        let secs = start.elapsed().as_secs_f64();
        best = best.max((buffer.len() * 8) as f64 / secs / 1e9);
    }
    best
}

/// f32 FMA rate of `threads` threads running independent accumulator chains.
fn fma_gflops(threads: usize) -> f64 {
    const ITERS: usize = 20_000_000;
    let start = Instant::now();
    let flops_per_thread: f64 = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads).map(|t| s.spawn(move || fma_loop(ITERS, t as f32))).collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0.0)).sum::<f64>() / threads as f64
    });
    let secs = start.elapsed().as_secs_f64();
    flops_per_thread * threads as f64 / secs / 1e9
}

/// Returns the flops done; the result is consumed so the loop survives optimisation.
fn fma_loop(iters: usize, seed: f32) -> f64 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: the features the function is compiled for were just detected.
            return unsafe { fma_loop_avx2(iters, seed) };
        }
    }
    let mut acc = [seed; 8];
    let (m, a) = (0.999_999_f32, 1e-7_f32);
    for _ in 0..iters {
        for x in acc.iter_mut() {
            *x = *x * m + a;
        }
    }
    std::hint::black_box(acc);
    (iters * 8 * 2) as f64
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fma_loop_avx2(iters: usize, seed: f32) -> f64 {
    use std::arch::x86_64::*;
    // Ten independent chains of 8 lanes hide the FMA latency on two FMA ports.
    let m = _mm256_set1_ps(0.999_999);
    let a = _mm256_set1_ps(1e-7);
    let mut acc = [_mm256_set1_ps(seed); 10];
    for _ in 0..iters {
        for x in acc.iter_mut() {
            *x = _mm256_fmadd_ps(*x, m, a);
        }
    }
    std::hint::black_box(acc);
    (iters * 10 * 8 * 2) as f64
}
