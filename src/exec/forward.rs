//! The CPU forward pass over one micro-batch: the layer tasks of [`super::tasks`] in the order
//! llama.cpp's graph runs them, with the model's own weights. Intermediates are named as
//! llama.cpp's graph names them, so dumps of the two can be compared layer by layer.

use std::sync::Mutex;

use super::kv_cache::KvCache;
use super::tasks::{StepState, TaskRef};
use crate::model::tensors::FfnBlock;
use crate::model::Model;
use crate::ops::matmul::Linear;
use crate::plan::tasks::TaskKind;
use crate::TokenId;

/// Which rows of logits a pass computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputRows {
    /// None: only the KV cache is filled (a prompt chunk before the last).
    None,
    Last,
    All,
}

/// One sequence's part of a forward: `tokens` at positions `pos0..`, their K/V appended to `kv`.
#[derive(Clone, Copy)]
pub struct SeqChunk<'a> {
    pub kv: &'a Mutex<KvCache>,
    pub tokens: &'a [TokenId],
    pub pos0: usize,
    pub rows: OutputRows,
}

/// Evaluate `tokens` at positions `pos0..pos0+len`, appending their K/V to `kv`. Token ids and the
/// cache size are checked by the caller. Returns logits `[n_rows][n_vocab]`.
pub fn forward(
    model: &Model,
    kv: &Mutex<KvCache>,
    tokens: &[TokenId],
    pos0: usize,
    rows: OutputRows,
) -> Vec<f32> {
    let st = StepState::new(model, &[SeqChunk { kv, tokens, pos0, rows }]);
    run_layers(model, &st);
    st.take_logits()
}

/// Evaluate several sequences' chunks in one pass: every matmul runs over all their rows at once
/// (the weights are read once for all), attention over each sequence's own cache. Returns each
/// chunk's logits, in order.
pub fn forward_batch(model: &Model, chunks: &[SeqChunk<'_>]) -> Vec<Vec<f32>> {
    let st = StepState::new(model, chunks);
    run_layers(model, &st);
    st.take_logits_by_sequence()
}

/// [`forward_batch`] returning each chunk's `result_norm` rows `[n_rows][n_embd]` (the last
/// hidden state after the output norm, for embeddings) instead of logits; the head is skipped.
pub fn forward_hidden(model: &Model, chunks: &[SeqChunk<'_>]) -> Vec<Vec<f32>> {
    let st = StepState::new(model, chunks).with_hidden();
    run_layers(model, &st);
    st.take_logits_by_sequence()
}

fn run_layers(model: &Model, st: &StepState<'_>) {
    let w = model.weights();
    let run = |layer: usize, kind: TaskKind, mats: &[Linear<'_>]| st.run(TaskRef { layer, kind }, mats);
    for (il, layer) in w.layers.iter().enumerate() {
        let attn: Vec<Linear<'_>> = layer.attn.linears().into_iter().map(|l| l.linear()).collect();
        run(il, TaskKind::Attention, &attn);
        match &layer.ffn {
            FfnBlock::Dense(m) => run(
                il,
                TaskKind::FfnRows { block: 0, blocks: 1 },
                &[m.gate.linear(), m.up.linear(), m.down.linear()],
            ),
            FfnBlock::Moe { router, router_b, experts, shared, .. } => {
                let bias = router_b.as_deref();
                let r = Linear { w: router.view(), n_in: router.n_in, n_out: router.n_out, bias };
                run(il, TaskKind::Router, &[r]);
                for (e, m) in experts.iter().enumerate() {
                    let kind = TaskKind::Expert { expert: e as u32 };
                    run(il, kind, &[m.gate.linear(), m.up.linear(), m.down.linear()]);
                }
                if let Some(sh) = shared {
                    let m = &sh.ffn;
                    run(il, TaskKind::SharedExpert, &[m.gate.linear(), m.up.linear(), m.down.linear()]);
                }
            }
        }
    }
    let head = w.output_head();
    let bias = w.output_b.as_deref();
    run(
        w.layers.len(),
        TaskKind::Output,
        &[Linear { w: head.view(), n_in: head.n_in, n_out: head.n_out, bias }],
    );
}
