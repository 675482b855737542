//! The binding of a plan's task ids to the model's weights: which matrices each task computes
//! with, in a fixed order per kind (attention: Q, K, V, O, or latent attention's, see
//! `AttnBlock::linears`; router; FFN, expert or shared expert:
//! gate, up, down; output: the head). A plan made for another model, or another shape, is refused.

use crate::model::tensors::FfnBlock;
use crate::model::Model;
use crate::ops::matmul::Linear;
use crate::plan::shapes::ModelShape;
use crate::plan::tasks::{TaskGraph, TaskKind};

use super::tasks::TaskRef;
use super::ExecError;

/// Task ids of a [`TaskGraph`] bound to one loaded model.
pub struct Binding<'m> {
    model: &'m Model,
    tasks: Vec<TaskRef>,
}

/// The shape fields a plan and a model must agree on.
fn shape_key(s: &ModelShape) -> [u64; 13] {
    [
        u64::from(s.n_layer),
        s.n_embd,
        s.n_head,
        s.n_head_kv,
        s.head_dim_k,
        s.head_dim_v,
        s.n_vocab,
        s.n_ff,
        u64::from(s.n_expert),
        u64::from(s.n_expert_used),
        s.n_ff_exp,
        u64::from(s.n_layer_dense_lead),
        u64::from(s.n_moe_layer_step),
    ]
}

impl<'m> Binding<'m> {
    /// Binds `g` to `model`; `model_shape` is the model's own shape (from its file).
    pub fn new(model: &'m Model, model_shape: &ModelShape, g: &TaskGraph) -> Result<Binding<'m>, ExecError> {
        if shape_key(model_shape) != shape_key(&g.shape)
            || model_shape.n_ff_shexp != g.shape.n_ff_shexp
            || model_shape.mla != g.shape.mla
        {
            return Err(ExecError::PlanMismatch(format!(
                "the plan is for '{}' (n_layer {}, n_embd {}, n_expert {}), the model is '{}' (n_layer {}, n_embd {}, n_expert {})",
                g.shape.name,
                g.shape.n_layer,
                g.shape.n_embd,
                g.shape.n_expert,
                model_shape.name,
                model_shape.n_layer,
                model_shape.n_embd,
                model_shape.n_expert
            )));
        }
        let w = model.weights();
        let mut tasks = Vec::with_capacity(g.tasks.len());
        for t in &g.tasks {
            let layer = t.layer as usize;
            let ok = match (t.kind, w.layers.get(layer).map(|l| &l.ffn)) {
                (TaskKind::Output, None) => layer == w.layers.len(),
                (TaskKind::Attention, Some(_)) => true,
                (TaskKind::Router, Some(FfnBlock::Moe { .. })) => true,
                (TaskKind::Expert { expert }, Some(FfnBlock::Moe { experts, .. })) => {
                    (expert as usize) < experts.len()
                }
                (TaskKind::SharedExpert, Some(FfnBlock::Moe { shared, .. })) => shared.is_some(),
                // Row blocks of one dense FFN: the partial `down` sums need column slices of
                // `ffn_down`, which the executor does not cut yet; a plan splits a dense FFN
                // only as a whole.
                (TaskKind::FfnRows { blocks: 1, .. }, Some(FfnBlock::Dense(_))) => true,
                (TaskKind::FfnRows { blocks, .. }, Some(FfnBlock::Dense(_))) => {
                    return Err(ExecError::PlanMismatch(format!(
                        "task {} splits a dense FFN into {blocks} row blocks; the executor runs whole FFNs (row blocks 1)",
                        t.name
                    )))
                }
                _ => false,
            };
            if !ok {
                return Err(ExecError::PlanMismatch(format!(
                    "task {} ({:?}) has no weights in the model",
                    t.name, t.kind
                )));
            }
            tasks.push(TaskRef { layer, kind: t.kind });
        }
        Ok(Binding { model, tasks })
    }

    pub fn model(&self) -> &'m Model {
        self.model
    }

    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    pub fn task(&self, id: usize) -> TaskRef {
        self.tasks[id]
    }

    /// The host matrices of task `id`, in the order its function takes them.
    pub fn host_mats(&self, id: usize) -> Vec<Linear<'m>> {
        let w = self.model.weights();
        let t = self.tasks[id];
        let ffn =
            |m: &'m crate::model::tensors::FfnMats| vec![m.gate.linear(), m.up.linear(), m.down.linear()];
        let plain = |m: &'m crate::model::weights::Weight, bias: Option<&'m [f32]>| Linear {
            w: m.view(),
            n_in: m.n_in,
            n_out: m.n_out,
            bias,
            lora: &[],
        };
        if t.kind == TaskKind::Output {
            return vec![plain(w.output_head(), w.output_b.as_deref())];
        }
        let layer = &w.layers[t.layer];
        match (t.kind, &layer.ffn) {
            (TaskKind::Attention, _) => layer.attn.linears().into_iter().map(|l| l.linear()).collect(),
            (TaskKind::Router, FfnBlock::Moe { router, router_b, .. }) => {
                vec![plain(router, router_b.as_deref())]
            }
            (TaskKind::Expert { expert }, FfnBlock::Moe { experts, .. }) => ffn(&experts[expert as usize]),
            (TaskKind::SharedExpert, FfnBlock::Moe { shared: Some(sh), .. }) => ffn(&sh.ffn),
            (TaskKind::FfnRows { .. }, FfnBlock::Dense(m)) => ffn(m),
            // `new` checked every task against the model.
            _ => Vec::new(),
        }
    }

    /// Bytes of task `id`'s matrices (what residency or a staging slot holds).
    pub fn bytes(&self, id: usize) -> u64 {
        self.host_mats(id).iter().map(|l| view_bytes(&l.w)).sum()
    }
}

pub fn view_bytes(w: &crate::cpu::WeightView<'_>) -> u64 {
    use crate::cpu::WeightView;
    let elem = match w {
        WeightView::F32(_) => 4,
        WeightView::F16(_) | WeightView::BF16(_) => 2,
    };
    (w.len() * elem) as u64
}
