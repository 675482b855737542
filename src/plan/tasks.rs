//! The model as a list of sub-layer tasks, each with its weight bytes and its flops and KV traffic
//! as functions of the tokens it processes and the context before them.

use serde::{Deserialize, Serialize};

use super::shapes::ModelShape;

/// Elements per token of a layer's elementwise work on the attention side: two RMSNorms and two
/// residual adds over the embedding, rope over Q and K, the KV store of K and V.
pub fn attention_elementwise(n_embd: usize, q_dims: usize, k_dims: usize, v_dims: usize) -> usize {
    4 * n_embd + q_dims + 2 * k_dims + v_dims
}

/// Elements per token of an FFN block's elementwise work: SwiGLU over its rows.
pub fn ffn_elementwise(rows: usize) -> usize {
    rows
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TaskKind {
    /// Norm, Q/K/V/O projections and the attention over the KV cache.
    Attention,
    Router,
    /// Rows `block` of `blocks` of a dense FFN: gate/up rows with the matching down columns.
    FfnRows {
        block: u32,
        blocks: u32,
    },
    Expert {
        expert: u32,
    },
    SharedExpert,
    /// Output norm and head (logits for the last token only).
    Output,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub id: usize,
    /// `n_layer` for the output head.
    pub layer: u32,
    pub kind: TaskKind,
    pub name: String,
    pub params: u64,
    pub bytes: u64,
}

/// The tasks of one layer, by role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerTasks {
    pub attention: usize,
    pub router: Option<usize>,
    /// Dense FFN row blocks or routed experts (index = expert id).
    pub ffn: Vec<usize>,
    pub shared: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskGraph {
    pub shape: ModelShape,
    pub tasks: Vec<Task>,
    pub layers: Vec<LayerTasks>,
    pub output: usize,
    /// Context length the KV cache is sized for.
    pub n_ctx: u64,
}

impl TaskGraph {
    /// Splits every layer; dense FFNs into `row_blocks` row blocks (at least 1).
    pub fn build(shape: &ModelShape, row_blocks: u32, n_ctx: u64) -> TaskGraph {
        let wb = shape.wtype.bytes();
        let mut tasks = Vec::new();
        let mut push = |layer: u32, kind: TaskKind, name: String, params: u64| {
            let id = tasks.len();
            tasks.push(Task { id, layer, kind, name, params, bytes: params * wb });
            id
        };
        let mut layers = Vec::with_capacity(shape.n_layer as usize);
        for il in 0..shape.n_layer {
            let attention = push(il, TaskKind::Attention, format!("blk.{il}.attn"), shape.attn_params());
            let (router, ffn, shared) = if shape.layer_is_moe(il) {
                let router = push(il, TaskKind::Router, format!("blk.{il}.router"), shape.router_params());
                let ffn = (0..shape.n_expert)
                    .map(|e| {
                        push(
                            il,
                            TaskKind::Expert { expert: e },
                            format!("blk.{il}.exp{e}"),
                            shape.expert_params(),
                        )
                    })
                    .collect();
                let shared = (shape.n_ff_shexp > 0).then(|| {
                    push(il, TaskKind::SharedExpert, format!("blk.{il}.shexp"), shape.shexp_params())
                });
                (Some(router), ffn, shared)
            } else {
                let blocks = row_blocks.max(1);
                let rows = |b: u32| {
                    shape.n_ff * u64::from(b + 1) / u64::from(blocks)
                        - shape.n_ff * u64::from(b) / u64::from(blocks)
                };
                // Both norms of the layer are counted with attention (ModelShape::attn_params).
                let ffn = (0..blocks)
                    .map(|b| {
                        let params = 3 * shape.n_embd * rows(b);
                        push(il, TaskKind::FfnRows { block: b, blocks }, format!("blk.{il}.ffn{b}"), params)
                    })
                    .collect();
                (None, ffn, None)
            };
            layers.push(LayerTasks { attention, router, ffn, shared });
        }
        let output = push(shape.n_layer, TaskKind::Output, "output".into(), shape.output_params());
        TaskGraph { shape: shape.clone(), tasks, layers, output, n_ctx }
    }

    /// Weight bytes of every task.
    pub fn total_bytes(&self) -> u64 {
        self.tasks.iter().map(|t| t.bytes).sum()
    }

    /// GPU memory a task holds while resident: its weights, and for attention its layer's KV cache.
    pub fn footprint(&self, id: usize) -> u64 {
        let t = &self.tasks[id];
        match t.kind {
            TaskKind::Attention => t.bytes + self.n_ctx * self.shape.kv_bytes_per_token_layer(),
            _ => t.bytes,
        }
    }

    /// Tokens the task processes in a step of `n_tokens` (experts: use the routed count instead).
    pub fn tokens_for(&self, id: usize, n_tokens: u64) -> u64 {
        match self.tasks[id].kind {
            TaskKind::Output => n_tokens.min(1),
            _ => n_tokens,
        }
    }

    /// Flops for `n` tokens with `ctx` tokens already in the cache.
    pub fn flops(&self, id: usize, n: u64, ctx: u64) -> f64 {
        let t = &self.tasks[id];
        let matmul = 2.0 * t.params as f64 * n as f64;
        match t.kind {
            TaskKind::Attention => {
                let s = &self.shape;
                // QK^T and AV over a causal window: each new token sees ctx + its position.
                let avg_window = ctx as f64 + (n as f64 + 1.0) / 2.0;
                matmul + 2.0 * (s.n_head * (s.head_dim_k + s.head_dim_v)) as f64 * n as f64 * avg_window
            }
            _ => matmul,
        }
    }

    /// Elements of elementwise work (norms, adds, rope, KV store, SwiGLU, expert weighting) per
    /// token the task processes; `cost` turns them into time with the measured elementwise rate.
    pub fn elementwise_elems(&self, id: usize) -> f64 {
        let s = &self.shape;
        let (embd, q) = (s.n_embd as usize, (s.n_head * s.head_dim_k) as usize);
        let (k, v) = ((s.n_head_kv * s.head_dim_k) as usize, (s.n_head_kv * s.head_dim_v) as usize);
        let elems = match self.tasks[id].kind {
            TaskKind::Attention => attention_elementwise(embd, q, k, v),
            TaskKind::Router => 0,
            TaskKind::FfnRows { block, blocks } => {
                let edge = |b: u32| (s.n_ff * u64::from(b) / u64::from(blocks)) as usize;
                ffn_elementwise(edge(block + 1) - edge(block))
            }
            // An expert's output is also weighted into the layer's: one embedding row per token.
            TaskKind::Expert { .. } => ffn_elementwise(s.n_ff_exp as usize) + embd,
            TaskKind::SharedExpert => ffn_elementwise(s.n_ff_shexp as usize) + embd,
            TaskKind::Output => embd,
        };
        elems as f64
    }

    /// KV cache bytes read and written for `n` new tokens after `ctx` (attention only).
    pub fn kv_bytes(&self, id: usize, n: u64, ctx: u64) -> f64 {
        match self.tasks[id].kind {
            TaskKind::Attention => ((ctx + 2 * n) * self.shape.kv_bytes_per_token_layer()) as f64,
            _ => 0.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::shapes::WeightType;

    #[test]
    fn tasks_partition_every_parameter_but_the_embedding() {
        for name in crate::plan::shapes::SHAPE_NAMES {
            let s = ModelShape::named(name, WeightType::Bf16).unwrap();
            let g = TaskGraph::build(&s, 8, 4096);
            let embd = if s.tied_output { 0 } else { s.n_embd * s.n_vocab };
            let sum: u64 = g.tasks.iter().map(|t| t.params).sum();
            assert_eq!(sum + embd, s.total_params(), "{name}");
            assert!(g.tasks.iter().enumerate().all(|(i, t)| t.id == i));
        }
    }

    /// hybrid-anchors §6.5: one Mixtral expert 352 MB, all routed experts 90.2 GB.
    #[test]
    fn mixtral_expert_bytes_match_reference() {
        let s = ModelShape::named("mixtral-8x7b", WeightType::F16).unwrap();
        let g = TaskGraph::build(&s, 8, 512);
        let e = g.layers[0].ffn[0];
        assert_eq!(g.tasks[e].bytes, 352_321_536);
        let all: u64 =
            g.tasks.iter().filter(|t| matches!(t.kind, TaskKind::Expert { .. })).map(|t| t.bytes).sum();
        assert!((all as f64 / 1e9 - 90.2).abs() < 0.1);
    }

    #[test]
    fn attention_flops_match_a_direct_count() {
        let s = ModelShape::named("llama-2-13b", WeightType::F16).unwrap();
        let g = TaskGraph::build(&s, 4, 1024);
        let a = g.layers[0].attention;
        // One token after 99 cached ones sees 100 positions: 2·(dk+dv)·heads·100 flops on top of 2·params.
        let direct = 2.0 * s.attn_params() as f64 + 2.0 * 256.0 * 40.0 * 100.0;
        assert!((g.flops(a, 1, 99) - direct).abs() < 1.0);
    }
}
