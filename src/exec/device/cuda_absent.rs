//! Without the `cuda` feature there is no CUDA device: asking for one is a one-line error.

use super::Device;
use crate::exec::ExecError;

/// Always an error in this build.
pub fn open_cuda(_ordinal: usize, _mem_limit: Option<u64>) -> Result<Box<dyn Device>, ExecError> {
    Err(ExecError::Device(crate::gpu::GpuError::NotBuilt.to_string()))
}
