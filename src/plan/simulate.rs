//! Event-driven timeline of one step on three lanes (CPU compute, GPU compute, PCIe H2D).
//!
//! Each lane runs its operations in the order given, one at a time; an operation starts when its
//! lane is free and every dependency has ended (plus the edge's delay, e.g. an activation hop).
//! CPU and PCIe operations read host DRAM: while they overlap, their combined read rate is capped
//! at the DRAM bandwidth and shared in proportion to what each would draw alone (a fluid model).

use serde::{Deserialize, Serialize};

use super::PlanError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lane {
    Cpu,
    Gpu,
    Pcie,
}

pub const LANES: [Lane; 3] = [Lane::Cpu, Lane::Gpu, Lane::Pcie];

impl Lane {
    pub fn index(self) -> usize {
        match self {
            Lane::Cpu => 0,
            Lane::Gpu => 1,
            Lane::Pcie => 2,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Lane::Cpu => "cpu",
            Lane::Gpu => "gpu",
            Lane::Pcie => "pcie",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Op {
    pub lane: Lane,
    /// The task it belongs to, if any.
    pub task: Option<usize>,
    pub label: String,
    /// Seconds when running alone.
    pub dur: f64,
    /// Host DRAM bytes it reads (CPU and PCIe lanes).
    pub host_bytes: f64,
    /// (op index, delay after that op's end); indices must be smaller than this op's.
    pub deps: Vec<(usize, f64)>,
    /// The staging slot a streamed task's copy fills and its GPU compute reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<u32>,
    /// Tokens the task processes (for an expert: the tokens routed to it).
    #[serde(default)]
    pub tokens: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timeline {
    pub ops: Vec<Op>,
    pub start: Vec<f64>,
    pub end: Vec<f64>,
    pub makespan: f64,
    /// Busy seconds per lane (cpu, gpu, pcie).
    pub busy: [f64; 3],
}

impl Timeline {
    pub fn utilisation(&self) -> [f64; 3] {
        let m = self.makespan.max(1e-15);
        [self.busy[0] / m, self.busy[1] / m, self.busy[2] / m]
    }
}

const EPS: f64 = 1e-12;

/// Runs the operations to completion. Fails on a forward dependency (which could deadlock).
pub fn simulate(ops: Vec<Op>, dram_gbs: f64) -> Result<Timeline, PlanError> {
    let n = ops.len();
    for (i, op) in ops.iter().enumerate() {
        if let Some(&(d, _)) = op.deps.iter().find(|&&(d, _)| d >= i) {
            return Err(PlanError::Simulation(format!("op {i} ({}) depends on later op {d}", op.label)));
        }
        if !(op.dur.is_finite() && op.dur >= 0.0) {
            return Err(PlanError::Simulation(format!("op {i} ({}) has duration {}", op.label, op.dur)));
        }
    }
    let queues: Vec<Vec<usize>> =
        LANES.iter().map(|&l| (0..n).filter(|&i| ops[i].lane == l).collect()).collect();
    let mut head = [0usize; 3];
    let mut running: [Option<(usize, f64)>; 3] = [None; 3]; // (op, fraction left)
    let mut start = vec![f64::NAN; n];
    let mut end = vec![f64::NAN; n];
    let mut done = 0usize;
    let mut t = 0.0f64;
    let dram = dram_gbs * 1e9;
    while done < n {
        // Start whatever can start now; remember the earliest future ready time.
        let mut next_ready = f64::INFINITY;
        for l in 0..3 {
            if running[l].is_some() || head[l] >= queues[l].len() {
                continue;
            }
            let i = queues[l][head[l]];
            let ready = ops[i].deps.iter().try_fold(0.0f64, |acc, &(d, delay)| {
                if end[d].is_nan() {
                    None
                } else {
                    Some(acc.max(end[d] + delay))
                }
            });
            match ready {
                Some(r) if r <= t + EPS => {
                    start[i] = t;
                    running[l] = Some((i, 1.0));
                }
                Some(r) => next_ready = next_ready.min(r),
                None => {}
            }
        }
        // Zero-length operations end where they start.
        let mut progressed = false;
        for l in 0..3 {
            if let Some((i, _)) = running[l] {
                if ops[i].dur <= EPS {
                    end[i] = t;
                    running[l] = None;
                    head[l] += 1;
                    done += 1;
                    progressed = true;
                }
            }
        }
        if progressed {
            continue;
        }
        // Rates: host readers share DRAM in proportion to their solo demand.
        let demand: f64 = running
            .iter()
            .flatten()
            .filter(|(i, _)| ops[*i].lane != Lane::Gpu)
            .map(|(i, _)| ops[*i].host_bytes / ops[*i].dur)
            .sum();
        let share = if demand > dram && dram > 0.0 { dram / demand } else { 1.0 };
        let rate = |i: usize| if ops[i].lane == Lane::Gpu { 1.0 / ops[i].dur } else { share / ops[i].dur };
        let mut dt = next_ready - t;
        for (i, left) in running.iter().flatten() {
            dt = dt.min(left / rate(*i));
        }
        if !dt.is_finite() {
            return Err(PlanError::Simulation(format!("deadlock at t={t:.6}s with {} of {n} done", done)));
        }
        let dt = dt.max(0.0);
        t += dt;
        for l in 0..3 {
            if let Some((i, left)) = running[l] {
                let left = left - rate(i) * dt;
                if left <= 1e-9 {
                    end[i] = t;
                    running[l] = None;
                    head[l] += 1;
                    done += 1;
                } else {
                    running[l] = Some((i, left));
                }
            }
        }
    }
    let mut busy = [0.0; 3];
    for i in 0..n {
        busy[ops[i].lane.index()] += end[i] - start[i];
    }
    let makespan = end.iter().copied().fold(0.0, f64::max);
    Ok(Timeline { ops, start, end, makespan, busy })
}

/// Checks the timeline's invariants; returns the first violation.
pub fn check(tl: &Timeline) -> Result<(), String> {
    for (i, op) in tl.ops.iter().enumerate() {
        if tl.end[i] + 1e-12 < tl.start[i] {
            return Err(format!("op {i} ends before it starts"));
        }
        for &(d, delay) in &op.deps {
            if tl.start[i] + 1e-9 < tl.end[d] + delay {
                return Err(format!(
                    "op {i} starts at {} before dep {d} ends at {} (+{delay})",
                    tl.start[i], tl.end[d]
                ));
            }
        }
    }
    for l in LANES {
        let mut last_end = 0.0f64;
        for (i, op) in tl.ops.iter().enumerate() {
            if op.lane != l {
                continue;
            }
            if tl.start[i] + 1e-9 < last_end {
                return Err(format!("lane {} runs op {i} while another is running", l.name()));
            }
            last_end = tl.end[i];
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(lane: Lane, dur: f64, host_bytes: f64, deps: Vec<(usize, f64)>) -> Op {
        Op { lane, task: None, label: String::new(), dur, host_bytes, deps, slot: None, tokens: 0 }
    }

    #[test]
    fn independent_lanes_overlap_and_dependencies_serialise() {
        let ops = vec![
            op(Lane::Cpu, 2.0, 0.0, vec![]),
            op(Lane::Gpu, 3.0, 0.0, vec![]),
            op(Lane::Gpu, 1.0, 0.0, vec![(0, 0.5)]),
        ];
        let tl = simulate(ops, 100.0).unwrap();
        assert_eq!(tl.start, vec![0.0, 0.0, 3.0]);
        assert!((tl.makespan - 4.0).abs() < 1e-9);
        check(&tl).unwrap();
    }

    #[test]
    fn host_readers_share_dram() {
        // Alone: CPU reads 40 GB in 1 s (40 GB/s), PCIe 20 GB in 1 s. DRAM 30 GB/s: both slow to half
        // while overlapping (demand 60), so the 60 GB take 2 s in total, as bytes / DRAM says.
        let ops = vec![op(Lane::Cpu, 1.0, 40e9, vec![]), op(Lane::Pcie, 1.0, 20e9, vec![])];
        let tl = simulate(ops, 30.0).unwrap();
        assert!((tl.end[0] - 2.0).abs() < 1e-9 && (tl.end[1] - 2.0).abs() < 1e-9, "{:?}", tl.end);
        // One alone is not slowed.
        let tl = simulate(vec![op(Lane::Cpu, 1.0, 25e9, vec![])], 30.0).unwrap();
        assert!((tl.makespan - 1.0).abs() < 1e-9);
    }

    #[test]
    fn forward_dependencies_are_rejected() {
        let ops = vec![op(Lane::Cpu, 1.0, 0.0, vec![(1, 0.0)]), op(Lane::Gpu, 1.0, 0.0, vec![])];
        assert!(simulate(ops, 10.0).is_err());
    }
}
