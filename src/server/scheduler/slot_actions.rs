//! `POST /slots/{id}?action=save|restore|erase` on the scheduler's thread: an idle slot's tokens
//! and KV rows written to a file, read back, or dropped. An action on a busy slot waits, as
//! llama-server defers it; ids past the last slot wrap around as there (see [`slot_index`]).

use std::time::Instant;

use super::Scheduler;
use crate::server::api::{ApiError, ErrorKind, SlotAction, SlotActionDone};
use crate::server::slot_file;

impl Scheduler<'_, '_> {
    /// Run the waiting actions whose slots are idle; keep the others.
    pub(super) fn run_slot_actions(&mut self) {
        // Called on every pass of the loop, which publishes after it: nothing to do is free.
        if self.actions.is_empty() {
            return;
        }
        let mut waiting = std::collections::VecDeque::new();
        while let Some((action, tx)) = self.actions.pop_front() {
            if tx.is_closed() {
                continue;
            }
            let i = slot_index(action.id_slot(), self.slots.len());
            if self.slots[i].gen.is_some() {
                waiting.push_back((action, tx));
                continue;
            }
            let _ = tx.send(self.slot_action(i, action));
        }
        self.actions = waiting;
    }

    fn slot_action(&mut self, i: usize, action: SlotAction) -> Result<SlotActionDone, ApiError> {
        let id_slot = action.id_slot();
        let started = Instant::now();
        let ms = || started.elapsed().as_secs_f64() * 1e3;
        let shape = {
            let hp = self.session.model().hparams();
            let (k_row, v_row) = hp.kv_cache_rows();
            (hp.n_layer, k_row, v_row)
        };
        match action {
            SlotAction::Erase { .. } => {
                let n_erased = self.slots[i].cache.len();
                self.clear_slot(i);
                Ok(SlotActionDone::Erased { id_slot, n_erased })
            }
            SlotAction::Save { path, filename, .. } => {
                let tokens = &self.slots[i].cache;
                let kv = self
                    .session
                    .save_sequence(i)
                    .map_err(|e| ApiError::new(ErrorKind::Server, e.to_string()))?;
                let n = kv.as_ref().map_or(0, |kv| kv.n_positions()).min(tokens.len());
                let n_written = slot_file::write(&path, shape, &tokens[..n], kv.as_ref()).map_err(|e| {
                    crate::log_warn!("slot {i}: cannot save: {e}\n");
                    ApiError::new(ErrorKind::Server, "Unable to save slot")
                })?;
                Ok(SlotActionDone::Saved { id_slot, filename, n_saved: n, n_written, ms: ms() })
            }
            SlotAction::Restore { path, filename, .. } => {
                let restored = self.restore_slot(i, &path, shape);
                let n_read = restored.map_err(|e| {
                    // A failed restore leaves the slot empty, as llama-server's.
                    self.clear_slot(i);
                    ApiError::invalid(format!("Unable to restore slot: {e}"))
                })?;
                let n_restored = self.slots[i].cache.len();
                Ok(SlotActionDone::Restored { id_slot, filename, n_restored, n_read, ms: ms() })
            }
        }
    }

    /// Slot `i` holds what the file at `path` saved; the bytes read.
    fn restore_slot(
        &mut self,
        i: usize,
        path: &std::path::Path,
        shape: slot_file::CacheShape,
    ) -> Result<u64, String> {
        let file = slot_file::read(path, shape)?;
        if file.tokens.len() > self.cfg.n_ctx_slot {
            return Err("Restored prompt does not fit in the slot context".into());
        }
        if file.tokens.iter().any(|&t| t as usize >= self.tok.n_vocab()) {
            return Err("Invalid tokens in slot save file".into());
        }
        self.clear_slot(i);
        if let Some(kv) = &file.kv {
            self.session.restore_sequence(i, kv).map_err(|e| e.to_string())?;
        }
        let n = file.kv.as_ref().map_or(0, |kv| kv.n_positions());
        self.slots[i].cache = file.tokens[..n].to_vec();
        Ok(file.n_bytes)
    }

    fn clear_slot(&mut self, i: usize) {
        self.slots[i].cache.clear();
        self.session.forget(i);
    }
}

/// llama-server's slot for an id: the id modulo the slot count, the id read as an unsigned
/// 64-bit number first (so -1 is the last slot of an even count, as its `int % size_t` gives).
pub(super) fn slot_index(id: i64, n_slots: usize) -> usize {
    (id as u64 % n_slots as u64) as usize
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_wrap_as_llama_servers() {
        use super::slot_index;
        assert_eq!(slot_index(7, 2), 1);
        assert_eq!(slot_index(4, 4), 0);
        assert_eq!(slot_index(-1, 2), 1);
        assert_eq!(slot_index(-1, 3), 0, "2^64 - 1 = 0 mod 3");
        assert_eq!(slot_index(1, 4), 1);
    }
}
