//! The partition plan: which sub-layer tasks live on the GPU, which run on the CPU and which are
//! streamed over PCIe, chosen from a hardware profile and a workload, with a reason for each.
//!
//! The plan is a plain value: it never launches anything. [`predict`] runs it through the
//! event-driven simulator ([`simulate`]) to give prefill and decode tokens per second.
//!
//! - [`profile`], [`presets`]: hardware figures (measured or named); [`probe`]: our kernels' rates;
//! - [`shapes`], [`tasks`]: model → tasks with bytes and flops;
//! - [`cost`]: seconds per task on each lane;
//! - [`policy`]: `layers` (llama.cpp), `fiddler`, `auto` (ours);
//! - [`overrides`]: llama.cpp's `-ot` patterns as forced placements;
//! - [`assign`]: the run-time CPU-or-stream choice; [`step`]: one step as lane operations;
//! - [`simulate`]: the timeline; [`print`]: text, JSON and SVG.

pub mod assign;
pub mod cost;
pub mod overrides;
pub mod policy;
pub mod presets;
pub mod print;
pub mod probe;
pub mod profile;
pub mod shapes;
pub mod simulate;
pub mod step;
pub mod tasks;
pub mod workload;

use serde::{Deserialize, Serialize};

pub use policy::{make_plan, PolicyKind, PolicyOptions};
pub use workload::{predict, Popularity, Prediction, Workload};

/// Sizes (`--gpu-mem`) are read as everywhere else in rs-llama: binary units, `24GB` = 24 GiB (see
/// [`crate::gpu::parse_size`], the one definition).
pub use crate::gpu::parse_size;

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("{0}")]
    BadArg(String),
    #[error("model: {0}")]
    BadModel(String),
    #[error("GGUF: {0}")]
    Gguf(#[from] gguf::GgufError),
    #[error("does not fit: {0}")]
    NoFit(String),
    #[error("simulator: {0}")]
    Simulation(String),
}

/// How a plan's host-resident tasks are run at each step.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum ExecRule {
    /// Ours: three concurrent lanes; each host task goes to the CPU or is streamed by
    /// [`assign::route`]; streamed weights are prefetched into `slots` staging slots.
    Overlap { slots: u32, slot_bytes: u64 },
    /// llama.cpp: ops run one after another; an op with host weights runs on the GPU after a
    /// synchronous copy when the batch is at least `min_batch` tokens, else on the CPU.
    Serial { min_batch: u64 },
    /// Fiddler: per expert, CPU iff n·t_cpu(1) ≤ t_copy + t_gpu(n); one placeholder slot, copies
    /// block the host thread; CPU experts run after the layer's GPU work is issued.
    Fiddler { slot_bytes: u64 },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Placement {
    pub task: usize,
    pub name: String,
    pub bytes: u64,
    /// GPU bytes while resident (attention: weights + KV cache).
    pub footprint: u64,
    pub gpu_resident: bool,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub policy: PolicyKind,
    pub model: String,
    pub hw: String,
    pub gpu_mem_bytes: u64,
    /// Sum of footprints of GPU-resident tasks.
    pub gpu_resident_bytes: u64,
    pub staging_bytes: u64,
    /// Activations and logits of one micro-batch.
    pub scratch_bytes: u64,
    pub exec: ExecRule,
    /// Policy-level choices (`-ngl 33 --n-cpu-moe 20`, staging slots, ...).
    pub summary: String,
    /// One per task, in task order.
    pub placements: Vec<Placement>,
}

impl Plan {
    pub fn resident(&self, task: usize) -> bool {
        self.placements.get(task).is_some_and(|p| p.gpu_resident)
    }

    pub fn gpu_used_bytes(&self) -> u64 {
        self.gpu_resident_bytes + self.staging_bytes + self.scratch_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_units_as_in_rs_llama() {
        assert_eq!(parse_size("24GB").unwrap(), 24 << 30);
        assert_eq!(parse_size("24GiB").unwrap(), 24 << 30);
        assert_eq!(parse_size("24G").unwrap(), 24 << 30);
        assert_eq!(parse_size("1.5G").unwrap(), 3 << 29);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        // A CPU-only plan (compare/plan-vs-bench.sh).
        assert_eq!(parse_size("0").unwrap(), 0);
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("GB").is_err());
    }
}
