//! Probes of rs-llama's own CPU kernels for `rs-llama-plan --profile`: what the executor really
//! gets here (kernels, threading and rounding copies included), on shapes like a mid-sized
//! model's layer at the sizes a prefill and a decode step use. The FMA and bandwidth ceilings in
//! `profile` say what the hardware could do; these say what the engine does.

use std::time::Instant;

use half::{bf16, f16};
use serde::{Deserialize, Serialize};

use super::tasks::{attention_elementwise, ffn_elementwise};
use crate::cpu::matmul::{matmul, matmul_many, matmul_per_row, WeightView};
use crate::ops::attention::{attention, AttnShape};

/// Achieved rates of rs-llama's CPU kernels with one thread count.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct KernelRates {
    /// Batched matmul (512 tokens, 1024 → 1024), GFLOP/s per weight type.
    pub gemm_gflops: TypeRates,
    /// Routed-expert matmuls (`mul_mat_id` order, 128 tokens, 1024 → 2816 → 1024), GFLOP/s per type.
    pub expert_gflops: TypeRates,
    /// One-token matmuls streaming weights from DRAM in a decode step's pattern, GB/s of weights.
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

/// Runs every probe in a pool of `threads` threads: about three seconds.
pub fn measure_kernels(threads: usize) -> Option<KernelRates> {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().ok()?;
    Some(pool.install(|| KernelRates {
        gemm_gflops: gemm_rates(),
        expert_gflops: expert_rates(),
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

/// Mean seconds per run of `f` (after one warm-up) over at least [`PROBE_SECS`] and 3 runs: the
/// benchmark it predicts reports means over seconds on the same shared machine, and a probe
/// shorter than the machine's slow and fast spells would catch only one of them.
fn mean_secs(mut f: impl FnMut()) -> f64 {
    f();
    let start = Instant::now();
    let mut runs = 0u32;
    while runs < 3 || start.elapsed().as_secs_f64() < PROBE_SECS {
        f();
        runs += 1;
    }
    (start.elapsed().as_secs_f64() / f64::from(runs)).max(1e-9)
}

/// Time each probe spends measuring, per kernel and thread count.
const PROBE_SECS: f64 = 0.25;

fn gemm_rates() -> TypeRates {
    let x = values(PROMPT * EMBD, 1);
    let w32 = values(EMBD * EMBD, 2);
    let w16: Vec<f16> = w32.iter().map(|&v| f16::from_f32(v)).collect();
    let wb16: Vec<bf16> = w32.iter().map(|&v| bf16::from_f32(v)).collect();
    let mut y = vec![0f32; PROMPT * EMBD];
    let flops = (2 * PROMPT * EMBD * EMBD) as f64;
    let mut rate = |w: WeightView<'_>| flops / mean_secs(|| matmul(&x, w, EMBD, EMBD, &mut y)) / 1e9;
    TypeRates {
        f32: rate(WeightView::F32(&w32)),
        f16: rate(WeightView::F16(&w16)),
        bf16: rate(WeightView::BF16(&wb16)),
    }
}

/// An expert's up and down projections over the tokens a 512-token prompt routes to one of 8
/// experts (top-2); the down projection's long rows make it the slower of the two.
fn expert_rates() -> TypeRates {
    const TOKENS: usize = PROMPT * 2 / 8;
    let x = values(TOKENS * FF, 14);
    let up32 = values(EMBD * FF, 15);
    let down32 = values(FF * EMBD, 16);
    let mut y = vec![0f32; TOKENS * FF];
    let flops = (2 * 2 * TOKENS * EMBD * FF) as f64;
    let mut rate = |up: WeightView<'_>, down: WeightView<'_>| {
        let secs = mean_secs(|| {
            matmul_per_row(&x[..TOKENS * EMBD], up, EMBD, FF, &mut y);
            matmul_per_row(&x, down, FF, EMBD, &mut y[..TOKENS * EMBD]);
        });
        flops / secs / 1e9
    };
    let f16s = |v: &[f32]| v.iter().map(|&v| f16::from_f32(v)).collect::<Vec<f16>>();
    let bf16s = |v: &[f32]| v.iter().map(|&v| bf16::from_f32(v)).collect::<Vec<bf16>>();
    let (up16, down16, upb16, downb16) = (f16s(&up32), f16s(&down32), bf16s(&up32), bf16s(&down32));
    TypeRates {
        f32: rate(WeightView::F32(&up32), WeightView::F32(&down32)),
        f16: rate(WeightView::F16(&up16), WeightView::F16(&down16)),
        bf16: rate(WeightView::BF16(&upb16), WeightView::BF16(&downb16)),
    }
}

/// A decode step's matmuls over probe layers (Q, K and V in one dispatch, O, gate and up in one,
/// down), cycled through 64 Mi weights, more than a last-level cache holds, so that every pass
/// reads them from DRAM and pays the dispatches a decode step pays.
fn gemv_rates() -> TypeRates {
    let w32 = values(GEMV_LAYERS * LAYER_WEIGHTS, 4);
    let f32_gbs = gemv_gbs(&w32, WeightView::F32, 4);
    let w16: Vec<f16> = w32.iter().map(|&v| f16::from_f32(v)).collect();
    let f16_gbs = gemv_gbs(&w16, WeightView::F16, 2);
    drop(w16);
    let wb16: Vec<bf16> = w32.iter().map(|&v| bf16::from_f32(v)).collect();
    let bf16_gbs = gemv_gbs(&wb16, WeightView::BF16, 2);
    TypeRates { f32: f32_gbs, f16: f16_gbs, bf16: bf16_gbs }
}

/// `(n_in, n_out)` of a probe layer's matrices in execution order: Q, K, V, O, gate, up, down.
const LAYER_MATS: [(usize, usize); 7] = [
    (EMBD, HEADS * HEAD_DIM),
    (EMBD, KV_HEADS * HEAD_DIM),
    (EMBD, KV_HEADS * HEAD_DIM),
    (HEADS * HEAD_DIM, EMBD),
    (EMBD, FF),
    (EMBD, FF),
    (FF, EMBD),
];
const LAYER_WEIGHTS: usize = 2 * EMBD * (HEADS + KV_HEADS) * HEAD_DIM + 3 * EMBD * FF;
const GEMV_LAYERS: usize = (64 << 20) / LAYER_WEIGHTS;

fn gemv_gbs<'a, T>(w: &'a [T], view: fn(&'a [T]) -> WeightView<'a>, bytes_per_weight: usize) -> f64 {
    let x = values(FF, 3);
    let mut ys: Vec<Vec<f32>> = LAYER_MATS.iter().map(|&(_, n_out)| vec![0f32; n_out]).collect();
    let secs = mean_secs(|| {
        for layer in w.chunks_exact(LAYER_WEIGHTS) {
            let mut mats: Vec<(WeightView<'a>, &mut [f32])> = Vec::with_capacity(LAYER_MATS.len());
            let mut at = 0;
            for (&(n_in, n_out), y) in LAYER_MATS.iter().zip(ys.iter_mut()) {
                mats.push((view(&layer[at..at + n_in * n_out]), &mut y[..]));
                at += n_in * n_out;
            }
            let (qkv, rest) = mats.split_at_mut(3);
            let (o, rest) = rest.split_at_mut(1);
            let (gate_up, down) = rest.split_at_mut(2);
            matmul_many(&x[..EMBD], EMBD, qkv, false);
            matmul_many(&x[..HEADS * HEAD_DIM], HEADS * HEAD_DIM, o, false);
            matmul_many(&x[..EMBD], EMBD, gate_up, false);
            matmul_many(&x[..FF], FF, down, false);
        }
    });
    (GEMV_LAYERS * LAYER_WEIGHTS * bytes_per_weight) as f64 / secs / 1e9
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
    let secs = mean_secs(|| attention(&q, &k, &v, pos0, s, scale, &mut out));
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
    let secs = mean_secs(|| {
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
