//! Probes of rs-llama's own CPU kernels for `rs-llama-plan --profile`: what the executor really
//! gets here (kernels, threading and rounding copies included), on shapes like a mid-sized
//! model's layer at the sizes a prefill and a decode step use. The FMA and bandwidth ceilings in
//! `profile` say what the hardware could do; these say what the engine does.

use std::time::Instant;

use half::{bf16, f16};
use serde::{Deserialize, Serialize};

use super::tasks::{attention_elementwise, ffn_elementwise};
use crate::cpu::matmul::{matmul, matmul_many, matmul_per_row, WeightView};
use crate::exec::kv_cache::KvCache;
use crate::ops::attention::{attention, AttnShape, KvSplit};
use crate::ops::ffn::swiglu_parallel;
use crate::ops::rmsnorm::{add_into, rms_norm};
use crate::ops::rope::{rope, RopeParams, RopeStyle};

/// Achieved rates of rs-llama's CPU kernels with one thread count.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct KernelRates {
    /// Batched matmul (512 tokens, 1024 → 1024), GFLOP/s per weight type.
    pub gemm_gflops: TypeRates,
    /// Routed-expert matmuls (`mul_mat_id` order, 128 tokens, 1024 → 2816 → 1024), GFLOP/s per type.
    pub expert_gflops: TypeRates,
    /// One-token matmuls streaming weights from DRAM, GB/s of weights: decode steps of probe
    /// layers, less their fixed cost (`decode_layer_us` per layer).
    pub gemv_gbs: TypeRates,
    /// The fixed cost of one layer's decode step, µs: its five parallel dispatches, the small ops
    /// between them and each matmul's cold start, from decode steps of layers of two sizes (see
    /// `layer_fixed_secs`). 0 in profiles written before it was measured (the cost model then
    /// assumes 10 µs per dispatch).
    #[serde(default)]
    pub decode_layer_us: f64,
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

/// Runs every probe with each thread count (one pool each): about five seconds per count, after
/// a second or two of building the probes' buffers (about 900 MB), which all counts share.
pub fn measure_kernels(thread_counts: &[usize]) -> Vec<Option<KernelRates>> {
    let built = (|| {
        Some([
            gemm_probe(WeightKind::F32),
            gemm_probe(WeightKind::F16),
            gemm_probe(WeightKind::Bf16),
            expert_probe(WeightKind::F32),
            expert_probe(WeightKind::F16),
            expert_probe(WeightKind::Bf16),
            gemv_probe(WeightKind::F32)?,
            gemv_probe(WeightKind::F16)?,
            gemv_probe(WeightKind::Bf16)?,
            attention_probe(PROMPT, 0),
            attention_probe(1, PROMPT - 1),
            elementwise_probe()?,
            decode_overhead_probe()?,
            gemv_probe_of(WeightKind::F16, SMALL_LAYER)?,
        ])
    })();
    let Some(mut probes) = built else { return vec![None; thread_counts.len()] };
    let mut at = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().ok()?;
        let rates = pool.install(|| interleaved_medians(&mut probes));
        let layer_secs = layer_fixed_secs(
            (PROBE_LAYER.weights() * 2, rates[7]),
            (SMALL_LAYER.weights() * 2, rates[13]),
            1e-9 / rates[12],
        );
        let stream = |gbs: f64, width: usize| streaming_rate(gbs, PROBE_LAYER.weights() * width, layer_secs);
        Some(KernelRates {
            gemm_gflops: TypeRates { f32: rates[0], f16: rates[1], bf16: rates[2] },
            expert_gflops: TypeRates { f32: rates[3], f16: rates[4], bf16: rates[5] },
            gemv_gbs: TypeRates {
                f32: stream(rates[6], 4),
                f16: stream(rates[7], 2),
                bf16: stream(rates[8], 2),
            },
            decode_layer_us: layer_secs * 1e6,
            attn_prefill_gflops: rates[9],
            attn_decode_gflops: rates[10],
            elementwise_gelems: rates[11],
        })
    };
    thread_counts.iter().map(|&t| at(t)).collect()
}

/// The fixed cost of a decode layer, seconds: where the decode-step time of layers of two sizes
/// (`(bytes per layer, GB/s)`, both streaming from DRAM) extrapolates to at zero bytes. A step
/// that streams pays more per matmul than one over cached weights (its first rows wait on DRAM
/// before the prefetchers catch up), and a model of small layers (SmolLM2: 576 wide) pays that
/// on every dispatch. The tiny cached layer's cost `floor` is the least it can be, and is what
/// is kept when noise in the two steps leaves no slope or a lower intercept.
fn layer_fixed_secs(big: (usize, f64), small: (usize, f64), floor: f64) -> f64 {
    let secs = |(bytes, gbs): (usize, f64)| bytes as f64 / (gbs * 1e9);
    let (t_big, t_small) = (secs(big), secs(small));
    let secs_per_byte = (t_big - t_small) / (big.0 as f64 - small.0 as f64);
    if secs_per_byte.is_nan() || secs_per_byte <= 0.0 {
        return floor;
    }
    (t_small - small.0 as f64 * secs_per_byte).max(floor)
}

/// GB/s of a decode step's weight streaming alone, from the rate `gbs` of whole steps of layers
/// of `layer_bytes` whose fixed cost is `fixed_secs` per layer. Where the fixed cost would leave
/// under a fifth of the step (a probe hit by a slow spell), the whole-step rate is kept.
fn streaming_rate(gbs: f64, layer_bytes: usize, fixed_secs: f64) -> f64 {
    let layer_secs = layer_bytes as f64 / (gbs * 1e9);
    let streaming = layer_secs - fixed_secs;
    if streaming > 0.2 * layer_secs {
        layer_bytes as f64 / streaming / 1e9
    } else {
        gbs
    }
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

/// A layer's widths for the decode-step probes (heads of [`HEAD_DIM`]).
#[derive(Clone, Copy)]
struct LayerDims {
    embd: usize,
    heads: usize,
    kv_heads: usize,
    ff: usize,
}

const PROBE_LAYER: LayerDims = LayerDims { embd: EMBD, heads: HEADS, kv_heads: KV_HEADS, ff: FF };
/// A quarter of the probe layer's width: the second size of [`layer_fixed_secs`], small enough
/// that its fixed cost is most of its step and the extrapolation to zero bytes is short.
const SMALL_LAYER: LayerDims = LayerDims { embd: 256, heads: 4, kv_heads: 1, ff: 704 };
/// A layer so small that its matmuls cost next to nothing: what is left of its decode step is the
/// dispatches and the small ops between them.
const TINY_LAYER: LayerDims = LayerDims { embd: 64, heads: 1, kv_heads: 1, ff: 128 };
/// Cached positions the decode-step probes attend over.
const DECODE_CTX: usize = 64;

impl LayerDims {
    /// `(n_in, n_out)` of the matrices in execution order: Q, K, V, O, gate, up, down.
    fn mats(self) -> [(usize, usize); 7] {
        let (q, kv) = (self.heads * HEAD_DIM, self.kv_heads * HEAD_DIM);
        let e = self.embd;
        [(e, q), (e, kv), (e, kv), (q, e), (e, self.ff), (e, self.ff), (self.ff, e)]
    }

    fn weights(self) -> usize {
        self.mats().iter().map(|&(i, o)| i * o).sum()
    }
}

/// One token through a layer the way the engine runs it: norm, Q/K/V in one dispatch, rope, KV
/// store, attention over [`DECODE_CTX`] positions, O, residual add, norm, gate and up in one
/// dispatch, SwiGLU, down, residual add.
struct DecodeLayer {
    dims: LayerDims,
    norm_w: Vec<f32>,
    resid: Vec<f32>,
    cur: Vec<f32>,
    /// Q, K, V, attention output, O output, gate, up, down output.
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    attn: Vec<f32>,
    o: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
    down: Vec<f32>,
    kv: KvCache,
}

impl DecodeLayer {
    fn new(dims: LayerDims) -> Option<DecodeLayer> {
        let (q, kv) = (dims.heads * HEAD_DIM, dims.kv_heads * HEAD_DIM);
        let mut cache = KvCache::new(1, DECODE_CTX, kv, kv).ok()?;
        let (k0, v0) = (values(DECODE_CTX * kv, 6), values(DECODE_CTX * kv, 7));
        cache.store(0, 0, &k0, &v0);
        Some(DecodeLayer {
            dims,
            norm_w: vec![1.0; dims.embd],
            resid: values(dims.embd, 8),
            cur: vec![0.0; dims.embd],
            q: vec![0.0; q],
            k: vec![0.0; kv],
            v: vec![0.0; kv],
            attn: vec![0.0; q],
            o: vec![0.0; dims.embd],
            gate: vec![0.0; dims.ff],
            up: vec![0.0; dims.ff],
            down: vec![0.0; dims.embd],
            kv: cache,
        })
    }

    /// `weights`: the layer's matrices back to back in [`LayerDims::mats`] order.
    fn run(&mut self, w: &OwnedWeights, first: usize) {
        let d = self.dims;
        let mut at = first;
        let mut next = |(n_in, n_out): (usize, usize)| {
            let view = w.elements(at, n_in * n_out);
            at += n_in * n_out;
            view
        };
        let m = d.mats();
        let (wq, wk, wv, wo) = (next(m[0]), next(m[1]), next(m[2]), next(m[3]));
        let (wg, wu, wd) = (next(m[4]), next(m[5]), next(m[6]));
        let pos = [DECODE_CTX - 1];
        let rope_p = probe_rope();
        let shape = AttnShape::heads(d.heads, d.kv_heads, HEAD_DIM, HEAD_DIM);
        self.cur.copy_from_slice(&self.resid);
        rms_norm(&mut self.cur, &self.norm_w, 1e-5);
        matmul_many(&self.cur, d.embd, &mut [(wq, &mut self.q), (wk, &mut self.k), (wv, &mut self.v)], false);
        rope(&mut self.q, &pos, d.heads, HEAD_DIM, &rope_p);
        rope(&mut self.k, &pos, d.kv_heads, HEAD_DIM, &rope_p);
        self.kv.store(0, DECODE_CTX - 1, &self.k, &self.v);
        let (kc, vc) = self.kv.layer(0);
        let split = KvSplit::for_decode(DECODE_CTX, DECODE_CTX - 1);
        attention(&self.q, kc, vc, DECODE_CTX - 1, shape, 0.125, split, &mut self.attn);
        matmul_many(&self.attn, d.heads * HEAD_DIM, &mut [(wo, &mut self.o)], false);
        add_into(&mut self.resid, &self.o);
        self.cur.copy_from_slice(&self.resid);
        rms_norm(&mut self.cur, &self.norm_w, 1e-5);
        matmul_many(&self.cur, d.embd, &mut [(wg, &mut self.gate), (wu, &mut self.up)], false);
        swiglu_parallel(&mut self.gate, &self.up);
        matmul_many(&self.gate, d.ff, &mut [(wd, &mut self.down)], false);
        add_into(&mut self.resid, &self.down);
        // Keep the residual stream bounded however many passes run.
        rms_norm(&mut self.resid, &self.norm_w, 1e-5);
    }
}

/// LLaMA's rope over whole heads.
fn probe_rope() -> RopeParams {
    RopeParams {
        yarn: None,
        style: RopeStyle::Norm,
        n_rot: HEAD_DIM,
        freq_base: 10_000.0,
        freq_scale: 1.0,
        freq_factors: None,
    }
}

/// Decode steps over probe layers cycled through 64 Mi weights, more than a last-level cache
/// holds, so that every pass reads them from DRAM. Work: GB of weights; the rate includes the
/// layers' fixed costs, which [`layer_fixed_secs`] takes out.
fn gemv_probe(kind: WeightKind) -> Option<Probe> {
    gemv_probe_of(kind, PROBE_LAYER)
}

fn gemv_probe_of(kind: WeightKind, dims: LayerDims) -> Option<Probe> {
    let layers = (64 << 20) / dims.weights();
    let w = OwnedWeights::new(kind, values(layers * dims.weights(), 4));
    let mut step = DecodeLayer::new(dims)?;
    Some(Probe {
        giga_work: w.bytes() as f64 / 1e9,
        run: Box::new(move || {
            for layer in 0..layers {
                step.run(&w, layer * dims.weights());
            }
        }),
    })
}

/// Decode steps of a tiny layer whose weights stay in cache: its time is the least fixed cost
/// a decode layer has (dispatches, wake-ups, the small ops between them). Work: ×1e9 layers.
fn decode_overhead_probe() -> Option<Probe> {
    const LAYERS: usize = 64;
    let w = OwnedWeights::new(WeightKind::F16, values(TINY_LAYER.weights(), 4));
    let mut step = DecodeLayer::new(TINY_LAYER)?;
    Some(Probe {
        giga_work: LAYERS as f64 / 1e9,
        run: Box::new(move || {
            for _ in 0..LAYERS {
                step.run(&w, 0);
            }
        }),
    })
}

/// Attention of `n_tok` query tokens after `pos0` cached ones, with the kernel the engine picks.
/// Work: GFLOP (QK and PV).
fn attention_probe(n_tok: usize, pos0: usize) -> Probe {
    let s = AttnShape::heads(HEADS, KV_HEADS, HEAD_DIM, HEAD_DIM);
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
        // A lone token is split as a decode over a cache of n_kv positions would be.
        run: Box::new(move || {
            let split = if n_tok == 1 { KvSplit::for_decode(n_kv, pos0) } else { None };
            attention(&q, &k, &v, pos0, s, scale, split, &mut out)
        }),
    }
}

/// The probe layer's elementwise work for a 512-token prompt. Work: elements, as
/// [`super::tasks::TaskGraph::elementwise_elems`] counts them; `None` if the cache can't be made.
fn elementwise_probe() -> Option<Probe> {
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
    let rope_p = probe_rope();
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
        assert_eq!(PROBE_LAYER.weights(), 11_272_192);
        assert_eq!(
            gemv_probe(WeightKind::F32).map(|p| p.giga_work),
            Some((4 * layers * 11_272_192) as f64 / 1e9)
        );
        assert_eq!(attention_probe(512, 0).giga_work, (4 * 64 * 16 * (512 * 513 / 2)) as f64 / 1e9);
        assert_eq!(attention_probe(1, 511).giga_work, (4 * 64 * 16 * 512) as f64 / 1e9);
    }

    #[test]
    fn streaming_rate_takes_the_fixed_cost_out_of_a_decode_step() {
        // 20 MB per layer at 20 GB/s whole-step: 1000 µs, of which 200 µs fixed: 25 GB/s streaming.
        assert!((streaming_rate(20.0, 20_000_000, 200e-6) - 25.0).abs() < 1e-9);
        // A fixed cost that would leave under a fifth of the step is a measuring accident.
        assert_eq!(streaming_rate(20.0, 20_000_000, 900e-6), 20.0);
    }

    #[test]
    fn the_fixed_cost_is_the_intercept_of_two_layer_sizes() {
        // 1000 µs for 20 MB and 300 µs for 5 MB: 46.7 ns/kB, so 66.7 µs at zero bytes.
        let (big, small) = ((20_000_000, 20.0), (5_000_000, 5e6 / 300e-6 / 1e9));
        assert!((layer_fixed_secs(big, small, 30e-6) - 200e-6 / 3.0).abs() < 1e-12);
        // Never below the cached layer's cost, and that cost when noise leaves no slope.
        assert_eq!(layer_fixed_secs(big, small, 80e-6), 80e-6);
        assert_eq!(layer_fixed_secs(big, (5_000_000, 4.0), 30e-6), 30e-6);
    }

    #[test]
    fn a_decode_layer_step_matches_the_ops_it_stands_for() {
        // The tiny layer's step, checked against the ops one by one with the same inputs.
        let w = OwnedWeights::new(WeightKind::F32, values(TINY_LAYER.weights(), 4));
        let Some(mut step) = DecodeLayer::new(TINY_LAYER) else { panic!("a 64-position KV cache") };
        let resid0 = step.resid.clone();
        step.run(&w, 0);
        let OwnedWeights::F32(ws) = &w else { unreachable!() };
        let (e, q, ff) = (64, 64, 128);
        let norm = |x: &[f32]| {
            let ms = x.iter().map(|v| f64::from(*v) * f64::from(*v)).sum::<f64>() / x.len() as f64;
            x.iter().map(|v| (f64::from(*v) / (ms + 1e-5).sqrt()) as f32).collect::<Vec<f32>>()
        };
        let gemv = |w: &[f32], x: &[f32], n_out: usize| -> Vec<f32> {
            (0..n_out).map(|o| w[o * x.len()..][..x.len()].iter().zip(x).map(|(a, b)| a * b).sum()).collect()
        };
        // Q/K/V and O weights come first; the FFN's start after them.
        let attn_w = e * q + 2 * e * 64 + q * e;
        let mut resid = resid0.clone();
        for (o, a) in resid.iter_mut().zip(&step.o) {
            *o += a;
        }
        let x = norm(&resid);
        let gate = gemv(&ws[attn_w..], &x, ff);
        let up = gemv(&ws[attn_w + e * ff..], &x, ff);
        let act: Vec<f32> = gate.iter().zip(&up).map(|(g, u)| g / (1.0 + (-g).exp()) * u).collect();
        let down = gemv(&ws[attn_w + 2 * e * ff..], &act, e);
        for (i, (want, got)) in down.iter().zip(&step.down).enumerate() {
            assert!((want - got).abs() < 1e-4 * (1.0 + want.abs()), "down[{i}]: {want} vs {got}");
        }
        let after: Vec<f32> = resid.iter().zip(&down).map(|(r, d)| r + d).collect();
        for (i, (want, got)) in norm(&after).iter().zip(&step.resid).enumerate() {
            assert!((want - got).abs() < 1e-4 * (1.0 + want.abs()), "resid[{i}]: {want} vs {got}");
        }
    }
}
