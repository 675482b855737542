//! One step (a prefill chunk or a decode token) of a plan as lane operations for the simulator,
//! following the plan's [`ExecRule`].

use super::assign::{route, Backlog, Route};
use super::cost::{CostModel, TaskCost};
use super::simulate::{Lane, Op};
use super::tasks::{TaskGraph, TaskKind};
use super::{ExecRule, Plan};

/// A step: `n_tokens` new tokens after `ctx` cached ones; `routed[layer][expert]` tokens per expert.
#[derive(Debug, Clone, PartialEq)]
pub struct StepSpec {
    pub n_tokens: u64,
    pub ctx: u64,
    pub routed: Vec<Vec<u64>>,
}

/// Which side holds a task's output (activations hop over PCIe between sides).
#[derive(Clone, Copy, PartialEq)]
enum Side {
    Cpu,
    Gpu,
}

/// Ops under construction, with a list-schedule estimate of when each ends (no DRAM sharing), which
/// is what the run-time assignment sees as lane backlogs.
struct Builder<'a> {
    g: &'a TaskGraph,
    cost: &'a CostModel,
    step: &'a StepSpec,
    ops: Vec<Op>,
    est_end: Vec<f64>,
    side: Vec<Side>,
    lane_free: [f64; 3],
    dram_free: f64,
}

impl<'a> Builder<'a> {
    fn new(g: &'a TaskGraph, cost: &'a CostModel, step: &'a StepSpec) -> Self {
        Builder {
            g,
            cost,
            step,
            ops: Vec::new(),
            est_end: Vec::new(),
            side: Vec::new(),
            lane_free: [0.0; 3],
            dram_free: 0.0,
        }
    }

    /// Tokens task `id` processes in this step.
    fn tokens(&self, id: usize) -> u64 {
        let t = &self.g.tasks[id];
        match t.kind {
            TaskKind::Expert { expert } => self
                .step
                .routed
                .get(t.layer as usize)
                .and_then(|r| r.get(expert as usize))
                .copied()
                .unwrap_or(0),
            _ => self.g.tokens_for(id, self.step.n_tokens),
        }
    }

    fn task_cost(&self, id: usize) -> TaskCost {
        self.cost.task(self.g, id, self.tokens(id), self.step.ctx)
    }

    fn hop(&self) -> f64 {
        self.cost.activation_hop(self.step.n_tokens, self.g.shape.n_embd)
    }

    /// Dependencies on `inputs` as seen from `side` (a hop where the side changes).
    fn deps_from(&self, inputs: &[usize], side: Side) -> Vec<(usize, f64)> {
        inputs.iter().map(|&i| (i, if self.side[i] == side { 0.0 } else { self.hop() })).collect()
    }

    fn ready(&self, deps: &[(usize, f64)]) -> f64 {
        deps.iter().map(|&(d, delay)| self.est_end[d] + delay).fold(0.0, f64::max)
    }

    fn emit(
        &mut self,
        lane: Lane,
        task: usize,
        dur: f64,
        host_bytes: f64,
        deps: Vec<(usize, f64)>,
        side: Side,
    ) -> usize {
        let start = self.ready(&deps).max(self.lane_free[lane.index()]);
        let end = start + dur;
        self.lane_free[lane.index()] = end;
        if lane != Lane::Gpu {
            self.dram_free = self.dram_free.max(start) + host_bytes / (self.cost.dram_gbs * 1e9);
        }
        let label = match lane {
            Lane::Pcie => format!("copy {}", self.g.tasks[task].name),
            _ => self.g.tasks[task].name.clone(),
        };
        self.ops.push(Op { lane, task: Some(task), label, dur, host_bytes, deps });
        self.est_end.push(end);
        self.side.push(side);
        self.ops.len() - 1
    }

    fn gpu(&mut self, task: usize, inputs: &[usize]) -> usize {
        let c = self.task_cost(task);
        let deps = self.deps_from(inputs, Side::Gpu);
        self.emit(Lane::Gpu, task, c.gpu, 0.0, deps, Side::Gpu)
    }

    fn cpu(&mut self, task: usize, inputs: &[usize]) -> usize {
        let c = self.task_cost(task);
        let deps = self.deps_from(inputs, Side::Cpu);
        self.emit(Lane::Cpu, task, c.cpu, c.host_bytes, deps, Side::Cpu)
    }

    /// Copy then compute on the GPU; the copy waits for `copy_deps` only.
    fn stream(&mut self, task: usize, copy_deps: Vec<(usize, f64)>, inputs: &[usize]) -> usize {
        let c = self.task_cost(task);
        let copy = self.emit(Lane::Pcie, task, c.copy, c.host_bytes, copy_deps, Side::Gpu);
        let mut deps = self.deps_from(inputs, Side::Gpu);
        deps.push((copy, 0.0));
        self.emit(Lane::Gpu, task, c.gpu, 0.0, deps, Side::Gpu)
    }
}

/// The step's operations under `plan`.
pub fn build_step(plan: &Plan, g: &TaskGraph, cost: &CostModel, step: &StepSpec) -> Vec<Op> {
    let mut b = Builder::new(g, cost, step);
    match plan.exec {
        ExecRule::Overlap { slots, .. } => overlap(&mut b, plan, slots as usize),
        ExecRule::Serial { min_batch } => serial(&mut b, plan, min_batch),
        ExecRule::Fiddler { .. } => fiddler(&mut b, plan),
    }
    b.ops
}

/// The layer's FFN-side tasks with work this step: routed experts with tokens, row blocks, shared.
fn ffn_tasks(b: &Builder, layer: usize) -> Vec<usize> {
    let lt = &b.g.layers[layer];
    lt.ffn.iter().copied().chain(lt.shared).filter(|&t| b.tokens(t) > 0).collect()
}

fn overlap(b: &mut Builder, plan: &Plan, slots: usize) {
    let can_stream = b.cost.has_gpu() && slots > 0;
    let s = b.g.shape.clone();
    // Experts are known only after the router unless the batch is big enough to use them all.
    let experts_certain =
        s.is_moe() && b.step.n_tokens * u64::from(s.n_expert_used) >= 4 * u64::from(s.n_expert);
    let mut slot_users: Vec<usize> = Vec::new();
    let mut prev: Vec<usize> = Vec::new();
    let run = |b: &mut Builder,
               task: usize,
               inputs: &[usize],
               copy_after: Option<usize>,
               slot_users: &mut Vec<usize>| {
        if plan.resident(task) {
            return b.gpu(task, inputs);
        }
        if !can_stream {
            return b.cpu(task, inputs);
        }
        let c = b.task_cost(task);
        let slot_dep = (slot_users.len() >= slots).then(|| slot_users[slot_users.len() - slots]);
        let mut copy_deps: Vec<(usize, f64)> = slot_dep.map(|d| (d, 0.0)).into_iter().collect();
        if let Some(r) = copy_after {
            copy_deps.push((r, 0.0));
        }
        let mut backlog = Backlog {
            cpu: b.lane_free[0],
            gpu: b.lane_free[1],
            pcie: b.lane_free[2],
            dram: b.dram_free,
            slot: slot_dep.map(|d| b.est_end[d]).unwrap_or(0.0),
        };
        let ready = b.ready(&b.deps_from(inputs, Side::Cpu));
        let copy_ready = b.ready(&copy_deps);
        match route(&c, ready, copy_ready, &mut backlog, b.cost.dram_gbs) {
            Route::Cpu => b.cpu(task, inputs),
            Route::Stream => {
                let op = b.stream(task, copy_deps, inputs);
                slot_users.push(op);
                op
            }
        }
    };
    for layer in 0..s.n_layer as usize {
        let lt = b.g.layers[layer].clone();
        let attn = run(b, lt.attention, &prev, None, &mut slot_users);
        let (head, router_op) = match lt.router {
            Some(r) => {
                let op = run(b, r, &[attn], None, &mut slot_users);
                (op, Some(op))
            }
            None => (attn, None),
        };
        let copy_after = if experts_certain { None } else { router_op };
        let mut work = ffn_tasks(b, layer);
        // Resident work first so that it never waits behind a copy on the GPU lane; host work in
        // decreasing CPU time (longest first balances the lanes best).
        work.sort_by(|&x, &y| {
            let key = |t: usize| (!plan.resident(t), -b.task_cost(t).cpu);
            let (kx, ky) = (key(x), key(y));
            kx.0.cmp(&ky.0).then(kx.1.total_cmp(&ky.1))
        });
        prev = work
            .iter()
            .map(|&t| {
                let after =
                    if matches!(b.g.tasks[t].kind, TaskKind::Expert { .. }) { copy_after } else { None };
                run(b, t, &[head], after, &mut slot_users)
            })
            .collect();
        if prev.is_empty() {
            prev = vec![head];
        }
    }
    let out = b.g.output;
    run(b, out, &prev, None, &mut slot_users);
}

fn serial(b: &mut Builder, plan: &Plan, min_batch: u64) {
    let mut last: Option<usize> = None;
    let mut order: Vec<usize> = Vec::new();
    for layer in 0..b.g.layers.len() {
        let lt = b.g.layers[layer].clone();
        order.push(lt.attention);
        order.extend(lt.router);
        order.extend(ffn_tasks(b, layer));
    }
    order.push(b.g.output);
    for task in order {
        let inputs: Vec<usize> = last.into_iter().collect();
        let op = if plan.resident(task) {
            b.gpu(task, &inputs)
        } else if b.cost.has_gpu() && b.g.tokens_for(task, b.step.n_tokens) >= min_batch {
            // The copy is on the compute stream: it waits for everything before it.
            let copy_deps = b.deps_from(&inputs, Side::Gpu);
            b.stream(task, copy_deps, &inputs)
        } else {
            b.cpu(task, &inputs)
        };
        last = Some(op);
    }
}

fn fiddler(b: &mut Builder, plan: &Plan) {
    let mut prev: Vec<usize> = Vec::new();
    let mut last_stream: Option<usize> = None;
    // Fiddler's rule for a host task with n tokens: CPU iff n·t_cpu(1) ≤ t_copy + t_gpu(n).
    let on_cpu = |b: &Builder, t: usize| {
        let n = b.tokens(t);
        let one = b.cost.task(b.g, t, 1, b.step.ctx);
        let c = b.task_cost(t);
        !b.cost.has_gpu() || n as f64 * one.cpu <= c.copy + c.gpu
    };
    for layer in 0..b.g.layers.len() {
        let lt = b.g.layers[layer].clone();
        let mut head_inputs = prev.clone();
        let mut nonexpert = vec![lt.attention];
        nonexpert.extend(lt.router);
        for t in nonexpert {
            let op = if plan.resident(t) { b.gpu(t, &head_inputs) } else { b.cpu(t, &head_inputs) };
            head_inputs = vec![op];
        }
        let head = head_inputs[0];
        let mut outs = Vec::new();
        let mut cpu_tasks = Vec::new();
        let mut last_copy: Option<usize> = None;
        for t in ffn_tasks(b, layer) {
            if plan.resident(t) {
                outs.push(b.gpu(t, &[head]));
            } else if on_cpu(b, t) {
                cpu_tasks.push(t);
            } else {
                // The host thread blocks on each copy into the single placeholder, which must
                // first be freed by the previous streamed expert's compute.
                let mut copy_deps = vec![(head, 0.0)];
                copy_deps.extend(last_copy.map(|c| (c, 0.0)));
                copy_deps.extend(last_stream.map(|c| (c, 0.0)));
                let op = b.stream(t, copy_deps, &[head]);
                last_copy = Some(op - 1);
                last_stream = Some(op);
                outs.push(op);
            }
        }
        for t in cpu_tasks {
            let mut inputs = vec![head];
            inputs.extend(last_copy);
            outs.push(b.cpu(t, &inputs));
        }
        prev = if outs.is_empty() { vec![head] } else { outs };
    }
    let out = b.g.output;
    if plan.resident(out) {
        b.gpu(out, &prev);
    } else {
        b.cpu(out, &prev);
    }
}
