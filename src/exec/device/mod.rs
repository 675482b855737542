//! The device the executor's GPU and copy lanes drive, behind one trait: memory under a budget,
//! weights made resident or copied into staging slots on the copy lane, tasks run on the compute
//! lane over the step's activations. Every call blocks its lane's thread until the work has
//! completed (a CUDA device waits on an event with blocking sync, never spinning a core away from
//! the CPU lane); the order between lanes is the executor's fences.
//!
//! [`sim::SimDevice`] is always built: it runs the GPU's tasks with the CPU kernels on its own lane
//! thread, so its tokens equal the CPU path's, enforces the budget and poisons staging slots until
//! their copy lands.

pub mod sim;

// The one `cfg(feature = "cuda")` of the executor: the CUDA device, or its absence.
#[cfg(feature = "cuda")]
mod cuda;
#[cfg(not(feature = "cuda"))]
mod cuda_absent;
#[cfg(not(feature = "cuda"))]
use cuda_absent as cuda;

pub use cuda::open_cuda;

use super::tasks::{StepState, TaskRef};
use super::ExecError;
use crate::ops::ffn::Glu;
use crate::ops::matmul::Linear;

/// Where a GPU task finds its weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightsAt {
    Resident,
    Slot(u32),
}

pub trait Device: Send + Sync {
    /// One line for the load log.
    fn describe(&self) -> String;
    /// `sim` or `cuda`: how log lines about this device begin.
    fn kind(&self) -> &'static str;
    /// Whether this device can run `task` with these matrices, its FFN combining gate and up by
    /// `glu` (a plan keeps the others on the host).
    fn can_run(&self, task: TaskRef, mats: &[Linear<'_>], glu: Glu) -> bool {
        let _ = (task, mats, glu);
        true
    }
    /// Bytes the device may hold, and holds now.
    fn budget(&self) -> u64;
    fn used(&self) -> u64;
    /// Free everything: resident weights, slots and reservations (a plan that did not fit is
    /// replaced by a smaller one).
    fn reset(&self);
    /// Reserve `bytes` for the run (activations, a resident layer's KV cache); `what` names it in
    /// the out-of-memory error.
    fn reserve(&self, what: &str, bytes: u64) -> Result<(), ExecError>;
    /// Reserve a micro-batch's activations for the run (a device whose scratch buffers are
    /// allocated as first used draws them from this).
    fn reserve_activations(&self, bytes: u64) -> Result<(), ExecError> {
        self.reserve("activations", bytes)
    }
    /// Upload task `id`'s matrices to stay resident (at load, or on the copy lane for a swap).
    fn upload_resident(&self, id: usize, mats: &[Linear<'_>]) -> Result<(), ExecError>;
    /// Drop task `id`'s resident weights (a hot-expert swap), freeing their memory.
    fn evict(&self, id: usize);
    /// Make `n` staging slots of `bytes` each.
    fn create_slots(&self, n: u32, bytes: u64) -> Result<(), ExecError>;
    /// Copy lane: task `id`'s host matrices into staging slot `slot`.
    fn fill_slot(&self, slot: u32, id: usize, mats: &[Linear<'_>]) -> Result<(), ExecError>;
    /// The task that last read `slot` has ended: the slot may be refilled.
    fn release_slot(&self, slot: u32);
    /// Compute lane: task `id` with its weights `at` (biases and norms as in `host_mats`).
    fn run(
        &self,
        id: usize,
        task: TaskRef,
        host_mats: &[Linear<'_>],
        at: WeightsAt,
        st: &StepState<'_>,
    ) -> Result<(), ExecError>;
}
