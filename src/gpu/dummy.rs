//! The GPU backend's twin for builds without the `cuda` feature: the same entry points, and a GPU
//! that can never be started.

use super::{GpuError, GpuOptions};
use std::convert::Infallible;

/// Stands for a started GPU; it cannot exist in this build.
pub struct Gpu {
    never: Infallible,
}

impl Gpu {
    /// Always [`GpuError::NotBuilt`].
    pub fn new(_opts: &GpuOptions) -> Result<Gpu, GpuError> {
        Err(GpuError::NotBuilt)
    }

    pub fn describe(&self) -> String {
        match self.never {}
    }

    pub fn budget(&self) -> u64 {
        match self.never {}
    }
}

/// Which CUDA libraries could be opened (none in this build).
pub fn library_report() -> Vec<(String, bool)> {
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cpu_build_reports_not_built() {
        let err = Gpu::new(&GpuOptions::default()).err().map(|e| e.to_string());
        assert_eq!(err.as_deref(), Some("built without GPU support (rebuild with `--features cuda`)"));
        assert!(crate::gpu::start_or_fall_back(&GpuOptions::default()).is_none());
    }
}
