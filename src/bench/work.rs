//! What one bench test moves and computes, counted from the model's shapes: weight (and KV) bytes
//! read and floating-point operations. Used to turn a time into GB/s and GFLOP/s.

use crate::model::tensors::FfnBlock;
use crate::model::weights::Weight;
use crate::model::Model;

#[derive(Debug, Clone, Copy, Default)]
pub struct Work {
    pub bytes: f64,
    pub flops: f64,
}

fn bytes_of(w: &Weight) -> f64 {
    let elem = match w.dtype() {
        gguf::DType::F16 | gguf::DType::BF16 => 2.0,
        _ => 4.0,
    };
    (w.n_in * w.n_out) as f64 * elem
}

fn params_of(w: &Weight) -> f64 {
    (w.n_in * w.n_out) as f64
}

/// Weights one token touches: (bytes of all matrices but the experts, bytes of all experts,
/// matmul parameters per token with `n_expert_used` experts).
fn layer_weights(model: &Model) -> (f64, f64, f64) {
    let (mut shared, mut experts, mut params) = (0.0, 0.0, 0.0);
    let k = model.hparams().n_expert_used as f64;
    for l in &model.weights().layers {
        for lin in l.attn.linears() {
            shared += bytes_of(&lin.w);
            params += params_of(&lin.w);
        }
        match &l.ffn {
            FfnBlock::Dense(m) => {
                for w in [&m.gate.w, &m.up.w, &m.down.w] {
                    shared += bytes_of(w);
                    params += params_of(w);
                }
            }
            FfnBlock::Moe { router, experts: ex, shared: shexp, .. } => {
                shared += bytes_of(router);
                params += params_of(router);
                // The shared expert (Qwen2-MoE) runs for every token, like the dense weights.
                if let Some(s) = shexp {
                    for w in [&s.ffn.gate.w, &s.ffn.up.w, &s.ffn.down.w] {
                        shared += bytes_of(w);
                        params += params_of(w);
                    }
                }
                let n = ex.len().max(1) as f64;
                for m in ex {
                    for w in [&m.gate.w, &m.up.w, &m.down.w] {
                        experts += bytes_of(w);
                        params += params_of(w) * k / n;
                    }
                }
            }
        }
    }
    (shared, experts, params)
}

/// Attention flops (QK and PV) of one token seeing `n_kv` cached positions, over all layers.
fn attn_flops(model: &Model, n_kv: usize) -> f64 {
    let hp = model.hparams();
    (2 * n_kv * hp.n_head * (hp.head_dim_k + hp.head_dim_v) * hp.n_layer) as f64
}

/// KV bytes (f16) read by one token seeing `n_kv` positions.
fn kv_bytes(model: &Model, n_kv: usize) -> f64 {
    let hp = model.hparams();
    let (k_row, v_row) = hp.kv_cache_rows();
    (2 * n_kv * (k_row + v_row) * hp.n_layer) as f64
}

/// A pp test of `n_prompt` tokens in chunks of `n_ubatch`, logits for the last token only.
pub fn prompt(model: &Model, n_prompt: usize, n_ubatch: usize) -> Work {
    if n_prompt == 0 {
        return Work::default();
    }
    let (shared, experts, params) = layer_weights(model);
    let head = bytes_of(model.weights().output_head());
    let head_params = params_of(model.weights().output_head());
    let chunks = n_prompt.div_ceil(n_ubatch.max(1)) as f64;
    let mut flops = 2.0 * params * n_prompt as f64 + 2.0 * head_params;
    flops += (0..n_prompt).map(|p| attn_flops(model, p + 1)).sum::<f64>();
    let kv: f64 = (0..n_prompt).step_by(n_ubatch.max(1)).map(|p| kv_bytes(model, p + n_ubatch)).sum();
    Work { bytes: chunks * (shared + experts) + head + kv, flops }
}

/// A tg test: `n_gen` single-token steps after `n_past` cached tokens.
pub fn generate(model: &Model, n_past: usize, n_gen: usize) -> Work {
    let (shared, experts, params) = layer_weights(model);
    let hp = model.hparams();
    let used = if hp.n_expert > 0 { experts * hp.n_expert_used as f64 / hp.n_expert as f64 } else { 0.0 };
    let head = model.weights().output_head();
    let mut w = Work::default();
    for i in 0..n_gen {
        let n_kv = n_past + i + 1;
        w.bytes += shared + used + bytes_of(head) + kv_bytes(model, n_kv);
        w.flops += 2.0 * (params + params_of(head)) + attn_flops(model, n_kv);
    }
    w
}
