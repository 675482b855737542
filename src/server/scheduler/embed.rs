//! Embeddings on the scheduler's thread. llama-server runs an embedding task on a slot like a
//! prompt whose every row is an output; here it takes an idle slot (least recently used first),
//! whose cached prompt it drops, evaluates the tokens with [`Session::embed`] (the CPU forward
//! returning the rows after the output norm), pools them and empties the slot again, so the KV
//! pool holds nothing of it afterwards. It does not share a pass with the generating slots: an
//! embedding is one prompt evaluation, answered as soon as its pass ends.
//!
//! [`Session::embed`]: crate::exec::Session::embed

use super::Scheduler;
use crate::server::api::{ApiError, ErrorKind};
use crate::server::embed::pool;

impl Scheduler<'_, '_> {
    /// Run the first waiting embedding when an idle slot and room in the pool allow; true when
    /// one ran (the loop then does not pause). One per pass of the loop, so that the generating
    /// slots keep decoding between the prompts of a long list.
    pub(super) fn run_embeds(&mut self) -> bool {
        let mut ran = false;
        while let Some((req, tx)) = self.embeds.pop_front() {
            if tx.is_closed() {
                continue;
            }
            let idle = self.slots.iter().enumerate().filter(|(_, s)| s.gen.is_none());
            let Some(i) = idle.min_by_key(|(_, s)| (!s.cache.is_empty(), s.last_used)).map(|(i, _)| i) else {
                self.embeds.push_front((req, tx));
                break;
            };
            self.slots[i].cache.clear();
            self.session.forget(i);
            if !self.make_room(req.tokens.len()) {
                self.embeds.push_front((req, tx));
                break;
            }
            self.step += 1;
            self.slots[i].last_used = self.step;
            let result = self.lora_for_embedding().and_then(|()| self.session.embed(i, &req.tokens));
            self.session.forget(i);
            let n_embd = self.session.model().hparams().n_embd;
            let _ = tx.send(match result {
                Ok(hidden) => {
                    self.metrics.prompt_tokens_total += req.tokens.len() as u64;
                    Ok(pool(&hidden, n_embd, req.pooling))
                }
                Err(e) => Err(ApiError::new(ErrorKind::Server, e.to_string())),
            });
            ran = true;
            break;
        }
        ran
    }

    /// Drop idle slots' caches, least recently used first, until `n` more tokens fit in the
    /// pool; false when they still do not (busy slots hold it: the embedding waits).
    fn make_room(&mut self, n: usize) -> bool {
        let used = |s: &Self| s.slots.iter().map(|s| s.cache.len()).sum::<usize>();
        while used(self) + n > self.cfg.n_ctx {
            let idle = self.slots.iter().enumerate().filter(|(_, s)| s.gen.is_none() && !s.cache.is_empty());
            let Some((i, _)) = idle.min_by_key(|(_, s)| s.last_used) else {
                return self.slots.iter().all(|s| s.gen.is_none());
            };
            self.slots[i].cache.clear();
            self.session.forget(i);
        }
        true
    }
}
