//! NVRTC: each `cuda/*.cu` file is compiled the first time one of its kernels is asked for, then
//! the module and its functions are kept for the life of the GPU.

use super::super::kernels::{file_of, KernelFile, NVRTC_OPTIONS};
use super::driver_error;
use crate::gpu::GpuError;
use cudarc::driver::{CudaContext, CudaFunction, CudaModule};
use cudarc::nvrtc::{compile_ptx_with_opts, CompileError, CompileOptions, Ptx};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// NVRTC's (major, minor) version, or `None` when libnvrtc cannot be opened.
pub fn nvrtc_version() -> Option<(i32, i32)> {
    // SAFETY: only opens the library; then a plain out-parameter call.
    unsafe {
        if !cudarc::nvrtc::sys::is_culib_present() {
            return None;
        }
        let (mut major, mut minor) = (0, 0);
        cudarc::nvrtc::sys::nvrtcVersion(&mut major, &mut minor);
        Some((major, minor))
    }
}

/// Compile one kernel file to PTX for `arch` (e.g. "sm_90"). Needs libnvrtc only: no driver and
/// no GPU, so CI uses it to check every kernel.
pub fn compile_file(file: &KernelFile, arch: &'static str) -> Result<Ptx, GpuError> {
    if nvrtc_version().is_none() {
        return Err(GpuError::MissingLibrary("NVRTC 13 (libnvrtc.so.13)".into()));
    }
    let opts = CompileOptions {
        arch: Some(arch),
        options: NVRTC_OPTIONS.iter().map(|s| s.to_string()).collect(),
        name: Some(file.name.to_string()),
        ..Default::default()
    };
    compile_ptx_with_opts(file.full_source(), opts).map_err(|e| {
        let log = match e {
            CompileError::CompileError { log, .. } => log.to_string_lossy().trim().to_string(),
            other => format!("{other:?}"),
        };
        GpuError::Compile { file: file.name, log }
    })
}

/// Compiled modules by file name and loaded functions by entry name.
pub(super) struct ModuleCache {
    arch: &'static str,
    modules: Mutex<HashMap<&'static str, Arc<CudaModule>>>,
    functions: Mutex<HashMap<&'static str, CudaFunction>>,
}

impl ModuleCache {
    pub(super) fn new(major: i32, minor: i32) -> ModuleCache {
        // NVRTC wants a 'static arch string; one small leak per started GPU.
        let arch: &'static str = Box::leak(format!("sm_{major}{minor}").into_boxed_str());
        ModuleCache { arch, modules: Mutex::default(), functions: Mutex::default() }
    }

    pub(super) fn function(
        &self,
        ctx: &Arc<CudaContext>,
        entry: &'static str,
    ) -> Result<CudaFunction, GpuError> {
        let mut functions = self.functions.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = functions.get(entry) {
            return Ok(f.clone());
        }
        let file = file_of(entry)
            .ok_or(GpuError::Shape { op: "kernel", msg: format!("no kernel named {entry}") })?;
        let module = {
            let mut modules = self.modules.lock().unwrap_or_else(|p| p.into_inner());
            match modules.get(file.name) {
                Some(m) => m.clone(),
                None => {
                    let ptx = compile_file(file, self.arch)?;
                    let m = ctx.load_module(ptx).map_err(driver_error("cuModuleLoadData"))?;
                    modules.insert(file.name, m.clone());
                    m
                }
            }
        };
        let f = module.load_function(entry).map_err(driver_error("cuModuleGetFunction"))?;
        functions.insert(entry, f.clone());
        Ok(f)
    }
}
