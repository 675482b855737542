//! Linear layers: f16/bf16/f32 weights, f32 activations, f32 accumulation and f32 output.
//! - up to [`GEMV_MAX_TOKENS`] rows (decode): the gemv kernels read the f32 activations as they are;
//! - more rows: cuBLAS (CUBLAS_COMPUTE_32F, no TF32). Its two inputs must share one type, so for
//!   16-bit weights the activations are split into hi + lo 16-bit parts and the GEMM runs twice
//!   (W·hi + W·lo), which keeps about twice the precision of a single rounding to f16/bf16.
//!
//! Row-major `y[t][o] = Σ_i x[t][i]·W[o][i]` is the column-major product `yᵀ = W · xᵀ` with W
//! transposed: m = n_out, n = n_tokens, k = n_in.

use super::memory::DeviceBuffer;
use super::{driver_error, Gpu};
use crate::gpu::GpuError;
use cudarc::cublas::result as blas;
use cudarc::cublas::sys::{cublasComputeType_t, cublasGemmAlgo_t, cublasOperation_t, cudaDataType_t};
use std::ffi::c_void;

/// Rows up to which the gemv kernels are used instead of cuBLAS.
pub const GEMV_MAX_TOKENS: usize = 8;

/// The activations as the GEMM reads them.
#[derive(Clone, Copy)]
enum Input {
    /// f32 activations (for f32 weights, and for the gemv kernels).
    F32(u64),
    /// hi and lo 16-bit parts of the activations, in the weights' type.
    Split { hi: u64, lo: u64 },
}
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightType {
    F16,
    Bf16,
    F32,
}

impl WeightType {
    fn cuda(self) -> cudaDataType_t {
        match self {
            WeightType::F16 => cudaDataType_t::CUDA_R_16F,
            WeightType::Bf16 => cudaDataType_t::CUDA_R_16BF,
            WeightType::F32 => cudaDataType_t::CUDA_R_32F,
        }
    }

    pub fn size(self) -> usize {
        match self {
            WeightType::F16 | WeightType::Bf16 => 2,
            WeightType::F32 => 4,
        }
    }
}

/// One weight matrix, or `n_mat` of the same shape stacked (the experts of a MoE layer).
/// data: [n_mat][n_out][n_in] elements of `ty`, as raw bytes (ggml: `[n_in, n_out, n_mat]`).
pub struct Linear {
    pub data: DeviceBuffer<u8>,
    pub ty: WeightType,
    pub n_in: usize,
    pub n_out: usize,
    pub n_mat: usize,
}

/// Rows `row0 .. row0 + n_rows` of a grouped GEMM's input and output go through expert `expert`.
#[derive(Debug, Clone, Copy)]
pub struct ExpertGroup {
    pub expert: usize,
    pub row0: usize,
    pub n_rows: usize,
}

impl Linear {
    /// Upload `bytes`: [n_mat][n_out][n_in] little-endian elements of `ty`.
    pub fn upload(
        gpu: &Gpu,
        ty: WeightType,
        bytes: &[u8],
        n_in: usize,
        n_out: usize,
        n_mat: usize,
    ) -> Result<Linear, GpuError> {
        if bytes.len() != n_in * n_out * n_mat * ty.size() || bytes.is_empty() {
            return Err(shape(
                "linear",
                format!("{} bytes for {n_mat} x {n_out} x {n_in} {ty:?}", bytes.len()),
            ));
        }
        Ok(Linear { data: gpu.upload(bytes)?, ty, n_in, n_out, n_mat })
    }

    /// Upload 16-bit words (f16 or bf16 bit patterns).
    pub fn upload_words(
        gpu: &Gpu,
        ty: WeightType,
        words: &[u16],
        n_in: usize,
        n_out: usize,
        n_mat: usize,
    ) -> Result<Linear, GpuError> {
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        Linear::upload(gpu, ty, &bytes, n_in, n_out, n_mat)
    }
}

fn shape(op: &'static str, msg: String) -> GpuError {
    GpuError::Shape { op, msg }
}

fn blas_error(e: blas::CublasError) -> GpuError {
    GpuError::Blas(format!("{e:?}"))
}

impl Gpu {
    /// The activations for a GEMM with weights of type `ty`; `split` asks for the hi/lo parts
    /// (kept in a shared scratch that grows to the largest batch, then stays).
    fn gemm_input(&self, x: &DeviceBuffer<f32>, ty: WeightType, split: bool) -> Result<Input, GpuError> {
        let (x_ptr, _g) = x.ptr(&self.compute);
        let kernel = match (ty, split) {
            (WeightType::F32, _) | (_, false) => return Ok(Input::F32(x_ptr)),
            (WeightType::F16, true) => "f32_split_f16",
            (WeightType::Bf16, true) => "f32_split_bf16",
        };
        let mut guard = self.act16.lock().unwrap_or_else(|p| p.into_inner());
        let need = 2 * x.len();
        if guard.as_ref().is_none_or(|b| b.capacity() < need) {
            *guard = None; // free the old one first: it counts against the budget
            *guard = Some(self.alloc::<u16>(need.next_power_of_two())?);
        }
        let scratch = guard.as_mut().ok_or(shape("linear", "no scratch".into()))?;
        let (base, _gs) = scratch.ptr_mut(&self.compute);
        let lo = base + (x.len() * 2) as u64;
        self.launch_split(kernel, base, lo, x_ptr, x.len())?;
        Ok(Input::Split { hi: base, lo })
    }

    /// y[t][o] = Σ_i x[t][i]·W[mat][o][i] over rows `row0 .. row0 + n_rows` of x and y.
    /// y: [..][n_out] f32.
    fn gemm_rows(
        &self,
        y: u64,
        x: Input,
        w: &Linear,
        mat: usize,
        row0: usize,
        n_rows: usize,
    ) -> Result<(), GpuError> {
        let (w_base, _g) = w.data.ptr(&self.compute);
        let w_ptr = w_base + (mat * w.n_out * w.n_in * w.ty.size()) as u64;
        let y_ptr = y + (row0 * w.n_out * 4) as u64;
        let (x_ty, parts) = match x {
            Input::F32(p) if w.ty != WeightType::F32 => {
                let kernel = if w.ty == WeightType::F16 { "gemv_f16" } else { "gemv_bf16" };
                let x_ptr = p + (row0 * w.n_in * 4) as u64;
                return self.launch_gemv(kernel, y_ptr, w_ptr, x_ptr, w.n_in, w.n_out, n_rows);
            }
            Input::F32(p) => (cudaDataType_t::CUDA_R_32F, [Some(p), None]),
            Input::Split { hi, lo } => (w.ty.cuda(), [Some(hi), Some(lo)]),
        };
        let alpha = 1.0f32;
        for (i, part) in parts.into_iter().flatten().enumerate() {
            let beta = if i == 0 { 0.0f32 } else { 1.0f32 };
            let x_ptr = part + (row0 * w.n_in * w.ty.size()) as u64;
            // SAFETY: the callers checked every extent against the buffers; alpha/beta are f32 as
            // CUBLAS_COMPUTE_32F requires; the handle is bound to the compute stream.
            unsafe {
                blas::gemm_ex(
                    *self.blas.handle(),
                    cublasOperation_t::CUBLAS_OP_T,
                    cublasOperation_t::CUBLAS_OP_N,
                    w.n_out as i32,
                    n_rows as i32,
                    w.n_in as i32,
                    &alpha as *const f32 as *const c_void,
                    w_ptr as *const c_void,
                    w.ty.cuda(),
                    w.n_in as i32,
                    x_ptr as *const c_void,
                    x_ty,
                    w.n_in as i32,
                    &beta as *const f32 as *const c_void,
                    y_ptr as *mut c_void,
                    cudaDataType_t::CUDA_R_32F,
                    w.n_out as i32,
                    cublasComputeType_t::CUBLAS_COMPUTE_32F,
                    cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
                )
            }
            .map_err(blas_error)?;
        }
        Ok(())
    }

    fn check_linear(
        &self,
        y: &DeviceBuffer<f32>,
        x: &DeviceBuffer<f32>,
        w: &Linear,
        n_tokens: usize,
    ) -> Result<(), GpuError> {
        if x.len() < n_tokens * w.n_in || y.capacity() < n_tokens * w.n_out || n_tokens == 0 {
            return Err(shape(
                "linear",
                format!(
                    "x {} / y {} elements for {n_tokens} tokens of {} -> {}",
                    x.len(),
                    y.capacity(),
                    w.n_in,
                    w.n_out
                ),
            ));
        }
        Ok(())
    }

    /// y: [n_tokens][n_out] = x: [n_tokens][n_in] · W[mat]ᵀ.
    pub fn linear(
        &self,
        y: &mut DeviceBuffer<f32>,
        x: &DeviceBuffer<f32>,
        w: &Linear,
        mat: usize,
        n_tokens: usize,
    ) -> Result<(), GpuError> {
        self.check_linear(y, x, w, n_tokens)?;
        if mat >= w.n_mat {
            return Err(shape("linear", format!("matrix {mat} of {}", w.n_mat)));
        }
        y.set_len(n_tokens * w.n_out)?;
        let input = self.gemm_input(x, w.ty, n_tokens > GEMV_MAX_TOKENS)?;
        let (y_ptr, _g) = y.ptr_mut(&self.compute);
        self.gemm_rows(y_ptr, input, w, mat, 0, n_tokens)
    }

    /// Grouped GEMM for experts: rows of each group go through their own expert's matrix.
    /// x: [n_rows][n_in] (tokens gathered by expert), y: [n_rows][n_out].
    pub fn linear_grouped(
        &self,
        y: &mut DeviceBuffer<f32>,
        x: &DeviceBuffer<f32>,
        w: &Linear,
        groups: &[ExpertGroup],
    ) -> Result<(), GpuError> {
        let n_rows = groups.iter().map(|g| g.row0 + g.n_rows).max().unwrap_or(0);
        self.check_linear(y, x, w, n_rows)?;
        if let Some(g) = groups.iter().find(|g| g.expert >= w.n_mat) {
            return Err(shape("linear_grouped", format!("expert {} of {}", g.expert, w.n_mat)));
        }
        y.set_len(n_rows * w.n_out)?;
        let big = groups.iter().any(|g| g.n_rows > GEMV_MAX_TOKENS);
        let split = self.gemm_input(x, w.ty, big)?;
        let plain = self.gemm_input(x, w.ty, false)?;
        let (y_ptr, _g) = y.ptr_mut(&self.compute);
        for g in groups.iter().filter(|g| g.n_rows > 0) {
            let input = if g.n_rows > GEMV_MAX_TOKENS { split } else { plain };
            self.gemm_rows(y_ptr, input, w, g.expert, g.row0, g.n_rows)?;
        }
        Ok(())
    }

    /// Every stacked matrix on its own slice of rows, in strided-batched calls:
    /// x: [n_mat][n_tokens][n_in], y: [n_mat][n_tokens][n_out].
    pub fn linear_batched(
        &self,
        y: &mut DeviceBuffer<f32>,
        x: &DeviceBuffer<f32>,
        w: &Linear,
        n_tokens: usize,
    ) -> Result<(), GpuError> {
        self.check_linear(y, x, w, n_tokens * w.n_mat)?;
        y.set_len(n_tokens * w.n_out * w.n_mat)?;
        let (x_ty, parts) = match self.gemm_input(x, w.ty, true)? {
            Input::F32(p) => (cudaDataType_t::CUDA_R_32F, [Some(p), None]),
            Input::Split { hi, lo } => (w.ty.cuda(), [Some(hi), Some(lo)]),
        };
        let (y_ptr, _gy) = y.ptr_mut(&self.compute);
        let (w_ptr, _gw) = w.data.ptr(&self.compute);
        let alpha = 1.0f32;
        for (i, x_ptr) in parts.into_iter().flatten().enumerate() {
            let beta = if i == 0 { 0.0f32 } else { 1.0f32 };
            // SAFETY: extents checked above; strides are whole matrices; f32 scalars for COMPUTE_32F.
            unsafe {
                blas::gemm_strided_batched_ex(
                    *self.blas.handle(),
                    cublasOperation_t::CUBLAS_OP_T,
                    cublasOperation_t::CUBLAS_OP_N,
                    w.n_out as i32,
                    n_tokens as i32,
                    w.n_in as i32,
                    &alpha as *const f32 as *const c_void,
                    w_ptr as *const c_void,
                    w.ty.cuda(),
                    w.n_in as i32,
                    (w.n_out * w.n_in) as i64,
                    x_ptr as *const c_void,
                    x_ty,
                    w.n_in as i32,
                    (n_tokens * w.n_in) as i64,
                    &beta as *const f32 as *const c_void,
                    y_ptr as *mut c_void,
                    cudaDataType_t::CUDA_R_32F,
                    w.n_out as i32,
                    (n_tokens * w.n_out) as i64,
                    w.n_mat as i32,
                    cublasComputeType_t::CUBLAS_COMPUTE_32F,
                    cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
                )
            }
            .map_err(blas_error)?;
        }
        self.ctx.check_err().map_err(driver_error("gemm"))
    }
}
