//! The slot scheduler: one thread owns the model's sequences (one per slot) and runs every active
//! slot's next tokens in one batched forward per step — continuous batching. Each step takes the
//! decode token of every generating slot, then prompt pieces of the slots still reading their
//! prompts (cut as the command line cuts them, so a slot's numbers do not depend on who else is
//! busy: see `exec::row_order`), evaluates them in one pass, and samples for every slot whose
//! logits came out.
//!
//! The slots share one KV budget of `-c` tokens (llama-server's unified cache): an idle slot's
//! cached prompt is dropped, least recently used first, when a busy one needs the room; a prompt
//! waits while there is none; a generation that still finds none ends as if its context were full.
//!
//! With `--sleep-idle-seconds N`, N seconds without a task put the server to sleep as llama-server
//! does: the session (every KV cache) and the model are dropped, and the next generation loads the
//! model again before it runs. Slots and metrics stay readable meanwhile (their last values).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Instant;

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

mod admit;
mod embed;
mod lora;
mod slot_actions;

use super::api::{
    ApiError, EmbedRequest, EmbedResult, ErrorKind, GenerateEvent, GenerateRequest, Metrics, SlotAction,
    SlotActionDone, SlotInfo, StopType,
};
use super::prompt_cache::PromptCache;
use super::slot::{Generation, Next};
use crate::exec::device::sim::SimDevice;
use crate::exec::hybrid::HybridOptions;
use crate::exec::session::BatchItem;
use crate::exec::{OutputRows, Session};
use crate::model::{Model, ModelError};
use crate::sample::grammar::{GrammarSampler, GrammarVocab};
use crate::sample::{SampleError, SamplerChain};
use crate::tokenizer::Tokenizer;
use crate::TokenId;

/// How the scheduler is set up (from the server's flags).
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// `-np`: slots.
    pub n_slots: usize,
    /// `-c`: the KV pool shared by the slots (tokens).
    pub n_ctx: usize,
    /// The most tokens one slot may hold (`-c`, capped by the model's training context).
    pub n_ctx_slot: usize,
    /// `-b`: a prompt is read in pieces of this many tokens...
    pub n_batch: usize,
    /// `-ub`: ...each evaluated in passes of at most this many.
    pub n_ubatch: usize,
    /// `--sleep-idle-seconds`: idle time before the model is unloaded (`None`: never).
    pub sleep_idle: Option<std::time::Duration>,
    /// `-cram`: the host-memory prompt cache's limit in MiB (negative: none; 0: no cache).
    pub cache_ram_mib: i64,
    /// `--cache-idle-slots`: every idle slot's cache is saved when a task starts.
    pub cache_idle_slots: bool,
    /// The slots share one pool (`-kvu`): an idle slot saved to the cache is also emptied.
    pub kv_unified: bool,
    /// `-sps`: a slot is chosen for its cache when that holds more than this share of a prompt.
    pub slot_prompt_similarity: f32,
    /// The LoRA adapters and their server-wide scales (see `lora.rs`).
    pub lora: Arc<crate::server::lora::ServerLoras>,
}

impl SchedulerConfig {
    /// `n_slots` slots sharing `n_ctx` tokens (each may use all), llama-server's other defaults.
    pub fn new(n_slots: usize, n_ctx: usize) -> SchedulerConfig {
        SchedulerConfig {
            n_slots,
            n_ctx,
            n_ctx_slot: n_ctx,
            n_batch: 2048,
            n_ubatch: 512,
            sleep_idle: None,
            cache_ram_mib: 8192,
            cache_idle_slots: true,
            kv_unified: true,
            slot_prompt_similarity: 0.1,
            lora: Arc::default(),
        }
    }
}

/// Loads the model again after a sleep.
pub type Reload = Box<dyn Fn() -> Result<Arc<Model>, String> + Send>;

/// Makes the session the slots run on: [`Session::with_sequences`] on the CPU, or the hybrid
/// executor's over a device.
pub type OpenSession =
    Box<dyn for<'m> Fn(&'m Model, &SchedulerConfig) -> Result<Session<'m>, ModelError> + Send>;

/// The CPU session: one growable sequence per slot.
pub fn cpu_session() -> OpenSession {
    Box::new(|model, cfg| Session::with_sequences(model, cfg.n_ctx_slot, cfg.n_slots, cfg.n_ubatch))
}

/// The hybrid executor on the simulated GPU of `opts` (`-dev sim`).
pub fn sim_session(opts: HybridOptions, print_plan: bool) -> OpenSession {
    Box::new(move |model, cfg| {
        let device = Box::new(SimDevice::new(&opts.hw.name, opts.gpu_mem));
        let s =
            Session::hybrid_with_sequences(model, cfg.n_ctx_slot, cfg.n_slots, cfg.n_ubatch, &opts, device)?;
        Ok(log_plan(s, print_plan))
    })
}

/// The plan's one-line summary (and with `--print-plan` every placement with its reason).
fn log_plan(s: Session<'_>, print_plan: bool) -> Session<'_> {
    if let Some(h) = s.executor() {
        crate::cli::device::log_loaded(h);
        if print_plan {
            let g = h.graph();
            eprint!("{}", crate::plan::print::plan_text(h.plan(), &|i| g.tasks[i].layer));
        }
    }
    s
}

/// The hybrid executor on CUDA card `ordinal` (`-dev cudaN`), planned with `opts`' speeds and the
/// card's budget; the CPU (after one line saying why) when there is no such card.
pub fn cuda_session(
    opts: HybridOptions,
    ordinal: usize,
    gpu_mem: Option<u64>,
    print_plan: bool,
) -> OpenSession {
    Box::new(move |model, cfg| match crate::exec::device::open_cuda(ordinal, gpu_mem) {
        Ok(device) => {
            let mut opts = opts.clone();
            opts.gpu_mem = opts.gpu_mem.min(device.budget());
            let (n_ctx, n_seq, n_ubatch) = (cfg.n_ctx_slot, cfg.n_slots, cfg.n_ubatch);
            let s = Session::hybrid_with_sequences(model, n_ctx, n_seq, n_ubatch, &opts, device)?;
            Ok(log_plan(s, print_plan))
        }
        Err(e) => {
            crate::log_warn!("gpu: -dev cuda{ordinal}: {e}; running on the CPU\n");
            Session::with_sequences(model, cfg.n_ctx_slot, cfg.n_slots, cfg.n_ubatch)
        }
    })
}

enum Command {
    Submit(Box<Task>),
    SlotAction(SlotAction, ActionReply),
    Embed(EmbedRequest, EmbedReply),
    Shutdown,
}

/// Where an embedding's answer goes.
type EmbedReply = tokio::sync::oneshot::Sender<EmbedResult>;

/// Where a slot action's answer goes.
type ActionReply = tokio::sync::oneshot::Sender<Result<SlotActionDone, ApiError>>;

struct Task {
    id: u64,
    req: GenerateRequest,
    tx: UnboundedSender<GenerateEvent>,
}

/// What the scheduler's thread shows the HTTP side, refreshed after every step.
#[derive(Default)]
struct Shared {
    slots: Mutex<Vec<SlotInfo>>,
    metrics: Mutex<Metrics>,
    stopped: AtomicBool,
    sleeping: AtomicBool,
}

/// The HTTP side's handle on the scheduler (cheap to clone).
#[derive(Clone)]
pub struct SchedulerHandle {
    tx: mpsc::Sender<Command>,
    shared: Arc<Shared>,
    next_id: Arc<AtomicU64>,
    n_ctx_slot: usize,
    n_slots: usize,
}

fn unavailable() -> GenerateEvent {
    GenerateEvent::Error(ApiError::new(ErrorKind::Unavailable, "the server is shutting down"))
}

impl SchedulerHandle {
    /// Queue a generation; its events arrive on the returned channel. Dropping the receiver
    /// cancels the generation and frees its slot.
    pub fn submit(&self, req: GenerateRequest) -> UnboundedReceiver<GenerateEvent> {
        let (tx, rx) = unbounded_channel();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        if self.shared.stopped.load(Ordering::Acquire) {
            let _ = tx.send(unavailable());
        } else if let Err(mpsc::SendError(Command::Submit(t))) =
            self.tx.send(Command::Submit(Box::new(Task { id, req, tx })))
        {
            let _ = t.tx.send(unavailable());
        }
        rx
    }

    pub fn slots(&self) -> Vec<SlotInfo> {
        self.shared.slots.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn metrics(&self) -> Metrics {
        *self.shared.metrics.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn n_ctx_slot(&self) -> usize {
        self.n_ctx_slot
    }

    pub fn total_slots(&self) -> usize {
        self.n_slots
    }

    /// The model is unloaded until the next generation (`--sleep-idle-seconds`).
    pub fn is_sleeping(&self) -> bool {
        self.shared.sleeping.load(Ordering::Acquire)
    }

    /// Do `action` on an idle slot (it waits while the slot is busy).
    pub fn slot_action(
        &self,
        action: SlotAction,
    ) -> tokio::sync::oneshot::Receiver<Result<SlotActionDone, ApiError>> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.shared.stopped.load(Ordering::Acquire) {
            let _ = tx.send(Err(ApiError::new(ErrorKind::Unavailable, "the server is shutting down")));
        } else if let Err(mpsc::SendError(Command::SlotAction(_, tx))) =
            self.tx.send(Command::SlotAction(action, tx))
        {
            let _ = tx.send(Err(ApiError::new(ErrorKind::Unavailable, "the server is shutting down")));
        }
        rx
    }

    /// Embed one prompt on an idle slot (see `embed.rs`).
    pub fn embed(&self, req: EmbedRequest) -> tokio::sync::oneshot::Receiver<EmbedResult> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let down = || ApiError::new(ErrorKind::Unavailable, "the server is shutting down");
        if self.shared.stopped.load(Ordering::Acquire) {
            let _ = tx.send(Err(down()));
        } else if let Err(mpsc::SendError(Command::Embed(_, tx))) = self.tx.send(Command::Embed(req, tx)) {
            let _ = tx.send(Err(down()));
        }
        rx
    }

    /// Stop taking requests, cancel the running ones and end the thread.
    pub fn shutdown(&self) {
        self.shared.stopped.store(true, Ordering::Release);
        let _ = self.tx.send(Command::Shutdown);
    }
}

/// Start the scheduler's thread over `model`; an error when its session cannot be made.
/// `reload` loads the model again after a sleep (see the module note).
pub fn start(
    model: Arc<Model>,
    tokenizer: Arc<Tokenizer>,
    cfg: SchedulerConfig,
    open: OpenSession,
    reload: Reload,
) -> Result<SchedulerHandle, String> {
    if cfg.n_slots == 0 || cfg.n_ctx_slot == 0 || cfg.n_batch == 0 || cfg.n_ubatch == 0 {
        return Err(format!("bad scheduler settings: {cfg:?}"));
    }
    let (tx, rx) = mpsc::channel();
    let shared = Arc::new(Shared::default());
    let handle = SchedulerHandle {
        tx,
        shared: Arc::clone(&shared),
        next_id: Arc::new(AtomicU64::new(0)),
        n_ctx_slot: cfg.n_ctx_slot,
        n_slots: cfg.n_slots,
    };
    let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
    std::thread::Builder::new()
        .name("rs-llama-slots".into())
        .spawn(move || {
            // The loop runs on one of the compute pool's threads: each parallel loop of a forward
            // then starts without waking a sleeping pool (hundreds of wake-ups per token).
            crate::cli::threads::on_pool(move || {
                run_until_shutdown(model, &tokenizer, &cfg, &open, &reload, &shared, &rx, ready_tx)
            })
        })
        .map_err(|e| format!("cannot start the scheduler thread: {e}"))?;
    match ready_rx.recv() {
        Ok(Ok(())) => Ok(handle),
        Ok(Err(e)) => Err(e),
        Err(_) => Err("the scheduler thread ended while starting".into()),
    }
}

/// What outlives a sleep: the tasks that came while the model was away, and the counters.
#[derive(Default)]
struct Carry {
    queue: VecDeque<Task>,
    actions: VecDeque<(SlotAction, ActionReply)>,
    embeds: VecDeque<(EmbedRequest, EmbedReply)>,
    metrics: Metrics,
}

/// Why [`Scheduler::run`] returned.
enum Ended {
    Shutdown,
    /// Idle for `--sleep-idle-seconds`.
    Idle(Carry),
}

/// The scheduler over the model, then (after each sleep) over the model loaded again, until
/// shutdown. The first session's result goes to `ready`.
#[allow(clippy::too_many_arguments)]
fn run_until_shutdown(
    model: Arc<Model>,
    tokenizer: &Tokenizer,
    cfg: &SchedulerConfig,
    open: &OpenSession,
    reload: &Reload,
    shared: &Arc<Shared>,
    rx: &mpsc::Receiver<Command>,
    ready: mpsc::Sender<Result<(), String>>,
) {
    let mut model = Some(model);
    let mut ready = Some(ready);
    let mut carry = Carry::default();
    loop {
        let opened = model.take().map_or_else(reload, Ok).and_then(|m| {
            let slept = run_model(&m, tokenizer, cfg, open, shared, rx, &mut ready, &mut carry)?;
            Ok(slept)
        });
        match opened {
            Ok(false) => return,
            Ok(true) => {
                shared.sleeping.store(true, Ordering::Release);
                crate::log_info!("srv  {:>12.12}: server is entering sleeping state\n", "handle_sleep");
            }
            Err(e) => match ready.take() {
                Some(r) => {
                    let _ = r.send(Err(e));
                    return;
                }
                None => {
                    // llama-server aborts here; the server stays up, asleep, and the next
                    // request tries again.
                    let why = format!("failed to reload model after sleeping: {e}");
                    crate::log_error!("srv  {:>12.12}: {why}\n", "handle_sleep");
                    for t in carry.queue.drain(..) {
                        let _ =
                            t.tx.send(GenerateEvent::Error(ApiError::new(ErrorKind::Server, why.clone())));
                    }
                    for (_, tx) in carry.actions.drain(..) {
                        let _ = tx.send(Err(ApiError::new(ErrorKind::Server, why.clone())));
                    }
                    for (_, tx) in carry.embeds.drain(..) {
                        let _ = tx.send(Err(ApiError::new(ErrorKind::Server, why.clone())));
                    }
                }
            },
        }
        match rx.recv() {
            Ok(Command::Submit(t)) => carry.queue.push_back(*t),
            Ok(Command::SlotAction(a, tx)) => carry.actions.push_back((a, tx)),
            Ok(Command::Embed(e, tx)) => carry.embeds.push_back((e, tx)),
            Ok(Command::Shutdown) | Err(_) => return,
        }
    }
}

/// The slots over `model` until shutdown (`Ok(false)`) or an idle timeout (`Ok(true)`, the
/// session dropped); `Err` when the session cannot be made.
#[allow(clippy::too_many_arguments)]
fn run_model(
    model: &Model,
    tokenizer: &Tokenizer,
    cfg: &SchedulerConfig,
    open: &OpenSession,
    shared: &Arc<Shared>,
    rx: &mpsc::Receiver<Command>,
    ready: &mut Option<mpsc::Sender<Result<(), String>>>,
    carry: &mut Carry,
) -> Result<bool, String> {
    let session = open(model, cfg).map_err(|e| e.to_string())?;
    if !cfg.lora.is_empty() && session.executor().is_some() {
        return Err("LoRA adapters run on the CPU path only (not with -dev sim or a GPU)".into());
    }
    match ready.take() {
        Some(r) => {
            let _ = r.send(Ok(()));
        }
        None => crate::log_info!("srv  {:>12.12}: server is exiting sleeping state\n", "handle_sleep"),
    }
    shared.sleeping.store(false, Ordering::Release);
    let mut sched =
        Scheduler::new(session, tokenizer, cfg.clone(), Arc::clone(shared), std::mem::take(carry));
    match sched.run(rx) {
        Ended::Shutdown => Ok(false),
        Ended::Idle(c) => {
            *carry = c;
            Ok(true)
        }
    }
}

/// The task a slot runs or ran last, as `/slots` names it.
struct TaskView {
    id: u64,
    /// The request without its prompt.
    params: Arc<GenerateRequest>,
}

/// One slot: the tokens in its sequence's cache, and the generation on it, if any.
struct Slot {
    cache: Vec<TokenId>,
    gen: Option<Generation>,
    /// The running task, else the last one (llama-server's `task_prev`).
    view: Option<TaskView>,
    /// Step of its last use (for dropping idle caches, least recent first).
    last_used: u64,
    /// The LoRA scales its cache was made with (see `lora.rs`).
    lora: Vec<f32>,
}

struct Scheduler<'m, 't> {
    session: Session<'m>,
    tok: &'t Tokenizer,
    cfg: SchedulerConfig,
    shared: Arc<Shared>,
    slots: Vec<Slot>,
    queue: VecDeque<Task>,
    step: u64,
    metrics: Metrics,
    /// The vocabulary's pieces for grammars, made at the first request with a grammar.
    grammar_vocab: Option<Arc<GrammarVocab>>,
    /// `--cache-ram` (None: 0).
    prompt_cache: Option<PromptCache>,
    /// Slot actions waiting for their slot to be idle.
    actions: VecDeque<(SlotAction, ActionReply)>,
    /// Embeddings waiting for an idle slot.
    embeds: VecDeque<(EmbedRequest, EmbedReply)>,
}

impl<'m, 't> Scheduler<'m, 't> {
    fn new(
        session: Session<'m>,
        tok: &'t Tokenizer,
        cfg: SchedulerConfig,
        shared: Arc<Shared>,
        carry: Carry,
    ) -> Self {
        let (cfg_cache_ram, cfg_n_ctx) = (cfg.cache_ram_mib, cfg.n_ctx);
        let slots = (0..cfg.n_slots)
            .map(|_| Slot { cache: Vec::new(), gen: None, view: None, last_used: 0, lora: cfg.lora.global() })
            .collect();
        let mut s = Scheduler {
            session,
            tok,
            cfg,
            shared,
            slots,
            queue: carry.queue,
            actions: carry.actions,
            embeds: carry.embeds,
            step: 0,
            metrics: carry.metrics,
            grammar_vocab: None,
            prompt_cache: (cfg_cache_ram != 0).then(|| PromptCache::new(cfg_cache_ram, cfg_n_ctx)),
        };
        s.publish();
        s
    }

    fn run(&mut self, rx: &mpsc::Receiver<Command>) -> Ended {
        let mut last_busy = Instant::now();
        loop {
            let idle = self.queue.is_empty()
                && self.actions.is_empty()
                && self.embeds.is_empty()
                && self.slots.iter().all(|s| s.gen.is_none());
            if idle {
                let c = match self.cfg.sleep_idle {
                    None => rx.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected),
                    Some(d) => rx.recv_timeout(d.saturating_sub(last_busy.elapsed())),
                };
                match c {
                    Ok(c) => {
                        if !self.take(c) {
                            self.stop();
                            return Ended::Shutdown;
                        }
                    }
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        self.publish();
                        let metrics = self.metrics;
                        let queue = std::mem::take(&mut self.queue);
                        let actions = std::mem::take(&mut self.actions);
                        let embeds = std::mem::take(&mut self.embeds);
                        return Ended::Idle(Carry { queue, actions, embeds, metrics });
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => {
                        self.stop();
                        return Ended::Shutdown;
                    }
                }
            }
            last_busy = Instant::now();
            while let Ok(c) = rx.try_recv() {
                if !self.take(c) {
                    self.stop();
                    return Ended::Shutdown;
                }
            }
            self.drop_cancelled();
            self.run_slot_actions();
            let embedded = self.run_embeds();
            self.admit();
            if !self.run_step() && !embedded {
                // Nothing could run (everything waits for room): do not spin.
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            self.publish();
        }
    }

    /// False for shutdown.
    fn take(&mut self, c: Command) -> bool {
        match c {
            Command::Submit(t) => {
                self.queue.push_back(*t);
                true
            }
            Command::SlotAction(a, tx) => {
                self.actions.push_back((a, tx));
                true
            }
            Command::Embed(e, tx) => {
                self.embeds.push_back((e, tx));
                true
            }
            Command::Shutdown => false,
        }
    }

    /// Cancel what runs and what waits.
    fn stop(&mut self) {
        if let Some(h) = self.session.executor() {
            crate::log_info!("{}\n", crate::cli::device::report_line(h));
        }
        for t in self.queue.drain(..) {
            let _ = t.tx.send(unavailable());
        }
        for (_, tx) in self.actions.drain(..) {
            let _ = tx.send(Err(ApiError::new(ErrorKind::Unavailable, "the server is shutting down")));
        }
        for (_, tx) in self.embeds.drain(..) {
            let _ = tx.send(Err(ApiError::new(ErrorKind::Unavailable, "the server is shutting down")));
        }
        for s in &mut self.slots {
            if let Some(g) = s.gen.take() {
                let _ = g.tx.send(unavailable());
            }
        }
        self.publish();
    }

    fn drop_cancelled(&mut self) {
        for s in &mut self.slots {
            if s.gen.as_ref().is_some_and(Generation::cancelled) {
                s.gen = None;
            }
        }
        self.queue.retain(|t| !t.tx.is_closed());
    }

    /// Start task `t` on slot `i`; false when its samplers cannot be made (it is answered then).
    pub(super) fn start_on(&mut self, i: usize, t: Task) -> bool {
        let mut sampling = t.req.sampling.clone();
        if sampling.ignore_eos && self.tok.eos().is_none() {
            sampling.ignore_eos = false;
        }
        let grammar = match self.grammar(&sampling.grammar) {
            Ok(g) => g,
            Err(e) => {
                // llama-server's words when its sampler cannot be made, with the reason after them.
                let e = ApiError::invalid(format!("Failed to initialize samplers: {e}"));
                let _ = t.tx.send(GenerateEvent::Error(e));
                return false;
            }
        };
        let mut chain = match SamplerChain::new(&sampling, &self.tok.eog_tokens()) {
            Ok(c) => c.with_grammar(grammar),
            Err(e) => {
                let _ = t.tx.send(GenerateEvent::Error(ApiError::invalid(e.to_string())));
                return false;
            }
        };
        // Penalties see the prompt, as llama-server's sampler does.
        for &id in &t.req.prompt {
            chain.accept(id);
        }
        let lora_changed = self.take_lora(i, &t.req);
        let slot = &mut self.slots[i];
        let mut keep =
            if t.req.cache_prompt && !lora_changed { common_prefix(&slot.cache, &t.req.prompt) } else { 0 };
        // At least the prompt's last token is evaluated: its logits are the first sample's.
        keep = keep.min(t.req.prompt.len() - 1);
        slot.cache.truncate(keep);
        self.session.truncate(i, keep);
        slot.last_used = self.step;
        self.metrics.prompt_tokens_cached_total += keep as u64;
        let (n_batch, n_ubatch) = (self.cfg.n_batch, self.cfg.n_ubatch.min(self.cfg.n_batch));
        let params = Arc::new(GenerateRequest { prompt: Vec::new(), ..t.req.clone() });
        slot.view = Some(TaskView { id: t.id, params });
        slot.gen = Some(Generation::new(t.id, t.req, t.tx, chain, keep, n_batch, n_ubatch));
        true
    }

    /// A request's grammar over the model's vocabulary (None for no grammar).
    fn grammar(&mut self, text: &str) -> Result<Option<GrammarSampler>, SampleError> {
        if text.is_empty() {
            return Ok(None);
        }
        let tok = self.tok;
        let vocab = self.grammar_vocab.get_or_insert_with(|| Arc::new(GrammarVocab::from_tokenizer(tok)));
        let tokenize = |text: &[u8]| tok.encode_bytes(text, false, true);
        Ok(GrammarSampler::from_text(text, Arc::clone(vocab), &tokenize)?)
    }

    /// One pass over every busy slot's next tokens; false when there was nothing to run.
    fn run_step(&mut self) -> bool {
        // (slot, tokens, is the prompt's last piece or a decode token)
        let mut plan: Vec<(usize, Vec<TokenId>, bool)> = Vec::new();
        for (i, s) in self.slots.iter().enumerate() {
            if let Some(tok) = s.gen.as_ref().and_then(|g| g.pending) {
                plan.push((i, vec![tok], true));
            }
        }
        let mut room = self.cfg.n_ubatch;
        for (i, s) in self.slots.iter().enumerate() {
            let Some(g) = &s.gen else { continue };
            let Some(piece) = g.pieces.front() else { continue };
            // A piece is never cut further: it rides alone in a pass when it is bigger than the room.
            if piece.len() > room && room < self.cfg.n_ubatch {
                continue;
            }
            if g.pending.is_some() {
                continue;
            }
            room = room.saturating_sub(piece.len());
            plan.push((i, g.req.prompt[piece.clone()].to_vec(), g.pieces.len() == 1));
        }
        let lora = self.one_lora_per_pass(&mut plan);
        self.fit_pool(&mut plan);
        if plan.is_empty() {
            return false;
        }
        if let Err(e) = lora {
            for (i, _, _) in &plan {
                self.fail_slot(*i, &e.to_string());
            }
            return true;
        }
        self.step += 1;
        let items: Vec<BatchItem<'_>> = plan
            .iter()
            .map(|(i, tokens, last)| BatchItem {
                seq: *i,
                tokens,
                logits: if *last { OutputRows::Last } else { OutputRows::None },
            })
            .collect();
        let started = Instant::now();
        let result = self.session.decode_batch(&items);
        drop(items);
        let spent = started.elapsed().as_secs_f64();
        let logits = match result {
            Ok(l) => l,
            Err(e) => {
                for (i, _, _) in &plan {
                    self.fail_slot(*i, &e.to_string());
                }
                return true;
            }
        };
        self.count_pass(&plan, spent);
        let n_ctx_slot = self.cfg.n_ctx_slot;
        for ((i, tokens, last), l) in plan.into_iter().zip(logits) {
            let slot = &mut self.slots[i];
            slot.cache.extend_from_slice(&tokens);
            slot.last_used = self.step;
            let Some(g) = slot.gen.as_mut() else { continue };
            if g.pending.take().is_none() {
                g.pieces.pop_front();
                if !last {
                    continue;
                }
                g.prompt_finished();
            }
            let room = slot.cache.len() + 1 < n_ctx_slot;
            if g.sample_and_process(&l, self.tok, room, i) == Next::Done {
                let g = slot.gen.take();
                if let Some(g) = g {
                    let t = g.timings();
                    self.metrics.tokens_predicted_total += t.predicted_n as u64;
                    self.metrics.tokens_predicted_seconds_total += t.predicted_ms / 1e3;
                    let len = (g.req.prompt.len() + g.generated.len()) as u64;
                    self.metrics.n_tokens_max = self.metrics.n_tokens_max.max(len);
                }
            }
        }
        true
    }

    /// Keep the pass inside the KV pool: drop idle slots' caches (least recently used first),
    /// then hold prompt pieces back, then end the generations that still find no room.
    fn fit_pool(&mut self, plan: &mut Vec<(usize, Vec<TokenId>, bool)>) {
        let need = |slots: &[Slot], plan: &[(usize, Vec<TokenId>, bool)]| -> usize {
            slots.iter().map(|s| s.cache.len()).sum::<usize>() + plan.iter().map(|p| p.1.len()).sum::<usize>()
        };
        let n_ctx = self.cfg.n_ctx;
        while need(&self.slots, plan) > n_ctx {
            let idle = self.slots.iter().enumerate().filter(|(_, s)| s.gen.is_none() && !s.cache.is_empty());
            let Some((i, _)) = idle.min_by_key(|(_, s)| s.last_used) else { break };
            self.slots[i].cache.clear();
            self.session.forget(i);
        }
        while need(&self.slots, plan) > n_ctx {
            let prompt_at = plan
                .iter()
                .rposition(|(i, _, _)| self.slots[*i].gen.as_ref().is_some_and(|g| g.pending.is_none()));
            match prompt_at {
                Some(k) => {
                    plan.remove(k);
                }
                None => break,
            }
        }
        while need(&self.slots, plan) > n_ctx && !plan.is_empty() {
            let k = (0..plan.len()).max_by_key(|&k| self.slots[plan[k].0].cache.len()).unwrap_or(0);
            let (i, _, _) = plan.remove(k);
            if let Some(mut g) = self.slots[i].gen.take() {
                g.finish(StopType::Limit, String::new(), true, i);
            }
        }
    }

    fn fail_slot(&mut self, i: usize, why: &str) {
        let slot = &mut self.slots[i];
        slot.cache.clear();
        self.session.forget(i);
        if let Some(g) = slot.gen.take() {
            let _ = g.tx.send(GenerateEvent::Error(ApiError::new(ErrorKind::Server, why)));
        }
    }

    fn count_pass(&mut self, plan: &[(usize, Vec<TokenId>, bool)], seconds: f64) {
        let m = &mut self.metrics;
        m.n_decode_total += 1;
        m.n_busy_slots_total += plan.len() as u64;
        let prompt_tokens: usize = plan
            .iter()
            .filter(|(i, _, _)| self.slots[*i].gen.as_ref().is_some_and(|g| g.pending.is_none()))
            .map(|p| p.1.len())
            .sum();
        if prompt_tokens > 0 {
            m.prompt_tokens_total += prompt_tokens as u64;
            m.prompt_seconds_total += seconds;
        }
    }

    fn publish(&mut self) {
        self.metrics.requests_processing = self.slots.iter().filter(|s| s.gen.is_some()).count() as u64;
        let infos = self
            .slots
            .iter()
            .enumerate()
            .map(|(id, s)| {
                let v = s.view.as_ref();
                // As llama-server, an idle slot keeps its last task's id and settings, but its
                // counters start again from zero.
                let g = s.gen.as_ref();
                SlotInfo {
                    id,
                    id_task: v.map(|v| v.id),
                    n_ctx: self.cfg.n_ctx_slot,
                    is_processing: g.is_some(),
                    n_cached: s.cache.len(),
                    n_prompt_processed: g.map_or(0, Generation::n_prompt_processed),
                    n_prompt_cached: g.map_or(0, |g| g.n_cached),
                    n_decoded: g.map_or(0, |g| g.generated.len()),
                    n_remaining: g.map_or(-1, |g| {
                        if g.req.n_predict < 0 {
                            -1
                        } else {
                            g.req.n_predict as i64 - g.generated.len() as i64
                        }
                    }),
                    has_next_token: g.is_some(),
                    has_new_line: g.is_some_and(Generation::has_new_line),
                    params: v.map(|v| Arc::clone(&v.params)),
                }
            })
            .collect();
        *self.shared.slots.lock().unwrap_or_else(|e| e.into_inner()) = infos;
        *self.shared.metrics.lock().unwrap_or_else(|e| e.into_inner()) = self.metrics;
    }
}

fn common_prefix(a: &[TokenId], b: &[TokenId]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}
