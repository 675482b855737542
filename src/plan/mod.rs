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
//! - [`assign`]: the run-time CPU-or-stream choice; [`step`]: one step as lane operations;
//! - [`simulate`]: the timeline; [`print`]: text, JSON and SVG.

pub mod assign;
pub mod cost;
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

/// Parses `24GB` (1e9), `24GiB`/`24G` (2^30), `512MiB`, `1.5T`, or a plain byte count.
pub fn parse_size(text: &str) -> Result<u64, PlanError> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num.parse().map_err(|_| PlanError::BadArg(format!("bad size '{text}'")))?;
    let mult = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        "k" | "kib" => 1024.0,
        "m" | "mib" => 1024.0 * 1024.0,
        "g" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tib" => 1024.0f64.powi(4),
        _ => return Err(PlanError::BadArg(format!("bad size unit in '{text}'"))),
    };
    Ok((value * mult).round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_decimal_and_binary_units() {
        assert_eq!(parse_size("24GB").unwrap(), 24_000_000_000);
        assert_eq!(parse_size("24GiB").unwrap(), 24 << 30);
        assert_eq!(parse_size("1.5G").unwrap(), 3 << 29);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("GB").is_err());
    }
}
