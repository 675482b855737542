//! The slots' LoRA scales as llama-server keeps them (server-context.cpp): a task takes its
//! request's `lora` list, else the server-wide scales, when it starts on a slot, and a slot whose
//! scales change loses its cache (the KV rows were made under other adapters); a pass holds only
//! slots at the scales of its first one (`can_batch_with`), which it applies to the whole forward.

use super::{Scheduler, Slot};
use crate::model::ModelError;
use crate::server::api::GenerateRequest;
use crate::TokenId;

impl Scheduler<'_, '_> {
    /// Give slot `i` the scales of `req`; true when they differ from the slot's (its cache is
    /// then to be dropped).
    pub(super) fn take_lora(&mut self, i: usize, req: &GenerateRequest) -> bool {
        let scales = self.cfg.lora.for_request(&req.lora);
        let slot: &mut Slot = &mut self.slots[i];
        if slot.lora == scales {
            return false;
        }
        slot.lora = scales;
        true
    }

    /// Drop from `plan` the slots whose scales are not its first slot's, and set the session's
    /// adapters to those scales.
    pub(super) fn one_lora_per_pass(
        &mut self,
        plan: &mut Vec<(usize, Vec<TokenId>, bool)>,
    ) -> Result<(), ModelError> {
        let Some(&(first, ..)) = plan.first() else { return Ok(()) };
        if self.cfg.lora.is_empty() {
            return Ok(());
        }
        let scales = self.slots[first].lora.clone();
        plan.retain(|(i, ..)| self.slots[*i].lora == scales);
        self.session.set_lora(self.cfg.lora.active(&scales))
    }

    /// Embeddings run at the server-wide scales.
    pub(super) fn lora_for_embedding(&mut self) -> Result<(), ModelError> {
        if self.cfg.lora.is_empty() {
            return Ok(());
        }
        self.session.set_lora(self.cfg.lora.active(&self.cfg.lora.global()))
    }
}
