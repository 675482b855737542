//! Probes of rs-llama's own CPU kernels for `rs-llama-plan --profile`: what the executor really
//! gets here (kernels, threading and rounding copies included), on shapes like a mid-sized
//! model's layer at the sizes a prefill and a decode step use. The FMA and bandwidth ceilings in
//! `profile` say what the hardware could do; these say what the engine does.

use std::time::Instant;

use half::{bf16, f16};
use serde::{Deserialize, Serialize};

use super::tasks::{attention_elementwise, ffn_elementwise};
use crate::cpu::matmul::{matmul, WeightView};
use crate::ops::attention::{attention, AttnShape};

/// Achieved rates of rs-llama's CPU kernels with one thread count.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct KernelRates {
    /// Batched matmul (512 tokens, 1024 → 1024), GFLOP/s per weight type.
    pub gemm_gflops: TypeRates,
    /// One-token matmul streaming weights from DRAM (64 Mi weights, layer-shaped), GB/s of weights.
    pub gemv_gbs: TypeRates,
    /// Attention, GFLOP/s (QK and PV): a 512-token prompt, and one token over 512 cached positions.
    pub attn_prefill_gflops: f64,
    pub attn_decode_gflops: f64,
    /// Elements per second (×1e9) of the per-token work outside matmuls and attention: norms,
    /// residual adds, rope, the KV store and SwiGLU, counted as the cost model counts them.
    pub elementwise_gelems: f64,
}

/// One figure per weight type.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TypeRates {
    pub f32: f64,
    pub f16: f64,
    pub bf16: f64,
}

/// The probe layer: 1024 wide, 16 query heads and 4 KV heads of 64 dims, FFN 2816.
const EMBD: usize = 1024;
const HEADS: usize = 16;
const KV_HEADS: usize = 4;
const HEAD_DIM: usize = 64;
const FF: usize = 2816;
const PROMPT: usize = 512;

/// Runs every probe in a pool of `threads` threads. About a second per call.
pub fn measure_kernels(threads: usize) -> Option<KernelRates> {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().ok()?;
    Some(pool.install(|| KernelRates {
        gemm_gflops: gemm_rates(),
        gemv_gbs: gemv_rates(),
        attn_prefill_gflops: attention_rate(PROMPT, 0),
        attn_decode_gflops: attention_rate(1, PROMPT - 1),
        elementwise_gelems: elementwise_rate(),
    }))
}

/// Deterministic values in about ±0.1 (no denormals, no overflow in any type).
fn values(n: usize, seed: usize) -> Vec<f32> {
    (0..n).map(|i| (((i * 7919 + seed * 104_729) % 2000) as f32 - 1000.0) * 1e-4).collect()
}

/// Median of a few timed runs of `f` (after one warm-up), in seconds: the benchmark it predicts
/// reports means over repetitions on the same shared machine, not best cases.
fn median_secs(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut times: Vec<f64> = (0..reps.max(1))
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2].max(1e-9)
}

fn gemm_rates() -> TypeRates {
    let x = values(PROMPT * EMBD, 1);
    let w32 = values(EMBD * EMBD, 2);
    let w16: Vec<f16> = w32.iter().map(|&v| f16::from_f32(v)).collect();
    let wb16: Vec<bf16> = w32.iter().map(|&v| bf16::from_f32(v)).collect();
    let mut y = vec![0f32; PROMPT * EMBD];
    let flops = (2 * PROMPT * EMBD * EMBD) as f64;
    let mut rate = |w: WeightView<'_>| flops / median_secs(3, || matmul(&x, w, EMBD, EMBD, &mut y)) / 1e9;
    TypeRates {
        f32: rate(WeightView::F32(&w32)),
        f16: rate(WeightView::F16(&w16)),
        bf16: rate(WeightView::BF16(&wb16)),
    }
}

/// Layer-shaped matrices (EMBD → FF, then back) cycled through 64 Mi weights, more than a
/// last-level cache holds, so every pass reads them from DRAM as decode does.
fn gemv_rates() -> TypeRates {
    let w32 = values(GEMV_MATS * EMBD * FF, 4);
    let f32_gbs = gemv_gbs(&w32, WeightView::F32, 4);
    let w16: Vec<f16> = w32.iter().map(|&v| f16::from_f32(v)).collect();
    let f16_gbs = gemv_gbs(&w16, WeightView::F16, 2);
    drop(w16);
    let wb16: Vec<bf16> = w32.iter().map(|&v| bf16::from_f32(v)).collect();
    let bf16_gbs = gemv_gbs(&wb16, WeightView::BF16, 2);
    TypeRates { f32: f32_gbs, f16: f16_gbs, bf16: bf16_gbs }
}

const GEMV_MATS: usize = (64 << 20) / (EMBD * FF);

fn gemv_gbs<'a, T>(w: &'a [T], view: fn(&'a [T]) -> WeightView<'a>, bytes_per_weight: usize) -> f64 {
    let x = values(FF, 3);
    let mut y = vec![0f32; FF];
    let mats: Vec<WeightView<'a>> = w.chunks_exact(EMBD * FF).map(view).collect();
    let secs = median_secs(3, || {
        for (m, wm) in mats.iter().enumerate() {
            let (n_in, n_out) = if m % 2 == 0 { (EMBD, FF) } else { (FF, EMBD) };
            matmul(&x[..n_in], *wm, n_in, n_out, &mut y[..n_out]);
        }
    });
    (w.len() * bytes_per_weight) as f64 / secs / 1e9
}

/// GFLOP/s of `n_tok` query tokens after `pos0` cached ones, with the kernel the engine picks.
fn attention_rate(n_tok: usize, pos0: usize) -> f64 {
    let s = AttnShape { n_head: HEADS, n_head_kv: KV_HEADS, head_dim_k: HEAD_DIM, head_dim_v: HEAD_DIM };
    let n_kv = pos0 + n_tok;
    let q = values(n_tok * HEADS * HEAD_DIM, 5);
    let k: Vec<f16> = values(n_kv * KV_HEADS * HEAD_DIM, 6).into_iter().map(f16::from_f32).collect();
    let v: Vec<f16> = values(n_kv * KV_HEADS * HEAD_DIM, 7).into_iter().map(f16::from_f32).collect();
    let mut out = vec![0f32; n_tok * HEADS * HEAD_DIM];
    let scale = 1.0 / (HEAD_DIM as f32).sqrt();
    // Token t sees pos0 + t + 1 positions; QK and PV are 2·(dk + dv) flops per head and position.
    let seen: usize = (0..n_tok).map(|t| pos0 + t + 1).sum();
    let flops = (2 * 2 * HEAD_DIM * HEADS * seen) as f64;
    let reps = if n_tok == 1 { 200 } else { 3 };
    let secs = median_secs(reps, || attention(&q, &k, &v, pos0, s, scale, &mut out));
    flops / secs / 1e9
}

/// The probe layer's elementwise work for a 512-token prompt, per element as
/// [`super::tasks::TaskGraph::elementwise_elems`] counts it.
fn elementwise_rate() -> f64 {
    use crate::exec::kv_cache::KvCache;
    use crate::ops::ffn::swiglu_parallel;
    use crate::ops::rmsnorm::{add_into, rms_norm};
    use crate::ops::rope::{rope, RopeParams, RopeStyle};
    let (q_dims, kv_dims) = (HEADS * HEAD_DIM, KV_HEADS * HEAD_DIM);
    let x = values(PROMPT * EMBD, 8);
    let norm_w = vec![1.0f32; EMBD];
    let mut cur = x.clone();
    let mut resid = x.clone();
    let mut q = values(PROMPT * q_dims, 9);
    let mut k = values(PROMPT * kv_dims, 10);
    let v = values(PROMPT * kv_dims, 11);
    let mut gate = values(PROMPT * FF, 12);
    let up = values(PROMPT * FF, 13);
    let positions: Vec<usize> = (0..PROMPT).collect();
    let rope_p = RopeParams {
        style: RopeStyle::Norm,
        n_rot: HEAD_DIM,
        freq_base: 10_000.0,
        freq_scale: 1.0,
        freq_factors: None,
    };
    let Ok(mut kv) = KvCache::new(1, PROMPT, kv_dims, kv_dims) else { return 0.0 };
    let secs = median_secs(3, || {
        for _ in 0..2 {
            cur.copy_from_slice(&resid);
            rms_norm(&mut cur, &norm_w, 1e-5);
            add_into(&mut resid, &cur);
        }
        rope(&mut q, &positions, HEADS, HEAD_DIM, &rope_p);
        rope(&mut k, &positions, KV_HEADS, HEAD_DIM, &rope_p);
        kv.store(0, 0, &k, &v);
        swiglu_parallel(&mut gate, &up);
    });
    let per_token = attention_elementwise(EMBD, q_dims, kv_dims, kv_dims) + ffn_elementwise(FF);
    (PROMPT * per_token) as f64 / secs / 1e9
}
