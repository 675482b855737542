//! Sequences being evaluated: their KV caches and position counters, and what runs their steps —
//! the CPU forward pass, or the hybrid executor over a device. One sequence for the command-line
//! tools; several for the server, whose slots' tokens are evaluated together in one pass.

use std::sync::Mutex;

use super::device::Device;
use super::hybrid::{Hybrid, HybridOptions};
use super::{forward, forward_batch, forward_hidden, KvCache, KvSnapshot, OutputRows, SeqChunk};
use crate::model::lora::ActiveLora;
use crate::model::{Logits, Model, ModelError};
use crate::TokenId;

/// One sequence's KV cache and length.
struct Sequence {
    kv: Mutex<KvCache>,
    n_past: usize,
}

/// One sequence's tokens for [`Session::decode_batch`].
#[derive(Debug, Clone, Copy)]
pub struct BatchItem<'a> {
    pub seq: usize,
    pub tokens: &'a [TokenId],
    /// The logits wanted: none (a prompt's piece before its last), the last token's, or all.
    pub logits: OutputRows,
}

/// Sequences being evaluated, each with a KV cache (f16) of up to `n_ctx` positions.
pub struct Session<'m> {
    model: &'m Model,
    seqs: Vec<Sequence>,
    n_ctx: usize,
    n_ubatch: usize,
    hybrid: Option<Box<Hybrid<'m>>>,
    /// The LoRA adapters every pass applies (CPU forward only).
    lora: Vec<ActiveLora>,
}

impl<'m> Session<'m> {
    /// `n_ubatch`: the largest number of tokens evaluated in one pass (llama.cpp's `-ub`).
    pub fn new(model: &'m Model, n_ctx: usize, n_ubatch: usize) -> Result<Session<'m>, ModelError> {
        check_context(model, n_ctx)?;
        if n_ctx == 0 || n_ubatch == 0 {
            return Err(ModelError::Invalid(format!(
                "n_ctx ({n_ctx}) and n_ubatch ({n_ubatch}) must be > 0"
            )));
        }
        let hp = model.hparams();
        let (k_row, v_row) = hp.kv_cache_rows();
        let kv = KvCache::new(hp.n_layer, n_ctx, k_row, v_row).map_err(ModelError::Invalid)?;
        let seqs = vec![Sequence { kv: Mutex::new(kv), n_past: 0 }];
        Ok(Session { model, seqs, n_ctx, n_ubatch, hybrid: None, lora: Vec::new() })
    }

    /// `n_seq` sequences of up to `n_ctx` positions each, whose caches grow as they fill (so
    /// together they hold only what is in them). A pass holds `n_ubatch` tokens plus one per
    /// sequence: a full micro-batch of prompt beside every other sequence's decode token.
    pub fn with_sequences(
        model: &'m Model,
        n_ctx: usize,
        n_seq: usize,
        n_ubatch: usize,
    ) -> Result<Session<'m>, ModelError> {
        let mut s = Session::new(model, 1, n_ubatch + n_seq)?;
        check_context(model, n_ctx)?;
        if n_ctx == 0 || n_seq == 0 {
            return Err(ModelError::Invalid(format!("n_ctx ({n_ctx}) and n_seq ({n_seq}) must be > 0")));
        }
        let hp = model.hparams();
        let mut seqs = Vec::with_capacity(n_seq);
        for _ in 0..n_seq {
            let (k_row, v_row) = hp.kv_cache_rows();
            let kv = KvCache::growable(hp.n_layer, n_ctx, k_row, v_row).map_err(ModelError::Invalid)?;
            seqs.push(Sequence { kv: Mutex::new(kv), n_past: 0 });
        }
        (s.seqs, s.n_ctx) = (seqs, n_ctx);
        Ok(s)
    }

    /// [`Session::with_sequences`] whose steps the hybrid executor runs on `device`.
    pub fn hybrid_with_sequences(
        model: &'m Model,
        n_ctx: usize,
        n_seq: usize,
        n_ubatch: usize,
        opts: &HybridOptions,
        device: Box<dyn Device + 'm>,
    ) -> Result<Session<'m>, ModelError> {
        let mut s = Session::with_sequences(model, n_ctx, n_seq, n_ubatch)?;
        let h = Hybrid::new(model, n_ctx, s.n_ubatch, opts, device)
            .map_err(|e| ModelError::Invalid(e.to_string()))?;
        s.hybrid = Some(Box::new(h));
        Ok(s)
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

    /// Evaluate `tokens` at positions `n_past..n_past + len` of the first sequence and append
    /// them to its KV cache.
    pub fn decode(&mut self, tokens: &[TokenId], logits: Logits) -> Result<Vec<f32>, ModelError> {
        if tokens.is_empty() {
            return Err(ModelError::Invalid("decode called with no tokens".into()));
        }
        let logits = match logits {
            Logits::Last => OutputRows::Last,
            Logits::All => OutputRows::All,
        };
        let mut out = self.decode_batch(&[BatchItem { seq: 0, tokens, logits }])?;
        Ok(out.pop().unwrap_or_default())
    }

    /// Evaluate several sequences' tokens together: passes of at most `n_ubatch` tokens over all
    /// of them (a sequence's tokens may be split between passes), each pass one forward whose
    /// matmuls cover every sequence's rows. Returns each item's logits, in order (for
    /// [`Logits::Last`], its last token's). Nothing is evaluated when an item is bad.
    pub fn decode_batch(&mut self, items: &[BatchItem<'_>]) -> Result<Vec<Vec<f32>>, ModelError> {
        let (n_ctx, n_vocab) = (self.n_ctx, self.model.n_vocab());
        let mut seen = vec![false; self.seqs.len()];
        for it in items {
            let seq = self
                .seqs
                .get(it.seq)
                .ok_or_else(|| ModelError::Invalid(format!("sequence {} of {}", it.seq, self.seqs.len())))?;
            if std::mem::replace(&mut seen[it.seq], true) {
                return Err(ModelError::Invalid(format!("sequence {} twice in one batch", it.seq)));
            }
            if seq.n_past + it.tokens.len() > n_ctx {
                return Err(ModelError::ContextFull { n_past: seq.n_past, n_new: it.tokens.len(), n_ctx });
            }
            if let Some(&bad) = it.tokens.iter().find(|&&t| t as usize >= n_vocab) {
                return Err(ModelError::Invalid(format!(
                    "token id {bad} is out of range (n_vocab = {n_vocab})"
                )));
            }
        }
        for it in items {
            let seq = &mut self.seqs[it.seq];
            let kv = seq.kv.get_mut().unwrap_or_else(|e| e.into_inner());
            kv.reserve(seq.n_past + it.tokens.len()).map_err(ModelError::Invalid)?;
        }
        let mut out: Vec<Vec<f32>> = vec![Vec::new(); items.len()];
        // Each item's tokens evaluated so far; `next`: the first item not done.
        let mut done = vec![0usize; items.len()];
        let mut next = 0usize;
        while next < items.len() {
            let mut room = self.n_ubatch;
            let mut pass: Vec<(usize, std::ops::Range<usize>)> = Vec::new();
            for (i, it) in items.iter().enumerate().skip(next) {
                if room == 0 {
                    break;
                }
                let take = (it.tokens.len() - done[i]).min(room);
                if take > 0 {
                    pass.push((i, done[i]..done[i] + take));
                    room -= take;
                }
            }
            let chunks: Vec<SeqChunk<'_>> = pass
                .iter()
                .map(|(i, r)| {
                    let it = &items[*i];
                    let last_piece = r.end == it.tokens.len();
                    let rows = match it.logits {
                        OutputRows::Last if !last_piece => OutputRows::None,
                        rows => rows,
                    };
                    let seq = &self.seqs[it.seq];
                    SeqChunk { kv: &seq.kv, tokens: &it.tokens[r.clone()], pos0: seq.n_past, rows }
                })
                .collect();
            let logits = match (&mut self.hybrid, chunks.as_slice()) {
                (Some(h), _) => h.step_batch(&chunks).map_err(|e| ModelError::Invalid(e.to_string()))?,
                (None, [one]) => {
                    vec![forward(self.model, &self.lora, one.kv, one.tokens, one.pos0, one.rows)]
                }
                (None, _) => forward_batch(self.model, &self.lora, &chunks),
            };
            for ((i, r), l) in pass.into_iter().zip(logits) {
                out[i].extend(l);
                self.seqs[items[i].seq].n_past += r.len();
                done[i] = r.end;
            }
            while next < items.len() && done[next] == items[next].tokens.len() {
                next += 1;
            }
        }
        Ok(out)
    }

    /// Evaluate `tokens` after sequence `seq`'s cached positions (appending their K/V, in passes
    /// of at most `n_ubatch` tokens) and return every token's last hidden state after the output
    /// norm, `[n_tokens][n_embd]`: the rows llama.cpp pools into embeddings. It always runs the
    /// CPU forward (the hybrid executor's lanes only produce logits); the weights it reads are
    /// the model's own, so the answer does not depend on the session's device.
    pub fn embed(&mut self, seq: usize, tokens: &[TokenId]) -> Result<Vec<f32>, ModelError> {
        let (n_ctx, n_vocab, n_seq) = (self.n_ctx, self.model.n_vocab(), self.seqs.len());
        let s = self
            .seqs
            .get_mut(seq)
            .ok_or_else(|| ModelError::Invalid(format!("sequence {seq} of {}", n_seq)))?;
        if s.n_past + tokens.len() > n_ctx {
            return Err(ModelError::ContextFull { n_past: s.n_past, n_new: tokens.len(), n_ctx });
        }
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= n_vocab) {
            return Err(ModelError::Invalid(format!("token id {bad} is out of range (n_vocab = {n_vocab})")));
        }
        s.kv.get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .reserve(s.n_past + tokens.len())
            .map_err(ModelError::Invalid)?;
        let mut out = Vec::with_capacity(tokens.len() * self.model.hparams().n_embd);
        for piece in tokens.chunks(self.n_ubatch) {
            let s = &mut self.seqs[seq];
            let chunk = SeqChunk { kv: &s.kv, tokens: piece, pos0: s.n_past, rows: OutputRows::All };
            out.extend(forward_hidden(self.model, &self.lora, &[chunk]).into_iter().flatten());
            s.n_past += piece.len();
        }
        Ok(out)
    }

    /// Apply `lora` to every following pass (an adapter at scale 0 is as none; the KV cache is
    /// the caller's to clear, as llama.cpp leaves it). Only the CPU forward applies adapters, so a
    /// session on the hybrid executor refuses them.
    pub fn set_lora(&mut self, lora: Vec<ActiveLora>) -> Result<(), ModelError> {
        if self.hybrid.is_some() && lora.iter().any(|l| l.scale != 0.0) {
            return Err(ModelError::Invalid(
                "LoRA adapters run on the CPU path only (not with a device plan)".into(),
            ));
        }
        self.lora = lora;
        Ok(())
    }

    /// The adapters applied now.
    pub fn lora(&self) -> &[ActiveLora] {
        &self.lora
    }

    /// Tokens in the first sequence's KV cache.
    pub fn n_past(&self) -> usize {
        self.seqs[0].n_past
    }

    /// Tokens in sequence `seq`'s KV cache.
    pub fn n_past_of(&self, seq: usize) -> usize {
        self.seqs.get(seq).map_or(0, |s| s.n_past)
    }

    /// Keep only the first `n` tokens of sequence `seq` (the rest is overwritten later).
    pub fn truncate(&mut self, seq: usize, n: usize) {
        if let Some(s) = self.seqs.get_mut(seq) {
            s.n_past = s.n_past.min(n);
        }
    }

    /// A copy of sequence `seq`'s cached positions (None for an empty or unknown sequence).
    pub fn save_sequence(&self, seq: usize) -> Result<Option<KvSnapshot>, ModelError> {
        let Some(s) = self.seqs.get(seq).filter(|s| s.n_past > 0) else { return Ok(None) };
        let kv = s.kv.lock().unwrap_or_else(|e| e.into_inner());
        kv.snapshot(s.n_past).map(Some).map_err(ModelError::Invalid)
    }

    /// Sequence `seq` holds exactly the snapshot's positions (as if it had evaluated them).
    pub fn restore_sequence(&mut self, seq: usize, snapshot: &KvSnapshot) -> Result<(), ModelError> {
        let s = self.seqs.get_mut(seq).ok_or_else(|| ModelError::Invalid(format!("no sequence {seq}")))?;
        s.kv.get_mut().unwrap_or_else(|e| e.into_inner()).restore(snapshot).map_err(ModelError::Invalid)?;
        s.n_past = snapshot.n_positions();
        Ok(())
    }

    /// The model the session runs.
    pub fn model(&self) -> &'m Model {
        self.model
    }

    /// Sequences this session holds.
    pub fn n_seq(&self) -> usize {
        self.seqs.len()
    }

    /// Positions each sequence may hold.
    pub fn n_ctx(&self) -> usize {
        self.n_ctx
    }

    /// Empty sequence `seq` and give its cache's memory back.
    pub fn forget(&mut self, seq: usize) {
        if let Some(s) = self.seqs.get_mut(seq) {
            s.n_past = 0;
            s.kv.get_mut().unwrap_or_else(|e| e.into_inner()).release();
        }
    }

    /// Empty every sequence's KV cache.
    pub fn clear(&mut self) {
        for s in &mut self.seqs {
            s.n_past = 0;
        }
    }
}

/// Llama 4 attends within chunks of 8192 positions on most layers, which rs-llama does not cut
/// yet: a longer context is refused rather than answered differently from llama.cpp.
fn check_context(model: &Model, n_ctx: usize) -> Result<(), ModelError> {
    match model.hparams().max_context() {
        Some(max) if n_ctx > max => Err(ModelError::Invalid(format!(
            "{}: contexts beyond {max} positions (its attention chunk) are not supported yet; use -c {max} or less",
            model.arch()
        ))),
        _ => Ok(()),
    }
}
