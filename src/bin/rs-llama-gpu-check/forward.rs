//! The whole-model GPU forward pass against a CPU forward built from the f64 references, on small
//! seeded random llama and Mixtral-shaped models: per-position logits (prefill, then decode one
//! token at a time) and greedy tokens. Both keep activations in f32 and round only K/V into the
//! f16 cache, so they should agree to accumulation-order noise.

use crate::Checks;
use half::f16;
use rs_llama::gpu::reference::{self as naive, rel_error, Rng};
use rs_llama::gpu::{
    Gpu, GpuError, GpuLlama, GpuLlamaSession, HostFfn, HostFfnBlock, HostLayer, HostLinear, HostMatrix,
    HostModel, LlamaShape,
};

struct Mat {
    bits: Vec<f16>,
    vals: Vec<f32>,
    n_in: usize,
    n_out: usize,
}

impl Mat {
    fn new(rng: &mut Rng, n_in: usize, n_out: usize) -> Mat {
        let scale = 1.5 / (n_in as f32).sqrt();
        let bits: Vec<f16> = rng.vec(n_in * n_out, scale).into_iter().map(f16::from_f32).collect();
        let vals = bits.iter().map(|b| b.to_f32()).collect();
        Mat { bits, vals, n_in, n_out }
    }

    fn host(&self) -> HostLinear<'_> {
        HostLinear { w: HostMatrix::F16(&self.bits), n_in: self.n_in, n_out: self.n_out }
    }

    /// y = x · Wᵀ.
    fn apply(&self, x: &[f32]) -> Vec<f32> {
        naive::linear(x, &self.vals, self.n_in)
    }
}

struct Ffn {
    gate: Mat,
    up: Mat,
    down: Mat,
}

struct Layer {
    attn_norm: Vec<f32>,
    ffn_norm: Vec<f32>,
    q: Mat,
    k: Mat,
    v: Mat,
    o: Mat,
    /// f32 router [n_expert][n_embd] (empty for dense layers) and the experts (one when dense).
    router: Vec<f32>,
    ffn: Vec<Ffn>,
}

struct Tiny {
    shape: LlamaShape,
    tok_embd: Mat,
    output_norm: Vec<f32>,
    layers: Vec<Layer>,
}

fn tiny(rng: &mut Rng, n_expert: usize) -> Tiny {
    let shape = LlamaShape {
        n_vocab: 512,
        n_embd: 256,
        n_head: 8,
        n_head_kv: 2,
        head_dim: 32,
        n_rot: 32,
        rope_neox: false,
        rope_freq_base: 10000.0,
        rope_freq_scale: 1.0,
        rms_eps: 1e-5,
        n_expert_used: if n_expert > 1 { 2 } else { 0 },
        renorm_experts: true,
    };
    let (e, kv, ff) = (shape.n_embd, shape.n_head_kv * shape.head_dim, 512);
    let norm = |rng: &mut Rng| rng.vec(e, 0.5).into_iter().map(|v| 1.0 + v).collect::<Vec<f32>>();
    let layers = (0..3)
        .map(|_| Layer {
            attn_norm: norm(rng),
            ffn_norm: norm(rng),
            q: Mat::new(rng, e, e),
            k: Mat::new(rng, e, kv),
            v: Mat::new(rng, e, kv),
            o: Mat::new(rng, e, e),
            router: if n_expert > 1 { rng.vec(n_expert * e, 0.2) } else { Vec::new() },
            ffn: (0..n_expert)
                .map(|_| Ffn {
                    gate: Mat::new(rng, e, ff),
                    up: Mat::new(rng, e, ff),
                    down: Mat::new(rng, ff, e),
                })
                .collect(),
        })
        .collect();
    Tiny { tok_embd: Mat::new(rng, e, shape.n_vocab), output_norm: norm(rng), layers, shape }
}

fn host_ffn(f: &Ffn) -> HostFfn<'_> {
    HostFfn { gate: f.gate.host(), up: f.up.host(), down: f.down.host() }
}

fn host(t: &Tiny) -> HostModel<'_> {
    let ffn = host_ffn;
    HostModel {
        shape: t.shape.clone(),
        tok_embd: HostMatrix::F16(&t.tok_embd.bits),
        output_norm: &t.output_norm,
        output: t.tok_embd.host(), // tied
        rope_freqs: None,
        layers: t
            .layers
            .iter()
            .map(|l| HostLayer {
                attn_norm: &l.attn_norm,
                q: l.q.host(),
                k: l.k.host(),
                v: l.v.host(),
                o: l.o.host(),
                ffn_norm: &l.ffn_norm,
                ffn: if l.router.is_empty() {
                    HostFfnBlock::Dense(ffn(&l.ffn[0]))
                } else {
                    HostFfnBlock::Moe {
                        router: HostLinear {
                            w: HostMatrix::F32(&l.router),
                            n_in: t.shape.n_embd,
                            n_out: l.ffn.len(),
                        },
                        experts: l.ffn.iter().map(ffn).collect(),
                    }
                },
            })
            .collect(),
    }
}

fn swiglu_ffn(f: &Ffn, x: &[f32]) -> Vec<f32> {
    f.down.apply(&naive::swiglu(&f.gate.apply(x), &f.up.apply(x)))
}

/// Logits [n][n_vocab] of every position of `tokens`, evaluated from scratch.
fn cpu_logits(t: &Tiny, tokens: &[u32]) -> Vec<f32> {
    let sh = &t.shape;
    let (e, n) = (sh.n_embd, tokens.len());
    let pos: Vec<i32> = (0..n as i32).collect();
    let round = |v: &[f32]| v.iter().map(|&x| f16::from_f32(x).to_f32()).collect::<Vec<_>>();
    let mut x = naive::get_rows(&t.tok_embd.vals, tokens, e);
    for l in &t.layers {
        let cur = naive::rmsnorm(&x, &l.attn_norm, sh.rms_eps);
        let r = naive::Rope {
            n_rot: sh.n_rot,
            freq_base: sh.rope_freq_base,
            freq_scale: 1.0,
            neox: false,
            freq_factors: None,
        };
        let q = naive::rope(&l.q.apply(&cur), &pos, sh.n_head, sh.head_dim, &r);
        let k = naive::rope(&l.k.apply(&cur), &pos, sh.n_head_kv, sh.head_dim, &r);
        let v = l.v.apply(&cur);
        let scale = 1.0 / (sh.head_dim as f32).sqrt();
        let kqv =
            naive::attention(&q, &round(&k), &round(&v), sh.n_head, sh.n_head_kv, sh.head_dim, 0, scale);
        x = naive::add(&x, &l.o.apply(&kqv));
        let cur = naive::rmsnorm(&x, &l.ffn_norm, sh.rms_eps);
        let out = if l.router.is_empty() {
            swiglu_ffn(&l.ffn[0], &cur)
        } else {
            let n_exp = l.ffn.len();
            let (ids, w) = naive::moe_topk(&naive::linear(&cur, &l.router, e), n_exp, sh.n_expert_used, true);
            let k_used = sh.n_expert_used;
            let mut slots = Vec::with_capacity(n * k_used * e);
            for s in 0..n * k_used {
                slots.extend(swiglu_ffn(&l.ffn[ids[s] as usize], &cur[s / k_used * e..][..e]));
            }
            naive::moe_weighted_sum(&slots, &w, k_used, e)
        };
        x = naive::add(&x, &out);
    }
    t.tok_embd.apply(&naive::rmsnorm(&x, &t.output_norm, sh.rms_eps))
}

fn argmax(v: &[f32]) -> u32 {
    v.iter().enumerate().fold((0, f32::NEG_INFINITY), |b, (i, &x)| if x > b.1 { (i, x) } else { b }).0 as u32
}

pub fn run_all(gpu: &Gpu, rng: &mut Rng, c: &mut Checks) {
    for (name, n_expert) in [("dense", 1), ("moe 4 experts top 2", 4)] {
        let r = model_check(gpu, rng, c, name, n_expert);
        c.outcome(name, r);
    }
}

fn model_check(
    gpu: &Gpu,
    rng: &mut Rng,
    c: &mut Checks,
    name: &str,
    n_expert: usize,
) -> Result<(), GpuError> {
    let t = tiny(rng, n_expert);
    let n_vocab = t.shape.n_vocab;
    let model = GpuLlama::upload(gpu, &host(&t))?;
    let mut session = GpuLlamaSession::new(gpu, &model, 64, 16)?;
    let prompt: Vec<u32> = (0..21).map(|_| rng.below(n_vocab) as u32).collect();
    // Prefill in two ubatches (21 = 16 + 5: the cuBLAS and the gemv paths) with every position's
    // logits, then decode 4 given tokens.
    let mut gpu_logits = session.decode(&prompt, true)?;
    let extra: Vec<u32> = (0..4).map(|_| rng.below(n_vocab) as u32).collect();
    for &tok in &extra {
        gpu_logits.extend(session.decode(&[tok], false)?);
    }
    let all: Vec<u32> = prompt.iter().chain(&extra).copied().collect();
    let cpu = cpu_logits(&t, &all);
    c.error(
        &format!("forward {name}: logits of {} positions (prefill + decode)", all.len()),
        rel_error(&gpu_logits, &cpu),
        2e-3,
    );
    // Greedy continuation: GPU step by step against the CPU from scratch each step.
    session.clear();
    let mut gpu_tokens = prompt.clone();
    let mut last = session.decode(&prompt, false)?;
    let mut cpu_tokens = prompt.clone();
    for _ in 0..12 {
        let next = argmax(&last);
        gpu_tokens.push(next);
        last = session.decode(&[next], false)?;
        let cpu_all = cpu_logits(&t, &cpu_tokens);
        cpu_tokens.push(argmax(&cpu_all[cpu_all.len() - n_vocab..]));
    }
    let differ = gpu_tokens.iter().zip(&cpu_tokens).filter(|(a, b)| a != b).count();
    c.exact(
        &format!("forward {name}: 12 greedy tokens GPU == CPU ({:?})", &gpu_tokens[prompt.len()..]),
        differ,
        12,
    );
    Ok(())
}
