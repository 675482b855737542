//! Timing with CUDA events (for the device check and the bench tools): device work is
//! asynchronous, so host clocks would measure the queueing, not the work.

use super::{driver_error, Gpu};
use crate::gpu::GpuError;
use cudarc::driver::{result, sys, CudaStream};

/// Which host memory a copy reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostMemory {
    /// Ordinary (pageable) memory: the driver stages it through its own pinned buffers.
    Pageable,
    /// Page-locked memory: the DMA engine reads it directly.
    Pinned,
}

fn timed_on(stream: &CudaStream, f: impl FnOnce() -> Result<(), GpuError>) -> Result<f32, GpuError> {
    let flags = Some(sys::CUevent_flags::CU_EVENT_DEFAULT);
    let start = stream.record_event(flags).map_err(driver_error("cuEventRecord"))?;
    f()?;
    let end = stream.record_event(flags).map_err(driver_error("cuEventRecord"))?;
    start.elapsed_ms(&end).map_err(driver_error("cuEventElapsedTime"))
}

impl Gpu {
    /// Milliseconds the work `f` queues on the compute stream takes on the device.
    pub fn time_compute(&self, f: impl FnOnce() -> Result<(), GpuError>) -> Result<f32, GpuError> {
        timed_on(&self.compute, f)
    }

    /// Milliseconds of each of `reps` host-to-device copies of `bytes` (after one warm-up copy),
    /// on the copy stream.
    pub fn time_h2d(&self, bytes: usize, host: HostMemory, reps: usize) -> Result<Vec<f32>, GpuError> {
        let mut dev = self.alloc::<u8>(bytes)?;
        let (dst, _guard) = dev.ptr_mut(&self.copy);
        let stream = self.copy.cu_stream();
        let mut pageable = Vec::new();
        let mut pinned = None;
        let src: &[u8] = match host {
            HostMemory::Pageable => {
                pageable = (0..bytes).map(|i| (i * 31 + 7) as u8).collect();
                &pageable
            }
            HostMemory::Pinned => {
                // SAFETY: plain page-locked allocation (flags 0).
                let p = unsafe { self.ctx.alloc_pinned_with_flags::<u8>(bytes, 0) }
                    .map_err(driver_error("cuMemHostAlloc"))?;
                let p = pinned.insert(p);
                let s = p.as_mut_slice().map_err(driver_error("pinned"))?;
                s.iter_mut().enumerate().for_each(|(i, b)| *b = (i * 31 + 7) as u8);
                s
            }
        };
        // SAFETY: dev holds `bytes` bytes; src stays alive and unmodified until the stream is
        // synchronised at the end.
        let copy = || {
            unsafe { result::memcpy_htod_async(dst, src, stream) }.map_err(driver_error("cuMemcpyHtoDAsync"))
        };
        copy()?;
        let mut times = Vec::with_capacity(reps);
        for _ in 0..reps {
            times.push(timed_on(&self.copy, copy)?);
        }
        self.copy.synchronize().map_err(driver_error("cuStreamSynchronize"))?;
        drop(pinned);
        drop(pageable);
        Ok(times)
    }

    /// Milliseconds of each of `reps` device-to-host copies of `bytes` into pinned memory.
    pub fn time_d2h_pinned(&self, bytes: usize, reps: usize) -> Result<Vec<f32>, GpuError> {
        let dev = self.upload(&vec![5u8; bytes])?;
        let (src, _guard) = dev.ptr(&self.copy);
        // SAFETY: plain page-locked allocation (flags 0).
        let mut pinned = unsafe { self.ctx.alloc_pinned_with_flags::<u8>(bytes, 0) }
            .map_err(driver_error("cuMemHostAlloc"))?;
        let dst = pinned.as_mut_slice().map_err(driver_error("pinned"))?;
        let stream = self.copy.cu_stream();
        let mut times = Vec::with_capacity(reps);
        self.compute.synchronize().map_err(driver_error("cuStreamSynchronize"))?;
        for _ in 0..=reps {
            // SAFETY: dst has `bytes` bytes and is not read before the synchronisation below.
            let t = timed_on(&self.copy, || {
                unsafe { result::memcpy_dtoh_async(&mut dst[..], src, stream) }
                    .map_err(driver_error("cuMemcpyDtoHAsync"))
            })?;
            times.push(t);
        }
        self.copy.synchronize().map_err(driver_error("cuStreamSynchronize"))?;
        times.remove(0); // warm-up
        Ok(times)
    }
}

/// The median of some timings (0 for none).
pub fn median(times: &[f32]) -> f32 {
    let mut t = times.to_vec();
    t.sort_by(f32::total_cmp);
    t.get(t.len() / 2).copied().unwrap_or(0.0)
}
