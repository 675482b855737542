//! The cudarc backend. Streams: `compute` runs kernels and GEMMs, `copy` runs the staged host-to-
//! device copies; events order the two. cudarc's per-buffer event tracking stays on, so a buffer
//! written on one stream is waited for on the other.

mod blas;
mod from_model;
mod llama;
mod measure;
mod memory;
mod moe;
mod nvrtc;
mod ops;

pub use blas::{ExpertGroup, Linear, WeightType, GEMV_MAX_TOKENS};
pub use llama::{
    GpuLlama, GpuLlamaSession, HostFfn, HostFfnBlock, HostLayer, HostLinear, HostMatrix, HostModel,
    LlamaShape,
};
pub use measure::{median, HostMemory};
pub use memory::{DeviceBuffer, Pool, Staging};
pub use nvrtc::{compile_file, nvrtc_version};
pub use ops::{EmbeddingTable, RopeConfig};

use super::{default_budget, GpuError, GpuOptions, MemLedger};
use cudarc::cublas::CudaBlas;
use cudarc::driver::{sys, CudaContext, CudaStream, DriverError};
use std::sync::{Arc, Mutex};

/// What the driver said about the device at start.
#[derive(Debug, Clone)]
pub struct DeviceInfo {
    pub name: String,
    pub compute_capability: (i32, i32),
    pub driver_version: i32,
    pub total_bytes: u64,
    pub free_bytes: u64,
}

/// A started GPU: context, streams, cuBLAS, the kernel cache and the memory ledger.
pub struct Gpu {
    ctx: Arc<CudaContext>,
    compute: Arc<CudaStream>,
    copy: Arc<CudaStream>,
    blas: CudaBlas,
    kernels: nvrtc::ModuleCache,
    ledger: Arc<MemLedger>,
    info: DeviceInfo,
    /// GEMM inputs rounded to the weights' 16-bit type; grows to the largest batch, then stays.
    act16: Mutex<Option<DeviceBuffer<u16>>>,
}

pub(crate) fn driver_error(what: &'static str) -> impl Fn(DriverError) -> GpuError {
    move |e| GpuError::Driver(format!("{what}: {e}"))
}

/// The three libraries the backend opens, and whether each can be opened. cudarc panics when it
/// first uses a library it cannot open, so nothing is called before this says yes.
pub fn library_report() -> Vec<(String, bool)> {
    // SAFETY: these only dlopen and dlclose the library; no symbol is used.
    unsafe {
        vec![
            ("the CUDA driver (libcuda.so.1)".to_string(), cudarc::driver::sys::is_culib_present()),
            ("cuBLAS 13 (libcublas.so.13)".to_string(), cudarc::cublas::sys::is_culib_present()),
            ("NVRTC 13 (libnvrtc.so.13)".to_string(), cudarc::nvrtc::sys::is_culib_present()),
        ]
    }
}

fn check_libraries() -> Result<(), GpuError> {
    for (name, present) in library_report() {
        if !present {
            return Err(GpuError::MissingLibrary(name));
        }
    }
    Ok(())
}

impl Gpu {
    /// Start device `opts.device`. Any failure (no library, no device, a driver error) is an
    /// `Err` with a one-line reason.
    pub fn new(opts: &GpuOptions) -> Result<Gpu, GpuError> {
        check_libraries()?;
        let available = CudaContext::device_count().map_err(driver_error("cuDeviceGetCount"))?;
        if opts.device >= available.max(0) as usize {
            return Err(GpuError::NoDevice { requested: opts.device, available: available.max(0) as usize });
        }
        let ctx = CudaContext::new(opts.device).map_err(driver_error("cuCtx"))?;
        let compute = ctx.new_stream().map_err(driver_error("cuStreamCreate"))?;
        let copy = ctx.new_stream().map_err(driver_error("cuStreamCreate"))?;
        let blas = CudaBlas::new(compute.clone()).map_err(|e| GpuError::Blas(format!("{e:?}")))?;
        let (free, total) = ctx.mem_get_info().map_err(driver_error("cuMemGetInfo"))?;
        let mut driver_version = 0;
        // SAFETY: plain out-parameter call; the driver library is loaded (checked above).
        unsafe { sys::cuDriverGetVersion(&mut driver_version) }
            .result()
            .map_err(driver_error("cuDriverGetVersion"))?;
        let info = DeviceInfo {
            name: ctx.name().map_err(driver_error("cuDeviceGetName"))?,
            compute_capability: ctx.compute_capability().map_err(driver_error("compute capability"))?,
            driver_version,
            total_bytes: total as u64,
            free_bytes: free as u64,
        };
        keep_pool_memory(&ctx);
        let budget = match opts.mem_limit {
            Some(limit) => limit.min(free as u64),
            None => default_budget(free as u64),
        };
        let (major, minor) = info.compute_capability;
        Ok(Gpu {
            kernels: nvrtc::ModuleCache::new(major, minor),
            ctx,
            compute,
            copy,
            blas,
            ledger: Arc::new(MemLedger::new(budget)),
            info,
            act16: Mutex::new(None),
        })
    }

    /// One line for the load log.
    pub fn describe(&self) -> String {
        let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
        let (major, minor) = self.info.compute_capability;
        format!(
            "{} (sm_{major}{minor}, driver {}.{}), {:.1} GiB free of {:.1}, budget {:.1} GiB",
            self.info.name,
            self.info.driver_version / 1000,
            self.info.driver_version % 1000 / 10,
            gib(self.info.free_bytes),
            gib(self.info.total_bytes),
            gib(self.ledger.limit())
        )
    }

    pub fn info(&self) -> &DeviceInfo {
        &self.info
    }

    /// The memory budget in bytes (`--gpu-mem`, or free memory minus the margin).
    pub fn budget(&self) -> u64 {
        self.ledger.limit()
    }

    /// Bytes allocated against the budget now.
    pub fn used(&self) -> u64 {
        self.ledger.used()
    }

    /// Hold `bytes` of the budget for something the caller will allocate later.
    pub fn reserve(&self, bytes: u64) -> Result<(), GpuError> {
        self.ledger.reserve(bytes)
    }

    /// Give back what [`Gpu::reserve`] held.
    pub fn release(&self, bytes: u64) {
        self.ledger.release(bytes)
    }

    pub fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }

    pub fn compute_stream(&self) -> &Arc<CudaStream> {
        &self.compute
    }

    pub fn copy_stream(&self) -> &Arc<CudaStream> {
        &self.copy
    }

    /// Wait for all queued work, then report any error a kernel or a deferred free left behind.
    pub fn synchronize(&self) -> Result<(), GpuError> {
        self.compute.synchronize().map_err(driver_error("compute stream"))?;
        self.copy.synchronize().map_err(driver_error("copy stream"))?;
        self.ctx.check_err().map_err(driver_error("deferred"))
    }

    /// Compile every kernel file now (otherwise each compiles at its first use).
    pub fn warm_up(&self) -> Result<(), GpuError> {
        for file in super::kernels::KERNEL_FILES {
            for entry in file.entries {
                self.kernels.function(&self.ctx, entry)?;
            }
        }
        Ok(())
    }

    /// cuBLAS's version number (e.g. 130100).
    pub fn cublas_version(&self) -> Result<i32, GpuError> {
        let mut version = 0;
        // SAFETY: the handle is live for `self`'s lifetime; plain out-parameter call.
        unsafe { cudarc::cublas::sys::cublasGetVersion_v2(*self.blas.handle(), &mut version) }
            .result()
            .map_err(|e| GpuError::Blas(format!("cublasGetVersion: {e:?}")))?;
        Ok(version)
    }
}

/// The default memory pool gives freed memory back to the driver at every synchronisation unless
/// told to keep it; a decode loop that frees and allocates would then pay for cuMemAlloc each step.
/// Devices without memory pools simply skip this.
fn keep_pool_memory(ctx: &Arc<CudaContext>) {
    use cudarc::driver::result::{device, mem_pool};
    // SAFETY: the device handle comes from a live context; the attribute takes a u64 threshold.
    unsafe {
        if let Ok(pool) = device::get_default_mem_pool(ctx.cu_device()) {
            let mut keep_all = u64::MAX;
            let _ = mem_pool::set_attribute(
                pool,
                sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD,
                &mut keep_all as *mut u64 as *mut std::ffi::c_void,
            );
        }
    }
}

/// The CUDA libraries this process has mapped (from /proc/self/maps): which files the dynamic
/// loader actually picked.
pub fn loaded_libraries() -> Vec<String> {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    let mut seen: Vec<String> = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .filter(|p| ["libcuda", "libcublas", "libnvrtc"].iter().any(|n| p.contains(n)))
        .map(str::to_string)
        .collect();
    seen.sort();
    seen.dedup();
    seen
}
