//! The host-memory prompt cache (`--cache-ram`): slots' KV caches kept in RAM after the slot
//! moves on, so a later request that shares their prefix starts from them instead of reading its
//! prompt again. Its rules are llama-server's, so the same requests reuse the same prefixes:
//! - a slot's prompt is saved when the slot is taken for a task it shares less than half of (or
//!   none, chosen as least recently used), and with `--cache-idle-slots` every idle slot's when a
//!   task starts;
//! - a prompt already inside a cached one is not saved again; cached prompts inside the new one
//!   are dropped; the oldest go first when the size limit is reached, and when the cached tokens
//!   pass the token limit (the context, raised to what the size limit holds at the average size
//!   of a token);
//! - a task takes the cached prompt that keeps more of itself and more of the slot's current
//!   prompt than the slot's own cache does, skipping any it would keep less than a quarter of.

use std::collections::VecDeque;

use crate::exec::KvSnapshot;
use crate::TokenId;

/// One cached prompt: its tokens and the KV rows they produced.
pub struct CachedPrompt {
    pub tokens: Vec<TokenId>,
    pub kv: KvSnapshot,
}

/// Cached prompts, oldest first.
pub struct PromptCache {
    entries: VecDeque<CachedPrompt>,
    /// Bytes (0: no limit).
    limit_bytes: usize,
    /// Tokens (0: no limit).
    limit_tokens: usize,
}

/// What [`PromptCache::save`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Saved {
    Stored,
    /// A cached prompt already holds all of it.
    AlreadyCached,
    /// It alone is larger than the size limit.
    TooLarge,
}

fn common_prefix(a: &[TokenId], b: &[TokenId]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

impl PromptCache {
    /// `limit_mib`: `--cache-ram` (negative: no limit; the caller keeps no cache for 0);
    /// `limit_tokens`: the server's context.
    pub fn new(limit_mib: i64, limit_tokens: usize) -> PromptCache {
        let limit_bytes = usize::try_from(limit_mib).unwrap_or(0).saturating_mul(1 << 20);
        PromptCache { entries: VecDeque::new(), limit_bytes, limit_tokens }
    }

    pub fn n_bytes(&self) -> usize {
        self.entries.iter().map(|e| e.kv.n_bytes()).sum()
    }

    pub fn n_tokens(&self) -> usize {
        self.entries.iter().map(|e| e.tokens.len()).sum()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether saving `tokens` would be skipped because a cached prompt holds them all (checked
    /// before the slot's KV rows are copied out).
    pub fn holds(&self, tokens: &[TokenId]) -> bool {
        self.entries.iter().any(|e| common_prefix(&e.tokens, tokens) == tokens.len())
    }

    /// Keep `tokens` and their KV rows.
    pub fn save(&mut self, tokens: Vec<TokenId>, kv: KvSnapshot) -> Saved {
        if self.holds(&tokens) {
            return Saved::AlreadyCached;
        }
        let size = kv.n_bytes();
        if self.limit_bytes > 0 && size > self.limit_bytes {
            return Saved::TooLarge;
        }
        // Prompts that the new one extends are worth nothing beside it.
        self.entries.retain(|e| common_prefix(&e.tokens, &tokens) != e.tokens.len());
        if self.limit_bytes > 0 {
            while !self.entries.is_empty() && self.n_bytes() + size > self.limit_bytes {
                self.entries.pop_front();
            }
        }
        self.entries.push_back(CachedPrompt { tokens, kv });
        Saved::Stored
    }

    /// The cached prompt a slot holding `current` should start `prompt` from instead of its own
    /// cache, taken out of the cache.
    pub fn take_better(&mut self, current: &[TokenId], prompt: &[TokenId]) -> Option<CachedPrompt> {
        let base = common_prefix(current, prompt) as f32;
        // An empty slot takes any entry that passes the quarter rule.
        let mut keep_best = if current.is_empty() { -1.0 } else { base / current.len() as f32 };
        let mut sim_best = base / prompt.len().max(1) as f32;
        let mut best = None;
        for (i, e) in self.entries.iter().enumerate() {
            let lcp = common_prefix(&e.tokens, prompt) as f32;
            let keep = lcp / e.tokens.len().max(1) as f32;
            let sim = lcp / prompt.len().max(1) as f32;
            // Restoring would throw away most of a large cached prompt.
            if keep < 0.25 {
                continue;
            }
            if keep_best < keep && sim_best < sim {
                (keep_best, sim_best, best) = (keep, sim, Some(i));
            }
        }
        best.and_then(|i| self.entries.remove(i))
    }

    /// Drop the oldest prompts until the cache is within its limits.
    pub fn trim(&mut self) {
        if self.limit_bytes > 0 {
            while !self.entries.is_empty() && self.n_bytes() > self.limit_bytes {
                self.entries.pop_front();
            }
        }
        if self.limit_tokens == 0 {
            return;
        }
        // Small tokens (a small model's) may be kept beyond the context while the bytes allow.
        let per_token = (self.n_bytes() as f32 / self.n_tokens().max(1) as f32).max(1.0);
        let limit = if self.limit_bytes > 0 {
            self.limit_tokens.max((self.limit_bytes as f32 / per_token) as usize)
        } else {
            self.limit_tokens
        };
        while !self.entries.is_empty() && self.n_tokens() > limit {
            self.entries.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::KvCache;

    /// A snapshot of `n` positions of a 1-layer cache with 1 K and 1 V value per position
    /// (4 bytes a position).
    fn kv(n: usize) -> KvSnapshot {
        let mut c = KvCache::growable(1, 1 << 20, 1, 1).unwrap();
        c.reserve(n.max(1)).unwrap();
        c.snapshot(n).unwrap()
    }

    fn cache_of(limit_bytes: usize, limit_tokens: usize) -> PromptCache {
        PromptCache { entries: VecDeque::new(), limit_bytes, limit_tokens }
    }

    fn save(c: &mut PromptCache, tokens: &[TokenId]) -> Saved {
        c.save(tokens.to_vec(), kv(tokens.len()))
    }

    fn cached(c: &PromptCache) -> Vec<Vec<TokenId>> {
        c.entries.iter().map(|e| e.tokens.clone()).collect()
    }

    #[test]
    fn contained_prompts_are_skipped_and_extended_ones_replaced() {
        let mut c = cache_of(0, 0);
        assert_eq!(save(&mut c, &[1, 2, 3]), Saved::Stored);
        assert_eq!(save(&mut c, &[1, 2]), Saved::AlreadyCached, "inside [1, 2, 3]");
        assert_eq!(save(&mut c, &[1, 2, 3]), Saved::AlreadyCached);
        assert_eq!(save(&mut c, &[9, 9]), Saved::Stored);
        assert_eq!(save(&mut c, &[1, 2, 3, 4]), Saved::Stored);
        assert_eq!(cached(&c), vec![vec![9, 9], vec![1, 2, 3, 4]], "[1, 2, 3] dropped, order kept");
    }

    #[test]
    fn the_size_limit_drops_the_oldest_and_refuses_what_alone_exceeds_it() {
        // 4 bytes a position: 40 bytes hold 10 positions.
        let mut c = cache_of(40, 0);
        assert_eq!(save(&mut c, &[1; 11]), Saved::TooLarge);
        assert_eq!(save(&mut c, &[1, 1, 1, 1]), Saved::Stored);
        assert_eq!(save(&mut c, &[2, 2, 2, 2]), Saved::Stored);
        assert_eq!(c.n_bytes(), 32);
        assert_eq!(save(&mut c, &[3, 3, 3]), Saved::Stored, "the oldest makes room");
        assert_eq!(cached(&c), vec![vec![2, 2, 2, 2], vec![3, 3, 3]]);
    }

    #[test]
    fn the_token_limit_rises_to_what_the_size_limit_holds() {
        // No size limit: the token limit stands.
        let mut c = cache_of(0, 5);
        save(&mut c, &[1, 1, 1]);
        save(&mut c, &[2, 2, 2]);
        c.trim();
        assert_eq!(cached(&c), vec![vec![2, 2, 2]]);
        // 4 bytes a token and 400 bytes allowed: 100 tokens, beyond the context of 5.
        let mut c = cache_of(400, 5);
        save(&mut c, &[1, 1, 1]);
        save(&mut c, &[2, 2, 2]);
        c.trim();
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn a_task_takes_the_entry_that_keeps_more_of_both() {
        let mut c = cache_of(0, 0);
        save(&mut c, &[1, 2, 3, 4]);
        save(&mut c, &[5, 6, 7, 8, 9, 10, 11, 12]);
        // An empty slot, a prompt sharing 3 of the first entry's 4 tokens: keep 0.75, sim 0.6.
        let got = c.take_better(&[], &[1, 2, 3, 0, 0]).expect("an entry");
        assert_eq!(got.tokens, vec![1, 2, 3, 4]);
        assert_eq!(got.kv.n_positions(), 4);
        assert_eq!(c.len(), 1, "taken out of the cache");
        // Sharing 1 of 8 tokens keeps 0.125 < 0.25 of the entry: skipped.
        assert!(c.take_better(&[], &[5, 0, 0]).is_none());
        // The slot's own cache already shares more of the prompt: nothing better.
        assert!(c.take_better(&[5, 6, 7, 8, 9, 10], &[5, 6, 7, 8, 9, 10, 0]).is_none());
        // The slot keeps 1 of its 2 tokens (0.5) and covers 1/7 of the prompt; the entry keeps
        // 6/8 and covers 6/7.
        let got = c.take_better(&[5, 4], &[5, 6, 7, 8, 9, 10, 0]).expect("better");
        assert_eq!(got.tokens.len(), 8);
    }
}
