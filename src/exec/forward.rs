//! The llama-family forward pass over one micro-batch. Intermediates are named as llama.cpp's
//! graph names them, so dumps of the two can be compared layer by layer.

use super::dump;
use super::kv_cache::KvCache;
use super::moe::{moe_ffn, MoeConfig};
use crate::model::tensors::FfnBlock;
use crate::model::Model;
use crate::ops::attention::{attention, AttnShape};
use crate::ops::ffn::swiglu_ffn;
use crate::ops::matmul::{linear, linear_many, Linear};
use crate::ops::rmsnorm::{add_bias, add_into, rms_norm, rms_norm_heads};
use crate::ops::rope::rope;
use crate::TokenId;

/// Which rows of logits a pass computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputRows {
    /// None: only the KV cache is filled (a prompt chunk before the last).
    None,
    Last,
    All,
}

/// Evaluate `tokens` at positions `pos0..pos0+len`, appending their K/V to `kv`. Token ids and the
/// cache size are checked by the caller. Returns logits `[n_rows][n_vocab]`.
pub fn forward(
    model: &Model,
    kv: &mut KvCache,
    tokens: &[TokenId],
    pos0: usize,
    rows: OutputRows,
) -> Vec<f32> {
    let hp = model.hparams();
    let w = model.weights();
    let n_tok = tokens.len();
    let n_embd = hp.n_embd;
    let positions: Vec<usize> = (pos0..pos0 + n_tok).collect();
    let shape = AttnShape {
        n_head: hp.n_head,
        n_head_kv: hp.n_head_kv,
        head_dim_k: hp.head_dim_k,
        head_dim_v: hp.head_dim_v,
    };
    let arch = model.arch();
    let rope_p = model.rope_for(kv.n_ctx());
    // Phi-3 scales Q after rope and attends with scale 1; the others scale the scores.
    let head_scale = 1.0 / (hp.head_dim_k as f32).sqrt();
    let (q_scale, kq_scale) = if arch.prescales_q() { (Some(head_scale), 1.0) } else { (None, head_scale) };
    let moe_cfg = MoeConfig {
        n_expert_used: hp.n_expert_used,
        gating: arch.expert_gating(),
        normalize: arch.normalizes_expert_weights(),
    };

    dump::next_pass();
    // inp_embd: [n_tok][n_embd]
    let mut x = vec![0f32; n_tok * n_embd];
    for (row, &tok) in x.chunks_exact_mut(n_embd).zip(tokens) {
        w.tok_embd.row_to_f32(tok as usize, row);
    }
    let mut cur = vec![0f32; n_tok * n_embd]; // [n_tok][n_embd]
    let mut q = vec![0f32; n_tok * hp.n_embd_q()]; // Qcur: [n_tok][n_head][head_dim_k]
    let mut k = vec![0f32; n_tok * hp.n_embd_k_gqa()]; // Kcur: [n_tok][n_head_kv][head_dim_k]
    let mut v = vec![0f32; n_tok * hp.n_embd_v_gqa()]; // Vcur: [n_tok][n_head_kv][head_dim_v]
    let mut kqv = vec![0f32; n_tok * hp.n_embd_attn_out()]; // kqv_out: [n_tok][n_head][head_dim_v]
    let mut out = vec![0f32; n_tok * n_embd]; // attn_out / ffn_out: [n_tok][n_embd]

    for (il, layer) in w.layers.iter().enumerate() {
        // attn_norm-{il}
        cur.copy_from_slice(&x);
        rms_norm(&mut cur, &layer.attn_norm, hp.rms_eps);
        if let Some(b) = &layer.attn_norm_b {
            add_bias(&mut cur, b);
        }
        dump::tensor(&format!("attn_norm-{il}"), &cur);
        // Qcur-{il}, Kcur-{il}, Vcur-{il}
        let (lq, lk, lv) = (layer.attn.q.linear(), layer.attn.k.linear(), layer.attn.v.linear());
        linear_many(&cur, &mut [(&lq, &mut q), (&lk, &mut k), (&lv, &mut v)], false);
        if let Some((q_norm, k_norm)) = &layer.qk_norm {
            rms_norm_heads(&mut q, q_norm, hp.rms_eps);
            rms_norm_heads(&mut k, k_norm, hp.rms_eps);
        }
        rope(&mut q, &positions, hp.n_head, hp.head_dim_k, rope_p);
        rope(&mut k, &positions, hp.n_head_kv, hp.head_dim_k, rope_p);
        if let Some(s) = q_scale {
            q.iter_mut().for_each(|x| *x *= s);
        }
        dump::tensor(&format!("Qcur-{il}"), &q);
        dump::tensor(&format!("Kcur-{il}"), &k);
        dump::tensor(&format!("Vcur-{il}"), &v);
        kv.store(il, pos0, &k, &v);
        // kqv_out-{il}
        let (kc, vc) = kv.layer(il);
        attention(&q, kc, vc, pos0, shape, kq_scale, &mut kqv);
        // attn_out-{il}, then ffn_inp-{il} = attn_out + inpSA
        dump::tensor(&format!("kqv_out-{il}"), &kqv);
        linear(&kqv, &layer.attn.o.linear(), &mut out);
        dump::tensor(&format!("attn_out-{il}"), &out);
        if il + 1 == w.layers.len() && rows != OutputRows::All {
            // As llama.cpp: the last layer's FFN runs only on the rows whose logits are wanted
            // (one token sums in a different order than a batch, so this is also for parity).
            if rows == OutputRows::None {
                return Vec::new();
            }
            let last = (n_tok - 1) * n_embd;
            x.drain(..last);
            out.drain(..last);
            cur.truncate(n_embd);
        }
        add_into(&mut x, &out);
        dump::tensor(&format!("ffn_inp-{il}"), &x);
        // ffn_norm-{il}
        cur.copy_from_slice(&x);
        rms_norm(&mut cur, &layer.ffn_norm, hp.rms_eps);
        if let Some(b) = &layer.ffn_norm_b {
            add_bias(&mut cur, b);
        }
        dump::tensor(&format!("ffn_norm-{il}"), &cur);
        match &layer.ffn {
            FfnBlock::Dense(mats) => swiglu_ffn(&cur, &mats.weights(), &mut out),
            FfnBlock::Moe { router, experts, shared } => {
                let router = Linear { w: router.view(), n_in: router.n_in, n_out: router.n_out, bias: None };
                moe_ffn(&cur, router, experts, shared.as_ref(), &moe_cfg, &mut out)
            }
        }
        // ffn_out-{il} / l_out-{il}
        dump::tensor(&format!("ffn_out-{il}"), &out);
        add_into(&mut x, &out);
        dump::tensor(&format!("l_out-{il}"), &x);
    }

    // result_norm: [n_rows][n_embd]
    // result_norm input: the last token only, unless every row was asked for (see above).
    let mut rows = x;
    rms_norm(&mut rows, &w.output_norm, hp.rms_eps);
    if let Some(b) = &w.output_norm_b {
        add_bias(&mut rows, b);
    }
    dump::tensor("result_norm", &rows);
    // result_output: [n_rows][n_vocab]
    let head = w.output_head();
    let mut logits = vec![0f32; rows.len() / n_embd * hp.n_vocab];
    let bias = w.output_b.as_deref();
    linear(&rows, &Linear { w: head.view(), n_in: head.n_in, n_out: head.n_out, bias }, &mut logits);
    dump::tensor("result_output", &logits);
    logits
}
