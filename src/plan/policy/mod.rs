//! Placement policies: `layers` (llama.cpp), `fiddler`, `auto` (ours). Each returns a [`Plan`]
//! whose every task carries a reason.

pub mod auto;
pub mod fiddler;
pub mod layers;

use serde::{Deserialize, Serialize};

use super::cost::CostModel;
use super::tasks::TaskGraph;
use super::workload::{predict, Popularity, Workload};
use super::{ExecRule, Placement, Plan, PlanError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicyKind {
    Auto,
    Layers,
    Fiddler,
}

impl PolicyKind {
    pub fn parse(s: &str) -> Result<PolicyKind, PlanError> {
        match s {
            "auto" => Ok(PolicyKind::Auto),
            "layers" => Ok(PolicyKind::Layers),
            "fiddler" => Ok(PolicyKind::Fiddler),
            _ => Err(PlanError::BadArg(format!("unknown policy '{s}' (auto, layers, fiddler)"))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            PolicyKind::Auto => "auto",
            PolicyKind::Layers => "layers",
            PolicyKind::Fiddler => "fiddler",
        }
    }
}

#[derive(Debug, Clone)]
pub struct PolicyOptions {
    pub gpu_mem_bytes: u64,
    pub workload: Workload,
    pub popularity: Popularity,
    /// `layers`: llama.cpp's -ngl (None: the best for the budget).
    pub ngl: Option<u32>,
    /// `layers`: llama.cpp's --n-cpu-moe (None: the best for the budget).
    pub n_cpu_moe: Option<u32>,
    /// `layers`: GGML_OP_OFFLOAD_MIN_BATCH.
    pub min_batch: u64,
    /// `auto`: exactly this many staging slots (None: the best of 0–4).
    pub slots: Option<u32>,
    /// `-ot`: per task, forced onto the GPU (`Some(true)`) or kept in host memory (`Some(false)`);
    /// empty: nothing forced (see [`crate::plan::overrides`]).
    pub forced: Vec<Option<bool>>,
}

/// What every policy works from.
pub struct Ctx<'a> {
    pub g: &'a TaskGraph,
    pub cost: &'a CostModel,
    pub opts: &'a PolicyOptions,
    pub hw_name: &'a str,
}

impl Ctx<'_> {
    /// GPU bytes for one micro-batch's activations (f32): residual stream, attention and FFN
    /// intermediates, and logits for every row of it (as the session allocates them).
    pub fn scratch_bytes(&self) -> u64 {
        if !self.cost.has_gpu() {
            return 0;
        }
        let s = &self.g.shape;
        let widest = s.n_ff.max(s.n_ff_shexp).max(u64::from(s.n_expert_used) * s.n_ff_exp);
        4 * self.opts.workload.ubatch * (8 * s.n_embd + 3 * widest + s.n_vocab)
    }

    /// What `-ot` says of task `id`.
    pub fn forced(&self, id: usize) -> Option<bool> {
        self.opts.forced.get(id).copied().flatten()
    }

    /// GPU memory the policy may fill (0 without a GPU).
    pub fn budget(&self) -> u64 {
        if self.cost.has_gpu() {
            self.opts.gpu_mem_bytes
        } else {
            0
        }
    }

    pub fn resident_bytes(&self, resident: &[bool]) -> u64 {
        (0..resident.len()).filter(|&i| resident[i]).map(|i| self.g.footprint(i)).sum()
    }

    /// Assembles a plan; fails if it does not fit the budget.
    pub fn assemble(
        &self,
        policy: PolicyKind,
        resident: &[bool],
        reasons: Vec<String>,
        exec: ExecRule,
        staging_bytes: u64,
        summary: String,
    ) -> Result<Plan, PlanError> {
        let placements = self
            .g
            .tasks
            .iter()
            .zip(reasons)
            .map(|(t, reason)| Placement {
                task: t.id,
                name: t.name.clone(),
                bytes: t.bytes,
                footprint: self.g.footprint(t.id),
                gpu_resident: resident[t.id],
                reason,
            })
            .collect();
        let plan = Plan {
            policy,
            model: self.g.shape.name.clone(),
            hw: self.hw_name.to_string(),
            gpu_mem_bytes: self.budget(),
            gpu_resident_bytes: self.resident_bytes(resident),
            staging_bytes,
            scratch_bytes: self.scratch_bytes(),
            exec,
            summary,
            placements,
        };
        if plan.gpu_used_bytes() > plan.gpu_mem_bytes && plan.gpu_resident_bytes > 0 {
            return Err(PlanError::NoFit(format!(
                "{} needs {:.2} GB of GPU memory, the budget is {:.2} GB",
                plan.summary,
                plan.gpu_used_bytes() as f64 / 1e9,
                plan.gpu_mem_bytes as f64 / 1e9
            )));
        }
        Ok(plan)
    }

    /// The objective every policy is judged by: expected seconds for one request of the workload.
    pub fn request_seconds(&self, plan: &Plan) -> Result<f64, PlanError> {
        Ok(predict(plan, self.g, self.cost, &self.opts.popularity, &self.opts.workload)?.request_s)
    }
}

/// Everything on the CPU: no GPU, or a budget too small for even one micro-batch's activations.
fn host_only(ctx: &Ctx, policy: PolicyKind, why: &str) -> Plan {
    let placements = ctx
        .g
        .tasks
        .iter()
        .map(|t| Placement {
            task: t.id,
            name: t.name.clone(),
            bytes: t.bytes,
            footprint: ctx.g.footprint(t.id),
            gpu_resident: false,
            reason: format!("host: {why}; CPU"),
        })
        .collect();
    Plan {
        policy,
        model: ctx.g.shape.name.clone(),
        hw: ctx.hw_name.to_string(),
        gpu_mem_bytes: ctx.budget(),
        gpu_resident_bytes: 0,
        staging_bytes: 0,
        scratch_bytes: 0,
        exec: ExecRule::Overlap { slots: 0, slot_bytes: 0 },
        summary: format!("CPU only ({why})"),
        placements,
    }
}

pub fn make_plan(
    policy: PolicyKind,
    g: &TaskGraph,
    cost: &CostModel,
    opts: &PolicyOptions,
    hw_name: &str,
) -> Result<Plan, PlanError> {
    let ctx = Ctx { g, cost, opts, hw_name };
    if !cost.has_gpu() {
        return Ok(host_only(&ctx, policy, "no GPU in the profile"));
    }
    if ctx.scratch_bytes() > ctx.budget() {
        return Ok(host_only(&ctx, policy, "GPU budget below one micro-batch of activations"));
    }
    match policy {
        PolicyKind::Layers => layers::plan(&ctx),
        PolicyKind::Fiddler => fiddler::plan(&ctx),
        PolicyKind::Auto => auto::plan(&ctx),
    }
}
