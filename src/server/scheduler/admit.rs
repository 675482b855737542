//! Which slot a waiting task goes to, and the host-memory prompt cache around that choice, as
//! llama-server decides them: the slot asked for; else the idle slot whose cache holds the
//! largest share of the prompt, above `-sps`; else the least recently used. A slot taken by
//! recency, or whose cache the task keeps less than half of, first saves that cache to the
//! prompt cache and may start from a better cached prompt. With `--cache-idle-slots`, every idle
//! slot is saved when a task starts (and emptied when the slots share one pool).

use super::{common_prefix, Scheduler, Slot};
use crate::exec::Session;
use crate::server::api::{ApiError, GenerateEvent, GenerateRequest};
use crate::server::prompt_cache::{PromptCache, Saved};
use crate::TokenId;

impl Scheduler<'_, '_> {
    /// Put waiting tasks on idle slots.
    pub(super) fn admit(&mut self) {
        let mut waiting = std::collections::VecDeque::new();
        while let Some(mut t) = self.queue.pop_front() {
            let n = t.req.prompt.len();
            if n == 0 || n >= self.cfg.n_ctx_slot {
                let e = if n == 0 {
                    ApiError::invalid("the prompt is empty")
                } else {
                    ApiError::exceeds_context(n, self.cfg.n_ctx_slot)
                };
                let _ = t.tx.send(GenerateEvent::Error(e));
                continue;
            }
            // An id past the last slot wraps around, as llama-server's.
            if let Some(i) = t.req.id_slot.as_mut() {
                *i = super::slot_actions::slot_index(*i as i64, self.slots.len());
            }
            let Some((i, save_first)) = self.pick_slot(&t.req) else {
                waiting.push_back(t);
                continue;
            };
            if save_first {
                self.swap_through_prompt_cache(i, &t.req.prompt);
            }
            if self.start_on(i, t) {
                self.save_idle_slots();
            }
        }
        self.metrics.requests_deferred = waiting.len() as u64;
        self.queue = waiting;
    }

    /// The slot for `req` and whether its cache goes to the prompt cache first; None while the
    /// slot asked for, or every slot, is busy.
    fn pick_slot(&self, req: &GenerateRequest) -> Option<(usize, bool)> {
        let idle = |i: usize, s: &Slot| s.gen.is_none() && req.id_slot.is_none_or(|want| want == i);
        if req.id_slot.is_some_and(|i| self.slots[i].gen.is_some()) {
            return None;
        }
        let threshold = self.cfg.slot_prompt_similarity;
        if threshold != 0.0 {
            let mut pick = req.id_slot;
            let mut best_share = 0.0f32;
            for (i, s) in self.slots.iter().enumerate() {
                if !idle(i, s) || s.cache.is_empty() {
                    continue;
                }
                let share = common_prefix(&s.cache, &req.prompt) as f32 / req.prompt.len() as f32;
                if share > best_share && share > threshold {
                    (best_share, pick) = (share, Some(i));
                }
            }
            if let Some(i) = pick {
                // About to lose most of what the slot holds: keep it in host memory. (A slot
                // asked for by id counts as sharing nothing unless it passed the threshold; an
                // empty one gives 0/0, which is not below a half.)
                let kept = best_share * req.prompt.len() as f32 / self.slots[i].cache.len() as f32;
                return Some((i, kept < 0.5));
            }
        } else if let Some(i) = req.id_slot {
            return Some((i, false));
        }
        // Least recently used; of equals, the last (llama-server's `<=`).
        let mut lru: Option<usize> = None;
        for (i, s) in self.slots.iter().enumerate() {
            if s.gen.is_none() && lru.is_none_or(|j| s.last_used <= self.slots[j].last_used) {
                lru = Some(i);
            }
        }
        lru.map(|i| (i, true))
    }

    /// Save slot `i`'s cache to the prompt cache, then start it from the cached prompt that
    /// serves `prompt` better than what it holds, if any.
    fn swap_through_prompt_cache(&mut self, i: usize, prompt: &[TokenId]) {
        let Some(cache) = self.prompt_cache.as_mut() else { return };
        crate::log_debug!("srv  {:>12.12}: updating prompt cache\n", "get_availabl");
        let slot = &mut self.slots[i];
        save_slot(cache, &self.session, i, &slot.cache);
        if let Some(entry) = cache.take_better(&slot.cache, prompt) {
            match self.session.restore_sequence(i, &entry.kv) {
                Ok(()) => slot.cache = entry.tokens,
                Err(e) => {
                    crate::log_warn!("slot {i}: failed to load prompt from cache: {e}\n");
                    slot.cache.clear();
                    self.session.forget(i);
                }
            }
        }
        cache.trim();
    }

    /// `--cache-idle-slots`: every idle slot to the prompt cache (emptied when the pool is shared,
    /// so the running slots get its room).
    fn save_idle_slots(&mut self) {
        let Some(cache) = self.prompt_cache.as_mut().filter(|_| self.cfg.cache_idle_slots) else { return };
        for (i, slot) in self.slots.iter_mut().enumerate() {
            if slot.gen.is_some() {
                continue;
            }
            if save_slot(cache, &self.session, i, &slot.cache) {
                crate::log_debug!("slot {i}: saved idle slot to prompt cache\n");
                cache.trim();
            }
            if self.cfg.kv_unified && !slot.cache.is_empty() {
                slot.cache.clear();
                self.session.forget(i);
            }
        }
    }
}

/// Copy sequence `i`'s KV rows into `cache` under `tokens` (unless empty or already cached);
/// true when stored.
fn save_slot(cache: &mut PromptCache, session: &Session<'_>, i: usize, tokens: &[TokenId]) -> bool {
    if tokens.is_empty() || cache.holds(tokens) {
        return false;
    }
    let kv = match session.save_sequence(i) {
        Ok(Some(kv)) => kv,
        Ok(None) => return false,
        Err(e) => {
            crate::log_warn!("slot {i}: cannot save its prompt to the cache: {e}\n");
            return false;
        }
    };
    let n = kv.n_positions().min(tokens.len());
    let size = kv.n_bytes();
    match cache.save(tokens[..n].to_vec(), kv) {
        Saved::Stored => true,
        Saved::AlreadyCached => false,
        Saved::TooLarge => {
            crate::log_warn!(
                "srv  {:>12.12}:  - prompt state size {:.3} MiB exceeds cache size limit, skipping\n",
                "alloc",
                size as f64 / (1 << 20) as f64
            );
            false
        }
    }
}
