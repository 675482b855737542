//! The slot scheduler: one thread that owns the model's sequences and runs every active slot's
//! next tokens in one batched forward per step (continuous batching).
//!
//! (Being written: the interface below is what the HTTP side uses.)

use std::sync::Arc;

use super::api::{GenerateEvent, GenerateRequest, Metrics, SlotInfo};
use crate::model::Model;
use crate::tokenizer::Tokenizer;

/// How the scheduler is set up (from the server's flags).
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// `-np`: slots.
    pub n_slots: usize,
    /// `-c`: the KV pool shared by the slots (tokens).
    pub n_ctx: usize,
    /// The most tokens one slot may hold (`-c`, capped by the model's training context).
    pub n_ctx_slot: usize,
    /// `-b`: tokens per step, over all slots.
    pub n_batch: usize,
    /// `-ub`: tokens per forward.
    pub n_ubatch: usize,
}

/// The HTTP side's handle on the scheduler (cheap to clone).
#[derive(Clone)]
pub struct SchedulerHandle {
    _private: (),
}

impl SchedulerHandle {
    /// Queue a generation; its events arrive on the returned channel. Dropping the receiver
    /// cancels the generation and frees its slot.
    pub fn submit(&self, _req: GenerateRequest) -> tokio::sync::mpsc::UnboundedReceiver<GenerateEvent> {
        todo!("scheduler")
    }

    pub fn slots(&self) -> Vec<SlotInfo> {
        todo!("scheduler")
    }

    pub fn metrics(&self) -> Metrics {
        todo!("scheduler")
    }

    pub fn n_ctx_slot(&self) -> usize {
        todo!("scheduler")
    }

    pub fn total_slots(&self) -> usize {
        todo!("scheduler")
    }

    /// Stop taking requests, cancel the running ones and end the thread.
    pub fn shutdown(&self) {
        todo!("scheduler")
    }
}

/// Start the scheduler's thread over `model`.
pub fn start(
    _model: Arc<Model>,
    _tokenizer: Arc<Tokenizer>,
    _cfg: SchedulerConfig,
) -> Result<SchedulerHandle, String> {
    todo!("scheduler")
}
