//! Ours: the adaptive partition. Every task (attention block with its KV cache, dense FFN row
//! block, expert, shared expert, router, output head) is valued by the host-side time it would cost
//! over one request of the workload (prefill chunks plus `gen` decode tokens, experts weighted by
//! how likely they are to be used), divided by the GPU bytes it needs. The budget is filled by
//! value density (so a dense layer can be split by rows), for each candidate number of staging
//! slots; a local search over the boundary then checks each choice against the simulator. At run
//! time the host tasks are routed by [`crate::plan::assign`] with all lanes overlapping.

use super::super::tasks::TaskKind;
use super::super::workload::steps;
use super::super::{ExecRule, Plan, PlanError};
use super::{Ctx, PolicyKind};

const SLOT_CHOICES: [u32; 5] = [0, 1, 2, 3, 4];
/// Above this many tasks the local search only looks at a few boundary tasks.
const SMALL: usize = 16;

/// Seconds of host-side work a task would cost per request if it were not GPU-resident:
/// (prefill part, decode part).
pub fn host_seconds(ctx: &Ctx) -> Vec<(f64, f64)> {
    let (prefill, decode) = steps(ctx.g, &ctx.opts.popularity, &ctx.opts.workload);
    let s = &ctx.g.shape;
    let gen = ctx.opts.workload.gen as f64;
    ctx.g
        .tasks
        .iter()
        .map(|t| {
            let host = |n: u64, c_ctx: u64| {
                if n == 0 {
                    return 0.0;
                }
                let c = ctx.cost.task(ctx.g, t.id, n, c_ctx);
                // An attention block on the host is computed there: it is never streamed.
                let streamable = ctx.cost.has_gpu() && t.kind != TaskKind::Attention;
                let off = if streamable { c.copy } else { f64::INFINITY };
                (c.cpu.min(off) - if ctx.cost.has_gpu() { c.gpu } else { 0.0 }).max(0.0)
            };
            let tokens = |st: &super::super::step::StepSpec| match t.kind {
                TaskKind::Expert { expert } => st.routed[t.layer as usize][expert as usize],
                _ => ctx.g.tokens_for(t.id, st.n_tokens),
            };
            let pre: f64 = prefill.iter().map(|st| host(tokens(st), st.ctx)).sum();
            let dec = decode.first().map_or(0.0, |st| {
                let p = match t.kind {
                    TaskKind::Expert { expert } => {
                        ctx.opts.popularity.p_active(t.layer, expert as usize, s.n_expert_used, 1)
                    }
                    _ => 1.0,
                };
                p * host(1, st.ctx)
            });
            (pre, gen * dec)
        })
        .collect()
}

struct Search<'a, 'b> {
    ctx: &'a Ctx<'b>,
    density: Vec<f64>,
    evals: usize,
    /// `-ngl N` with `auto`: at most as many resident bytes as llama.cpp's `-ngl N` would hold.
    cap: u64,
    /// `--n-cpu-moe N` with `auto`, and `-ot ...=CPU`: tasks that stay in host memory.
    host_only: Vec<bool>,
    /// `-ot ...=CUDA0`: tasks that must be resident.
    pinned: Vec<bool>,
}

impl Search<'_, '_> {
    /// Staging needed for `slots` slots: the biggest host task of a layer's FFN side (an attention
    /// block computes where its KV cache is, so it is never streamed; the output head is streamed
    /// only if it fits a slot sized for the layers' tasks, or a vocabulary-sized head would set
    /// every slot's size).
    fn staging(&self, resident: &[bool], slots: u32) -> u64 {
        let streamable = |t: &&super::super::tasks::Task| {
            !resident[t.id] && !matches!(t.kind, TaskKind::Attention | TaskKind::Output)
        };
        let biggest = self.ctx.g.tasks.iter().filter(streamable).map(|t| t.bytes).max().unwrap_or(0);
        u64::from(slots) * biggest
    }

    fn fits(&self, resident: &[bool], slots: u32) -> bool {
        let c = self.ctx;
        if resident.iter().zip(&self.host_only).any(|(&r, &h)| r && h)
            || resident.iter().zip(&self.pinned).any(|(&r, &p)| p && !r)
        {
            return false;
        }
        let held = c.resident_bytes(resident);
        held <= self.cap && held + self.staging(resident, slots) + c.scratch_bytes() <= c.budget()
    }

    /// Adds tasks by value density while they fit.
    fn fill(&self, resident: &mut [bool], slots: u32, skip: &[usize]) {
        self.fill_by(&self.density.clone(), resident, slots, skip)
    }

    /// Adds tasks in decreasing `key` while they fit.
    fn fill_by(&self, key: &[f64], resident: &mut [bool], slots: u32, skip: &[usize]) {
        let mut order: Vec<usize> =
            (0..resident.len()).filter(|&i| !resident[i] && !skip.contains(&i)).collect();
        order.sort_by(|&a, &b| key[b].total_cmp(&key[a]));
        for i in order {
            if key[i] <= 0.0 {
                continue;
            }
            resident[i] = true;
            if !self.fits(resident, slots) {
                resident[i] = false;
            }
        }
    }

    fn plan(&mut self, resident: &[bool], slots: u32) -> Result<Plan, PlanError> {
        let g = self.ctx.g;
        let staging = self.staging(resident, slots);
        let slot_bytes = if slots > 0 { staging / u64::from(slots) } else { 0 };
        let reasons = g
            .tasks
            .iter()
            .map(|t| {
                let what = match t.kind {
                    TaskKind::Expert { .. } => "expert (valued by its popularity)",
                    TaskKind::FfnRows { .. } => "dense FFN rows",
                    TaskKind::Attention => "attention + KV cache",
                    TaskKind::SharedExpert => "shared expert",
                    TaskKind::Router => "router",
                    TaskKind::Output => "output head",
                };
                if resident[t.id] {
                    format!("GPU: {what}, host cost per byte above the budget cut")
                } else if self.host_only[t.id] {
                    format!("host: {what}, -ot or --n-cpu-moe keeps it in RAM; per step CPU or streamed")
                } else if !self.ctx.cost.has_gpu() {
                    format!("host: {what}; no GPU, CPU")
                } else if slots == 0 {
                    format!("host: {what} below the budget cut; CPU (no staging slots)")
                } else {
                    format!("host: {what} below the budget cut; per step CPU or streamed, whichever lane finishes first")
                }
            })
            .collect();
        let summary = if self.ctx.cost.has_gpu() {
            format!(
                "{} of {} tasks resident, {slots} staging slot(s) of {:.0} MB, lanes overlap",
                resident.iter().filter(|&&r| r).count(),
                resident.len(),
                slot_bytes as f64 / 1e6
            )
        } else {
            "CPU only".to_string()
        };
        self.ctx.assemble(
            PolicyKind::Auto,
            resident,
            reasons,
            ExecRule::Overlap { slots, slot_bytes },
            staging,
            summary,
        )
    }

    fn score(&mut self, resident: &[bool], slots: u32) -> Result<(f64, Plan), PlanError> {
        self.evals += 1;
        let plan = self.plan(resident, slots)?;
        Ok((self.ctx.request_seconds(&plan)?, plan))
    }

    /// Toggles and swaps around the budget cut while they shorten the request.
    fn improve(
        &mut self,
        resident: &mut Vec<bool>,
        slots: u32,
        mut best: f64,
        rounds: usize,
    ) -> Result<f64, PlanError> {
        let n = resident.len();
        let k = if n <= SMALL { n } else { 4 };
        for _ in 0..rounds {
            let mut ins: Vec<usize> = (0..n).filter(|&i| resident[i]).collect();
            ins.sort_by(|&a, &b| self.density[a].total_cmp(&self.density[b]));
            ins.truncate(k);
            let mut outs: Vec<usize> = (0..n).filter(|&i| !resident[i]).collect();
            outs.sort_by(|&a, &b| self.density[b].total_cmp(&self.density[a]));
            outs.truncate(k);
            let mut moves: Vec<Vec<bool>> = Vec::new();
            for &o in &outs {
                let mut r = resident.clone();
                r[o] = true;
                moves.push(r);
            }
            for &i in &ins {
                let mut r = resident.clone();
                r[i] = false;
                self.fill(&mut r, slots, &[i]);
                moves.push(r);
                if n <= SMALL {
                    for &j in ins.iter().filter(|&&j| j > i) {
                        let mut r = resident.clone();
                        r[i] = false;
                        r[j] = false;
                        self.fill(&mut r, slots, &[i, j]);
                        moves.push(r);
                    }
                }
                for &o in &outs {
                    let mut r = resident.clone();
                    r[i] = false;
                    r[o] = true;
                    moves.push(r);
                }
            }
            let mut improved = false;
            for r in moves {
                if !self.fits(&r, slots) {
                    continue;
                }
                let (secs, _) = self.score(&r, slots)?;
                if secs < best * (1.0 - 1e-9) {
                    best = secs;
                    *resident = r;
                    improved = true;
                }
            }
            if !improved {
                break;
            }
        }
        Ok(best)
    }
}

pub fn plan(ctx: &Ctx) -> Result<Plan, PlanError> {
    let host = host_seconds(ctx);
    let per_byte = |f: &dyn Fn(&(f64, f64)) -> f64| -> Vec<f64> {
        host.iter().enumerate().map(|(i, h)| f(h) / ctx.g.footprint(i).max(1) as f64).collect()
    };
    let density = per_byte(&|h| h.0 + h.1);
    // Other greedy orders to start from: each phase alone, and the absolute value.
    let orders =
        [per_byte(&|h| h.0), per_byte(&|h| h.1), host.iter().map(|h| h.0 + h.1).collect::<Vec<f64>>()];
    let cap = match ctx.opts.ngl {
        Some(ngl) => ctx.resident_bytes(&super::layers::placement(ctx, ngl, 0).0),
        None => u64::MAX,
    };
    let n_cpu_moe = ctx.opts.n_cpu_moe.unwrap_or(0);
    let host_only = ctx
        .g
        .tasks
        .iter()
        .map(|t| {
            ctx.forced(t.id) == Some(false)
                || matches!(t.kind, TaskKind::Expert { .. }) && t.layer < n_cpu_moe
        })
        .collect();
    let pinned: Vec<bool> = ctx.g.tasks.iter().map(|t| ctx.forced(t.id) == Some(true)).collect();
    let mut search = Search { ctx, density, evals: 0, cap, host_only, pinned: pinned.clone() };
    let n = ctx.g.tasks.len();
    if !ctx.cost.has_gpu() {
        return search.plan(&vec![false; n], 0);
    }
    // Fill by density for each slot count; on small instances refine every one of them, on large
    // ones only the best (each simulated candidate costs a full workload prediction).
    let mut starts: Vec<(f64, Vec<bool>, u32)> = Vec::new();
    let slot_choices = match ctx.opts.slots {
        Some(n) => vec![n],
        None => SLOT_CHOICES.to_vec(),
    };
    // Also start from what the baselines hold: with the lanes overlapping, their residency can
    // only run faster than under their own rules, so `auto` is never behind them on the objective.
    let baselines: Vec<Vec<bool>> = [super::layers::plan(ctx), super::fiddler::plan(ctx)]
        .into_iter()
        .filter_map(Result::ok)
        .map(|p| p.placements.iter().map(|x| x.gpu_resident).collect())
        .collect();
    for slots in slot_choices {
        let mut candidates = vec![pinned.clone()];
        candidates.extend(baselines.iter().cloned());
        search.fill(&mut candidates[0], slots, &[]);
        if n <= SMALL {
            for key in &orders {
                let mut r = pinned.clone();
                search.fill_by(key, &mut r, slots, &[]);
                // Top up by density what the other order left.
                search.fill(&mut r, slots, &[]);
                candidates.push(r);
            }
        }
        for resident in candidates {
            if !search.fits(&resident, slots) {
                continue;
            }
            let (secs, _) = search.score(&resident, slots)?;
            starts.push((secs, resident, slots));
        }
    }
    starts.sort_by(|a, b| a.0.total_cmp(&b.0));
    if n > SMALL {
        // The best start of each slot count: which count wins often shows only after refining
        // (a slot costs a task's worth of residency, which the local search gives back).
        let mut seen = Vec::new();
        starts.retain(|s| {
            let first = !seen.contains(&s.2);
            seen.push(s.2);
            first
        });
    }
    let rounds = if n <= SMALL { 50 } else { 2 };
    let mut best: Option<(f64, Vec<bool>, u32)> = None;
    for (secs, mut resident, slots) in starts {
        let secs = search.improve(&mut resident, slots, secs, rounds)?;
        if best.as_ref().is_none_or(|b| secs < b.0) {
            best = Some((secs, resident, slots));
        }
    }
    let Some((_, resident, slots)) = best else {
        return search.plan(&vec![false; n], 0);
    };
    let mut plan = search.plan(&resident, slots)?;
    plan.summary = format!("{}; {} simulated candidates", plan.summary, search.evals);
    if let Some(ngl) = ctx.opts.ngl {
        plan.summary = format!(
            "{}; resident bytes capped at what -ngl {ngl} holds ({:.2} GB)",
            plan.summary,
            cap as f64 / 1e9
        );
    }
    Ok(plan)
}
