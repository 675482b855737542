//! Fiddler's placement (efeslab/fiddler, `FiddlerMixtral.__init__`): every non-expert weight on the
//! GPU, then as many experts as fit in 95% of the memory, the most popular first (its offline
//! popularity list). At run time an expert with n tokens runs on the CPU iff n·t_cpu(1) ≤ t_copy +
//! t_gpu(n), otherwise it is copied into the single placeholder (ExecRule::Fiddler). Fiddler only
//! knows Mixtral; for other models we apply the same rule with shared experts and the router as
//! non-expert weights, and for dense models the FFN row blocks play the experts (popularity 1).

use super::super::tasks::TaskKind;
use super::super::{ExecRule, Plan, PlanError};
use super::{Ctx, PolicyKind};

/// Fiddler's "magic number": it fills 95% of the GPU.
const FILL: f64 = 0.95;

pub fn plan(ctx: &Ctx) -> Result<Plan, PlanError> {
    let g = ctx.g;
    let n = g.tasks.len();
    let mut resident = vec![false; n];
    let mut reasons = vec![String::new(); n];
    let is_ffn = |k: TaskKind| matches!(k, TaskKind::Expert { .. } | TaskKind::FfnRows { .. });
    let slot_bytes = g.tasks.iter().filter(|t| is_ffn(t.kind)).map(|t| t.bytes).max().unwrap_or(0);
    let cap = (ctx.budget() as f64 * FILL) as u64;
    let mut used = ctx.scratch_bytes() + slot_bytes;
    if used > cap {
        return Ok(super::host_only(ctx, PolicyKind::Fiddler, "budget below activations + one placeholder"));
    }
    // What -ot puts on the GPU comes first; what it keeps in RAM stays there.
    for t in &g.tasks {
        match ctx.forced(t.id) {
            Some(true) => {
                resident[t.id] = true;
                used += g.footprint(t.id);
                reasons[t.id] = "GPU: -ot puts its tensors on the GPU".into();
            }
            Some(false) => reasons[t.id] = "host: -ot keeps its tensors in RAM".into(),
            None => {}
        }
    }
    // Non-expert weights first, in layer order (for Mixtral they always fit).
    for t in g.tasks.iter().filter(|t| !is_ffn(t.kind) && ctx.forced(t.id).is_none()) {
        let f = g.footprint(t.id);
        if used + f <= cap {
            resident[t.id] = true;
            used += f;
            reasons[t.id] = "GPU: non-expert weights go to the GPU first".into();
        } else {
            reasons[t.id] = "host: non-expert weights beyond the budget; CPU".into();
        }
    }
    // Then experts by popularity (stable in (layer, expert) order for ties).
    let mut experts: Vec<(f64, usize)> = g
        .tasks
        .iter()
        .filter(|t| is_ffn(t.kind) && ctx.forced(t.id).is_none())
        .map(|t| match t.kind {
            TaskKind::Expert { expert } => (ctx.opts.popularity.get(t.layer, expert as usize), t.id),
            _ => (1.0, t.id),
        })
        .collect();
    experts.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut full = false;
    for (_, id) in experts {
        let f = g.footprint(id);
        if !full && used + f <= cap {
            resident[id] = true;
            used += f;
            reasons[id] = "GPU: among the most popular experts that fit in 95% of the budget".into();
        } else {
            // Fiddler stops at the first expert that does not fit (floor of a count).
            full = true;
            reasons[id] =
                "host: CPU iff n*t_cpu(1) <= t_copy + t_gpu(n), else copied to the placeholder".into();
        }
    }
    let staging = slot_bytes;
    let n_res = experts_resident(ctx, &resident);
    let summary =
        format!("{n_res} experts resident by popularity, 1 placeholder of {:.0} MB", slot_bytes as f64 / 1e6);
    ctx.assemble(PolicyKind::Fiddler, &resident, reasons, ExecRule::Fiddler { slot_bytes }, staging, summary)
}

fn experts_resident(ctx: &Ctx, resident: &[bool]) -> usize {
    ctx.g
        .tasks
        .iter()
        .filter(|t| resident[t.id] && matches!(t.kind, TaskKind::Expert { .. } | TaskKind::FfnRows { .. }))
        .count()
}
