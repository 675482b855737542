// Shared helpers for the plan tests (a folder, so that cargo does not build it as a test target).
#![allow(dead_code)]

use rs_llama::plan::shapes::{ModelShape, WeightType};
use rs_llama::plan::workload::Rng;

/// A small random model: 1–3 layers, dense or MoE, realistic widths so that every lane matters.
pub fn small_shape(rng: &mut Rng, max_tasks: usize) -> ModelShape {
    loop {
        // MoE shapes fit a small task count less often: draw them more often.
        let moe = !rng.next_u64().is_multiple_of(3);
        let n_layer = 1 + (rng.next_u64() % 3) as u32;
        let n_embd = [2048u64, 4096][(rng.next_u64() % 2) as usize];
        let n_expert = if moe { 2 + (rng.next_u64() % 7) as u32 } else { 0 };
        let s = ModelShape {
            name: "small".into(),
            arch: "llama".into(),
            n_layer,
            n_embd,
            n_head: n_embd / 128,
            n_head_kv: 8,
            head_dim_k: 128,
            head_dim_v: 128,
            n_vocab: 32000,
            n_ff: if moe { 0 } else { [5632u64, 14336][(rng.next_u64() % 2) as usize] },
            n_layer_dense_lead: 0,
            n_moe_layer_step: 1,
            n_expert,
            n_expert_used: if moe { 1 + (rng.next_u64() % 2) as u32 } else { 0 },
            n_ff_exp: if moe { [1408u64, 6400, 14336][(rng.next_u64() % 3) as usize] } else { 0 },
            n_ff_shexp: 0,
            shexp_gated: false,
            tied_output: false,
            wtype: WeightType::F16,
            mla: None,
        };
        let blocks = 2usize;
        let per_layer = if moe { 2 + n_expert as usize } else { 1 + blocks };
        if n_layer as usize * per_layer < max_tasks && s.n_expert_used <= s.n_expert.max(1) {
            return s;
        }
    }
}
