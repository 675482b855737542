//! llama.cpp's placement: the last `-ngl` layers (the output head counts as one and goes first) on
//! the GPU, `--n-cpu-moe N` keeps the experts of the first N layers in RAM. At run time every op
//! with host weights runs on the CPU, or on the GPU after a synchronous copy when the batch is at
//! least 32 tokens; nothing overlaps. Without `-ngl`, the best `-ngl`/`--n-cpu-moe` for the budget
//! is chosen by simulation, as a careful user would by trying them.

use super::super::tasks::TaskKind;
use super::super::{ExecRule, Plan, PlanError};
use super::{Ctx, PolicyKind};

pub(super) fn placement(ctx: &Ctx, ngl: u32, n_cpu_moe: u32) -> (Vec<bool>, Vec<String>) {
    let n_layer = ctx.g.shape.n_layer;
    let gpu_start = (n_layer + 1).saturating_sub(ngl);
    let mut resident = vec![false; ctx.g.tasks.len()];
    let mut reasons = vec![String::new(); ctx.g.tasks.len()];
    for t in &ctx.g.tasks {
        let layer_on_gpu = ngl > 0 && t.layer >= gpu_start;
        let is_expert = matches!(t.kind, TaskKind::Expert { .. });
        let (on_gpu, why) = if t.kind == TaskKind::Output {
            (
                ngl >= 1,
                if ngl >= 1 {
                    "GPU: the output layer is the first one -ngl offloads"
                } else {
                    "host: -ngl 0"
                },
            )
        } else if layer_on_gpu && is_expert && t.layer < n_cpu_moe {
            (false, "host: --n-cpu-moe keeps this layer's experts in RAM; CPU, or copied synchronously when batch >= 32")
        } else if layer_on_gpu {
            (true, "GPU: within the last -ngl layers")
        } else {
            (false, "host: below the -ngl layers; CPU, or copied synchronously when batch >= 32")
        };
        resident[t.id] = on_gpu;
        reasons[t.id] = why.to_string();
        match ctx.forced(t.id) {
            Some(true) => {
                (resident[t.id], reasons[t.id]) = (true, "GPU: -ot puts its tensors on the GPU".into())
            }
            Some(false) => {
                (resident[t.id], reasons[t.id]) = (
                    false,
                    "host: -ot keeps its tensors in RAM; CPU, or copied synchronously when batch >= 32"
                        .into(),
                )
            }
            None => {}
        }
    }
    (resident, reasons)
}

/// llama.cpp copies an offloaded op's host weights into its compute buffer: room for the largest
/// host task that may be copied (never an attention block: it computes where its KV cache is).
fn staging(ctx: &Ctx, resident: &[bool]) -> u64 {
    if !ctx.cost.has_gpu() {
        return 0;
    }
    let copied = ctx.g.tasks.iter().filter(|t| !resident[t.id] && t.kind != TaskKind::Attention);
    copied.map(|t| t.bytes).max().unwrap_or(0)
}

fn fits(ctx: &Ctx, resident: &[bool]) -> bool {
    ctx.resident_bytes(resident) + staging(ctx, resident) + ctx.scratch_bytes() <= ctx.budget()
}

fn build(ctx: &Ctx, ngl: u32, n_cpu_moe: u32) -> Result<Plan, PlanError> {
    let (resident, reasons) = placement(ctx, ngl, n_cpu_moe);
    let moe = if ctx.g.shape.is_moe() { format!(" --n-cpu-moe {n_cpu_moe}") } else { String::new() };
    let held = ctx.resident_bytes(&resident) + ctx.scratch_bytes();
    let staging = staging(ctx, &resident);
    if held + staging > ctx.budget() && held <= ctx.budget() {
        // No room to copy the largest host op's weights: they all stay on the CPU.
        let exec = ExecRule::Serial { min_batch: u64::MAX };
        let summary = format!("-ngl {ngl}{moe} (no room for op offload's copy buffer: host ops on the CPU)");
        return ctx.assemble(PolicyKind::Layers, &resident, reasons, exec, 0, summary);
    }
    let exec = ExecRule::Serial { min_batch: ctx.opts.min_batch };
    let summary = format!("-ngl {ngl}{moe} (op offload at batch >= {})", ctx.opts.min_batch);
    ctx.assemble(PolicyKind::Layers, &resident, reasons, exec, staging, summary)
}

/// The largest -ngl that fits with this --n-cpu-moe.
fn max_ngl(ctx: &Ctx, n_cpu_moe: u32) -> u32 {
    (0..=ctx.g.shape.n_layer + 1).rev().find(|&ngl| fits(ctx, &placement(ctx, ngl, n_cpu_moe).0)).unwrap_or(0)
}

pub fn plan(ctx: &Ctx) -> Result<Plan, PlanError> {
    let n_layer = ctx.g.shape.n_layer;
    if !ctx.cost.has_gpu() {
        return build(ctx, 0, 0);
    }
    if let Some(ngl) = ctx.opts.ngl {
        return build(ctx, ngl.min(n_layer + 1), ctx.opts.n_cpu_moe.unwrap_or(0));
    }
    let candidates: Vec<u32> = match (ctx.opts.n_cpu_moe, ctx.g.shape.is_moe()) {
        (Some(n), _) => vec![n],
        (None, true) => (0..=n_layer).collect(),
        (None, false) => vec![0],
    };
    let mut best: Option<(f64, Plan)> = None;
    for n_cpu_moe in candidates {
        let ngl = max_ngl(ctx, n_cpu_moe);
        let plan = build(ctx, ngl, n_cpu_moe)?;
        let secs = ctx.request_seconds(&plan)?;
        if best.as_ref().is_none_or(|(b, _)| secs < *b) {
            best = Some((secs, plan));
        }
    }
    match best {
        Some((_, mut plan)) => {
            plan.summary = format!("{}; chosen as the fastest that fits", plan.summary);
            Ok(plan)
        }
        None => build(ctx, 0, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::cost::CostModel;
    use crate::plan::policy::PolicyOptions;
    use crate::plan::presets::preset;
    use crate::plan::shapes::{ModelShape, WeightType};
    use crate::plan::tasks::TaskGraph;
    use crate::plan::workload::{Popularity, Workload};

    /// llama.cpp: i_gpu_start = n_layer + 1 - ngl; the output layer (index n_layer) goes first.
    #[test]
    fn ngl_counts_the_output_layer_first_like_llama_cpp() {
        let s = ModelShape::named("llama-2-13b", WeightType::F16).unwrap();
        let g = TaskGraph::build(&s, 2, 512);
        let hw = preset("rtx3090-ddr4").unwrap();
        let cost = CostModel::new(&hw, WeightType::F16, true);
        let opts = PolicyOptions {
            gpu_mem_bytes: 1 << 40,
            workload: Workload::default(),
            popularity: Popularity::uniform(40, 0),
            ngl: None,
            n_cpu_moe: None,
            min_batch: 32,
            slots: None,
            forced: Vec::new(),
        };
        let ctx = Ctx { g: &g, cost: &cost, opts: &opts, hw_name: "x" };
        let (r, _) = placement(&ctx, 1, 0);
        assert!(r[g.output] && !r[g.layers[39].attention]);
        let (r, _) = placement(&ctx, 3, 0);
        assert!(
            r[g.output] && r[g.layers[39].attention] && r[g.layers[38].ffn[1]] && !r[g.layers[37].attention]
        );
        let (r, _) = placement(&ctx, 41, 0);
        assert!(r.iter().all(|&x| x));
    }
}
