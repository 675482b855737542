//! One step (a prefill chunk or a decode token) of a plan as lane operations, following the plan's
//! [`ExecRule`]. The same builder serves the planner, which knows every layer's routing up front
//! ([`build_step`]), and the executor, which learns a layer's routing from its router and asks for
//! that layer's FFN operations only then ([`StepBuilder`]): what is predicted and what is run are
//! one schedule.

use std::ops::Range;

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
    /// Experts predicted per layer before its router ran (decode prefetch; empty: none).
    pub predicted: Vec<Vec<bool>>,
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
    step: StepSpec,
    ops: Vec<Op>,
    est_end: Vec<f64>,
    side: Vec<Side>,
    lane_free: [f64; 3],
    dram_free: f64,
    /// Tasks whose weights arrive on the GPU during this step (hot-expert swaps), with the copy.
    arrivals: Vec<(usize, usize)>,
}

impl<'a> Builder<'a> {
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

    #[allow(clippy::too_many_arguments)]
    fn emit(
        &mut self,
        lane: Lane,
        task: usize,
        dur: f64,
        host_bytes: f64,
        deps: Vec<(usize, f64)>,
        side: Side,
        slot: Option<u32>,
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
        let tokens = self.tokens(task);
        self.ops.push(Op { lane, task: Some(task), label, dur, host_bytes, deps, slot, tokens });
        self.est_end.push(end);
        self.side.push(side);
        self.ops.len() - 1
    }

    fn gpu(&mut self, task: usize, inputs: &[usize]) -> usize {
        let c = self.task_cost(task);
        let mut deps = self.deps_from(inputs, Side::Gpu);
        deps.extend(self.arrivals.iter().filter(|a| a.0 == task).map(|a| (a.1, 0.0)));
        self.emit(Lane::Gpu, task, c.gpu, 0.0, deps, Side::Gpu, None)
    }

    fn cpu(&mut self, task: usize, inputs: &[usize]) -> usize {
        let c = self.task_cost(task);
        let deps = self.deps_from(inputs, Side::Cpu);
        self.emit(Lane::Cpu, task, c.cpu, c.host_bytes, deps, Side::Cpu, None)
    }

    /// Copy into staging slot `slot`, then compute on the GPU; the copy waits for `copy_deps` only.
    fn stream(&mut self, task: usize, slot: u32, copy_deps: Vec<(usize, f64)>, inputs: &[usize]) -> usize {
        let c = self.task_cost(task);
        let copy = self.emit(Lane::Pcie, task, c.copy, c.host_bytes, copy_deps, Side::Gpu, Some(slot));
        let mut deps = self.deps_from(inputs, Side::Gpu);
        deps.push((copy, 0.0));
        self.emit(Lane::Gpu, task, c.gpu, 0.0, deps, Side::Gpu, Some(slot))
    }

    /// The layer's FFN-side tasks with work this step: routed experts with tokens, row blocks, shared.
    fn ffn_tasks(&self, layer: usize) -> Vec<usize> {
        let lt = &self.g.layers[layer];
        lt.ffn.iter().copied().chain(lt.shared).filter(|&t| self.tokens(t) > 0).collect()
    }
}

/// What each rule carries from one layer to the next.
enum Schedule {
    Overlap(Overlap),
    Serial(Serial),
    Fiddler(Fiddler),
}

/// The step's operations, built layer by layer.
pub struct StepBuilder<'a> {
    b: Builder<'a>,
    plan: &'a Plan,
    schedule: Schedule,
}

impl<'a> StepBuilder<'a> {
    /// A step of `n_tokens` after `ctx` cached tokens; expert routing is given per layer with
    /// [`StepBuilder::set_routed`] before that layer's [`StepBuilder::ffn`].
    pub fn new(plan: &'a Plan, g: &'a TaskGraph, cost: &'a CostModel, n_tokens: u64, ctx: u64) -> Self {
        let step =
            StepSpec { n_tokens, ctx, routed: vec![Vec::new(); g.layers.len()], predicted: Vec::new() };
        let b = Builder {
            g,
            cost,
            step,
            ops: Vec::new(),
            est_end: Vec::new(),
            side: Vec::new(),
            lane_free: [0.0; 3],
            dram_free: 0.0,
            arrivals: Vec::new(),
        };
        let schedule = match plan.exec {
            ExecRule::Overlap { slots, slot_bytes } => {
                Schedule::Overlap(Overlap::new(&b, slots as usize, slot_bytes))
            }
            ExecRule::Serial { min_batch } => Schedule::Serial(Serial { min_batch, last: None }),
            ExecRule::Fiddler { .. } => {
                Schedule::Fiddler(Fiddler { prev: Vec::new(), last_stream: None, head: 0 })
            }
        };
        StepBuilder { b, plan, schedule }
    }

    /// Copy `task`'s weights to stay on the GPU (a hot-expert swap), first on the copy lane; the
    /// plan must already count it resident. Its GPU work this step waits for the copy. A copy
    /// with no staging slot is an upload to residency.
    pub fn swap_in(&mut self, task: usize) -> usize {
        let b = &mut self.b;
        let bytes = b.g.tasks[task].bytes as f64;
        let op = b.emit(Lane::Pcie, task, b.cost.copy_time(bytes), bytes, Vec::new(), Side::Gpu, None);
        b.ops[op].label = format!("swap in {}", b.g.tasks[task].name);
        b.arrivals.push((task, op));
        op
    }

    /// Experts of `layer` predicted before its router runs (from the layer before's hidden state):
    /// under the overlap rule their copies may start as soon as the router before has run.
    pub fn set_predicted(&mut self, layer: usize, experts: Vec<bool>) {
        let p = &mut self.b.step.predicted;
        if p.len() <= layer {
            p.resize(layer + 1, Vec::new());
        }
        p[layer] = experts;
    }

    /// The experts predicted for `layer`, if any were.
    pub fn predicted(&self, layer: usize) -> Option<&[bool]> {
        self.b.step.predicted.get(layer).map(Vec::as_slice).filter(|p| !p.is_empty())
    }

    /// Tokens routed to each expert of `layer` (empty for a dense layer).
    pub fn set_routed(&mut self, layer: usize, counts: Vec<u64>) {
        if let Some(r) = self.b.step.routed.get_mut(layer) {
            *r = counts;
        }
    }

    /// The layer's attention and router: what must run before its routing is known.
    pub fn head(&mut self, layer: usize) -> Range<usize> {
        let first = self.b.ops.len();
        let (b, plan) = (&mut self.b, self.plan);
        match &mut self.schedule {
            Schedule::Overlap(s) => s.head(b, plan, layer),
            Schedule::Serial(s) => s.head(b, plan, layer),
            Schedule::Fiddler(s) => s.head(b, plan, layer),
        }
        first..self.b.ops.len()
    }

    /// The layer's FFN: row blocks, or routed experts with tokens and the shared expert.
    pub fn ffn(&mut self, layer: usize) -> Range<usize> {
        let first = self.b.ops.len();
        let (b, plan) = (&mut self.b, self.plan);
        match &mut self.schedule {
            Schedule::Overlap(s) => s.ffn(b, plan, layer),
            Schedule::Serial(s) => s.ffn(b, plan, layer),
            Schedule::Fiddler(s) => s.ffn(b, plan, layer),
        }
        first..self.b.ops.len()
    }

    /// The output head, after the last layer.
    pub fn output(&mut self) -> Range<usize> {
        let first = self.b.ops.len();
        let (b, plan) = (&mut self.b, self.plan);
        match &mut self.schedule {
            Schedule::Overlap(s) => s.output(b, plan),
            Schedule::Serial(s) => s.output(b, plan),
            Schedule::Fiddler(s) => s.output(b, plan),
        }
        first..self.b.ops.len()
    }

    pub fn ops(&self) -> &[Op] {
        &self.b.ops
    }

    /// The step as built so far: its size and the routing given.
    pub fn spec(&self) -> &StepSpec {
        &self.b.step
    }

    pub fn into_ops(self) -> Vec<Op> {
        self.b.ops
    }
}

/// The step's operations under `plan`, every layer's routing given.
pub fn build_step(plan: &Plan, g: &TaskGraph, cost: &CostModel, step: &StepSpec) -> Vec<Op> {
    let mut sb = StepBuilder::new(plan, g, cost, step.n_tokens, step.ctx);
    for layer in 0..g.layers.len() {
        if let Some(p) = step.predicted.get(layer).filter(|p| !p.is_empty()) {
            sb.set_predicted(layer, p.clone());
        }
        sb.head(layer);
        sb.set_routed(layer, step.routed.get(layer).cloned().unwrap_or_default());
        sb.ffn(layer);
    }
    sb.output();
    sb.into_ops()
}

/// An attention block computes over its layer's KV cache, which lives where the block is
/// resident: a host attention block always runs on the CPU, it is never streamed.
fn never_streamed(b: &Builder, task: usize) -> bool {
    matches!(b.g.tasks[task].kind, TaskKind::Attention)
}

/// Ours: each host task is computed on the CPU or streamed, whichever [`route`] expects to finish
/// first; streamed weights go through a ring of `slots` staging slots.
struct Overlap {
    slots: usize,
    /// A task bigger than a slot runs on the CPU.
    slot_bytes: u64,
    can_stream: bool,
    /// Experts are known only after the router unless the batch is big enough to use them all.
    experts_certain: bool,
    /// The GPU op of each stream so far, in order (ring slot `i % slots`).
    slot_users: Vec<usize>,
    /// The previous layer's outputs.
    prev: Vec<usize>,
    head: usize,
    router_op: Option<usize>,
    /// The router of the layer before: experts predicted from its hidden state may be copied
    /// once it has run (decode prefetch).
    prev_router_op: Option<usize>,
}

impl Overlap {
    fn new(b: &Builder, slots: usize, slot_bytes: u64) -> Overlap {
        let s = &b.g.shape;
        Overlap {
            slots,
            slot_bytes,
            can_stream: b.cost.has_gpu() && slots > 0,
            experts_certain: s.is_moe()
                && b.step.n_tokens * u64::from(s.n_expert_used) >= 4 * u64::from(s.n_expert),
            slot_users: Vec::new(),
            prev: Vec::new(),
            head: 0,
            router_op: None,
            prev_router_op: None,
        }
    }

    fn run(
        &mut self,
        b: &mut Builder,
        plan: &Plan,
        task: usize,
        inputs: &[usize],
        copy_after: Option<usize>,
    ) -> usize {
        if plan.resident(task) {
            return b.gpu(task, inputs);
        }
        if !self.can_stream || never_streamed(b, task) || b.g.tasks[task].bytes > self.slot_bytes {
            return b.cpu(task, inputs);
        }
        let c = b.task_cost(task);
        let users = self.slot_users.len();
        let slot_dep = (users >= self.slots).then(|| self.slot_users[users - self.slots]);
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
                let op = b.stream(task, (users % self.slots) as u32, copy_deps, inputs);
                self.slot_users.push(op);
                op
            }
        }
    }

    fn head(&mut self, b: &mut Builder, plan: &Plan, layer: usize) {
        let lt = b.g.layers[layer].clone();
        let prev = std::mem::take(&mut self.prev);
        let attn = self.run(b, plan, lt.attention, &prev, None);
        self.prev_router_op = self.router_op;
        (self.head, self.router_op) = match lt.router {
            Some(r) => {
                let op = self.run(b, plan, r, &[attn], None);
                (op, Some(op))
            }
            None => (attn, None),
        };
    }

    /// A predicted expert that its router did not pick: if the prediction would have streamed
    /// it (the same [`route`] choice, for one token, as a picked one gets), its copy was made for
    /// nothing: the copy lane and a slot are spent, and nobody reads the slot.
    fn wasted_prefetch(&mut self, b: &mut Builder, plan: &Plan, task: usize, after: usize) {
        if plan.resident(task) || !self.can_stream || b.g.tasks[task].bytes > self.slot_bytes {
            return;
        }
        let c = b.cost.task(b.g, task, 1, b.step.ctx);
        let users = self.slot_users.len();
        let mut deps = vec![(after, 0.0)];
        deps.extend((users >= self.slots).then(|| (self.slot_users[users - self.slots], 0.0)));
        let mut backlog = Backlog {
            cpu: b.lane_free[0],
            gpu: b.lane_free[1],
            pcie: b.lane_free[2],
            dram: b.dram_free,
            slot: deps.get(1).map_or(0.0, |&(d, _)| b.est_end[d]),
        };
        let ready = b.est_end[self.head];
        if route(&c, ready, b.ready(&deps), &mut backlog, b.cost.dram_gbs) == Route::Cpu {
            return;
        }
        let slot = (users % self.slots) as u32;
        let op = b.emit(Lane::Pcie, task, c.copy, c.host_bytes, deps, Side::Gpu, Some(slot));
        b.ops[op].label = format!("prefetch (unused) {}", b.g.tasks[task].name);
        self.slot_users.push(op);
    }

    fn ffn(&mut self, b: &mut Builder, plan: &Plan, layer: usize) {
        let copy_after = if self.experts_certain { None } else { self.router_op };
        // A predicted expert's copy waits for the router before it (prefetch), not its own.
        let predicted = b.step.predicted.get(layer).cloned().unwrap_or_default();
        let prefetch_after = self.prev_router_op;
        if let (Some(after), Some(_)) = (prefetch_after, copy_after) {
            let lt = &b.g.layers[layer];
            let missed: Vec<usize> = (0..predicted.len())
                .filter(|&e| predicted[e])
                .filter_map(|e| lt.ffn.get(e).copied())
                .filter(|&t| b.tokens(t) == 0)
                .collect();
            for t in missed {
                self.wasted_prefetch(b, plan, t, after);
            }
        }
        let mut work = b.ffn_tasks(layer);
        // Resident work first so that it never waits behind a copy on the GPU lane; host work in
        // decreasing CPU time (longest first balances the lanes best).
        work.sort_by(|&x, &y| {
            let key = |t: usize| (!plan.resident(t), -b.task_cost(t).cpu);
            let (kx, ky) = (key(x), key(y));
            kx.0.cmp(&ky.0).then(kx.1.total_cmp(&ky.1))
        });
        let head = self.head;
        self.prev = work
            .iter()
            .map(|&t| {
                let after = match b.g.tasks[t].kind {
                    TaskKind::Expert { expert } if predicted.get(expert as usize) == Some(&true) => {
                        copy_after.and(prefetch_after).or(copy_after)
                    }
                    TaskKind::Expert { .. } => copy_after,
                    _ => None,
                };
                self.run(b, plan, t, &[head], after)
            })
            .collect();
        if self.prev.is_empty() {
            self.prev = vec![head];
        }
    }

    fn output(&mut self, b: &mut Builder, plan: &Plan) {
        let prev = std::mem::take(&mut self.prev);
        self.run(b, plan, b.g.output, &prev, None);
    }
}

/// llama.cpp: one op after another; an op with host weights runs on the GPU after a synchronous
/// copy (on the compute stream, one staging buffer) when its batch is at least `min_batch`.
struct Serial {
    min_batch: u64,
    last: Option<usize>,
}

impl Serial {
    fn one(&mut self, b: &mut Builder, plan: &Plan, task: usize) {
        let inputs: Vec<usize> = self.last.into_iter().collect();
        let op = if plan.resident(task) {
            b.gpu(task, &inputs)
        } else if b.cost.has_gpu()
            && !never_streamed(b, task)
            && b.g.tokens_for(task, b.step.n_tokens) >= self.min_batch
        {
            // The copy is on the compute stream: it waits for everything before it.
            let copy_deps = b.deps_from(&inputs, Side::Gpu);
            b.stream(task, 0, copy_deps, &inputs)
        } else {
            b.cpu(task, &inputs)
        };
        self.last = Some(op);
    }

    fn head(&mut self, b: &mut Builder, plan: &Plan, layer: usize) {
        let lt = b.g.layers[layer].clone();
        self.one(b, plan, lt.attention);
        if let Some(r) = lt.router {
            self.one(b, plan, r);
        }
    }

    fn ffn(&mut self, b: &mut Builder, plan: &Plan, layer: usize) {
        for t in b.ffn_tasks(layer) {
            self.one(b, plan, t);
        }
    }

    fn output(&mut self, b: &mut Builder, plan: &Plan) {
        self.one(b, plan, b.g.output);
    }
}

/// Fiddler: per expert, CPU iff n·t_cpu(1) ≤ t_copy + t_gpu(n); one placeholder slot whose copies
/// block the host thread; CPU experts run after the layer's GPU work is issued.
struct Fiddler {
    prev: Vec<usize>,
    last_stream: Option<usize>,
    head: usize,
}

impl Fiddler {
    fn on_cpu(b: &Builder, t: usize) -> bool {
        let n = b.tokens(t);
        let one = b.cost.task(b.g, t, 1, b.step.ctx);
        let c = b.task_cost(t);
        !b.cost.has_gpu() || n as f64 * one.cpu <= c.copy + c.gpu
    }

    fn head(&mut self, b: &mut Builder, plan: &Plan, layer: usize) {
        let lt = b.g.layers[layer].clone();
        let mut inputs = std::mem::take(&mut self.prev);
        for t in std::iter::once(lt.attention).chain(lt.router) {
            let op = if plan.resident(t) { b.gpu(t, &inputs) } else { b.cpu(t, &inputs) };
            inputs = vec![op];
        }
        self.head = inputs[0];
    }

    fn ffn(&mut self, b: &mut Builder, plan: &Plan, layer: usize) {
        let head = self.head;
        let mut outs = Vec::new();
        let mut cpu_tasks = Vec::new();
        let mut last_copy: Option<usize> = None;
        for t in b.ffn_tasks(layer) {
            if plan.resident(t) {
                outs.push(b.gpu(t, &[head]));
            } else if Self::on_cpu(b, t) {
                cpu_tasks.push(t);
            } else {
                // The host thread blocks on each copy into the single placeholder, which must
                // first be freed by the previous streamed expert's compute.
                let mut copy_deps = vec![(head, 0.0)];
                copy_deps.extend(last_copy.map(|c| (c, 0.0)));
                copy_deps.extend(self.last_stream.map(|c| (c, 0.0)));
                let op = b.stream(t, 0, copy_deps, &[head]);
                last_copy = Some(op - 1);
                self.last_stream = Some(op);
                outs.push(op);
            }
        }
        for t in cpu_tasks {
            let mut inputs = vec![head];
            inputs.extend(last_copy);
            outs.push(b.cpu(t, &inputs));
        }
        self.prev = if outs.is_empty() { vec![head] } else { outs };
    }

    fn output(&mut self, b: &mut Builder, plan: &Plan) {
        let prev = std::mem::take(&mut self.prev);
        let out = b.g.output;
        if plan.resident(out) {
            b.gpu(out, &prev);
        } else {
            b.cpu(out, &prev);
        }
    }
}
