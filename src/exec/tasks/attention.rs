//! The attention task of a layer: the layer before's FFN summed into the residual, the attention
//! norm, Q/K/V (per head, or latent attention's: `latent`), the cache and the attention kernel of
//! each sequence, the output projection, then the FFN norm that starts the layer's FFN tasks.

use super::{lock, StepState};
use crate::model::tensors::AttnBlock;
use crate::ops::attention::{attention_with, AttnExtras, AttnShape, KvSplit};
use crate::ops::matmul::{linear_many, Linear};
use crate::ops::rmsnorm::{add_bias, add_into, rms_norm, rms_norm_heads, rms_norm_unweighted};
use crate::ops::rope::{rope, RopeParams};

use super::dump;

impl StepState<'_> {
    /// `mats`: Q, K, V, O. Adds the layer before's FFN output to the residual first. The
    /// projections run over the whole batch; each sequence attends over its own cache.
    pub(super) fn attention(&self, il: usize, mats: &[Linear<'_>]) {
        let model = self.model;
        let hp = model.hparams();
        let layer = &model.weights().layers[il];
        let n_embd = hp.n_embd;
        let mut x = lock(&self.x);
        if il > 0 {
            self.finish_ffn(il - 1, &mut x);
        }
        let n_tok = x.len() / n_embd;
        let shape = AttnShape {
            n_head: hp.n_head,
            n_head_kv: hp.n_head_kv,
            head_dim_k: hp.head_dim_k,
            head_dim_v: hp.head_dim_v,
            v_in_k: hp.mla.is_some(),
        };
        let Some(n_ctx) = self.segments.first().map(|s| lock(s.kv).n_ctx()) else { return };
        let rope_p = model.rope_for(n_ctx);

        // attn_norm-{il}: [n_tok][n_embd]
        let mut cur = x.clone();
        rms_norm(&mut cur, &layer.attn_norm, hp.rms_eps);
        if let Some(b) = &layer.attn_norm_b {
            add_bias(&mut cur, b);
        }
        dump::tensor(&format!("attn_norm-{il}"), &cur);
        // Qcur: [n_tok][n_head][head_dim_k], Kcur: [n_tok][n_head_kv][head_dim_k],
        // Vcur: [n_tok][n_head_kv][head_dim_v]
        let (q, k, v, kq_scale) = match (&layer.attn, &hp.mla) {
            (AttnBlock::Latent(w), Some(mla)) => {
                let (q, k, v) = self.project_latent(&cur, w, mla, mats, rope_p);
                (q, k, v, mla.kq_scale)
            }
            _ => self.project_heads(il, &cur, mats, rope_p),
        };
        dump::tensor(&format!("Qcur-{il}"), &q);
        dump::tensor(&format!("Kcur-{il}"), &k);
        dump::tensor(&format!("Vcur-{il}"), &v);
        // kqv_out-{il}: [n_tok][n_head][head_dim_v]
        let mut kqv = vec![0f32; n_tok * hp.n_embd_attn_out()];
        let (qw, kw, vw, ow) = (hp.n_embd_q(), hp.n_embd_k_gqa(), hp.n_embd_v_gqa(), hp.n_embd_attn_out());
        // llama.cpp splits the KV of a pass with a single query row (see `KvSplit`); a pass of
        // several sequences has several rows, so none of them is split, each attending in one
        // sweep. (llama.cpp's server with a unified KV cache cuts the chunks in its cells, shared
        // by the sequences; with one sequence in it those are its positions, as here.)
        let lone_token = n_tok == 1;
        for s in &self.segments {
            let rows = s.start..s.start + s.n_tok;
            let mut kv = lock(s.kv);
            // Latent attention's V is the start of its K row: the cache holds K alone.
            let v_rows = if shape.v_in_k { &[][..] } else { &v[rows.start * vw..rows.end * vw] };
            kv.store(il, s.pos0, &k[rows.start * kw..rows.end * kw], v_rows);
            let split = if lone_token { KvSplit::for_decode(kv.n_ctx(), s.pos0) } else { None };
            let (kc, vc) = kv.layer(il);
            let vc = if shape.v_in_k { kc } else { vc };
            let q_rows = &q[rows.start * qw..rows.end * qw];
            let extras = AttnExtras { window: hp.window(il), sinks: layer.attn_sinks.as_deref() };
            attention_with(
                q_rows,
                kc,
                vc,
                s.pos0,
                shape,
                kq_scale,
                split,
                extras,
                &mut kqv[rows.start * ow..rows.end * ow],
            );
        }
        dump::tensor(&format!("kqv_out-{il}"), &kqv);
        // attn_out-{il}: [n_tok][n_embd]
        let mut out = match &layer.attn {
            AttnBlock::Latent(_) => self.latent_output(&kqv, mats),
            AttnBlock::Heads(_) => self.linear(&kqv, &mats[3]),
        };
        dump::tensor(&format!("attn_out-{il}"), &out);
        if il + 1 == hp.n_layer && model.arch().gathers_rows_before_last_ffn() {
            // As llama.cpp: the last layer's FFN runs only on the rows whose logits are wanted
            // (one token sums in a different order than a batch, so this is also for parity).
            if let Some(keep) = self.output_rows() {
                if keep.is_empty() {
                    x.clear();
                    self.start_ffn(il, Vec::new());
                    return;
                }
                *x = self.gather(&keep, &x);
                out = self.gather(&keep, &out);
            }
        }
        // ffn_inp-{il} = attn_out + inpSA
        add_into(&mut x, &out);
        dump::tensor(&format!("ffn_inp-{il}"), &x);
        // ffn_norm-{il}
        let mut cur = x.clone();
        rms_norm(&mut cur, &layer.ffn_norm, hp.rms_eps);
        if let Some(b) = &layer.ffn_norm_b {
            add_bias(&mut cur, b);
        }
        dump::tensor(&format!("ffn_norm-{il}"), &cur);
        self.start_ffn(il, cur);
    }

    /// Per-head attention's Q, K, V (`mats`: Q, K, V, O) for the normed rows `cur`: Q/K norms,
    /// rope (or Llama 4's temperature), and the scale of the scores.
    fn project_heads(
        &self,
        il: usize,
        cur: &[f32],
        mats: &[Linear<'_>],
        rope_p: &RopeParams,
    ) -> (Vec<f32>, Vec<f32>, Vec<f32>, f32) {
        let model = self.model;
        let hp = model.hparams();
        let layer = &model.weights().layers[il];
        let n_embd = hp.n_embd;
        // Phi-3 scales Q after rope and attends with scale 1; the others scale the scores.
        let head_scale = 1.0 / (hp.head_dim_k as f32).sqrt();
        let (q_scale, kq_scale) =
            if model.arch().prescales_q() { (Some(head_scale), 1.0) } else { (None, head_scale) };
        let qkv = self.by_order(cur, n_embd, |rows, per_row| {
            let n = rows.len() / n_embd;
            let mut q = vec![0f32; n * hp.n_embd_q()];
            let mut k = vec![0f32; n * hp.n_embd_k_gqa()];
            let mut v = vec![0f32; n * hp.n_embd_v_gqa()];
            linear_many(rows, &mut [(&mats[0], &mut q), (&mats[1], &mut k), (&mats[2], &mut v)], per_row);
            vec![q, k, v]
        });
        let [mut q, mut k, v]: [Vec<f32>; 3] = qkv.try_into().unwrap_or_default();
        if let Some((q_norm, k_norm)) = &layer.qk_norm {
            rms_norm_heads(&mut q, q_norm, hp.rms_eps);
            rms_norm_heads(&mut k, k_norm, hp.rms_eps);
        }
        if hp.layer_uses_rope(il) {
            rope(&mut q, &self.positions, hp.n_head, hp.head_dim_k, rope_p);
            rope(&mut k, &self.positions, hp.n_head_kv, hp.head_dim_k, rope_p);
            if hp.layer_attn.qk_norm_after_rope {
                rms_norm_unweighted(&mut q, hp.head_dim_k, hp.rms_eps);
                rms_norm_unweighted(&mut k, hp.head_dim_k, hp.rms_eps);
            }
        } else if let Some(t) = hp.layer_attn.temperature {
            // Llama 4's NoPE layers: Q times a temperature that grows with the position.
            for (row, &pos) in q.chunks_exact_mut(hp.n_embd_q()).zip(&self.positions) {
                let s = t.at(pos);
                row.iter_mut().for_each(|x| *x *= s);
            }
        }
        if let Some(s) = q_scale {
            q.iter_mut().for_each(|x| *x *= s);
        }
        (q, k, v, kq_scale)
    }
}
