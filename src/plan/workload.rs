//! The workload (prompt and generation lengths), expert popularity and token routing, and the
//! prediction of a plan's prefill and decode speed through the simulator.

use serde::{Deserialize, Serialize};

use super::cost::CostModel;
use super::simulate::{simulate, Timeline};
use super::step::{build_step, StepSpec};
use super::tasks::TaskGraph;
use super::{Plan, PlanError};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Workload {
    pub prompt: u64,
    pub gen: u64,
    /// Prompt tokens per step (llama.cpp's -ub).
    pub ubatch: u64,
    /// Sampled decode steps averaged per prediction.
    pub decode_samples: u32,
    pub seed: u64,
}

impl Default for Workload {
    fn default() -> Self {
        Workload { prompt: 512, gen: 128, ubatch: 512, decode_samples: 8, seed: 0x5eed }
    }
}

/// Probability that a token picks each expert, per layer (each row sums to 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Popularity {
    pub per_layer: Vec<Vec<f64>>,
}

impl Popularity {
    pub fn uniform(n_layer: u32, n_expert: u32) -> Popularity {
        let row = vec![1.0 / f64::from(n_expert.max(1)); n_expert as usize];
        Popularity { per_layer: vec![row; n_layer as usize] }
    }

    /// Zipf-like skew `p ∝ 1/(rank+1)^s`, with a seeded different ranking in every layer.
    pub fn zipf(n_layer: u32, n_expert: u32, s: f64, seed: u64) -> Popularity {
        let mut rng = Rng(seed | 1);
        let per_layer = (0..n_layer)
            .map(|_| {
                let mut order: Vec<usize> = (0..n_expert as usize).collect();
                for i in (1..order.len()).rev() {
                    order.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
                }
                let mut row = vec![0.0; n_expert as usize];
                for (rank, &e) in order.iter().enumerate() {
                    row[e] = 1.0 / (rank as f64 + 1.0).powf(s);
                }
                let sum: f64 = row.iter().sum();
                row.iter().map(|p| p / sum).collect()
            })
            .collect();
        Popularity { per_layer }
    }

    pub fn get(&self, layer: u32, expert: usize) -> f64 {
        self.per_layer.get(layer as usize).and_then(|r| r.get(expert)).copied().unwrap_or(0.0)
    }

    /// Probability that an expert gets at least one of `n` tokens' top-k picks (approximation:
    /// k independent draws per token).
    pub fn p_active(&self, layer: u32, expert: usize, k: u32, n: u64) -> f64 {
        let p = self.get(layer, expert).min(1.0);
        1.0 - (1.0 - p).powf(f64::from(k) * n as f64)
    }

    /// Expected tokens per expert for a batch of `n` (largest remainder, so the counts sum to n·k).
    pub fn expected_counts(&self, layer: u32, k: u32, n: u64) -> Vec<u64> {
        let row = &self.per_layer[layer as usize];
        let total = n * u64::from(k);
        let exact: Vec<f64> = row.iter().map(|p| (p * total as f64).min(n as f64)).collect();
        let mut counts: Vec<u64> = exact.iter().map(|x| x.floor() as u64).collect();
        let mut order: Vec<usize> = (0..row.len()).collect();
        order.sort_by(|&a, &b| (exact[b] - exact[b].floor()).total_cmp(&(exact[a] - exact[a].floor())));
        let mut left = total.saturating_sub(counts.iter().sum());
        for &e in order.iter().cycle().take(row.len() * 4) {
            if left == 0 {
                break;
            }
            if counts[e] < n {
                counts[e] += 1;
                left -= 1;
            }
        }
        counts
    }

    /// One token's k distinct experts, drawn by popularity.
    pub fn sample_one(&self, layer: u32, k: u32, rng: &mut Rng) -> Vec<u64> {
        let row = &self.per_layer[layer as usize];
        let mut counts = vec![0u64; row.len()];
        for _ in 0..k.min(row.len() as u32) {
            let free: f64 = row.iter().zip(&counts).filter(|(_, &c)| c == 0).map(|(p, _)| p).sum();
            let mut x = rng.unit() * free;
            let mut pick = None;
            for (e, p) in row.iter().enumerate() {
                if counts[e] == 0 {
                    pick = Some(e);
                    x -= p;
                    if x <= 0.0 {
                        break;
                    }
                }
            }
            if let Some(e) = pick {
                counts[e] = 1;
            }
        }
        counts
    }
}

/// xorshift64*: small, seeded, good enough for routing samples.
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    pub prefill_tps: f64,
    pub decode_tps: f64,
    pub prefill_s: f64,
    pub decode_step_s: f64,
    /// Expected seconds for one request: prefill + gen × decode step.
    pub request_s: f64,
    /// Busy fraction of (cpu, gpu, pcie) in the first prefill chunk and a decode step.
    pub prefill_util: [f64; 3],
    pub decode_util: [f64; 3],
}

/// The steps a workload runs: prefill chunks, then sampled decode steps at the mean context.
pub fn steps(g: &TaskGraph, pop: &Popularity, w: &Workload) -> (Vec<StepSpec>, Vec<StepSpec>) {
    let s = &g.shape;
    let ub = w.ubatch.max(1);
    let mut prefill = Vec::new();
    let mut done = 0;
    while done < w.prompt {
        let n = ub.min(w.prompt - done);
        let routed =
            (0..s.n_layer)
                .map(|l| if s.is_moe() { pop.expected_counts(l, s.n_expert_used, n) } else { vec![] });
        prefill.push(StepSpec { n_tokens: n, ctx: done, routed: routed.collect(), predicted: Vec::new() });
        done += n;
    }
    let mut rng = Rng(w.seed | 1);
    let ctx = w.prompt + w.gen / 2;
    let decode = (0..w.decode_samples.max(1))
        .map(|_| {
            let routed = (0..s.n_layer).map(|l| {
                if s.is_moe() {
                    pop.sample_one(l, s.n_expert_used, &mut rng)
                } else {
                    vec![]
                }
            });
            StepSpec { n_tokens: 1, ctx, routed: routed.collect(), predicted: Vec::new() }
        })
        .collect();
    (prefill, decode)
}

pub fn run_step(
    plan: &Plan,
    g: &TaskGraph,
    cost: &CostModel,
    step: &StepSpec,
) -> Result<Timeline, PlanError> {
    simulate(build_step(plan, g, cost, step), cost.dram_gbs)
}

/// Simulates the workload's steps under the plan.
pub fn predict(
    plan: &Plan,
    g: &TaskGraph,
    cost: &CostModel,
    pop: &Popularity,
    w: &Workload,
) -> Result<Prediction, PlanError> {
    let (prefill, decode) = steps(g, pop, w);
    let mut prefill_s = 0.0;
    let mut prefill_util = [0.0; 3];
    for (i, st) in prefill.iter().enumerate() {
        let tl = run_step(plan, g, cost, st)?;
        prefill_s += tl.makespan;
        if i == 0 {
            prefill_util = tl.utilisation();
        }
    }
    let mut decode_s = 0.0;
    let mut decode_util = [0.0; 3];
    for st in &decode {
        let tl = run_step(plan, g, cost, st)?;
        decode_s += tl.makespan;
        let u = tl.utilisation();
        for l in 0..3 {
            decode_util[l] += u[l] / decode.len() as f64;
        }
    }
    let decode_step_s = decode_s / decode.len() as f64;
    Ok(Prediction {
        prefill_tps: if prefill_s > 0.0 { w.prompt as f64 / prefill_s } else { 0.0 },
        decode_tps: 1.0 / decode_step_s,
        prefill_s,
        decode_step_s,
        request_s: prefill_s + w.gen as f64 * decode_step_s,
        prefill_util,
        decode_util,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_counts_sum_to_n_times_k_and_respect_the_cap() {
        let pop = Popularity::zipf(2, 8, 1.2, 7);
        for n in [1, 3, 17, 512] {
            let c = pop.expected_counts(1, 2, n);
            assert_eq!(c.iter().sum::<u64>(), 2 * n);
            assert!(c.iter().all(|&x| x <= n));
        }
    }

    #[test]
    fn samples_pick_k_distinct_experts_with_popularity_frequencies() {
        let pop = Popularity::zipf(1, 4, 1.0, 3);
        let mut rng = Rng(11);
        let mut hits = [0u64; 4];
        let trials = 20000;
        for _ in 0..trials {
            let c = pop.sample_one(0, 1, &mut rng);
            assert_eq!(c.iter().sum::<u64>(), 1);
            for (h, x) in hits.iter_mut().zip(&c) {
                *h += x;
            }
        }
        for (e, &h) in hits.iter().enumerate() {
            let f = h as f64 / trials as f64;
            assert!((f - pop.get(0, e)).abs() < 0.015, "expert {e}: {f} vs {}", pop.get(0, e));
        }
        let two = pop.sample_one(0, 2, &mut rng);
        assert_eq!(two.iter().filter(|&&c| c == 1).count(), 2);
    }
}
