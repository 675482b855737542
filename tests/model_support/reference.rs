//! A naive f64 forward pass of the llama/Mixtral graph, written from the model's definition:
//! RMSNorm, Q/K/V projections, adjacent-pair RoPE, K/V rounded to f16 (the cache type), causal
//! GQA attention, SwiGLU dense FFN or softmax→top-k→renormalised MoE, output head.

use super::Tiny;
use rs_llama::gguf::names::TensorKind as T;

/// `w` ggml `[n_in, n_out]` times `x` `[n_in]`.
fn matvec(w: &[f64], x: &[f64], n_out: usize) -> Vec<f64> {
    let n_in = x.len();
    (0..n_out).map(|o| (0..n_in).map(|i| w[o * n_in + i] * x[i]).sum()).collect()
}

fn rms_norm(x: &[f64], w: &[f64], eps: f64) -> Vec<f64> {
    let ms = x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64;
    let s = 1.0 / (ms + eps).sqrt();
    x.iter().zip(w).map(|(v, g)| v * s * g).collect()
}

fn rope(x: &mut [f64], pos: usize, head_dim: usize, base: f64) {
    for head in x.chunks_mut(head_dim) {
        for i in 0..head_dim / 2 {
            let theta = pos as f64 * base.powf(-2.0 * i as f64 / head_dim as f64);
            let (a, b) = (head[2 * i], head[2 * i + 1]);
            head[2 * i] = a * theta.cos() - b * theta.sin();
            head[2 * i + 1] = a * theta.sin() + b * theta.cos();
        }
    }
}

fn f16_round(v: f64) -> f64 {
    half::f16::from_f64(v).to_f64()
}

fn swiglu_ffn(t: &Tiny, x: &[f64], gate: &str, up: &str, down: &str) -> Vec<f64> {
    let s = &t.spec;
    let g = matvec(t.get(gate), x, s.n_ff);
    let u = matvec(t.get(up), x, s.n_ff);
    let h: Vec<f64> = g.iter().zip(&u).map(|(a, b)| a / (1.0 + (-a).exp()) * b).collect();
    matvec(t.get(down), &h, s.n_embd)
}

fn moe_ffn(t: &Tiny, il: usize, x: &[f64]) -> Vec<f64> {
    let s = &t.spec;
    let logits = matvec(t.get(&T::FfnGateInp.weight(il)), x, s.n_expert);
    let m = logits.iter().cloned().fold(f64::MIN, f64::max);
    let z: f64 = logits.iter().map(|l| (l - m).exp()).sum();
    let probs: Vec<f64> = logits.iter().map(|l| (l - m).exp() / z).collect();
    let mut order: Vec<usize> = (0..s.n_expert).collect();
    order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]));
    let chosen = &order[..s.n_expert_used];
    let total: f64 = chosen.iter().map(|&e| probs[e]).sum();
    let mut out = vec![0.0; s.n_embd];
    for &e in chosen {
        let y = swiglu_ffn(
            t,
            x,
            &T::FfnGateExpert.expert_weight(il, e),
            &T::FfnUpExpert.expert_weight(il, e),
            &T::FfnDownExpert.expert_weight(il, e),
        );
        for (o, v) in out.iter_mut().zip(y) {
            *o += probs[e] / total * v;
        }
    }
    out
}

/// Logits `[tokens.len()][n_vocab]` for a fresh sequence.
pub fn forward(t: &Tiny, tokens: &[u32]) -> Vec<f64> {
    let s = &t.spec;
    let (e, hd) = (s.n_embd, s.head_dim());
    let eps = s.rms_eps as f64;
    let group = s.n_head / s.n_head_kv;
    let emb = t.get(&T::TokenEmbd.weight(0));
    let mut xs: Vec<Vec<f64>> = tokens.iter().map(|&tok| emb[tok as usize * e..][..e].to_vec()).collect();
    for il in 0..s.n_layer {
        let mut keys: Vec<Vec<f64>> = Vec::new();
        let mut vals: Vec<Vec<f64>> = Vec::new();
        let mut queries: Vec<Vec<f64>> = Vec::new();
        for (pos, x) in xs.iter().enumerate() {
            let h = rms_norm(x, t.get(&T::AttnNorm.weight(il)), eps);
            let mut q = matvec(t.get(&T::AttnQ.weight(il)), &h, e);
            let mut k = matvec(t.get(&T::AttnK.weight(il)), &h, hd * s.n_head_kv);
            let v = matvec(t.get(&T::AttnV.weight(il)), &h, hd * s.n_head_kv);
            rope(&mut q, pos, hd, s.rope_base as f64);
            rope(&mut k, pos, hd, s.rope_base as f64);
            keys.push(k.into_iter().map(f16_round).collect());
            vals.push(v.into_iter().map(f16_round).collect());
            queries.push(q);
        }
        for (pos, x) in xs.iter_mut().enumerate() {
            let mut att = vec![0.0; e];
            for head in 0..s.n_head {
                let kvh = head / group;
                let qh = &queries[pos][head * hd..][..hd];
                let scores: Vec<f64> = (0..=pos)
                    .map(|j| {
                        let kj = &keys[j][kvh * hd..][..hd];
                        qh.iter().zip(kj).map(|(a, b)| a * b).sum::<f64>() / (hd as f64).sqrt()
                    })
                    .collect();
                let m = scores.iter().cloned().fold(f64::MIN, f64::max);
                let z: f64 = scores.iter().map(|v| (v - m).exp()).sum();
                for (j, sc) in scores.iter().enumerate() {
                    let p = (sc - m).exp() / z;
                    for d in 0..hd {
                        att[head * hd + d] += p * vals[j][kvh * hd + d];
                    }
                }
            }
            let o = matvec(t.get(&T::AttnOutput.weight(il)), &att, e);
            for (a, b) in x.iter_mut().zip(o) {
                *a += b;
            }
            let h = rms_norm(x, t.get(&T::FfnNorm.weight(il)), eps);
            let f = if s.n_expert == 0 {
                swiglu_ffn(t, &h, &T::FfnGate.weight(il), &T::FfnUp.weight(il), &T::FfnDown.weight(il))
            } else {
                moe_ffn(t, il, &h)
            };
            for (a, b) in x.iter_mut().zip(f) {
                *a += b;
            }
        }
    }
    let head = if s.tied { T::TokenEmbd.weight(0) } else { T::Output.weight(0) };
    let mut logits = Vec::new();
    for x in &xs {
        let h = rms_norm(x, t.get(&T::OutputNorm.weight(0)), eps);
        logits.extend(matvec(t.get(&head), &h, s.n_vocab));
    }
    logits
}
