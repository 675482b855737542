//! The hybrid executor: a plan's steps run on the CPU, GPU and copy lanes of a [`Device`].
//!
//! At load the plan's resident tasks are uploaded and its staging slots made; a step is built layer
//! by layer by the planner's own [`StepBuilder`] — attention and router first, then, once the
//! router's choices are back, the layer's FFN with each host expert sent to the CPU or streamed by
//! the same `assign::route` the planner uses — and every operation is queued on its lane behind the
//! fences of the operations it depends on. Afterwards the same operations are timed by the
//! planner's simulator, which is the simulated device's clock: a prediction and an execution are
//! one schedule.

use std::sync::{Arc, Mutex};

use super::binding::Binding;
use super::device::{Device, WeightsAt};
use super::hot_experts::{HotExperts, Swap};
use super::kv_cache::KvCache;
use super::lanes::{Event, Lanes};
use super::tasks::StepState;
use super::trace::TraceLog;
use super::{ExecError, OutputRows, SeqChunk};
use crate::model::Model;
use crate::ops::ffn::Glu;
use crate::plan::cost::CostModel;
use crate::plan::overrides::{forced, parse_overrides};
use crate::plan::profile::HwProfile;
use crate::plan::shapes::ModelShape;
use crate::plan::simulate::{simulate, Lane, Op, Timeline};
use crate::plan::step::{StepBuilder, StepSpec};
use crate::plan::tasks::{TaskGraph, TaskKind};
use crate::plan::{make_plan, ExecRule, Plan, PolicyKind, PolicyOptions, Popularity, Workload};
use crate::TokenId;

/// How a hybrid session is set up.
#[derive(Debug, Clone)]
pub struct HybridOptions {
    pub policy: PolicyKind,
    /// The hardware the cost model (and the simulated device's clock) describes.
    pub hw: HwProfile,
    /// The GPU memory the plan may fill.
    pub gpu_mem: u64,
    /// `-ngl`: under `layers` llama.cpp's meaning; under `auto` a cap on what may be resident.
    pub ngl: Option<u32>,
    /// `-ncmoe`: experts of the first N layers stay in host memory.
    pub n_cpu_moe: Option<u32>,
    /// `auto`: exactly this many staging slots (None: the planner's choice).
    pub slots: Option<u32>,
    /// Keep every step's timeline for `--trace`.
    pub trace: bool,
    /// Let measured expert popularity move experts on and off the GPU ([`HotExperts`]).
    pub hot_experts: bool,
    /// `-ot PATTERN=BUFFER,...` (each `-ot` one item), see [`crate::plan::overrides`].
    pub overrides: Vec<String>,
}

/// Virtual time and lane use, split by prefill steps (more than one token) and decode steps.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Clock {
    pub prefill_s: f64,
    pub prefill_tokens: u64,
    pub decode_s: f64,
    pub decode_tokens: u64,
    /// Busy seconds of the cpu, gpu and copy lanes over every step.
    pub busy: [f64; 3],
    /// Decode prefetch: experts used in layers whose experts were predicted, and how many of
    /// them had been predicted.
    pub prefetch_used: u64,
    pub prefetch_hits: u64,
    /// Whether the prefetch trial kept prefetch (None: not decided, or nothing to predict).
    pub prefetch_kept: Option<bool>,
}

impl Clock {
    pub fn prefill_tps(&self) -> f64 {
        if self.prefill_s > 0.0 {
            self.prefill_tokens as f64 / self.prefill_s
        } else {
            0.0
        }
    }

    pub fn decode_tps(&self) -> f64 {
        if self.decode_s > 0.0 {
            self.decode_tokens as f64 / self.decode_s
        } else {
            0.0
        }
    }

    /// Fraction of the used experts that the prediction had named (None: nothing predicted).
    pub fn prefetch_hit_rate(&self) -> Option<f64> {
        (self.prefetch_used > 0).then(|| self.prefetch_hits as f64 / self.prefetch_used as f64)
    }

    /// Busy fraction of each lane over all the time the steps took.
    pub fn busy_fractions(&self) -> [f64; 3] {
        let total = (self.prefill_s + self.decode_s).max(1e-15);
        self.busy.map(|b| b / total)
    }
}

pub struct Hybrid<'m> {
    binding: Binding<'m>,
    graph: TaskGraph,
    plan: Plan,
    cost: CostModel,
    device: Box<dyn Device + 'm>,
    clock: Clock,
    trace: Option<TraceLog>,
    /// The last step as the planner would describe it (its routing as it came out), with its
    /// executed virtual time.
    last_step: Option<(StepSpec, f64)>,
    /// What the load had to change (a plan that did not fit), one line each, for the log.
    notes: Vec<String>,
    hot: Option<HotExperts>,
    /// The swap the cache chose after the last step, made at the start of the next.
    pending: Option<Swap>,
    prefetch: PrefetchTrial,
}

/// Steps of at most this many tokens predict the next layer's experts (decode; a prompt's chunks
/// use almost every expert, whose copies need no prediction).
const PREFETCH_MAX_TOKENS: usize = 4;

/// Decode steps, alternating with and without prefetch, after which the faster is kept: a missed
/// prediction's copy costs the copy lane and host memory bandwidth, so whether prefetch pays
/// depends on the model, the hardware and how well the next layer's router guesses.
const PREFETCH_TRIAL_STEPS: u32 = 8;

/// The prefetch trial: virtual seconds and steps with and without it.
#[derive(Debug, Clone, Default)]
struct PrefetchTrial {
    on: (f64, u32),
    off: (f64, u32),
    kept: Option<bool>,
}

impl PrefetchTrial {
    fn wants(&self) -> bool {
        self.kept.unwrap_or(self.on.1 <= self.off.1)
    }

    fn record(&mut self, with_prefetch: bool, secs: f64) {
        if self.kept.is_some() {
            return;
        }
        let arm = if with_prefetch { &mut self.on } else { &mut self.off };
        *arm = (arm.0 + secs, arm.1 + 1);
        if self.on.1 + self.off.1 >= PREFETCH_TRIAL_STEPS {
            self.kept = Some(self.on.0 / f64::from(self.on.1) < self.off.0 / f64::from(self.off.1));
        }
    }
}

/// The largest host task a staging slot must hold under `plan`.
fn slot_bytes_for(plan: &Plan, graph: &TaskGraph, binding: &Binding) -> u64 {
    graph
        .tasks
        .iter()
        .filter(|t| !plan.resident(t.id) && t.kind != TaskKind::Attention)
        .map(|t| binding.bytes(t.id))
        .max()
        .unwrap_or(0)
}

impl<'m> Hybrid<'m> {
    /// Plans `model` for `device` and loads the plan's resident weights and slots onto it.
    pub fn new(
        model: &'m Model,
        n_ctx: usize,
        n_ubatch: usize,
        opts: &HybridOptions,
        device: Box<dyn Device + 'm>,
    ) -> Result<Hybrid<'m>, ExecError> {
        let shape = ModelShape::from_gguf(model.file(), model.arch().name())?;
        // Whole dense FFNs: see `Binding::new`.
        let graph = TaskGraph::build(&shape, 1, n_ctx as u64);
        let cost = CostModel::new(&opts.hw, shape.wtype, true);
        let mut overrides = Vec::new();
        for o in &opts.overrides {
            overrides.extend(parse_overrides(o)?);
        }
        let binding = Binding::new(model, &shape, &graph)?;
        // What `-ot` forces, and on the host what the device cannot run.
        let mut forced = forced(&graph, &overrides);
        for (id, f) in forced.iter_mut().enumerate() {
            let task = binding.task(id);
            // Routed experts combine gate and up as the architecture says (gpt-oss's clamped
            // GLU); dense FFNs and shared experts are SwiGLU in every family.
            let glu = if matches!(task.kind, TaskKind::Expert { .. }) {
                model.arch().expert_glu()
            } else {
                Glu::SiLU
            };
            if !device.can_run(task, &binding.host_mats(id), glu) {
                *f = Some(false);
            }
        }
        let popts = PolicyOptions {
            gpu_mem_bytes: opts.gpu_mem.min(device.budget()),
            workload: Workload { ubatch: n_ubatch as u64, ..Workload::default() },
            popularity: Popularity::uniform(shape.n_layer, shape.n_expert),
            ngl: opts.ngl,
            n_cpu_moe: opts.n_cpu_moe,
            min_batch: 32,
            slots: opts.slots,
            forced,
        };
        let plan = make_plan(opts.policy, &graph, &cost, &popts, &opts.hw.name)?;
        let mut h = Hybrid {
            binding,
            graph,
            plan,
            cost,
            device,
            clock: Clock::default(),
            trace: opts.trace.then(TraceLog::default),
            last_step: None,
            notes: Vec::new(),
            hot: None,
            pending: None,
            prefetch: PrefetchTrial::default(),
        };
        if opts.hot_experts && h.graph.shape.is_moe() && h.cost.has_gpu() {
            h.hot = Some(HotExperts::new(&h.graph));
        }
        // A plan that does not fit what the device has free is replaced by smaller ones, down to
        // the CPU's (which needs no device memory).
        let mut budget = popts.gpu_mem_bytes;
        while let Err(e) = h.load() {
            h.device.reset();
            if budget == 0 {
                return Err(e);
            }
            budget = if budget > 1 << 20 { budget / 4 * 3 } else { 0 };
            let smaller = PolicyOptions { gpu_mem_bytes: budget, ..popts.clone() };
            h.plan = make_plan(opts.policy, &h.graph, &h.cost, &smaller, &opts.hw.name)?;
            h.notes.push(format!("{e}: planned again for {:.1} MiB", budget as f64 / (1u64 << 20) as f64));
        }
        Ok(h)
    }

    /// Resident weights (with a resident attention block's KV cache), activations and slots.
    fn load(&mut self) -> Result<(), ExecError> {
        let dev = &self.device;
        dev.reserve_activations(self.plan.scratch_bytes)?;
        let kv_per_layer = self.graph.n_ctx * self.graph.shape.kv_bytes_per_token_layer();
        for t in &self.graph.tasks {
            if !self.plan.resident(t.id) {
                continue;
            }
            if t.kind == TaskKind::Attention {
                dev.reserve(&format!("{}'s KV cache", t.name), kv_per_layer)?;
            }
            dev.upload_resident(t.id, &self.binding.host_mats(t.id))?;
        }
        let (slots, bytes) = match self.plan.exec {
            // The schedule streams only what fits the plan's slots.
            ExecRule::Overlap { slots, slot_bytes } => (slots, slot_bytes),
            // llama.cpp's op offload and Fiddler's placeholder: one buffer for the copied weights.
            ExecRule::Serial { .. } | ExecRule::Fiddler { .. } => {
                (1, slot_bytes_for(&self.plan, &self.graph, &self.binding))
            }
        };
        if slots > 0 && bytes > 0 && self.cost.has_gpu() {
            dev.create_slots(slots, bytes)?;
        }
        Ok(())
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    pub fn graph(&self) -> &TaskGraph {
        &self.graph
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Starts the virtual clock and the trace again (after a warm-up run).
    pub fn reset_clock(&mut self) {
        self.clock = Clock::default();
        if let Some(t) = &mut self.trace {
            *t = TraceLog::default();
        }
    }

    /// Hot-expert swaps made so far (None: no cache).
    pub fn hot_swaps(&self) -> Option<u64> {
        self.hot.as_ref().map(HotExperts::swaps)
    }

    /// Lines for the load log: what was changed to make the plan fit.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    pub fn cost(&self) -> &CostModel {
        &self.cost
    }

    /// The last step's size and routing, and its executed virtual seconds.
    pub fn last_step(&self) -> Option<&(StepSpec, f64)> {
        self.last_step.as_ref()
    }

    pub fn device(&self) -> &dyn Device {
        self.device.as_ref()
    }

    pub fn trace(&self) -> Option<&TraceLog> {
        self.trace.as_ref()
    }

    /// One step: `tokens` at positions `pos0..`, their K/V appended to `kv`. Returns the logits
    /// `rows` asks for.
    pub fn step(
        &mut self,
        kv: &Mutex<KvCache>,
        tokens: &[TokenId],
        pos0: usize,
        rows: OutputRows,
    ) -> Result<Vec<f32>, ExecError> {
        let mut logits = self.step_batch(&[SeqChunk { kv, tokens, pos0, rows }])?;
        Ok(logits.pop().unwrap_or_default())
    }

    /// One step over several sequences' chunks at once (see [`super::forward_batch`]); each
    /// chunk's logits, in order. The planner sees the step as its total token count at the
    /// token-weighted mean position.
    pub fn step_batch(&mut self, chunks: &[SeqChunk<'_>]) -> Result<Vec<Vec<f32>>, ExecError> {
        let n_tokens: usize = chunks.iter().map(|c| c.tokens.len()).sum();
        let weighted: usize = chunks.iter().map(|c| c.pos0 * c.tokens.len()).sum();
        let pos0 = weighted.checked_div(n_tokens).unwrap_or(0);
        let model = self.binding.model();
        let swap = self.pending.take();
        if let (Some(swap), Some(hot)) = (swap, &mut self.hot) {
            self.device.evict(swap.evict);
            hot.apply(&mut self.plan, swap);
        }
        let st = StepState::new(model, chunks);
        let mut sb = StepBuilder::new(&self.plan, &self.graph, &self.cost, n_tokens as u64, pos0 as u64);
        if let Some(swap) = swap {
            sb.swap_in(swap.admit);
        }
        let (binding, device, st_ref) = (&self.binding, self.device.as_ref(), &st);
        let is_moe = self.graph.shape.is_moe();
        let n_layer = self.graph.layers.len();
        let may_predict = is_moe
            && n_tokens <= PREFETCH_MAX_TOKENS
            && matches!(self.plan.exec, ExecRule::Overlap { slots, .. } if slots > 0);
        let predict = may_predict && self.prefetch.wants();
        let graph = &self.graph;
        let (mut used, mut hits) = (0u64, 0u64);
        std::thread::scope(|scope| -> Result<(), ExecError> {
            let lanes = Lanes::start(scope)?;
            let mut events: Vec<Arc<Event>> = Vec::new();
            let submit = |ops: &[Op], events: &mut Vec<Arc<Event>>| {
                for op in &ops[events.len()..] {
                    let fences = op.deps.iter().map(|&(d, _)| events[d].clone()).collect();
                    let work = lane_work(op, binding, device, st_ref);
                    events.push(lanes.submit(op.lane, fences, work));
                }
            };
            let mut result = Ok(());
            for layer in 0..n_layer {
                sb.head(layer);
                submit(sb.ops(), &mut events);
                if graph.layers[layer].router.is_some() {
                    // The router is the head's last operation: its choices decide the FFN's.
                    if let Err(e) = events.last().map_or(Ok(()), |e| e.wait()) {
                        result = Err(ExecError::Device(e));
                        break;
                    }
                    let counts = st_ref.expert_counts();
                    if let Some(pred) = sb.predicted(layer) {
                        let picked = counts.iter().zip(pred).filter(|(&c, _)| c > 0);
                        let (u, h) = picked.fold((0, 0), |(u, h), (_, &p)| (u + 1, h + u64::from(p)));
                        (used, hits) = (used + u, hits + h);
                    }
                    sb.set_routed(layer, counts);
                    if let Some(next) = graph.layers.get(layer + 1).and_then(|l| l.router).filter(|_| predict)
                    {
                        let router = binding.host_mats(next);
                        if let Some(r) = router.first() {
                            sb.set_predicted(layer + 1, st_ref.predict_experts(layer + 1, r));
                        }
                    }
                }
                sb.ffn(layer);
                submit(sb.ops(), &mut events);
            }
            if result.is_ok() {
                sb.output();
                submit(sb.ops(), &mut events);
                result = events.iter().try_for_each(|e| e.wait()).map_err(ExecError::Device);
            }
            lanes.finish();
            result
        })?;
        self.clock.prefetch_used += used;
        self.clock.prefetch_hits += hits;
        let spec = sb.spec().clone();
        let timeline = simulate(sb.into_ops(), self.cost.dram_gbs)?;
        if may_predict {
            self.prefetch.record(predict, timeline.makespan);
            self.clock.prefetch_kept = self.prefetch.kept;
        }
        if let Some(hot) = &mut self.hot {
            hot.observe(&spec.routed);
            self.pending = hot.choose(&self.plan, &self.graph);
        }
        self.last_step = Some((spec, timeline.makespan));
        let decode = chunks.iter().all(|c| c.tokens.len() == 1);
        self.record(&timeline, n_tokens as u64, decode);
        Ok(st.take_logits_by_sequence())
    }

    /// `decode`: every sequence in the step evaluated one token (several sequences' decode
    /// tokens batched are still decode); a step with any prompt piece counts as prefill.
    fn record(&mut self, tl: &Timeline, n_tokens: u64, decode: bool) {
        let c = &mut self.clock;
        let start = c.prefill_s + c.decode_s;
        if !decode {
            c.prefill_s += tl.makespan;
            c.prefill_tokens += n_tokens;
        } else {
            c.decode_s += tl.makespan;
            c.decode_tokens += n_tokens;
        }
        for (b, t) in c.busy.iter_mut().zip(tl.busy) {
            *b += t;
        }
        if let Some(trace) = &mut self.trace {
            trace.push(start, tl, &self.graph);
        }
    }
}

/// What operation `op` does on its lane.
fn lane_work<'env>(
    op: &Op,
    binding: &'env Binding<'env>,
    device: &'env dyn Device,
    st: &'env StepState<'env>,
) -> Box<dyn FnOnce() -> Result<(), ExecError> + Send + 'env> {
    let (lane, slot, tokens) = (op.lane, op.slot, op.tokens);
    let Some(id) = op.task else { return Box::new(|| Ok(())) };
    Box::new(move || {
        let task = binding.task(id);
        let mats = binding.host_mats(id);
        match (lane, slot) {
            (Lane::Cpu, _) => {
                st.run(task, &mats);
                Ok(())
            }
            // A prefetch the router did not confirm: the weights arrive and nobody reads them.
            (Lane::Pcie, Some(s)) if tokens == 0 => {
                let r = device.fill_slot(s, id, &mats);
                device.release_slot(s);
                r
            }
            (Lane::Pcie, Some(s)) => device.fill_slot(s, id, &mats),
            // A copy with no staging slot makes the task resident (a hot-expert swap).
            (Lane::Pcie, None) => device.upload_resident(id, &mats),
            (Lane::Gpu, None) => device.run(id, task, &mats, WeightsAt::Resident, st),
            (Lane::Gpu, Some(s)) => {
                let r = device.run(id, task, &mats, WeightsAt::Slot(s), st);
                device.release_slot(s);
                r
            }
        }
    })
}
