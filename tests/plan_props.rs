//! Property tests of the planner over seeded random instances: no plan exceeds its GPU budget,
//! every task is placed exactly once, and every simulated timeline respects its dependencies and
//! runs one operation at a time per lane.

#[path = "plan_common/mod.rs"]
mod common;

use rs_llama::plan::cost::CostModel;
use rs_llama::plan::presets::preset;
use rs_llama::plan::shapes::{ModelShape, WeightType};
use rs_llama::plan::simulate::{check, simulate};
use rs_llama::plan::step::build_step;
use rs_llama::plan::tasks::TaskGraph;
use rs_llama::plan::workload::{steps, Rng};
use rs_llama::plan::{make_plan, PolicyKind, PolicyOptions, Popularity, Workload};

const PRESETS: [&str; 5] = ["rtx3090-ddr4", "rtx3090-ddr5", "rtx4090-ddr4", "rtx4090-ddr5", "h100-pcie5"];
const POLICIES: [PolicyKind; 3] = [PolicyKind::Layers, PolicyKind::Fiddler, PolicyKind::Auto];

fn check_instance(shape: &ModelShape, hw_name: &str, budget: u64, w: Workload, skew: f64, seed: u64) {
    let hw = preset(hw_name).unwrap();
    let g = TaskGraph::build(shape, 3, w.prompt + w.gen);
    let cost = CostModel::new(&hw, shape.wtype, !seed.is_multiple_of(3));
    let popularity = if skew > 0.0 {
        Popularity::zipf(shape.n_layer, shape.n_expert, skew, seed)
    } else {
        Popularity::uniform(shape.n_layer, shape.n_expert)
    };
    let opts = PolicyOptions {
        gpu_mem_bytes: budget,
        workload: w,
        popularity,
        ngl: None,
        n_cpu_moe: None,
        min_batch: 32,
        slots: None,
        forced: Vec::new(),
    };
    for policy in POLICIES {
        let what = format!("{} {hw_name} budget {budget} {:?} {policy:?}", shape.name, w);
        let plan = make_plan(policy, &g, &cost, &opts, hw_name).unwrap_or_else(|e| panic!("{what}: {e}"));
        // Budget.
        assert!(plan.gpu_used_bytes() <= budget, "{what}: uses {} of {budget}", plan.gpu_used_bytes());
        let resident: u64 = plan.placements.iter().filter(|p| p.gpu_resident).map(|p| p.footprint).sum();
        assert_eq!(resident, plan.gpu_resident_bytes, "{what}");
        // Exactly once.
        assert_eq!(plan.placements.len(), g.tasks.len(), "{what}");
        for (i, p) in plan.placements.iter().enumerate() {
            assert_eq!(p.task, i, "{what}");
            assert!(!p.reason.is_empty(), "{what}: task {i} has no reason");
        }
        // Timelines, and every task with work in a step appears in it exactly once as compute.
        let (prefill, decode) = steps(&g, &opts.popularity, &w);
        for st in prefill.iter().chain(decode.iter()) {
            let ops = build_step(&plan, &g, &cost, st);
            let mut computed = vec![0u32; g.tasks.len()];
            for op in ops.iter().filter(|o| o.lane != rs_llama::plan::simulate::Lane::Pcie) {
                computed[op.task.unwrap()] += 1;
            }
            for (i, t) in g.tasks.iter().enumerate() {
                let expected = match t.kind {
                    rs_llama::plan::tasks::TaskKind::Expert { expert } => {
                        st.routed[t.layer as usize][expert as usize] > 0
                    }
                    _ => true,
                };
                assert_eq!(
                    computed[i],
                    u32::from(expected),
                    "{what}: task {} computed {} times",
                    t.name,
                    computed[i]
                );
            }
            let tl = simulate(ops, cost.dram_gbs).unwrap();
            check(&tl).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert!(tl.makespan > 0.0);
        }
    }
}

#[test]
fn random_small_instances_respect_budget_placement_and_timelines() {
    let mut rng = Rng(0xC0FFEE);
    for case in 0..40 {
        let shape = common::small_shape(&mut rng, 30);
        let g = TaskGraph::build(&shape, 3, 1024);
        let total = g.total_bytes();
        let budget = (total as f64 * (0.05 + 0.9 * rng.unit())) as u64 + 400_000_000;
        let w = Workload {
            prompt: [1, 40, 512, 700][(rng.next_u64() % 4) as usize],
            gen: [1, 16, 128][(rng.next_u64() % 3) as usize],
            ubatch: [64, 512][(rng.next_u64() % 2) as usize],
            decode_samples: 3,
            seed: case,
        };
        let skew = if rng.next_u64().is_multiple_of(2) { 0.0 } else { 1.2 };
        check_instance(&shape, PRESETS[(rng.next_u64() % 5) as usize], budget, w, skew, case);
    }
}

#[test]
fn named_moe_shapes_respect_budget_placement_and_timelines() {
    let w = Workload { prompt: 512, gen: 32, ubatch: 512, decode_samples: 2, seed: 1 };
    for (name, hw, gb) in [("qwen1.5-moe-a2.7b", "rtx3090-ddr4", 8u64), ("mixtral-8x7b", "rtx4090-ddr5", 24)]
    {
        let s = ModelShape::named(name, WeightType::F16).unwrap();
        check_instance(&s, hw, gb * 1_000_000_000, w, 0.8, 5);
    }
}

#[test]
fn a_budget_too_small_for_anything_keeps_everything_on_the_host() {
    let s = ModelShape::named("llama-2-13b", WeightType::Bf16).unwrap();
    let hw = preset("rtx4090-ddr4").unwrap();
    let g = TaskGraph::build(&s, 4, 640);
    let cost = CostModel::new(&hw, s.wtype, true);
    let w = Workload { prompt: 128, gen: 8, ubatch: 512, decode_samples: 1, seed: 1 };
    let opts = PolicyOptions {
        gpu_mem_bytes: 1_000_000,
        workload: w,
        popularity: Popularity::uniform(40, 0),
        ngl: None,
        n_cpu_moe: None,
        min_batch: 32,
        slots: None,
        forced: Vec::new(),
    };
    for policy in POLICIES {
        let plan = make_plan(policy, &g, &cost, &opts, "x").unwrap();
        assert_eq!(plan.gpu_resident_bytes, 0, "{policy:?}");
    }
}
