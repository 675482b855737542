//! The GPU backend's twin for builds without the `cuda` feature: the same entry points, and a GPU
//! that can never be started.

use super::{GpuError, GpuOptions};
use crate::model::Model;
use std::convert::Infallible;
use std::marker::PhantomData;

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

/// Stands for a model resident on the GPU; it cannot exist in this build.
pub enum GpuLlama {}

impl GpuLlama {
    pub fn from_model(gpu: &Gpu, _model: &Model) -> Result<GpuLlama, GpuError> {
        match gpu.never {}
    }
}

/// Stands for a sequence evaluated on the GPU; it cannot exist in this build.
pub struct GpuLlamaSession<'g> {
    never: Infallible,
    _gpu: PhantomData<&'g Gpu>,
}

impl<'g> GpuLlamaSession<'g> {
    pub fn new(
        gpu: &'g Gpu,
        _model: &'g GpuLlama,
        _n_ctx: usize,
        _n_ubatch: usize,
    ) -> Result<Self, GpuError> {
        match gpu.never {}
    }

    pub fn decode(&mut self, _tokens: &[u32], _all_logits: bool) -> Result<Vec<f32>, GpuError> {
        match self.never {}
    }

    pub fn n_past(&self) -> usize {
        match self.never {}
    }

    pub fn n_ctx(&self) -> usize {
        match self.never {}
    }

    pub fn clear(&mut self) {
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
