//! The CUDA device, first version: the layer tasks whose work is matrix products — router, each
//! expert, dense FFN, shared expert, output head — run on the GPU with the backend's cuBLAS/GEMV
//! linears and SwiGLU kernel; their inputs are uploaded from the step's activations and their
//! outputs downloaded back into them, where the host does the small ops (routing, norms, biases,
//! weighting) with the same functions as the CPU lane. Attention blocks, and FFNs with gate/up
//! biases, stay on the host ([`Device::can_run`]): the KV cache lives there.
//!
//! Every call binds the CUDA context to its lane's thread and runs under one lock, so the copy
//! lane's uploads do not overlap the compute lane's kernels yet; staging slots are fresh device
//! buffers per copy (charged to the budget while held). Not yet run on a GPU: the device check
//! (`scripts/device-check.sh`) compares its greedy tokens with the CPU's.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use super::{Device, WeightsAt};
use crate::cpu::WeightView;
use crate::exec::binding::view_bytes;
use crate::exec::tasks::{StepState, TaskRef};
use crate::exec::ExecError;
use crate::gpu::{DeviceBuffer, Gpu, GpuError, GpuOptions, Linear as GpuLinear, Pool, WeightType};
use crate::ops::ffn::Glu;
use crate::ops::matmul::Linear;
use crate::plan::tasks::TaskKind;

struct Inner {
    gpu: Gpu,
    pool: Pool,
    resident: HashMap<usize, Vec<GpuLinear>>,
    /// Each slot: the task it holds and its matrices.
    slots: Vec<Option<(usize, Vec<GpuLinear>)>>,
    slot_bytes: u64,
    /// Budget held by `reserve` and by the slots, to give back on `reset`.
    reserved: u64,
    /// Budget held for activations, which the scratch pool's first allocations draw from.
    scratch_held: u64,
}

pub struct CudaDevice {
    inner: Mutex<Inner>,
    describe: String,
    budget: u64,
}

/// Start CUDA device `ordinal` with `mem_limit` (None: free memory minus the margin).
pub fn open_cuda(ordinal: usize, mem_limit: Option<u64>) -> Result<Box<dyn Device>, ExecError> {
    let gpu = Gpu::new(&GpuOptions { device: ordinal, mem_limit }).map_err(gpu_err)?;
    // A kernel that does not compile shows at load, not at the first token.
    gpu.warm_up().map_err(gpu_err)?;
    let describe = format!("CUDA{ordinal}: {}", gpu.describe());
    let budget = gpu.budget();
    let inner = Inner {
        gpu,
        pool: Pool::new(),
        resident: HashMap::new(),
        slots: Vec::new(),
        slot_bytes: 0,
        reserved: 0,
        scratch_held: 0,
    };
    Ok(Box::new(CudaDevice { inner: Mutex::new(inner), describe, budget }))
}

fn gpu_err(e: GpuError) -> ExecError {
    ExecError::Device(e.to_string())
}

/// One host matrix on the device, in its storage type.
fn upload(gpu: &Gpu, l: &Linear<'_>) -> Result<GpuLinear, GpuError> {
    let (ty, bytes): (WeightType, &[u8]) = match l.w {
        // SAFETY (all three): plain numbers without padding, viewed as their bytes.
        WeightView::F32(v) => (WeightType::F32, unsafe { bytes_of(v) }),
        WeightView::F16(v) => (WeightType::F16, unsafe { bytes_of(v) }),
        WeightView::BF16(v) => (WeightType::Bf16, unsafe { bytes_of(v) }),
    };
    GpuLinear::upload(gpu, ty, bytes, l.n_in, l.n_out, 1)
}

/// # Safety
/// `T` must be a plain number type (no padding, every bit pattern valid).
unsafe fn bytes_of<T>(v: &[T]) -> &[u8] {
    std::slice::from_raw_parts(v.as_ptr().cast(), std::mem::size_of_val(v))
}

fn add_bias(y: &mut [f32], bias: Option<&[f32]>) {
    if let Some(b) = bias {
        for row in y.chunks_exact_mut(b.len()) {
            for (v, bv) in row.iter_mut().zip(b) {
                *v += bv;
            }
        }
    }
}

impl Inner {
    /// A scratch buffer; a new one is paid for out of the activations' reservation while it lasts.
    fn take(&mut self, len: usize) -> Result<DeviceBuffer<f32>, GpuError> {
        let class_bytes = (len.max(256).next_power_of_two() * 4) as u64;
        let lend = class_bytes.min(self.scratch_held);
        self.gpu.release(lend);
        self.scratch_held -= lend;
        let before = self.pool.allocations();
        let buf = self.pool.take(&self.gpu, len);
        if buf.is_err() || self.pool.allocations() == before {
            // Nothing was allocated: hold the lent bytes again.
            if self.gpu.reserve(lend).is_ok() {
                self.scratch_held += lend;
            }
        }
        buf
    }

    /// `y = x · Wᵀ (+ bias)` for `n` rows, on the GPU; `x` on the host, `y` back on the host.
    fn linear_host(&mut self, x: &[f32], w: &GpuLinear, bias: Option<&[f32]>) -> Result<Vec<f32>, GpuError> {
        let n = x.len() / w.n_in;
        let mut xd = self.take(x.len())?;
        let mut yd = self.take(n * w.n_out)?;
        self.gpu.upload_into(x, &mut xd)?;
        self.gpu.linear(&mut yd, &xd, w, 0, n)?;
        let mut y = self.gpu.download(&yd)?;
        self.pool.give(xd);
        self.pool.give(yd);
        add_bias(&mut y, bias);
        Ok(y)
    }

    /// `down(silu(gate(x)) · up(x)) (+ down's bias)`; gate and up have no bias (see `can_run`).
    fn swiglu_host(
        &mut self,
        x: &[f32],
        w: &[GpuLinear],
        down_bias: Option<&[f32]>,
    ) -> Result<Vec<f32>, GpuError> {
        let [gate, up, down] = w else {
            return Err(GpuError::Shape { op: "ffn", msg: format!("{} matrices, expected 3", w.len()) });
        };
        let n = x.len() / gate.n_in;
        let mut xd = self.take(x.len())?;
        let (mut g, mut u, mut h) =
            (self.take(n * gate.n_out)?, self.take(n * up.n_out)?, self.take(n * gate.n_out)?);
        let mut yd = self.take(n * down.n_out)?;
        self.gpu.upload_into(x, &mut xd)?;
        self.gpu.linear(&mut g, &xd, gate, 0, n)?;
        self.gpu.linear(&mut u, &xd, up, 0, n)?;
        self.gpu.swiglu(&mut h, &g, &u)?;
        self.gpu.linear(&mut yd, &h, down, 0, n)?;
        let mut y = self.gpu.download(&yd)?;
        for b in [xd, g, u, h, yd] {
            self.pool.give(b);
        }
        add_bias(&mut y, down_bias);
        Ok(y)
    }

    fn run(
        &mut self,
        id: usize,
        task: TaskRef,
        host: &[Linear<'_>],
        at: WeightsAt,
        st: &StepState<'_>,
    ) -> Result<(), ExecError> {
        // The task's device matrices, moved out for the call (a map or slot can't stay borrowed
        // while the scratch pool is used) and put back after.
        let mats = match at {
            WeightsAt::Resident => self.resident.remove(&id),
            WeightsAt::Slot(s) => match self.slots.get_mut(s as usize).and_then(Option::take) {
                Some((holder, m)) if holder == id => Some(m),
                other => {
                    let held = other.as_ref().map(|(h, _)| *h);
                    if let (Some(slot), Some(o)) = (self.slots.get_mut(s as usize), other) {
                        *slot = Some(o);
                    }
                    return Err(ExecError::Device(format!(
                        "task {id} read staging slot {s} before its copy landed (slot holds {held:?})"
                    )));
                }
            },
        };
        let mats = mats.ok_or_else(|| ExecError::Device(format!("task {id} has no weights on the GPU")))?;
        let result = self.compute(task, host, &mats, st).map_err(gpu_err);
        match at {
            WeightsAt::Resident => {
                self.resident.insert(id, mats);
            }
            WeightsAt::Slot(s) => {
                if let Some(slot) = self.slots.get_mut(s as usize) {
                    *slot = Some((id, mats));
                }
            }
        }
        result
    }

    fn compute(
        &mut self,
        task: TaskRef,
        host: &[Linear<'_>],
        w: &[GpuLinear],
        st: &StepState<'_>,
    ) -> Result<(), GpuError> {
        let down_bias = host.get(2).and_then(|l| l.bias);
        match task.kind {
            TaskKind::Router => {
                let x = st.ffn_input();
                if !x.is_empty() {
                    let logits = self.linear_host(&x, &w[0], host[0].bias)?;
                    st.put_router_logits(&logits);
                }
            }
            TaskKind::Expert { expert } => {
                if let Some((picked, xe)) = st.expert_input(expert as usize) {
                    let ye = self.swiglu_host(&xe, w, down_bias)?;
                    st.put_expert_output(&picked, &ye);
                }
            }
            TaskKind::FfnRows { block, blocks } => {
                let x = st.ffn_input();
                let y = if x.is_empty() { Vec::new() } else { self.swiglu_host(&x, w, down_bias)? };
                st.put_ffn_part(block as usize, blocks as usize, y);
            }
            TaskKind::SharedExpert => {
                let x = st.ffn_input();
                if !x.is_empty() {
                    let y = self.swiglu_host(&x, w, down_bias)?;
                    st.put_shared_output(task.layer, y);
                }
            }
            TaskKind::Output => {
                if let Some(rows) = st.output_input() {
                    let logits = self.linear_host(&rows, &w[0], host[0].bias)?;
                    st.put_logits(logits);
                }
            }
            TaskKind::Attention => {
                return Err(GpuError::Shape { op: "attention", msg: "not on the CUDA device yet".into() })
            }
        }
        Ok(())
    }
}

impl CudaDevice {
    fn lock(&self) -> Result<MutexGuard<'_, Inner>, ExecError> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        // Lanes are threads of their own: the context must be current on each.
        inner
            .gpu
            .context()
            .bind_to_thread()
            .map_err(|e| ExecError::Device(format!("CUDA context: {e:?}")))?;
        Ok(inner)
    }
}

impl Device for CudaDevice {
    fn describe(&self) -> String {
        self.describe.clone()
    }

    fn can_run(&self, task: TaskRef, mats: &[Linear<'_>], glu: Glu) -> bool {
        match task.kind {
            TaskKind::Attention => false,
            // The FFN kernel is SwiGLU: biases between the gate/up products and the GLU, or
            // gpt-oss's clamped GLU, would need a kernel of their own.
            TaskKind::Expert { .. } | TaskKind::FfnRows { .. } | TaskKind::SharedExpert => {
                glu == Glu::SiLU && mats.iter().take(2).all(|l| l.bias.is_none())
            }
            TaskKind::Router | TaskKind::Output => true,
        }
    }

    fn kind(&self) -> &'static str {
        "cuda"
    }

    fn budget(&self) -> u64 {
        self.budget
    }

    fn used(&self) -> u64 {
        self.inner.lock().map_or(0, |i| i.gpu.used())
    }

    fn reset(&self) {
        if let Ok(mut i) = self.lock() {
            i.resident.clear();
            i.slots.clear();
            let held = std::mem::take(&mut i.reserved) + std::mem::take(&mut i.scratch_held);
            i.gpu.release(held);
        }
    }

    fn reserve_activations(&self, bytes: u64) -> Result<(), ExecError> {
        let mut i = self.lock()?;
        i.gpu.reserve(bytes).map_err(|e| ExecError::Device(format!("out of memory: activations: {e}")))?;
        i.scratch_held += bytes;
        Ok(())
    }

    fn reserve(&self, what: &str, bytes: u64) -> Result<(), ExecError> {
        let mut i = self.lock()?;
        i.gpu.reserve(bytes).map_err(|e| ExecError::Device(format!("out of memory: {what}: {e}")))?;
        i.reserved += bytes;
        Ok(())
    }

    fn upload_resident(&self, id: usize, mats: &[Linear<'_>]) -> Result<(), ExecError> {
        let mut i = self.lock()?;
        let uploaded =
            mats.iter().map(|l| upload(&i.gpu, l)).collect::<Result<Vec<_>, _>>().map_err(gpu_err)?;
        i.resident.insert(id, uploaded);
        Ok(())
    }

    fn evict(&self, id: usize) {
        if let Ok(mut i) = self.lock() {
            // Dropping the buffers gives their bytes back to the ledger.
            i.resident.remove(&id);
        }
    }

    fn create_slots(&self, n: u32, bytes: u64) -> Result<(), ExecError> {
        let mut i = self.lock()?;
        // The slots' bytes are held from now on; a filled slot's buffers take them over.
        i.gpu
            .reserve(u64::from(n) * bytes)
            .map_err(|e| ExecError::Device(format!("out of memory: {n} staging slots: {e}")))?;
        i.reserved += u64::from(n) * bytes;
        i.slots = (0..n).map(|_| None).collect();
        i.slot_bytes = bytes;
        Ok(())
    }

    fn fill_slot(&self, slot: u32, id: usize, mats: &[Linear<'_>]) -> Result<(), ExecError> {
        let mut i = self.lock()?;
        let need: u64 = mats.iter().map(|l| view_bytes(&l.w)).sum();
        if need > i.slot_bytes {
            return Err(ExecError::Device(format!("task {id} ({need} bytes) does not fit a staging slot")));
        }
        match i.slots.get(slot as usize) {
            None => return Err(ExecError::Device(format!("no staging slot {slot}"))),
            Some(Some((holder, _))) => {
                return Err(ExecError::Device(format!(
                    "staging slot {slot} refilled while task {holder} holds it"
                )))
            }
            Some(None) => {}
        }
        // Hand the slot's held bytes to the buffers for the copy, and take them back on release.
        let slot_bytes = i.slot_bytes;
        i.gpu.release(slot_bytes);
        let uploaded = mats.iter().map(|l| upload(&i.gpu, l)).collect::<Result<Vec<_>, _>>();
        match uploaded {
            Ok(u) => {
                i.slots[slot as usize] = Some((id, u));
                Ok(())
            }
            Err(e) => {
                let _ = i.gpu.reserve(slot_bytes);
                Err(gpu_err(e))
            }
        }
    }

    fn release_slot(&self, slot: u32) {
        if let Ok(mut i) = self.lock() {
            if let Some(s) = i.slots.get_mut(slot as usize) {
                if s.take().is_some() {
                    let b = i.slot_bytes;
                    let _ = i.gpu.reserve(b);
                }
            }
        }
    }

    fn run(
        &self,
        id: usize,
        task: TaskRef,
        host_mats: &[Linear<'_>],
        at: WeightsAt,
        st: &StepState<'_>,
    ) -> Result<(), ExecError> {
        self.lock()?.run(id, task, host_mats, at, st)
    }
}
