//! The one description of a layer: a function per sub-layer task of the planner's
//! [`TaskGraph`](crate::plan::tasks::TaskGraph) — attention block, router, one expert over its
//! routed rows, a dense FFN row block, the shared expert, the output head — over the activations of
//! one step ([`StepState`]). The CPU lane runs them with the model's weights, the simulated GPU with
//! its own copies; the CPU forward is their composition ([`super::forward`]).
//!
//! The state is shared by the lanes of a step. The schedule's dependencies decide who may touch
//! what when: an attention block runs alone (every FFN task of the layer before has ended), the
//! FFN tasks of a layer run at the same time and each writes only its own output, which the next
//! attention block (or the output head) sums in llama.cpp's order. So the result does not depend
//! on which lane ran a task.

use std::sync::{Mutex, MutexGuard, RwLock};

mod attention;
mod latent;

use super::dump;
use super::kv_cache::KvCache;
use super::row_order::by_row_order;
use super::{OutputRows, SeqChunk};
use crate::model::tensors::{FfnBlock, SharedExpert};
use crate::model::Model;
use crate::ops::ffn::{glu_ffn_expert, swiglu_ffn, swiglu_ffn_expert, FfnWeights};
use crate::ops::matmul::{linear, linear_per_row, Linear};
use crate::ops::moe::{route, shared_expert_gate, Route};
use crate::ops::rmsnorm::{add_bias, add_into, rms_norm};
use crate::plan::tasks::TaskKind;

/// What a task of one layer (or the head) is, with its layer: the executor's view of a task id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskRef {
    /// `n_layer` for the output head.
    pub layer: usize,
    pub kind: TaskKind,
}

/// A row routed to an expert: (row, routing slot, weight).
pub type Picked = (usize, usize, f32);

/// The FFN outputs of the layer being computed, each written by its own task.
#[derive(Default)]
struct FfnOutputs {
    /// The layer they belong to.
    layer: usize,
    /// Routed experts: `[n_rows][k][n_embd]`, each expert's weighted rows in its routing slots.
    slots: Vec<f32>,
    /// Dense row blocks' partial `down` sums, `[n_rows][n_embd]` each, by block.
    parts: Vec<Option<Vec<f32>>>,
    /// The shared expert `[n_rows][n_embd]` and its gates `[n_rows]` (if it has a gate).
    shared: Option<(Vec<f32>, Option<Vec<f32>>)>,
}

/// One sequence's rows in a step: tokens `start..start + n_tok` of the batch, at positions
/// `pos0..`, with their K/V in `kv`.
struct Segment<'m> {
    kv: &'m Mutex<KvCache>,
    start: usize,
    n_tok: usize,
    pos0: usize,
    rows: OutputRows,
}

/// The activations of one step (a micro-batch of one or more sequences, each at its own
/// positions), shared by the lanes.
pub struct StepState<'m> {
    model: &'m Model,
    segments: Vec<Segment<'m>>,
    /// Each row's position in its sequence.
    positions: Vec<usize>,
    /// Rows that are their sequence's only row (summed in one-token order: see `row_order`).
    alone: RwLock<Vec<bool>>,
    /// Residual stream `[n_rows][n_embd]` (after the last layer's attention, only the rows whose
    /// logits are wanted).
    x: Mutex<Vec<f32>>,
    /// FFN input of the current layer (`ffn_norm-{il}`), `[n_rows][n_embd]`.
    cur: RwLock<Vec<f32>>,
    routes: RwLock<Vec<Route>>,
    ffn: Mutex<FfnOutputs>,
    /// `result_output` `[n_rows][n_vocab]`, or with `hidden` `result_norm` `[n_rows][n_embd]`.
    logits: Mutex<Vec<f32>>,
    /// The step returns the last hidden state after the output norm instead of logits
    /// (embeddings): the head is not run.
    hidden: bool,
}

/// A poisoned lock only means another lane panicked; its data is still what it wrote.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<'m> StepState<'m> {
    /// The step's embeddings (`inp_embd`) for the sequences' chunks, in order; token ids and
    /// cache room are checked by the caller.
    pub fn new(model: &'m Model, chunks: &[SeqChunk<'m>]) -> StepState<'m> {
        let n_embd = model.hparams().n_embd;
        dump::next_pass();
        let n_rows: usize = chunks.iter().map(|c| c.tokens.len()).sum();
        let mut x = vec![0f32; n_rows * n_embd];
        let tokens = chunks.iter().flat_map(|c| c.tokens);
        for (row, &tok) in x.chunks_exact_mut(n_embd).zip(tokens) {
            model.weights().tok_embd.row_to_f32(tok as usize, row);
        }
        let mut segments = Vec::with_capacity(chunks.len());
        let mut positions = Vec::with_capacity(n_rows);
        let mut alone = Vec::with_capacity(n_rows);
        for c in chunks {
            let n_tok = c.tokens.len();
            segments.push(Segment { kv: c.kv, start: positions.len(), n_tok, pos0: c.pos0, rows: c.rows });
            positions.extend(c.pos0..c.pos0 + n_tok);
            alone.extend(std::iter::repeat_n(n_tok == 1, n_tok));
        }
        StepState {
            model,
            segments,
            positions,
            alone: RwLock::new(alone),
            x: Mutex::new(x),
            cur: RwLock::new(Vec::new()),
            routes: RwLock::new(Vec::new()),
            ffn: Mutex::new(FfnOutputs::default()),
            logits: Mutex::new(Vec::new()),
            hidden: false,
        }
    }

    /// The same step returning `result_norm` (the rows' last hidden state after the output
    /// norm) instead of logits: what llama.cpp's embeddings are before pooling.
    pub fn with_hidden(mut self) -> StepState<'m> {
        self.hidden = true;
        self
    }

    /// Rows of the batch whose logits are wanted, in order, each with whether it is its
    /// sequence's only one; `None` when every row's are.
    fn output_rows(&self) -> Option<Vec<(usize, bool)>> {
        if self.segments.iter().all(|s| s.rows == OutputRows::All) {
            return None;
        }
        let mut keep = Vec::new();
        for s in &self.segments {
            match s.rows {
                OutputRows::None => {}
                OutputRows::Last if s.n_tok > 0 => keep.push((s.start + s.n_tok - 1, true)),
                OutputRows::Last => {}
                OutputRows::All => keep.extend((s.start..s.start + s.n_tok).map(|r| (r, s.n_tok == 1))),
            }
        }
        Some(keep)
    }

    /// `f(rows, per_row)` over the current rows, each summed as it would be alone (`row_order`).
    fn by_order<F>(&self, x: &[f32], n_in: usize, f: F) -> Vec<Vec<f32>>
    where
        F: Fn(&[f32], bool) -> Vec<Vec<f32>>,
    {
        by_row_order(&self.alone.read().unwrap_or_else(|e| e.into_inner()), x, n_in, f)
    }

    /// `x · l` over the current rows (see [`StepState::by_order`]).
    fn linear(&self, x: &[f32], l: &Linear<'_>) -> Vec<f32> {
        let mut out = self.by_order(x, l.n_in, |rows, per_row| {
            let mut y = vec![0f32; rows.len() / l.n_in * l.n_out];
            if per_row {
                linear_per_row(rows, l, &mut y);
            } else {
                linear(rows, l, &mut y);
            }
            vec![y]
        });
        out.pop().unwrap_or_default()
    }

    /// A SwiGLU FFN over the current rows (see [`StepState::by_order`]).
    fn swiglu(&self, x: &[f32], w: &FfnWeights<'_>) -> Vec<f32> {
        let mut out = self.by_order(x, w.gate.n_in, |rows, per_row| {
            let mut y = vec![0f32; rows.len()];
            if per_row {
                swiglu_ffn_expert(rows, w, &mut y);
            } else {
                swiglu_ffn(rows, w, &mut y);
            }
            vec![y]
        });
        out.pop().unwrap_or_default()
    }

    /// Tokens routed to each expert of the current layer (after its router ran).
    pub fn expert_counts(&self) -> Vec<u64> {
        let mut counts = vec![0u64; self.model.hparams().n_expert];
        for r in self.routes.read().unwrap_or_else(|e| e.into_inner()).iter() {
            for &e in &r.experts {
                if let Some(c) = counts.get_mut(e) {
                    *c += 1;
                }
            }
        }
        counts
    }

    /// A prediction of the experts of layer `il` (the next one): its `router` applied to this
    /// layer's FFN input (the next layer's own input is not known yet). `picked[expert]`; nothing
    /// is dumped.
    pub fn predict_experts(&self, il: usize, router: &Linear<'_>) -> Vec<bool> {
        let hp = self.model.hparams();
        let mut picked = vec![false; hp.n_expert];
        let cur = self.cur.read().unwrap_or_else(|e| e.into_inner());
        let n_rows = cur.len() / hp.n_embd;
        if n_rows == 0 {
            return picked;
        }
        let mut logits = vec![0f32; n_rows * hp.n_expert]; // [n_rows][n_expert]
        linear(&cur, router, &mut logits);
        let routes = route(&logits, hp.n_expert, hp.n_expert_used, &hp.routing, self.selection_bias(il));
        for &e in routes.iter().flat_map(|r| &r.experts) {
            if let Some(p) = picked.get_mut(e) {
                *p = true;
            }
        }
        picked
    }

    /// The routes of the current layer, token by token.
    pub fn routes(&self) -> Vec<Route> {
        self.routes.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The logits the step produced, `[n_rows][n_vocab]` for the rows asked for, sequence after
    /// sequence (empty when none was).
    pub fn take_logits(&self) -> Vec<f32> {
        std::mem::take(&mut *lock(&self.logits))
    }

    /// [`StepState::take_logits`] cut by sequence, in the order of the chunks.
    pub fn take_logits_by_sequence(&self) -> Vec<Vec<f32>> {
        let hp = self.model.hparams();
        let width = if self.hidden { hp.n_embd } else { hp.n_vocab };
        let mut all = self.take_logits().into_iter();
        let rows = |s: &Segment<'_>| match s.rows {
            OutputRows::None => 0,
            OutputRows::Last => usize::from(s.n_tok > 0),
            OutputRows::All => s.n_tok,
        };
        self.segments.iter().map(|s| all.by_ref().take(rows(s) * width).collect()).collect()
    }

    /// Run one task with the matrices `mats` (in [`super::binding::TaskMats`] order).
    pub fn run(&self, task: TaskRef, mats: &[Linear<'_>]) {
        match task.kind {
            TaskKind::Attention => self.attention(task.layer, mats),
            TaskKind::Router => self.router(mats),
            TaskKind::Expert { expert } => self.expert(expert as usize, mats),
            TaskKind::FfnRows { block, blocks } => self.ffn_rows(block as usize, blocks as usize, mats),
            TaskKind::SharedExpert => self.shared_expert(task.layer, mats),
            TaskKind::Output => self.output(mats),
        }
    }

    /// Layer `il`'s router weights and shared expert, if it routes.
    fn moe_layer(&self, il: usize) -> Option<(Option<&'m [f32]>, Option<&'m SharedExpert>)> {
        match &self.model.weights().layers.get(il)?.ffn {
            FfnBlock::Moe { selection_bias, shared, .. } => {
                Some((selection_bias.as_deref(), shared.as_ref()))
            }
            FfnBlock::Dense(_) => None,
        }
    }

    fn selection_bias(&self, il: usize) -> Option<&'m [f32]> {
        self.moe_layer(il).and_then(|(b, _)| b)
    }

    fn ffn_weights<'a>(mats: &[Linear<'a>]) -> FfnWeights<'a> {
        FfnWeights { gate: mats[0], up: mats[1], down: mats[2] }
    }

    /// The layer before's FFN output (`ffn_out-{il}`), summed in llama.cpp's order: routed slots
    /// in slot order, then the shared expert (times its gate, if it has one); or the row blocks'
    /// partial sums in block order.
    fn finish_ffn(&self, il: usize, x: &mut [f32]) {
        let n_embd = self.model.hparams().n_embd;
        let k = self.model.hparams().n_expert_used;
        let mut outs = lock(&self.ffn);
        let mut out = vec![0f32; x.len()]; // ffn_out: [n_rows][n_embd]
        if self.model.hparams().layer_is_moe(il) {
            for (o, tok_slots) in out.chunks_exact_mut(n_embd).zip(outs.slots.chunks_exact(k * n_embd)) {
                o.copy_from_slice(&tok_slots[..n_embd]);
                for s in tok_slots.chunks_exact(n_embd).skip(1) {
                    for (a, b) in o.iter_mut().zip(s) {
                        *a += b;
                    }
                }
            }
            dump::tensor("ffn_moe_out", &out);
            match outs.shared.take() {
                Some((y, Some(gates))) => {
                    for ((o, yr), g) in out.chunks_exact_mut(n_embd).zip(y.chunks_exact(n_embd)).zip(gates) {
                        for (a, b) in o.iter_mut().zip(yr) {
                            *a += b * g;
                        }
                    }
                }
                Some((y, None)) => add_into(&mut out, &y),
                None => {}
            }
        } else {
            let mut parts = outs.parts.iter_mut().map(|p| p.take().unwrap_or_default());
            if let Some(first) = parts.next() {
                out = first;
            }
            for p in parts {
                add_into(&mut out, &p);
            }
        }
        dump::tensor(&format!("ffn_out-{il}"), &out);
        add_into(x, &out);
        dump::tensor(&format!("l_out-{il}"), x);
    }

    /// The rows `keep` of `m` (`[n_rows][n_embd]`); from now on they are the step's rows.
    fn gather(&self, keep: &[(usize, bool)], m: &[f32]) -> Vec<f32> {
        let n_embd = self.model.hparams().n_embd;
        *self.alone.write().unwrap_or_else(|e| e.into_inner()) = keep.iter().map(|&(_, a)| a).collect();
        keep.iter().flat_map(|&(r, _)| &m[r * n_embd..(r + 1) * n_embd]).copied().collect()
    }

    /// Layer `il`'s FFN input is `cur`; its outputs start empty.
    fn start_ffn(&self, il: usize, cur: Vec<f32>) {
        let hp = self.model.hparams();
        let n_rows = cur.len() / hp.n_embd;
        let mut outs = lock(&self.ffn);
        outs.layer = il;
        outs.slots =
            if hp.layer_is_moe(il) { vec![0f32; n_rows * hp.n_expert_used * hp.n_embd] } else { Vec::new() };
        outs.parts.clear();
        outs.shared = None;
        *self.routes.write().unwrap_or_else(|e| e.into_inner()) = Vec::new();
        *self.cur.write().unwrap_or_else(|e| e.into_inner()) = cur;
    }

    /// The current layer's FFN input `[n_rows][n_embd]` (what the router, a dense FFN and the
    /// shared expert read); empty when no row needs the FFN.
    pub fn ffn_input(&self) -> Vec<f32> {
        self.cur.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// `ffn_moe_logits-{il}` `[n_rows][n_expert]` → each row's experts.
    pub fn put_router_logits(&self, logits: &[f32]) {
        let hp = self.model.hparams();
        dump::tensor("ffn_moe_logits", logits);
        let bias = self.selection_bias(lock(&self.ffn).layer);
        let routes = route(logits, hp.n_expert, hp.n_expert_used, &hp.routing, bias);
        *self.routes.write().unwrap_or_else(|e| e.into_inner()) = routes;
    }

    /// `mats`: the router `[n_embd, n_expert]`.
    fn router(&self, mats: &[Linear<'_>]) {
        let hp = self.model.hparams();
        let cur = self.cur.read().unwrap_or_else(|e| e.into_inner());
        let n_rows = cur.len() / hp.n_embd;
        if n_rows == 0 {
            return;
        }
        let logits = self.linear(&cur, &mats[0]); // [n_rows][n_expert]
        drop(cur);
        self.put_router_logits(&logits);
    }

    /// The rows routed to expert `e`: (row, slot, weight) each, and the rows themselves
    /// `[n_picked][n_embd]` (times their weights where the routing weighs inputs); `None` when it
    /// got none.
    pub fn expert_input(&self, e: usize) -> Option<(Vec<Picked>, Vec<f32>)> {
        let n_embd = self.model.hparams().n_embd;
        let picked: Vec<Picked> = self
            .routes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .enumerate()
            .flat_map(|(t, r)| {
                r.experts
                    .iter()
                    .zip(&r.weights)
                    .enumerate()
                    .filter(|(_, (&ex, _))| ex == e)
                    .map(move |(slot, (_, &w))| (t, slot, w))
            })
            .collect();
        if picked.is_empty() {
            return None;
        }
        let mut xe = Vec::with_capacity(picked.len() * n_embd);
        let cur = self.cur.read().unwrap_or_else(|e| e.into_inner());
        let weight_inputs = self.model.hparams().routing.weight_inputs;
        for &(t, _, w) in &picked {
            let row = &cur[t * n_embd..(t + 1) * n_embd];
            if weight_inputs {
                xe.extend(row.iter().map(|x| x * w));
            } else {
                xe.extend_from_slice(row);
            }
        }
        Some((picked, xe))
    }

    /// Expert outputs `ye` `[n_picked][n_embd]` for `picked`, weighted into their routing slots
    /// (`ffn_moe_weighted`; as they are where the inputs were weighted).
    pub fn put_expert_output(&self, picked: &[Picked], ye: &[f32]) {
        let hp = self.model.hparams();
        let (n_embd, k) = (hp.n_embd, hp.n_expert_used);
        let mut outs = lock(&self.ffn);
        for (row, &(t, slot, w)) in ye.chunks_exact(n_embd).zip(picked) {
            let dst = &mut outs.slots[(t * k + slot) * n_embd..][..n_embd];
            if hp.routing.weight_inputs {
                dst.copy_from_slice(row);
            } else {
                for (d, v) in dst.iter_mut().zip(row) {
                    *d = v * w;
                }
            }
        }
    }

    /// `mats`: gate, up, down of expert `e`, run on the rows routed to it.
    fn expert(&self, e: usize, mats: &[Linear<'_>]) {
        let Some((picked, xe)) = self.expert_input(e) else { return };
        let mut ye = vec![0f32; xe.len()]; // [n_picked][n_embd]
        glu_ffn_expert(&xe, &Self::ffn_weights(mats), self.model.arch().expert_glu(), &mut ye);
        self.put_expert_output(&picked, &ye);
    }

    /// A dense FFN row block's output `[n_rows][n_embd]` (its partial `down` sum).
    pub fn put_ffn_part(&self, block: usize, blocks: usize, out: Vec<f32>) {
        let mut outs = lock(&self.ffn);
        if outs.parts.len() < blocks {
            outs.parts.resize_with(blocks, || None);
        }
        outs.parts[block] = Some(out);
    }

    /// `mats`: gate and up rows of block `block` with the matching `down` columns (one block: the
    /// whole dense FFN).
    fn ffn_rows(&self, block: usize, blocks: usize, mats: &[Linear<'_>]) {
        let cur = self.cur.read().unwrap_or_else(|e| e.into_inner());
        let out = if cur.is_empty() { Vec::new() } else { self.swiglu(&cur, &Self::ffn_weights(mats)) };
        drop(cur);
        self.put_ffn_part(block, blocks, out);
    }

    /// The shared expert's output `y` `[n_rows][n_embd]` (`ffn_shexp`); its gates
    /// `sigmoid(ffn_gate_inp_shexp · x)`, where it has them, are computed here, on the host.
    pub fn put_shared_output(&self, il: usize, y: Vec<f32>) {
        let Some((_, Some(sh))) = self.moe_layer(il) else { return };
        dump::tensor("ffn_shexp", &y);
        let gates = sh.gate_inp.as_ref().map(|gate_inp| {
            let gates = shared_expert_gate(&self.cur.read().unwrap_or_else(|e| e.into_inner()), gate_inp);
            dump::tensor("ffn_shexp_gate", &gates);
            gates
        });
        lock(&self.ffn).shared = Some((y, gates));
    }

    /// `mats`: gate, up, down of the shared expert.
    fn shared_expert(&self, il: usize, mats: &[Linear<'_>]) {
        let cur = self.cur.read().unwrap_or_else(|e| e.into_inner());
        if cur.is_empty() {
            return;
        }
        let y = self.swiglu(&cur, &Self::ffn_weights(mats)); // [n_rows][n_embd]
        drop(cur);
        self.put_shared_output(il, y);
    }

    /// The output head's input: the last layer's FFN summed in, then `result_norm` of the rows
    /// kept `[n_rows][n_embd]`; `None` when no logits are wanted.
    pub fn output_input(&self) -> Option<Vec<f32>> {
        let hp = self.model.hparams();
        let w = self.model.weights();
        let mut x = lock(&self.x);
        if x.is_empty() {
            return None;
        }
        self.finish_ffn(hp.n_layer - 1, &mut x);
        if !self.model.arch().gathers_rows_before_last_ffn() {
            if let Some(keep) = self.output_rows() {
                let gathered = self.gather(&keep, &x);
                *x = gathered;
                if x.is_empty() {
                    return None;
                }
            }
        }
        let mut rows = std::mem::take(&mut *x);
        rms_norm(&mut rows, &w.output_norm, hp.rms_eps);
        if let Some(b) = &w.output_norm_b {
            add_bias(&mut rows, b);
        }
        dump::tensor("result_norm", &rows);
        if self.hidden {
            // Whichever lane runs the head finds nothing to do: the rows are the result.
            *lock(&self.logits) = rows;
            return None;
        }
        Some(rows)
    }

    /// `result_output` `[n_rows][n_vocab]`.
    pub fn put_logits(&self, logits: Vec<f32>) {
        dump::tensor("result_output", &logits);
        *lock(&self.logits) = logits;
    }

    /// `mats`: the output head.
    fn output(&self, mats: &[Linear<'_>]) {
        let Some(rows) = self.output_input() else { return };
        let logits = self.linear(&rows, &mats[0]); // [n_rows][n_vocab]
        self.put_logits(logits);
    }
}
