//! One sequence being evaluated: the KV cache, the position counter, and what runs its steps —
//! the CPU forward pass, or the hybrid executor over a device.

use std::sync::Mutex;

use super::device::Device;
use super::hybrid::{Hybrid, HybridOptions};
use super::{forward, KvCache, OutputRows};
use crate::model::{Logits, Model, ModelError};
use crate::TokenId;

/// One sequence being evaluated: a KV cache (f16) of `n_ctx` positions plus scratch buffers.
pub struct Session<'m> {
    model: &'m Model,
    kv: Mutex<KvCache>,
    n_ctx: usize,
    n_past: usize,
    n_ubatch: usize,
    hybrid: Option<Box<Hybrid<'m>>>,
}

impl<'m> Session<'m> {
    /// `n_ubatch`: the largest number of tokens evaluated in one pass (llama.cpp's `-ub`).
    pub fn new(model: &'m Model, n_ctx: usize, n_ubatch: usize) -> Result<Session<'m>, ModelError> {
        if n_ctx == 0 || n_ubatch == 0 {
            return Err(ModelError::Invalid(format!(
                "n_ctx ({n_ctx}) and n_ubatch ({n_ubatch}) must be > 0"
            )));
        }
        let hp = model.hparams();
        let kv = KvCache::new(hp.n_layer, n_ctx, hp.n_embd_k_gqa(), hp.n_embd_v_gqa())
            .map_err(ModelError::Invalid)?;
        Ok(Session { model, kv: Mutex::new(kv), n_ctx, n_past: 0, n_ubatch, hybrid: None })
    }

    /// A session whose steps the hybrid executor runs on `device` under a plan made for it.
    pub fn hybrid(
        model: &'m Model,
        n_ctx: usize,
        n_ubatch: usize,
        opts: &HybridOptions,
        device: Box<dyn Device + 'm>,
    ) -> Result<Session<'m>, ModelError> {
        let mut s = Session::new(model, n_ctx, n_ubatch)?;
        let h = Hybrid::new(model, n_ctx, n_ubatch, opts, device)
            .map_err(|e| ModelError::Invalid(e.to_string()))?;
        s.hybrid = Some(Box::new(h));
        Ok(s)
    }

    /// Starts the hybrid executor's virtual clock again, when this session has one.
    pub fn reset_executor_clock(&mut self) {
        if let Some(h) = &mut self.hybrid {
            h.reset_clock();
        }
    }

    /// The hybrid executor, when this session has one.
    pub fn executor(&self) -> Option<&Hybrid<'m>> {
        self.hybrid.as_deref()
    }

    /// Evaluate `tokens` at positions `n_past..n_past + len` and append them to the KV cache.
    pub fn decode(&mut self, tokens: &[TokenId], logits: Logits) -> Result<Vec<f32>, ModelError> {
        if tokens.is_empty() {
            return Err(ModelError::Invalid("decode called with no tokens".into()));
        }
        let n_ctx = self.n_ctx();
        if self.n_past + tokens.len() > n_ctx {
            return Err(ModelError::ContextFull { n_past: self.n_past, n_new: tokens.len(), n_ctx });
        }
        let n_vocab = self.model.n_vocab();
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= n_vocab) {
            return Err(ModelError::Invalid(format!("token id {bad} is out of range (n_vocab = {n_vocab})")));
        }
        let n_chunks = tokens.len().div_ceil(self.n_ubatch);
        let mut out = Vec::new();
        for (i, chunk) in tokens.chunks(self.n_ubatch).enumerate() {
            let rows = match logits {
                Logits::All => OutputRows::All,
                Logits::Last if i + 1 == n_chunks => OutputRows::Last,
                Logits::Last => OutputRows::None,
            };
            let logits = match &mut self.hybrid {
                Some(h) => h
                    .step(&self.kv, chunk, self.n_past, rows)
                    .map_err(|e| ModelError::Invalid(e.to_string()))?,
                None => forward(self.model, &self.kv, chunk, self.n_past, rows),
            };
            out.extend(logits);
            self.n_past += chunk.len();
        }
        Ok(out)
    }

    /// Tokens in the KV cache.
    pub fn n_past(&self) -> usize {
        self.n_past
    }

    pub fn n_ctx(&self) -> usize {
        self.n_ctx
    }

    /// Empty the KV cache.
    pub fn clear(&mut self) {
        self.n_past = 0;
    }
}
