//! This machine's two ceilings, measured once per run in well under a second: the memory
//! bandwidth a parallel read reaches, and the f32 FMA peak of all threads. Bench results are
//! reported as fractions of them (DESIGN.md §4).

use std::time::Instant;

use rayon::prelude::*;

use crate::cpu::dot::kernels_for;
use crate::cpu::CpuPath;

#[derive(Debug, Clone, Copy)]
pub struct Ceilings {
    /// GB/s (1e9 bytes) of a parallel streaming read.
    pub read_gbps: f64,
    /// GFLOP/s of independent f32 FMAs on every thread of the current pool.
    pub fma_gflops: f64,
}

/// Measure both ceilings in the current rayon pool.
pub fn measure() -> Ceilings {
    Ceilings { read_gbps: read_bandwidth(), fma_gflops: fma_peak() }
}

/// Best of three passes over 256 MiB (larger than any L3 this targets).
fn read_bandwidth() -> f64 {
    const N: usize = 64 << 20; // f32 elements
    const CHUNK: usize = 1 << 16;
    let buf: Vec<f32> = (0..N).map(|i| (i % 251) as f32 * 1e-3).collect();
    let dot = kernels_for(CpuPath::best()).dot;
    let mut best = 0f64;
    let mut sink = 0f32;
    for _ in 0..3 {
        let start = Instant::now();
        sink += buf.par_chunks(CHUNK).map(|c| dot(c, c)).sum::<f32>();
        best = best.max((N * 4) as f64 / start.elapsed().as_secs_f64() / 1e9);
    }
    std::hint::black_box(sink);
    best
}

/// Each thread runs `ITERS` steps of `ACCS` independent FMA chains; best of three.
fn fma_peak() -> f64 {
    const ITERS: usize = 2_000_000;
    let threads = rayon::current_num_threads().max(1);
    let (lanes, burn): (usize, fn(usize) -> f32) = burner();
    let mut best = 0f64;
    for _ in 0..3 {
        let start = Instant::now();
        let sink: f32 = (0..threads).into_par_iter().map(|_| burn(ITERS)).sum();
        std::hint::black_box(sink);
        let flops = (threads * ITERS * ACCS * lanes * 2) as f64;
        best = best.max(flops / start.elapsed().as_secs_f64() / 1e9);
    }
    best
}

const ACCS: usize = 12;

fn burner() -> (usize, fn(usize) -> f32) {
    #[cfg(target_arch = "x86_64")]
    {
        if CpuPath::Avx2.supported() {
            // SAFETY: avx2+fma detected just above.
            return (8, |n| unsafe { burn_avx2(n) });
        }
    }
    (1, burn_scalar)
}

fn burn_scalar(n: usize) -> f32 {
    let mut acc = [1f32; ACCS];
    for _ in 0..n {
        for a in &mut acc {
            *a = a.mul_add(0.999_999, 1e-7);
        }
    }
    acc.iter().sum()
}

/// 256-bit FMAs: on Zen 4 a 512-bit FMA issues as two halves, so this is the peak there too.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn burn_avx2(n: usize) -> f32 {
    use std::arch::x86_64::*;
    let mut acc = [_mm256_set1_ps(1.0); ACCS];
    let m = _mm256_set1_ps(0.999_999);
    let c = _mm256_set1_ps(1e-7);
    for _ in 0..n {
        for a in &mut acc {
            *a = _mm256_fmadd_ps(*a, m, c);
        }
    }
    let mut out = [0f32; 8];
    let s = acc.iter().fold(_mm256_setzero_ps(), |s, a| _mm256_add_ps(s, *a));
    _mm256_storeu_ps(out.as_mut_ptr(), s);
    out.iter().sum()
}
