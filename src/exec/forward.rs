//! The CPU forward pass over one micro-batch: the layer tasks of [`super::tasks`] in the order
//! llama.cpp's graph runs them, with the model's own weights. Intermediates are named as
//! llama.cpp's graph names them, so dumps of the two can be compared layer by layer.

use std::sync::Mutex;

use super::kv_cache::KvCache;
use super::tasks::{StepState, TaskRef};
use crate::model::lora::{self, ActiveLora, LoraSlot, LoraTarget};
use crate::model::tensors::FfnBlock;
use crate::model::Model;
use crate::ops::matmul::{Linear, LoraTerm};
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
/// cache size are checked by the caller. `lora`: the adapters applied (none: the base model).
/// Returns logits `[n_rows][n_vocab]`.
pub fn forward(
    model: &Model,
    lora: &[ActiveLora],
    kv: &Mutex<KvCache>,
    tokens: &[TokenId],
    pos0: usize,
    rows: OutputRows,
) -> Vec<f32> {
    let st = StepState::new(model, &[SeqChunk { kv, tokens, pos0, rows }]);
    run_layers(model, lora, &st);
    st.take_logits()
}

/// Evaluate several sequences' chunks in one pass: every matmul runs over all their rows at once
/// (the weights are read once for all), attention over each sequence's own cache. Returns each
/// chunk's logits, in order.
pub fn forward_batch(model: &Model, lora: &[ActiveLora], chunks: &[SeqChunk<'_>]) -> Vec<Vec<f32>> {
    let st = StepState::new(model, chunks);
    run_layers(model, lora, &st);
    st.take_logits_by_sequence()
}

/// [`forward_batch`] returning each chunk's `result_norm` rows `[n_rows][n_embd]` (the last
/// hidden state after the output norm, for embeddings) instead of logits; the head is skipped.
pub fn forward_hidden(model: &Model, lora: &[ActiveLora], chunks: &[SeqChunk<'_>]) -> Vec<Vec<f32>> {
    let st = StepState::new(model, chunks).with_hidden();
    run_layers(model, lora, &st);
    st.take_logits_by_sequence()
}

/// Each layer's adapter terms, by slot (empty where no adapter touches it).
struct LayerTerms<'a>([Vec<LoraTerm<'a>>; 7]);

impl<'a> LayerTerms<'a> {
    const SLOTS: [LoraSlot; 7] =
        [LoraSlot::Q, LoraSlot::K, LoraSlot::V, LoraSlot::O, LoraSlot::Gate, LoraSlot::Up, LoraSlot::Down];

    fn new(active: &'a [ActiveLora], il: usize) -> LayerTerms<'a> {
        LayerTerms(Self::SLOTS.map(|s| lora::terms(active, LoraTarget::Layer(il, s))))
    }

    fn get(&self, slot: LoraSlot) -> &[LoraTerm<'a>] {
        &self.0[Self::SLOTS.iter().position(|&s| s == slot).unwrap_or(0)]
    }
}

fn with_terms<'a>(l: Linear<'a>, lora: &'a [LoraTerm<'a>]) -> Linear<'a> {
    Linear { lora, ..l }
}

fn run_layers(model: &Model, active: &[ActiveLora], st: &StepState<'_>) {
    let w = model.weights();
    let run = |layer: usize, kind: TaskKind, mats: &[Linear<'_>]| st.run(TaskRef { layer, kind }, mats);
    for (il, layer) in w.layers.iter().enumerate() {
        let terms = LayerTerms::new(active, il);
        // The adapter loader accepts attention and FFN targets only where the layer computes them
        // as these plain matrices (per-head attention, dense FFN).
        let with = |l, slot| with_terms(l, terms.get(slot));
        let mut attn: Vec<Linear<'_>> = layer.attn.linears().into_iter().map(|l| l.linear()).collect();
        if let [q, k, v, o] = attn.as_mut_slice() {
            (*q, *k, *v, *o) =
                (with(*q, LoraSlot::Q), with(*k, LoraSlot::K), with(*v, LoraSlot::V), with(*o, LoraSlot::O));
        }
        run(il, TaskKind::Attention, &attn);
        match &layer.ffn {
            FfnBlock::Dense(m) => run(
                il,
                TaskKind::FfnRows { block: 0, blocks: 1 },
                &[
                    with(m.gate.linear(), LoraSlot::Gate),
                    with(m.up.linear(), LoraSlot::Up),
                    with(m.down.linear(), LoraSlot::Down),
                ],
            ),
            FfnBlock::Moe { router, router_b, experts, shared, .. } => {
                let bias = router_b.as_deref();
                let r = Linear { w: router.view(), n_in: router.n_in, n_out: router.n_out, bias, lora: &[] };
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
    // Only a separate output.weight takes an adapter (see `model::lora`).
    let head_terms = if w.output.is_some() { lora::terms(active, LoraTarget::Output) } else { Vec::new() };
    run(
        w.layers.len(),
        TaskKind::Output,
        &[Linear { w: head.view(), n_in: head.n_in, n_out: head.n_out, bias, lora: &head_terms }],
    );
}
