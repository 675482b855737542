//! Device buffers charged to the budget, a caching pool (no device allocation per step once warm),
//! and pinned staging buffers for host↔device copies.

use super::{driver_error, Gpu};
use crate::gpu::{GpuError, MemLedger};
use cudarc::driver::{
    result, CudaEvent, CudaSlice, CudaStream, DevicePtr, DevicePtrMut, DeviceRepr, PinnedHostSlice,
    SyncOnDrop, ValidAsZeroBits,
};
use std::collections::HashMap;
use std::sync::Arc;

/// A device allocation of `capacity` elements of which the first `len` are in use. Its bytes are
/// reserved in the GPU's ledger until it is dropped.
pub struct DeviceBuffer<T> {
    slice: CudaSlice<T>,
    len: usize,
    ledger: Arc<MemLedger>,
}

impl<T> DeviceBuffer<T> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn capacity(&self) -> usize {
        self.slice.len()
    }

    /// Use the first `len` elements (at most the capacity).
    pub fn set_len(&mut self, len: usize) -> Result<(), GpuError> {
        if len > self.capacity() {
            return Err(GpuError::Shape {
                op: "set_len",
                msg: format!("{len} > capacity {}", self.capacity()),
            });
        }
        self.len = len;
        Ok(())
    }

    /// Device address for a kernel argument; the guard records the access when dropped.
    pub(crate) fn ptr<'a>(&'a self, stream: &'a CudaStream) -> (u64, SyncOnDrop<'a>) {
        self.slice.device_ptr(stream)
    }

    pub(crate) fn ptr_mut<'a>(&'a mut self, stream: &'a CudaStream) -> (u64, SyncOnDrop<'a>) {
        self.slice.device_ptr_mut(stream)
    }
}

impl<T> Drop for DeviceBuffer<T> {
    fn drop(&mut self) {
        self.ledger.release((self.slice.len() * std::mem::size_of::<T>()) as u64);
    }
}

impl Gpu {
    /// A zeroed buffer of `len` elements, charged to the budget.
    pub fn alloc<T: DeviceRepr + ValidAsZeroBits>(&self, len: usize) -> Result<DeviceBuffer<T>, GpuError> {
        let bytes = (len.max(1) as u64).saturating_mul(std::mem::size_of::<T>() as u64);
        self.ledger.reserve(bytes)?;
        match self.compute.alloc_zeros::<T>(len.max(1)) {
            Ok(slice) => Ok(DeviceBuffer { slice, len, ledger: self.ledger.clone() }),
            Err(e) => {
                self.ledger.release(bytes);
                Err(driver_error("cuMemAlloc")(e))
            }
        }
    }

    /// Copy `host` into a new buffer (pageable memory: the call returns once the data is read).
    pub fn upload<T: DeviceRepr + ValidAsZeroBits>(&self, host: &[T]) -> Result<DeviceBuffer<T>, GpuError> {
        let mut buf = self.alloc::<T>(host.len())?;
        self.upload_into(host, &mut buf)?;
        Ok(buf)
    }

    /// Overwrite the start of `dst` with `host` and set its length, on the compute stream.
    pub fn upload_into<T: DeviceRepr>(&self, host: &[T], dst: &mut DeviceBuffer<T>) -> Result<(), GpuError> {
        dst.set_len(host.len())?;
        if host.is_empty() {
            return Ok(());
        }
        let (ptr, _guard) = dst.ptr_mut(&self.compute);
        // SAFETY: dst holds at least host.len() elements (set_len checked the capacity).
        unsafe { result::memcpy_htod_async(ptr, host, self.compute.cu_stream()) }
            .map_err(driver_error("cuMemcpyHtoD"))
    }

    /// The first `len` elements of `src`, after all queued work on the compute stream.
    pub fn download<T: DeviceRepr + ValidAsZeroBits + Clone + Default>(
        &self,
        src: &DeviceBuffer<T>,
    ) -> Result<Vec<T>, GpuError> {
        let mut out = vec![T::default(); src.len];
        if src.len > 0 {
            let (ptr, guard) = src.ptr(&self.compute);
            // SAFETY: out has src.len elements; pageable D2H returns once the copy is complete,
            // and the stream is synchronised below before `out` is read anyway.
            unsafe { result::memcpy_dtoh_async(&mut out, ptr, self.compute.cu_stream()) }
                .map_err(driver_error("cuMemcpyDtoH"))?;
            drop(guard);
        }
        self.compute.synchronize().map_err(driver_error("cuStreamSynchronize"))?;
        Ok(out)
    }
}

/// Caching pool of f32 scratch buffers: capacities are rounded up to a power of two and returned
/// buffers are kept for the next `take`, so a steady decode loop allocates nothing.
#[derive(Default)]
pub struct Pool {
    free: HashMap<usize, Vec<DeviceBuffer<f32>>>,
    allocations: usize,
}

impl Pool {
    pub fn new() -> Pool {
        Pool::default()
    }

    /// A buffer of `len` elements (contents undefined: whatever its last user left).
    pub fn take(&mut self, gpu: &Gpu, len: usize) -> Result<DeviceBuffer<f32>, GpuError> {
        let class = len.max(256).next_power_of_two();
        let mut buf = match self.free.get_mut(&class).and_then(Vec::pop) {
            Some(buf) => buf,
            None => {
                self.allocations += 1;
                gpu.alloc::<f32>(class)?
            }
        };
        buf.set_len(len)?;
        Ok(buf)
    }

    pub fn give(&mut self, buf: DeviceBuffer<f32>) {
        self.free.entry(buf.capacity()).or_default().push(buf);
    }

    /// Device allocations made so far (stays constant once the pool is warm).
    pub fn allocations(&self) -> usize {
        self.allocations
    }
}

/// Two pinned host slots for staged copies. Plain page-locked memory (not write-combined, which
/// the host reads very slowly), so the same slots serve downloads too.
pub struct Staging {
    slots: [PinnedHostSlice<u8>; 2],
    done: [CudaEvent; 2],
    next: usize,
}

impl Staging {
    pub fn new(gpu: &Gpu, slot_bytes: usize) -> Result<Staging, GpuError> {
        let pinned = || {
            // SAFETY: flags 0 = plain page-locked allocation; the size is nonzero.
            unsafe { gpu.ctx.alloc_pinned_with_flags::<u8>(slot_bytes.max(4096), 0) }
                .map_err(driver_error("cuMemHostAlloc"))
        };
        let event = || gpu.ctx.new_event(None).map_err(driver_error("cuEventCreate"));
        Ok(Staging { slots: [pinned()?, pinned()?], done: [event()?, event()?], next: 0 })
    }

    pub fn slot_bytes(&self) -> usize {
        self.slots[0].len()
    }

    /// Copy `host` into `dst` through the slots on the copy stream, alternating slots so that
    /// filling one overlaps the DMA of the other; the compute stream then waits for the last copy.
    pub fn upload<T: DeviceRepr>(
        &mut self,
        gpu: &Gpu,
        host: &[T],
        dst: &mut DeviceBuffer<T>,
    ) -> Result<(), GpuError> {
        dst.set_len(host.len())?;
        // SAFETY: DeviceRepr types are plain data; viewing them as bytes reads nothing undefined.
        let bytes =
            unsafe { std::slice::from_raw_parts(host.as_ptr() as *const u8, std::mem::size_of_val(host)) };
        let (base, guard) = dst.ptr_mut(&gpu.copy);
        let step = self.slot_bytes();
        for (i, chunk) in bytes.chunks(step).enumerate() {
            let slot = self.next;
            self.next ^= 1;
            // The slot's previous DMA must finish before the host overwrites it.
            self.done[slot].synchronize().map_err(driver_error("cuEventSynchronize"))?;
            let pinned = self.slots[slot].as_mut_slice().map_err(driver_error("pinned"))?;
            pinned[..chunk.len()].copy_from_slice(chunk);
            // SAFETY: the destination range lies inside dst (len checked above); the pinned slot
            // stays untouched until `done[slot]` fires.
            unsafe {
                result::memcpy_htod_async(
                    base + (i * step) as u64,
                    &pinned[..chunk.len()],
                    gpu.copy.cu_stream(),
                )
            }
            .map_err(driver_error("cuMemcpyHtoDAsync"))?;
            self.done[slot].record(&gpu.copy).map_err(driver_error("cuEventRecord"))?;
        }
        drop(guard);
        let last = &self.done[self.next ^ 1];
        gpu.compute.wait(last).map_err(driver_error("cuStreamWaitEvent"))
    }

    /// Copy `src` to the host through a pinned slot (after the compute stream's queued work).
    pub fn download(
        &mut self,
        gpu: &Gpu,
        src: &DeviceBuffer<f32>,
        out: &mut Vec<f32>,
    ) -> Result<(), GpuError> {
        out.clear();
        let (base, guard) = src.ptr(&gpu.compute);
        let per_slot = self.slot_bytes() / 4;
        let mut done = 0;
        while done < src.len {
            let n = per_slot.min(src.len - done);
            let pinned = self.slots[0].as_mut_slice().map_err(driver_error("pinned"))?;
            // SAFETY: the range lies inside src; the stream is synchronised before the host reads.
            unsafe {
                result::memcpy_dtoh_async(
                    &mut pinned[..n * 4],
                    base + (done * 4) as u64,
                    gpu.compute.cu_stream(),
                )
            }
            .map_err(driver_error("cuMemcpyDtoHAsync"))?;
            gpu.compute.synchronize().map_err(driver_error("cuStreamSynchronize"))?;
            out.extend(pinned[..n * 4].chunks_exact(4).map(|b| f32::from_ne_bytes([b[0], b[1], b[2], b[3]])));
            done += n;
        }
        drop(guard);
        Ok(())
    }
}
