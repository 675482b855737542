//! The GPU backend (NVIDIA, through cudarc): context, a compute and a copy stream with events
//! between them, pinned staging, a memory budget and a buffer pool, kernels from `cuda/*.cu`
//! compiled by NVRTC at first use, and cuBLAS GEMMs over f16/bf16 weights.
//!
//! With the `cuda` feature off, the same names exist in a dummy twin whose [`Gpu::new`] always
//! returns [`GpuError::NotBuilt`], so callers need no `#[cfg]` of their own. With it on, nothing of
//! CUDA is needed to build: the libraries are opened at run time, after a presence check, and a
//! missing driver, a missing GPU or a CUDA error at start is an `Err`, never a panic.

mod budget;
pub mod kernels;
pub mod reference;

pub use budget::{default_budget, parse_size, MemLedger, BUDGET_MARGIN};

#[cfg(feature = "cuda")]
mod cuda;
#[cfg(feature = "cuda")]
pub use cuda::*;

#[cfg(not(feature = "cuda"))]
mod dummy;
#[cfg(not(feature = "cuda"))]
pub use dummy::*;

/// Whether this build can use a GPU at all.
pub const BUILT_WITH_CUDA: bool = cfg!(feature = "cuda");

#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    #[error("built without GPU support (rebuild with `--features cuda`)")]
    NotBuilt,
    #[error("{0} could not be loaded")]
    MissingLibrary(String),
    #[error("CUDA driver: {0}")]
    Driver(String),
    #[error("no CUDA device (device {requested} asked for, {available} present)")]
    NoDevice { requested: usize, available: usize },
    #[error("NVRTC could not compile cuda/{file}: {log}")]
    Compile { file: &'static str, log: String },
    #[error("cuBLAS: {0}")]
    Blas(String),
    #[error("GPU memory budget exceeded: {asked} bytes asked, {used} of {limit} in use")]
    OutOfBudget { asked: u64, used: u64, limit: u64 },
    #[error("invalid size '{0}' (expected a byte count or e.g. 512M, 8G, 1.5GiB)")]
    BadSize(String),
    #[error("GPU op {op}: {msg}")]
    Shape { op: &'static str, msg: String },
}

/// What the GPU is started with.
#[derive(Debug, Clone, Default)]
pub struct GpuOptions {
    /// CUDA device ordinal.
    pub device: usize,
    /// `--gpu-mem`: cap on the bytes this process allocates; `None` = free memory minus
    /// [`BUDGET_MARGIN`].
    pub mem_limit: Option<u64>,
}

/// Start the GPU for a binary that can fall back to the CPU: on failure, one line on stderr
/// (`gpu: <reason>; running on the CPU`) and `None`.
pub fn start_or_fall_back(opts: &GpuOptions) -> Option<Gpu> {
    match Gpu::new(opts) {
        Ok(gpu) => {
            eprintln!("gpu: {}", gpu.describe());
            Some(gpu)
        }
        Err(e) => {
            eprintln!("gpu: {e}; running on the CPU");
            None
        }
    }
}
