//! The adaptive hot-expert cache: which routed experts stay GPU-resident follows their measured
//! popularity. Every step adds its tokens per (layer, expert) to a decaying count; when the most
//! popular host expert has clearly overtaken the least popular resident one (by a ratio and a
//! margin: hysteresis, so two experts of equal weight do not trade places back and forth), the two
//! swap — the resident one is dropped and the other copied in on the copy lane at the start of the
//! next step, where in decode that lane is idle. The plan's static choice is where it starts.

use crate::plan::tasks::{TaskGraph, TaskKind};
use crate::plan::Plan;

/// Each step keeps this fraction of the counts before it.
const DECAY: f64 = 0.9;
/// A host expert must be this many times as popular as the resident one it replaces...
const RATIO: f64 = 1.5;
/// ... and ahead by this many (decayed) tokens.
const MARGIN: f64 = 1.0;

pub struct HotExperts {
    /// Decayed tokens per (layer, expert).
    popularity: Vec<Vec<f64>>,
    swaps: u64,
}

/// One swap: `evict` leaves the GPU, `admit` comes in (task ids).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Swap {
    pub evict: usize,
    pub admit: usize,
}

impl HotExperts {
    pub fn new(g: &TaskGraph) -> HotExperts {
        let n_expert = g.shape.n_expert as usize;
        HotExperts { popularity: vec![vec![0.0; n_expert]; g.layers.len()], swaps: 0 }
    }

    pub fn swaps(&self) -> u64 {
        self.swaps
    }

    /// Adds one step's tokens per expert (`routed[layer][expert]`).
    pub fn observe(&mut self, routed: &[Vec<u64>]) {
        for (pop, counts) in self.popularity.iter_mut().zip(routed) {
            for (p, &c) in pop.iter_mut().zip(counts) {
                *p = *p * DECAY + c as f64;
            }
        }
    }

    /// The swap worth making under `plan`, if any (at most one per step keeps the copy lane's
    /// extra work small).
    pub fn choose(&self, plan: &Plan, g: &TaskGraph) -> Option<Swap> {
        let mut hottest_host: Option<(f64, usize)> = None;
        let mut coldest_resident: Option<(f64, usize)> = None;
        for (layer, pop) in self.popularity.iter().enumerate() {
            for (e, &p) in pop.iter().enumerate() {
                let Some(&task) = g.layers[layer].ffn.get(e) else { continue };
                if !matches!(g.tasks[task].kind, TaskKind::Expert { .. }) {
                    continue;
                }
                let slot = if plan.resident(task) { &mut coldest_resident } else { &mut hottest_host };
                let better = match slot {
                    None => true,
                    Some((q, _)) if plan.resident(task) => p < *q,
                    Some((q, _)) => p > *q,
                };
                if better {
                    *slot = Some((p, task));
                }
            }
        }
        let ((hot, admit), (cold, evict)) = (hottest_host?, coldest_resident?);
        (hot > cold * RATIO + MARGIN && g.tasks[admit].bytes == g.tasks[evict].bytes)
            .then_some(Swap { evict, admit })
    }

    /// Makes the swap in `plan` (the executor moves the weights).
    pub fn apply(&mut self, plan: &mut Plan, swap: Swap) {
        plan.placements[swap.evict].gpu_resident = false;
        plan.placements[swap.evict].reason = "host: evicted by the hot-expert cache (less popular)".into();
        plan.placements[swap.admit].gpu_resident = true;
        plan.placements[swap.admit].reason = "GPU: admitted by the hot-expert cache (popular)".into();
        self.swaps += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::cost::CostModel;
    use crate::plan::policy::{make_plan, PolicyKind, PolicyOptions};
    use crate::plan::presets::preset;
    use crate::plan::shapes::{ModelShape, WeightType};
    use crate::plan::workload::{Popularity, Workload};

    fn setup() -> (TaskGraph, Plan) {
        let s = ModelShape::named("mixtral-8x7b", WeightType::F16).unwrap();
        let g = TaskGraph::build(&s, 1, 1024);
        let hw = preset("rtx4090-ddr5").unwrap();
        let cost = CostModel::new(&hw, WeightType::F16, true);
        let opts = PolicyOptions {
            gpu_mem_bytes: 24 << 30,
            workload: Workload::default(),
            popularity: Popularity::uniform(s.n_layer, s.n_expert),
            ngl: None,
            n_cpu_moe: None,
            min_batch: 32,
            slots: None,
            forced: Vec::new(),
        };
        let plan = make_plan(PolicyKind::Auto, &g, &cost, &opts, "x").unwrap();
        (g, plan)
    }

    #[test]
    fn a_clearly_hotter_host_expert_replaces_the_coldest_resident_one_once() {
        let (g, mut plan) = setup();
        let mut hot = HotExperts::new(&g);
        let experts = |l: usize| g.layers[l].ffn.clone();
        let resident: Vec<usize> = (0..32).flat_map(experts).filter(|&t| plan.resident(t)).collect();
        let host: Vec<usize> = (0..32).flat_map(experts).filter(|&t| !plan.resident(t)).collect();
        assert!(!resident.is_empty() && !host.is_empty(), "a 24 GiB plan of Mixtral splits its experts");
        // Every expert gets one token a step, except one host expert that gets three.
        let (hl, he) =
            (g.tasks[host[0]].layer as usize, host[0] - g.layers[g.tasks[host[0]].layer as usize].ffn[0]);
        let mut routed = vec![vec![1u64; 8]; 32];
        routed[hl][he] = 3;
        for _ in 0..20 {
            hot.observe(&routed);
        }
        let swap = hot.choose(&plan, &g).expect("a swap");
        assert_eq!(swap.admit, host[0]);
        assert!(plan.resident(swap.evict));
        hot.apply(&mut plan, swap);
        assert!(plan.resident(host[0]) && !plan.resident(swap.evict));
        // Equal popularity now: hysteresis keeps the cache as it is.
        let routed = vec![vec![1u64; 8]; 32];
        for _ in 0..50 {
            hot.observe(&routed);
        }
        assert_eq!(hot.choose(&plan, &g), None);
        assert_eq!(hot.swaps(), 1);
    }
}
