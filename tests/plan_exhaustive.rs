//! On small instances (≤ 12 tasks) `auto` must come within 2% of the best plan found by
//! exhaustive search: every GPU-resident subset that fits the budget, with every staging-slot
//! count auto may use and every slot size a host task sets, each run under the same executor rules (overlapping lanes, run-time routing)
//! and judged by the same simulated request time.

#[path = "plan_common/mod.rs"]
mod common;

use rs_llama::plan::cost::CostModel;
use rs_llama::plan::policy::{Ctx, PolicyKind, PolicyOptions};
use rs_llama::plan::presets::preset;
use rs_llama::plan::tasks::TaskGraph;
use rs_llama::plan::workload::Rng;
use rs_llama::plan::{make_plan, ExecRule, Popularity, Workload};

const SLOT_CHOICES: [u32; 5] = [0, 1, 2, 3, 4];

fn exhaustive_best(ctx: &Ctx) -> f64 {
    let n = ctx.g.tasks.len();
    let mut best = f64::INFINITY;
    for mask in 0u32..(1 << n) {
        let resident: Vec<bool> = (0..n).map(|i| mask & (1 << i) != 0).collect();
        // Every slot size a host task sets (a task bigger than the slots runs on the CPU).
        let mut sizes: Vec<u64> = ctx.g.tasks.iter().filter(|t| !resident[t.id]).map(|t| t.bytes).collect();
        sizes.sort_unstable();
        sizes.dedup();
        for (slots, slot_bytes) in SLOT_CHOICES.iter().flat_map(|&k| sizes.iter().map(move |&b| (k, b))) {
            let staging = u64::from(slots) * slot_bytes;
            if ctx.resident_bytes(&resident) + staging + ctx.scratch_bytes() > ctx.budget() {
                continue;
            }
            let exec = ExecRule::Overlap { slots, slot_bytes };
            let reasons = vec!["exhaustive".to_string(); n];
            let Ok(plan) = ctx.assemble(PolicyKind::Auto, &resident, reasons, exec, staging, String::new())
            else {
                continue;
            };
            best = best.min(ctx.request_seconds(&plan).unwrap());
        }
    }
    best
}

#[test]
fn auto_is_within_two_percent_of_exhaustive_search_on_small_instances() {
    let mut rng = Rng(0xBEEF);
    let presets = ["rtx3090-ddr4", "rtx4090-ddr5", "h100-pcie5"];
    let mut worst: f64 = 1.0;
    let mut ratios = Vec::new();
    for case in 0..40u64 {
        let shape = common::small_shape(&mut rng, 12);
        let g = TaskGraph::build(&shape, 2, 1024);
        assert!(g.tasks.len() <= 12);
        let hw = preset(presets[(case % 3) as usize]).unwrap();
        let cost = CostModel::new(&hw, shape.wtype, true);
        let total: u64 = (0..g.tasks.len()).map(|i| g.footprint(i)).sum();
        let w = Workload {
            prompt: [64, 512, 1024][(rng.next_u64() % 3) as usize],
            gen: [8, 64, 256][(rng.next_u64() % 3) as usize],
            ubatch: 512,
            decode_samples: 4,
            seed: case,
        };
        let popularity = if case.is_multiple_of(2) {
            Popularity::uniform(shape.n_layer, shape.n_expert)
        } else {
            Popularity::zipf(shape.n_layer, shape.n_expert, 1.0, case)
        };
        let mut opts = PolicyOptions {
            gpu_mem_bytes: 0,
            workload: w,
            popularity,
            ngl: None,
            n_cpu_moe: None,
            min_batch: 32,
            slots: None,
            forced: Vec::new(),
        };
        // Above one micro-batch of activations (below it every policy is CPU-only).
        let scratch = Ctx { g: &g, cost: &cost, opts: &opts, hw_name: "" }.scratch_bytes();
        let budget = scratch + (total as f64 * (0.05 + 0.8 * rng.unit())) as u64;
        opts.gpu_mem_bytes = budget;
        let ctx = Ctx { g: &g, cost: &cost, opts: &opts, hw_name: &hw.name };
        let plan = make_plan(PolicyKind::Auto, &g, &cost, &opts, &hw.name).unwrap();
        let auto_s = ctx.request_seconds(&plan).unwrap();
        let best_s = exhaustive_best(&ctx);
        let ratio = auto_s / best_s;
        ratios.push(ratio);
        eprintln!(
            "case {case:>2}: {:>2} tasks ({} layer(s), {} experts) on {:<13} budget {:>5.2} GB: auto {:.4} s, exhaustive {:.4} s, ratio {ratio:.4}",
            g.tasks.len(),
            shape.n_layer,
            shape.n_expert,
            hw.name,
            budget as f64 / 1e9,
            auto_s,
            best_s
        );
        worst = worst.max(ratio);
        assert!(ratio <= 1.02, "case {case}: auto {auto_s} vs exhaustive {best_s}");
        assert!(ratio >= 1.0 - 1e-9, "auto cannot beat exhaustive search: {auto_s} < {best_s}");
    }
    let mean = ratios.iter().sum::<f64>() / ratios.len() as f64;
    eprintln!("auto / exhaustive over {} instances: mean {mean:.4}, worst {worst:.4}", ratios.len());
}
