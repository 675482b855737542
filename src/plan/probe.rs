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

/// Runs every probe with each thread count (one pool each): about four seconds per count, after
/// a second or two of building the probes' buffers (about 700 MB), which all counts share.
pub fn measure_kernels(thread_counts: &[usize]) -> Vec<Option<KernelRates>> {
    let Some(elementwise) = elementwise_probe() else { return vec![None; thread_counts.len()] };
    let mut probes = [
        gemm_probe(WeightKind::F32),
        gemm_probe(WeightKind::F16),
        gemm_probe(WeightKind::Bf16),
        expert_probe(WeightKind::F32),
        expert_probe(WeightKind::F16),
        expert_probe(WeightKind::Bf16),
        gemv_probe(WeightKind::F32),
        gemv_probe(WeightKind::F16),
        gemv_probe(WeightKind::Bf16),
        attention_probe(PROMPT, 0),
        attention_probe(1, PROMPT - 1),
        elementwise,
    ];
    let mut at = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().ok()?;
        let rates = pool.install(|| interleaved_medians(&mut probes));
        Some(KernelRates {
            gemm_gflops: TypeRates { f32: rates[0], f16: rates[1], bf16: rates[2] },
            expert_gflops: TypeRates { f32: rates[3], f16: rates[4], bf16: rates[5] },
            gemv_gbs: TypeRates { f32: rates[6], f16: rates[7], bf16: rates[8] },
            attn_prefill_gflops: rates[9],
            attn_decode_gflops: rates[10],
            elementwise_gelems: rates[11],
        })
    };
    thread_counts.iter().map(|&t| at(t)).collect()
}

/// A kernel call over buffers the probe owns, and the work (×1e9 flops, bytes or elements) one
/// call does.
struct Probe {
    giga_work: f64,
    run: Box<dyn FnMut() + Send>,
}

/// Each probe's rate, the median over [`PASSES`] passes that take turns with the other probes:
/// a shared machine has slow spells of a second or more, and a probe measured in one stretch can
/// land wholly inside one while its neighbours miss it, which skews the ratios the cost model
/// relies on (bf16 against f16 GEMV, prefill against decode). Taking turns spreads every spell
/// over all probes, and the median drops the pass that a spell hit hardest.
fn interleaved_medians(probes: &mut [Probe]) -> Vec<f64> {
    for p in probes.iter_mut() {
        (p.run)();
    }
    let mut rates = vec![Vec::with_capacity(PASSES); probes.len()];
    for _ in 0..PASSES {
        for (p, r) in probes.iter_mut().zip(rates.iter_mut()) {
            r.push(p.giga_work / mean_secs(&mut p.run));
        }
    }
    rates.into_iter().map(median).collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Passes per probe, and the time each pass spends measuring.
const PASSES: usize = 5;
const PASS_SECS: f64 = 0.06;

/// Mean seconds per run of `f` over at least [`PASS_SECS`] and 2 runs.
fn mean_secs(f: &mut (dyn FnMut() + Send)) -> f64 {
    let start = Instant::now();
    let mut runs = 0u32;
    while runs < 2 || start.elapsed().as_secs_f64() < PASS_SECS {
        f();
        runs += 1;
    }
    (start.elapsed().as_secs_f64() / f64::from(runs)).max(1e-9)
}

/// Deterministic values in about ±0.1 (no denormals, no overflow in any type).
fn values(n: usize, seed: usize) -> Vec<f32> {
    (0..n).map(|i| (((i * 7919 + seed * 104_729) % 2000) as f32 - 1000.0) * 1e-4).collect()
}

#[derive(Clone, Copy)]
enum WeightKind {
    F32,
    F16,
    Bf16,
}

/// Weights in one storage type, owned, so a probe's closure can keep them.
enum OwnedWeights {
    F32(Vec<f32>),
    F16(Vec<f16>),
    Bf16(Vec<bf16>),
}

impl OwnedWeights {
    fn new(kind: WeightKind, v: Vec<f32>) -> OwnedWeights {
        match kind {
            WeightKind::F32 => OwnedWeights::F32(v),
            WeightKind::F16 => OwnedWeights::F16(v.iter().map(|&x| f16::from_f32(x)).collect()),
            WeightKind::Bf16 => OwnedWeights::Bf16(v.iter().map(|&x| bf16::from_f32(x)).collect()),
        }
    }

    fn view(&self) -> WeightView<'_> {
        self.elements(0, self.len())
    }

    fn len(&self) -> usize {
        match self {
            OwnedWeights::F32(w) => w.len(),
            OwnedWeights::F16(w) => w.len(),
            OwnedWeights::Bf16(w) => w.len(),
        }
    }

    /// Elements `[start, start + n)`.
    fn elements(&self, start: usize, n: usize) -> WeightView<'_> {
        match self {
            OwnedWeights::F32(w) => WeightView::F32(&w[start..start + n]),
            OwnedWeights::F16(w) => WeightView::F16(&w[start..start + n]),
            OwnedWeights::Bf16(w) => WeightView::BF16(&w[start..start + n]),
        }
    }

    fn bytes(&self) -> usize {
        let width = if matches!(self, OwnedWeights::F32(_)) { 4 } else { 2 };
        width * self.len()
    }
}

/// A batched matmul: 512 tokens, 1024 → 1024.
fn gemm_probe(kind: WeightKind) -> Probe {
    let x = values(PROMPT * EMBD, 1);
    let w = OwnedWeights::new(kind, values(EMBD * EMBD, 2));
    let mut y = vec![0f32; PROMPT * EMBD];
    Probe {
        giga_work: (2 * PROMPT * EMBD * EMBD) as f64 / 1e9,
        run: Box::new(move || matmul(&x, w.view(), EMBD, EMBD, &mut y)),
    }
}

/// An expert's up and down projections over the tokens a 512-token prompt routes to one of 8
/// experts (top-2); the down projection's long rows make it the slower of the two.
fn expert_probe(kind: WeightKind) -> Probe {
    const TOKENS: usize = PROMPT * 2 / 8;
    let x = values(TOKENS * FF, 14);
    let up = OwnedWeights::new(kind, values(EMBD * FF, 15));
    let down = OwnedWeights::new(kind, values(FF * EMBD, 16));
    let mut y = vec![0f32; TOKENS * FF];
    Probe {
        giga_work: (2 * 2 * TOKENS * EMBD * FF) as f64 / 1e9,
        run: Box::new(move || {
            matmul_per_row(&x[..TOKENS * EMBD], up.view(), EMBD, FF, &mut y);
            matmul_per_row(&x, down.view(), FF, EMBD, &mut y[..TOKENS * EMBD]);
        }),
    }
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

/// A decode step's matmuls over probe layers (Q, K and V in one dispatch, O, gate and up in one,
/// down), cycled through 64 Mi weights, more than a last-level cache holds, so that every pass
/// reads them from DRAM and pays the dispatches a decode step pays. Work: GB of weights.
fn gemv_probe(kind: WeightKind) -> Probe {
    let w = OwnedWeights::new(kind, values(GEMV_LAYERS * LAYER_WEIGHTS, 4));
    let x = values(FF, 3);
    let mut ys: Vec<Vec<f32>> = LAYER_MATS.iter().map(|&(_, n_out)| vec![0f32; n_out]).collect();
    Probe {
        giga_work: w.bytes() as f64 / 1e9,
        run: Box::new(move || {
            for layer in 0..GEMV_LAYERS {
                let mut mats: Vec<(WeightView<'_>, &mut [f32])> = Vec::with_capacity(LAYER_MATS.len());
                let mut at = layer * LAYER_WEIGHTS;
                for (&(n_in, n_out), y) in LAYER_MATS.iter().zip(ys.iter_mut()) {
                    mats.push((w.elements(at, n_in * n_out), &mut y[..]));
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
        }),
    }
}

/// Attention of `n_tok` query tokens after `pos0` cached ones, with the kernel the engine picks.
/// Work: GFLOP (QK and PV).
fn attention_probe(n_tok: usize, pos0: usize) -> Probe {
    let s = AttnShape { n_head: HEADS, n_head_kv: KV_HEADS, head_dim_k: HEAD_DIM, head_dim_v: HEAD_DIM };
    let n_kv = pos0 + n_tok;
    let q = values(n_tok * HEADS * HEAD_DIM, 5);
    let k: Vec<f16> = values(n_kv * KV_HEADS * HEAD_DIM, 6).into_iter().map(f16::from_f32).collect();
    let v: Vec<f16> = values(n_kv * KV_HEADS * HEAD_DIM, 7).into_iter().map(f16::from_f32).collect();
    let mut out = vec![0f32; n_tok * HEADS * HEAD_DIM];
    let scale = 1.0 / (HEAD_DIM as f32).sqrt();
    // Token t sees pos0 + t + 1 positions; QK and PV are 2·(dk + dv) flops per head and position.
    let seen: usize = (0..n_tok).map(|t| pos0 + t + 1).sum();
    Probe {
        giga_work: (2 * 2 * HEAD_DIM * HEADS * seen) as f64 / 1e9,
        run: Box::new(move || attention(&q, &k, &v, pos0, s, scale, &mut out)),
    }
}

/// The probe layer's elementwise work for a 512-token prompt. Work: elements, as
/// [`super::tasks::TaskGraph::elementwise_elems`] counts them; `None` if the cache can't be made.
fn elementwise_probe() -> Option<Probe> {
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
    let mut kv = KvCache::new(1, PROMPT, kv_dims, kv_dims).ok()?;
    let per_token = attention_elementwise(EMBD, q_dims, kv_dims, kv_dims) + ffn_elementwise(FF);
    let run = move || {
        for _ in 0..2 {
            cur.copy_from_slice(&resid);
            rms_norm(&mut cur, &norm_w, 1e-5);
            add_into(&mut resid, &cur);
        }
        rope(&mut q, &positions, HEADS, HEAD_DIM, &rope_p);
        rope(&mut k, &positions, KV_HEADS, HEAD_DIM, &rope_p);
        kv.store(0, 0, &k, &v);
        swiglu_parallel(&mut gate, &up);
    };
    Some(Probe { giga_work: (PROMPT * per_token) as f64 / 1e9, run: Box::new(run) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_rate_is_the_median_pass_so_one_slow_spell_does_not_move_it() {
        assert_eq!(median(vec![30.0, 29.0, 7.0, 31.0, 30.5]), 30.0);
        assert_eq!(median(vec![2.0]), 2.0);
    }

    #[test]
    fn probe_work_counts_match_the_shapes() {
        // 2·512·1024·1024 flops; an expert's up and down over 128 tokens; the decode step's
        // weights in bytes; a 512-token causal attention sees 512·513/2 positions per head.
        assert_eq!(gemm_probe(WeightKind::F16).giga_work, 2.0 * 512.0 * 1024.0 * 1024.0 / 1e9);
        assert_eq!(expert_probe(WeightKind::Bf16).giga_work, 4.0 * 128.0 * 1024.0 * 2816.0 / 1e9);
        let layers = (64 << 20) / 11_272_192;
        assert_eq!(gemv_probe(WeightKind::F32).giga_work, (4 * layers * 11_272_192) as f64 / 1e9);
        assert_eq!(attention_probe(512, 0).giga_work, (4 * 64 * 16 * (512 * 513 / 2)) as f64 / 1e9);
        assert_eq!(attention_probe(1, 511).giga_work, (4 * 64 * 16 * 512) as f64 / 1e9);
    }
}
