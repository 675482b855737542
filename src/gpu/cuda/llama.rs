//! The llama-family forward pass with the whole model resident on the GPU (LLaMA, Mistral,
//! SmolLM, Mixtral). The graph is the CPU's, op for op: embedding, then per layer
//! attn_norm → Q/K/V → RoPE → f16 KV cache → attention → output projection + residual →
//! ffn_norm → SwiGLU FFN or routed experts + residual; then result_norm → output head.
//! Weights come in as host views ([`HostModel`]), so this file does not depend on how the CPU
//! side stores them.

use super::blas::{ExpertGroup, Linear, WeightType};
use super::memory::{DeviceBuffer, Staging};
use super::ops::{EmbeddingTable, RopeConfig};
use super::Gpu;
use crate::gpu::GpuError;
use half::{bf16, f16};

/// A matrix in host memory: [n_out][n_in] elements (ggml `[n_in, n_out]`).
#[derive(Clone, Copy)]
pub enum HostMatrix<'a> {
    F16(&'a [f16]),
    Bf16(&'a [bf16]),
    F32(&'a [f32]),
}

#[derive(Clone, Copy)]
pub struct HostLinear<'a> {
    pub w: HostMatrix<'a>,
    pub n_in: usize,
    pub n_out: usize,
}

pub struct HostFfn<'a> {
    pub gate: HostLinear<'a>,
    pub up: HostLinear<'a>,
    pub down: HostLinear<'a>,
}

pub enum HostFfnBlock<'a> {
    Dense(HostFfn<'a>),
    /// Experts in id order; all of one shape and type.
    Moe {
        router: HostLinear<'a>,
        experts: Vec<HostFfn<'a>>,
    },
}

pub struct HostLayer<'a> {
    pub attn_norm: &'a [f32],
    pub q: HostLinear<'a>,
    pub k: HostLinear<'a>,
    pub v: HostLinear<'a>,
    pub o: HostLinear<'a>,
    pub ffn_norm: &'a [f32],
    pub ffn: HostFfnBlock<'a>,
}

/// The hyperparameters the forward pass needs.
#[derive(Debug, Clone)]
pub struct LlamaShape {
    pub n_vocab: usize,
    pub n_embd: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    pub n_rot: usize,
    pub rope_neox: bool,
    pub rope_freq_base: f32,
    pub rope_freq_scale: f32,
    pub rms_eps: f32,
    /// Experts per token (MoE only).
    pub n_expert_used: usize,
    /// Renormalise the chosen experts' weights to sum 1 (llama/Mixtral: yes).
    pub renorm_experts: bool,
}

pub struct HostModel<'a> {
    pub shape: LlamaShape,
    /// [n_vocab][n_embd]
    pub tok_embd: HostMatrix<'a>,
    pub output_norm: &'a [f32],
    /// [n_vocab][n_embd]; the embedding table again when tied.
    pub output: HostLinear<'a>,
    /// [n_rot/2] RoPE frequency divisors (LLaMA-3's rope_freqs), if any.
    pub rope_freqs: Option<&'a [f32]>,
    pub layers: Vec<HostLayer<'a>>,
}

enum Ffn {
    Dense { gate: Linear, up: Linear, down: Linear },
    Moe { router: Linear, gate: Linear, up: Linear, down: Linear, n_expert: usize },
}

struct Layer {
    attn_norm: DeviceBuffer<f32>,
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    ffn_norm: DeviceBuffer<f32>,
    ffn: Ffn,
}

/// A model resident on the GPU.
pub struct GpuLlama {
    shape: LlamaShape,
    tok_embd: EmbeddingTable,
    output_norm: DeviceBuffer<f32>,
    output: Linear,
    rope_freqs: Option<DeviceBuffer<f32>>,
    layers: Vec<Layer>,
}

fn bytes_of(m: &HostMatrix) -> (WeightType, Vec<u8>) {
    match m {
        HostMatrix::F16(v) => (WeightType::F16, v.iter().flat_map(|x| x.to_bits().to_le_bytes()).collect()),
        HostMatrix::Bf16(v) => (WeightType::Bf16, v.iter().flat_map(|x| x.to_bits().to_le_bytes()).collect()),
        HostMatrix::F32(v) => (WeightType::F32, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
    }
}

/// Upload matrices of one shape stacked as [n_mat][n_out][n_in].
fn stacked(gpu: &Gpu, mats: &[HostLinear]) -> Result<Linear, GpuError> {
    let first = mats.first().ok_or(GpuError::Shape { op: "upload", msg: "no matrices".into() })?;
    let (ty, mut bytes) = bytes_of(&first.w);
    for m in &mats[1..] {
        let (t, b) = bytes_of(&m.w);
        if t != ty || m.n_in != first.n_in || m.n_out != first.n_out {
            return Err(GpuError::Shape { op: "upload", msg: "experts differ in shape or type".into() });
        }
        bytes.extend(b);
    }
    Linear::upload(gpu, ty, &bytes, first.n_in, first.n_out, mats.len())
}

fn linear(gpu: &Gpu, m: &HostLinear) -> Result<Linear, GpuError> {
    stacked(gpu, std::slice::from_ref(m))
}

impl GpuLlama {
    /// Copy every weight to the GPU (fails with `OutOfBudget` when the model does not fit).
    pub fn upload(gpu: &Gpu, host: &HostModel) -> Result<GpuLlama, GpuError> {
        let s = &host.shape;
        if s.head_dim > 256 || s.n_head_kv == 0 || !s.n_head.is_multiple_of(s.n_head_kv) {
            return Err(GpuError::Shape {
                op: "llama",
                msg: format!("{} heads / {} KV heads of {}", s.n_head, s.n_head_kv, s.head_dim),
            });
        }
        let tok_embd = match host.tok_embd {
            HostMatrix::F16(v) => {
                EmbeddingTable::F16(gpu.upload(&v.iter().map(|x| x.to_bits()).collect::<Vec<_>>())?)
            }
            HostMatrix::Bf16(v) => {
                EmbeddingTable::Bf16(gpu.upload(&v.iter().map(|x| x.to_bits()).collect::<Vec<_>>())?)
            }
            HostMatrix::F32(v) => EmbeddingTable::F32(gpu.upload(v)?),
        };
        let mut layers = Vec::with_capacity(host.layers.len());
        for l in &host.layers {
            let ffn = match &l.ffn {
                HostFfnBlock::Dense(f) => Ffn::Dense {
                    gate: linear(gpu, &f.gate)?,
                    up: linear(gpu, &f.up)?,
                    down: linear(gpu, &f.down)?,
                },
                HostFfnBlock::Moe { router, experts } => {
                    let gates: Vec<HostLinear> = experts.iter().map(|e| e.gate).collect();
                    let ups: Vec<HostLinear> = experts.iter().map(|e| e.up).collect();
                    let downs: Vec<HostLinear> = experts.iter().map(|e| e.down).collect();
                    Ffn::Moe {
                        router: linear(gpu, router)?,
                        gate: stacked(gpu, &gates)?,
                        up: stacked(gpu, &ups)?,
                        down: stacked(gpu, &downs)?,
                        n_expert: experts.len(),
                    }
                }
            };
            layers.push(Layer {
                attn_norm: gpu.upload(l.attn_norm)?,
                q: linear(gpu, &l.q)?,
                k: linear(gpu, &l.k)?,
                v: linear(gpu, &l.v)?,
                o: linear(gpu, &l.o)?,
                ffn_norm: gpu.upload(l.ffn_norm)?,
                ffn,
            });
        }
        Ok(GpuLlama {
            shape: s.clone(),
            tok_embd,
            output_norm: gpu.upload(host.output_norm)?,
            output: linear(gpu, &host.output)?,
            rope_freqs: host.rope_freqs.map(|f| gpu.upload(f)).transpose()?,
            layers,
        })
    }

    pub fn shape(&self) -> &LlamaShape {
        &self.shape
    }
}

/// Activations of one micro-batch; sized for `n_ubatch` tokens at creation, reused every step.
struct Scratch {
    x: DeviceBuffer<f32>,
    cur: DeviceBuffer<f32>,
    q: DeviceBuffer<f32>,
    k: DeviceBuffer<f32>,
    v: DeviceBuffer<f32>,
    kqv: DeviceBuffer<f32>,
    out: DeviceBuffer<f32>,
    gate: DeviceBuffer<f32>,
    up: DeviceBuffer<f32>,
    act: DeviceBuffer<f32>,
    pos: DeviceBuffer<i32>,
    ids: DeviceBuffer<u32>,
    logits: DeviceBuffer<f32>,
    /// MoE: router logits, choices, slot buffer, and index lists.
    router: DeviceBuffer<f32>,
    choice_ids: DeviceBuffer<i32>,
    choice_w: DeviceBuffer<f32>,
    slot_buf: DeviceBuffer<f32>,
    rows: DeviceBuffer<i32>,
}

/// One sequence on the GPU: f16 KV caches of n_ctx positions per layer and the scratch buffers.
pub struct GpuLlamaSession<'g> {
    gpu: &'g Gpu,
    model: &'g GpuLlama,
    k_cache: Vec<DeviceBuffer<u16>>,
    v_cache: Vec<DeviceBuffer<u16>>,
    s: Scratch,
    staging: Staging,
    n_ctx: usize,
    n_ubatch: usize,
    n_past: usize,
}

impl<'g> GpuLlamaSession<'g> {
    /// KV caches for `n_ctx` positions; batches of up to `n_ubatch` tokens per pass.
    pub fn new(gpu: &'g Gpu, model: &'g GpuLlama, n_ctx: usize, n_ubatch: usize) -> Result<Self, GpuError> {
        let sh = &model.shape;
        let n_ub = n_ubatch.clamp(1, n_ctx.max(1));
        let row = sh.n_head_kv * sh.head_dim;
        let k_used = sh.n_expert_used.max(1);
        let n_ff = model
            .layers
            .iter()
            .map(|l| match &l.ffn {
                Ffn::Dense { gate, .. } => n_ub * gate.n_out,
                Ffn::Moe { gate, .. } => n_ub * k_used * gate.n_out,
            })
            .max()
            .unwrap_or(1);
        let n_expert = model
            .layers
            .iter()
            .map(|l| if let Ffn::Moe { n_expert, .. } = l.ffn { n_expert } else { 1 })
            .max()
            .unwrap_or(1);
        let moe_rows = n_ub * k_used * sh.n_embd;
        let f = |len: usize| gpu.alloc::<f32>(len);
        let s = Scratch {
            x: f(n_ub * sh.n_embd)?,
            cur: f(moe_rows)?,
            q: f(n_ub * sh.n_head * sh.head_dim)?,
            k: f(n_ub * row)?,
            v: f(n_ub * row)?,
            kqv: f(n_ub * sh.n_head * sh.head_dim)?,
            out: f(moe_rows)?,
            gate: f(n_ff)?,
            up: f(n_ff)?,
            act: f(n_ff)?,
            pos: gpu.alloc::<i32>(n_ub)?,
            ids: gpu.alloc::<u32>(n_ub)?,
            logits: f(n_ub * sh.n_vocab)?,
            router: f(n_ub * n_expert)?,
            choice_ids: gpu.alloc::<i32>(n_ub * k_used)?,
            choice_w: f(n_ub * k_used)?,
            slot_buf: f(moe_rows)?,
            rows: gpu.alloc::<i32>(n_ub * k_used)?,
        };
        let mut k_cache = Vec::with_capacity(model.layers.len());
        let mut v_cache = Vec::with_capacity(model.layers.len());
        for _ in &model.layers {
            k_cache.push(gpu.alloc::<u16>(n_ctx * row)?);
            v_cache.push(gpu.alloc::<u16>(n_ctx * row)?);
        }
        let staging = Staging::new(gpu, (n_ub * sh.n_vocab * 4).min(64 << 20))?;
        Ok(GpuLlamaSession { gpu, model, k_cache, v_cache, s, staging, n_ctx, n_ubatch: n_ub, n_past: 0 })
    }

    pub fn n_past(&self) -> usize {
        self.n_past
    }

    pub fn n_ctx(&self) -> usize {
        self.n_ctx
    }

    /// Forget the cached positions (the caches are overwritten as the next tokens arrive).
    pub fn clear(&mut self) {
        self.n_past = 0;
    }

    /// Evaluate `tokens` at positions n_past.. and append them to the caches. Returns logits
    /// [n_vocab] of the last token, or [n_tokens][n_vocab] of every token when `all_logits`.
    pub fn decode(&mut self, tokens: &[u32], all_logits: bool) -> Result<Vec<f32>, GpuError> {
        if tokens.is_empty() || self.n_past + tokens.len() > self.n_ctx {
            return Err(GpuError::Shape {
                op: "decode",
                msg: format!("{} tokens after {} of n_ctx {}", tokens.len(), self.n_past, self.n_ctx),
            });
        }
        let mut logits = Vec::new();
        let n_chunks = tokens.len().div_ceil(self.n_ubatch);
        for (i, chunk) in tokens.chunks(self.n_ubatch).enumerate() {
            let last = i + 1 == n_chunks;
            if all_logits || last {
                logits.extend(self.forward(chunk, all_logits)?);
            } else {
                self.forward(chunk, false)?;
            }
        }
        Ok(logits)
    }

    fn forward(&mut self, tokens: &[u32], all_logits: bool) -> Result<Vec<f32>, GpuError> {
        let (gpu, m) = (self.gpu, self.model);
        let sh = &m.shape;
        let s = &mut self.s;
        let n = tokens.len();
        let pos0 = self.n_past;
        let row = sh.n_head_kv * sh.head_dim;
        let pos: Vec<i32> = (pos0..pos0 + n).map(|p| p as i32).collect();
        gpu.upload_into(&pos, &mut s.pos)?;
        // inp_embd: [n][n_embd]
        gpu.embed(&mut s.x, &m.tok_embd, sh.n_embd, tokens, &mut s.ids)?;
        for (il, l) in m.layers.iter().enumerate() {
            // attn_norm-{il}, Qcur/Kcur/Vcur-{il}
            gpu.rmsnorm(&mut s.cur, &s.x, &l.attn_norm, sh.rms_eps)?;
            gpu.linear(&mut s.q, &s.cur, &l.q, 0, n)?;
            gpu.linear(&mut s.k, &s.cur, &l.k, 0, n)?;
            gpu.linear(&mut s.v, &s.cur, &l.v, 0, n)?;
            let rope = RopeConfig {
                n_rot: sh.n_rot,
                freq_base: sh.rope_freq_base,
                freq_scale: sh.rope_freq_scale,
                neox: sh.rope_neox,
                freq_factors: m.rope_freqs.as_ref(),
            };
            gpu.rope(&mut s.q, &s.pos, sh.n_head, sh.head_dim, &rope)?;
            gpu.rope(&mut s.k, &s.pos, sh.n_head_kv, sh.head_dim, &rope)?;
            gpu.kv_store(&mut self.k_cache[il], &s.k, row, pos0)?;
            gpu.kv_store(&mut self.v_cache[il], &s.v, row, pos0)?;
            // kqv_out-{il}, attn_out-{il}, ffn_inp-{il}
            let kq_scale = 1.0 / (sh.head_dim as f32).sqrt();
            gpu.attention(
                &mut s.kqv,
                &s.q,
                &self.k_cache[il],
                &self.v_cache[il],
                sh.n_head,
                sh.n_head_kv,
                sh.head_dim,
                pos0,
                kq_scale,
            )?;
            gpu.linear(&mut s.out, &s.kqv, &l.o, 0, n)?;
            gpu.add_assign(&mut s.x, &s.out)?;
            // ffn_norm-{il}, ffn_out-{il}, l_out-{il}
            gpu.rmsnorm(&mut s.cur, &s.x, &l.ffn_norm, sh.rms_eps)?;
            match &l.ffn {
                Ffn::Dense { gate, up, down } => {
                    gpu.linear(&mut s.gate, &s.cur, gate, 0, n)?;
                    gpu.linear(&mut s.up, &s.cur, up, 0, n)?;
                    gpu.swiglu(&mut s.act, &s.gate, &s.up)?;
                    gpu.linear(&mut s.out, &s.act, down, 0, n)?;
                }
                Ffn::Moe { router, gate, up, down, n_expert } => {
                    moe(gpu, s, sh, n, *n_expert, [router, gate, up, down])?;
                }
            }
            gpu.add_assign(&mut s.x, &s.out)?;
        }
        // result_norm, result_output
        let n_rows = if all_logits { n } else { 1 };
        if all_logits {
            gpu.rmsnorm(&mut s.cur, &s.x, &m.output_norm, sh.rms_eps)?;
        } else {
            gpu.moe_gather(&mut s.out, &s.x, &[n as i32 - 1], &mut s.rows, sh.n_embd)?;
            gpu.rmsnorm(&mut s.cur, &s.out, &m.output_norm, sh.rms_eps)?;
        }
        gpu.linear(&mut s.logits, &s.cur, &m.output, 0, n_rows)?;
        let mut logits = Vec::new();
        self.staging.download(gpu, &s.logits, &mut logits)?;
        self.n_past += n;
        Ok(logits)
    }
}

/// The routed FFN: router logits → top-k → tokens gathered by expert → grouped gate/up GEMMs →
/// SwiGLU → grouped down GEMM → rows scattered to their (token, choice) slots → weighted sum.
/// The choices come to the host (n·k ints) to build the groups.
fn moe(
    gpu: &Gpu,
    s: &mut Scratch,
    sh: &LlamaShape,
    n: usize,
    n_expert: usize,
    w: [&Linear; 4],
) -> Result<(), GpuError> {
    let [router, gate, up, down] = w;
    let k = sh.n_expert_used;
    gpu.linear(&mut s.router, &s.cur, router, 0, n)?;
    gpu.moe_topk(&mut s.choice_ids, &mut s.choice_w, &s.router, n_expert, k, sh.renorm_experts)?;
    let choices = gpu.download(&s.choice_ids)?;
    let (mut rows, mut slots, mut groups) = (Vec::new(), Vec::new(), Vec::new());
    for e in 0..n_expert {
        let row0 = rows.len();
        for (slot, _) in choices.iter().enumerate().filter(|(_, &c)| c as usize == e) {
            rows.push((slot / k) as i32);
            slots.push(slot as i32);
        }
        if rows.len() > row0 {
            groups.push(ExpertGroup { expert: e, row0, n_rows: rows.len() - row0 });
        }
    }
    // xs: [n·k][n_embd] in expert order (in `out`), ys likewise (in `cur` once xs is consumed).
    gpu.moe_gather(&mut s.out, &s.cur, &rows, &mut s.rows, sh.n_embd)?;
    gpu.linear_grouped(&mut s.gate, &s.out, gate, &groups)?;
    gpu.linear_grouped(&mut s.up, &s.out, up, &groups)?;
    gpu.swiglu(&mut s.act, &s.gate, &s.up)?;
    gpu.linear_grouped(&mut s.cur, &s.act, down, &groups)?;
    s.slot_buf.set_len(n * k * sh.n_embd)?;
    gpu.moe_scatter(&mut s.slot_buf, &s.cur, &slots, &mut s.rows, sh.n_embd)?;
    gpu.moe_weighted_sum(&mut s.out, &s.slot_buf, &s.choice_w, k, sh.n_embd)
}
