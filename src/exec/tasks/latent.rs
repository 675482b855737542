//! Multi-head latent attention (DeepSeek) as a task of the layer, as llama.cpp's graph runs it
//! with the absorption optimisation: every query head attends over one shared cache row per
//! position, the compressed KV (`kv_lora` values, RMS-normed) followed by the rope key. Each head's
//! no-rope query is first mapped into the compressed space (`attn_k_b`); each head's output,
//! `kv_lora` wide, is mapped back to `head_dim_v_mla` (`attn_v_b`) before `attn_output`.
//!
//! `mats` (see `exec::binding`): Q (or Q_a, Q_b), KV_a, K_b of each head, V_b of each head, O.

use super::StepState;
use crate::model::deepseek2::LatentAttention;
use crate::model::tensors::{LatentAttnWeights, LatentQuery};
use crate::ops::matmul::{linear, linear_per_row, Linear};
use crate::ops::rmsnorm::rms_norm;
use crate::ops::rope::{rope, RopeParams};

/// The task's matrices by role.
struct LatentMats<'a, 'b> {
    q: &'b [Linear<'a>],
    kv_a: &'b Linear<'a>,
    k_b: &'b [Linear<'a>],
    v_b: &'b [Linear<'a>],
    o: &'b Linear<'a>,
}

impl<'a, 'b> LatentMats<'a, 'b> {
    fn split(mats: &'b [Linear<'a>], low_rank_q: bool, n_head: usize) -> LatentMats<'a, 'b> {
        let n_q = if low_rank_q { 2 } else { 1 };
        let (q, rest) = mats.split_at(n_q);
        let (kv_a, rest) = rest.split_first().expect("latent attention: KV_a");
        let (k_b, rest) = rest.split_at(n_head);
        let (v_b, rest) = rest.split_at(n_head);
        LatentMats { q, kv_a, k_b, v_b, o: &rest[0] }
    }
}

/// Columns `from..from + width` of each row of `m` (rows of `row` values).
fn columns(m: &[f32], row: usize, from: usize, width: usize) -> Vec<f32> {
    m.chunks_exact(row).flat_map(|r| &r[from..from + width]).copied().collect()
}

impl StepState<'_> {
    /// `x · l` where ggml's source rows are a permuted view: with f32 weights ggml then takes
    /// its one-row dot products (no tinyBLAS on a non-contiguous source); with f16/bf16 weights
    /// the rows are converted first, and the batch is summed as any other.
    fn linear_of_view(&self, x: &[f32], l: &Linear<'_>) -> Vec<f32> {
        let f32_weights = matches!(l.w, crate::cpu::WeightView::F32(_));
        let mut out = self.by_order(x, l.n_in, |rows, per_row| {
            let mut y = vec![0f32; rows.len() / l.n_in * l.n_out];
            if per_row || f32_weights {
                linear_per_row(rows, l, &mut y);
            } else {
                linear(rows, l, &mut y);
            }
            vec![y]
        });
        out.pop().unwrap_or_default()
    }

    /// Q `[n_tok][n_head][kv_lora + n_rot]`, K `[n_tok][kv_lora + n_rot]` and V `[n_tok][kv_lora]`
    /// of the normed rows `cur`.
    pub(super) fn project_latent(
        &self,
        cur: &[f32],
        w: &LatentAttnWeights,
        mla: &LatentAttention,
        mats: &[Linear<'_>],
        rope_p: &RopeParams,
    ) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let hp = self.model.hparams();
        let (n_head, n_rot, kv_lora) = (hp.n_head, hp.n_rot, mla.kv_lora_rank);
        let nope = mla.nope(n_rot);
        let m = LatentMats::split(mats, matches!(w.q, LatentQuery::LowRank { .. }), n_head);
        // q: [n_tok][n_head][nope + n_rot]
        let q = match &w.q {
            LatentQuery::Direct(_) => self.linear(cur, &m.q[0]),
            LatentQuery::LowRank { norm, .. } => {
                let mut qa = self.linear(cur, &m.q[0]);
                rms_norm(&mut qa, norm, hp.rms_eps);
                self.linear(&qa, &m.q[1])
            }
        };
        let n_tok = q.len() / (n_head * mla.head_dim_k_mla);
        // kv_cmpr_pe: [n_tok][kv_lora + n_rot]
        let kv_cmpr_pe = self.linear(cur, m.kv_a);
        let mut k_pe = columns(&kv_cmpr_pe, kv_lora + n_rot, kv_lora, n_rot);
        rope(&mut k_pe, &self.positions, 1, n_rot, rope_p);
        let mut kv_cmpr = columns(&kv_cmpr_pe, kv_lora + n_rot, 0, kv_lora);
        rms_norm(&mut kv_cmpr, &w.kv_a_norm, hp.rms_eps);

        // Per head: the rope part rotated, the rest absorbed into the compressed space.
        let head_k = kv_lora + n_rot;
        let mut q_cur = vec![0f32; n_tok * n_head * head_k];
        let mut q_pe = columns(&q, mla.head_dim_k_mla, nope, n_rot); // [n_tok][n_head][n_rot]
        rope(&mut q_pe, &self.positions, n_head, n_rot, rope_p);
        let q_heads = q.chunks_exact(mla.head_dim_k_mla);
        for (h, k_b) in m.k_b.iter().enumerate() {
            let q_nope: Vec<f32> =
                q_heads.clone().skip(h).step_by(n_head).flat_map(|r| &r[..nope]).copied().collect();
            let absorbed = self.linear_of_view(&q_nope, k_b); // [n_tok][kv_lora]
            for (t, a) in absorbed.chunks_exact(kv_lora).enumerate() {
                let dst = &mut q_cur[(t * n_head + h) * head_k..][..head_k];
                dst[..kv_lora].copy_from_slice(a);
                dst[kv_lora..].copy_from_slice(&q_pe[(t * n_head + h) * n_rot..][..n_rot]);
            }
        }
        let mut k_cur = Vec::with_capacity(n_tok * head_k);
        for (c, pe) in kv_cmpr.chunks_exact(kv_lora).zip(k_pe.chunks_exact(n_rot)) {
            k_cur.extend_from_slice(c);
            k_cur.extend_from_slice(pe);
        }
        (q_cur, k_cur, kv_cmpr)
    }

    /// `attn_out` `[n_tok][n_embd]` from the attention's output `kqv` `[n_tok][n_head][kv_lora]`:
    /// each head decompressed by its V_b, then O.
    pub(super) fn latent_output(&self, kqv: &[f32], mats: &[Linear<'_>]) -> Vec<f32> {
        let hp = self.model.hparams();
        let (n_head, kv_lora) = (hp.n_head, hp.head_dim_v);
        let layer_mla = hp.mla.as_ref();
        let low_rank = layer_mla.is_some_and(|m| m.q_lora_rank.is_some());
        let m = LatentMats::split(mats, low_rank, n_head);
        let dv = m.v_b.first().map_or(0, |l| l.n_out);
        let n_tok = kqv.len() / (n_head * kv_lora);
        let mut heads = vec![0f32; n_tok * n_head * dv]; // [n_tok][n_head][dv]
        let rows = kqv.chunks_exact(kv_lora);
        for (h, v_b) in m.v_b.iter().enumerate() {
            let x: Vec<f32> = rows.clone().skip(h).step_by(n_head).flatten().copied().collect();
            let y = self.linear_of_view(&x, v_b);
            for (t, yt) in y.chunks_exact(dv).enumerate() {
                heads[(t * n_head + h) * dv..][..dv].copy_from_slice(yt);
            }
        }
        self.linear(&heads, m.o)
    }
}
