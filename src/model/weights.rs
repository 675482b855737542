//! Weights as the engine computes with them, and the loader that checks shapes and prepares them.
//!
//! f32/f16/bf16 tensors are borrowed from the mapped file (zero-copy; each `Weight` holds an `Arc`
//! of the file). Quantized tensors are dequantized once, here, to f16 with round-to-nearest-even,
//! which is exactly what `llama-quantize ... F16` would have stored: a quantized file and its f16
//! conversion give the same logits. MXFP4 (gpt-oss's experts) is decoded to bf16 instead, which
//! holds every MXFP4 value exactly (f16's exponents are too few).

use std::sync::Arc;

use gguf::{DType, GgufFile, TensorInfo};
use half::{bf16, f16};
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;

use super::ModelError;
use crate::cpu::WeightView;

enum Storage {
    /// Elements `[elem_start, elem_start + n_elems)` of a plain-float tensor in the map.
    Mapped {
        file: Arc<GgufFile>,
        dtype: DType,
        byte_start: usize,
        n_elems: usize,
    },
    F16(Vec<f16>),
    BF16(Vec<bf16>),
    F32(Vec<f32>),
}

/// A linear layer's matrix, ggml `[n_in, n_out]`.
pub struct Weight {
    pub n_in: usize,
    pub n_out: usize,
    storage: Storage,
}

impl Weight {
    pub fn view(&self) -> WeightView<'_> {
        match &self.storage {
            Storage::F16(v) => WeightView::F16(v),
            Storage::BF16(v) => WeightView::BF16(v),
            Storage::F32(v) => WeightView::F32(v),
            Storage::Mapped { file, dtype, byte_start, n_elems } => {
                let bytes = &file.bytes()[*byte_start..];
                // SAFETY: the loader checked that the range lies in the file, is aligned for the
                // element type, and that the host is little-endian; f16/bf16 are plain u16 newtypes.
                unsafe {
                    match dtype {
                        DType::F32 => {
                            WeightView::F32(std::slice::from_raw_parts(bytes.as_ptr().cast(), *n_elems))
                        }
                        DType::BF16 => WeightView::BF16(std::slice::from_raw_parts(
                            bytes.as_ptr().cast::<bf16>(),
                            *n_elems,
                        )),
                        _ => WeightView::F16(std::slice::from_raw_parts(
                            bytes.as_ptr().cast::<f16>(),
                            *n_elems,
                        )),
                    }
                }
            }
        }
    }

    /// Storage type as used at run time (`f16` for dequantized tensors).
    pub fn dtype(&self) -> DType {
        match &self.storage {
            Storage::F16(_) => DType::F16,
            Storage::BF16(_) => DType::BF16,
            Storage::F32(_) => DType::F32,
            Storage::Mapped { dtype, .. } => *dtype,
        }
    }

    /// Row `row` as f32 (`out.len() == n_in`); used for the token embedding lookup.
    pub fn row_to_f32(&self, row: usize, out: &mut [f32]) {
        self.view().to_f32_into(row * self.n_in, out);
    }
}

/// Reads tensors of one file, checking each shape against what the hparams say it must be.
pub struct Loader {
    file: Arc<GgufFile>,
    bar: Option<ProgressBar>,
}

impl Loader {
    pub fn new(file: Arc<GgufFile>, progress: bool) -> Loader {
        let quant_bytes: u64 = file.tensors.iter().filter(|t| !t.dtype.is_float()).map(|t| t.n_bytes).sum();
        let bar = (progress && quant_bytes > 0).then(|| {
            let bar =
                ProgressBar::with_draw_target(Some(quant_bytes), indicatif::ProgressDrawTarget::stderr());
            if let Ok(style) =
                ProgressStyle::with_template("dequantizing {bar:40} {bytes}/{total_bytes} ({eta})")
            {
                bar.set_style(style);
            }
            bar
        });
        Loader { file, bar }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }

    pub fn has(&self, name: &str) -> bool {
        self.file.tensor(name).is_some()
    }

    fn info(&self, name: &str, shape: &[usize]) -> Result<&TensorInfo, ModelError> {
        let info = self.file.require_tensor(name)?;
        let want: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
        if info.dims != want {
            return Err(ModelError::Invalid(format!(
                "tensor '{name}' has shape {:?}, expected {want:?}",
                info.dims
            )));
        }
        Ok(info)
    }

    /// A matrix `[n_in, n_out]`.
    pub fn matrix(&self, name: &str, n_in: usize, n_out: usize) -> Result<Weight, ModelError> {
        let info = self.info(name, &[n_in, n_out])?.clone();
        self.weight(&info, 0, n_in, n_out)
    }

    /// Rows `[row0, row0 + n_rows)` of a matrix `[n_in, n_total]` (one part of a fused projection).
    pub fn matrix_rows(
        &self,
        name: &str,
        n_in: usize,
        n_total: usize,
        row0: usize,
        n_rows: usize,
    ) -> Result<Weight, ModelError> {
        let info = self.info(name, &[n_in, n_total])?.clone();
        if row0 + n_rows > n_total {
            return Err(ModelError::Invalid(format!(
                "tensor '{name}': rows {row0}..{} lie outside its {n_total} rows",
                row0 + n_rows
            )));
        }
        self.weight(&info, row0 * n_in, n_in, n_rows)
    }

    /// Stacked experts `[n_in, n_out, n_expert]`, one `Weight` per expert.
    pub fn experts(
        &self,
        name: &str,
        n_in: usize,
        n_out: usize,
        n_expert: usize,
    ) -> Result<Vec<Weight>, ModelError> {
        let info = self.info(name, &[n_in, n_out, n_expert])?.clone();
        (0..n_expert).map(|e| self.weight(&info, e * n_in * n_out, n_in, n_out)).collect()
    }

    /// A vector `[n]` as f32 (norm weights, biases; converted whatever their type).
    pub fn vector(&self, name: &str, n: usize) -> Result<Vec<f32>, ModelError> {
        let info = self.info(name, &[n])?;
        Ok(gguf::dequant::to_f32(info.dtype, self.file.tensor_bytes(info), n)?)
    }

    /// A stack of vectors `[n, count]` (the biases of stacked experts), one `Vec` per entry.
    pub fn vectors(&self, name: &str, n: usize, count: usize) -> Result<Vec<Vec<f32>>, ModelError> {
        let info = self.info(name, &[n, count])?;
        let all = gguf::dequant::to_f32(info.dtype, self.file.tensor_bytes(info), n * count)?;
        Ok(all.chunks_exact(n).map(<[f32]>::to_vec).collect())
    }

    pub fn optional_vector(&self, name: &str, n: usize) -> Result<Option<Vec<f32>>, ModelError> {
        if self.has(name) {
            self.vector(name, n).map(Some)
        } else {
            Ok(None)
        }
    }

    /// Elements `[elem_start, elem_start + n_in*n_out)` of `info` as a matrix.
    fn weight(
        &self,
        info: &TensorInfo,
        elem_start: usize,
        n_in: usize,
        n_out: usize,
    ) -> Result<Weight, ModelError> {
        let n_elems = n_in * n_out;
        let dtype = info.dtype;
        let bad = |why: String| ModelError::Invalid(format!("tensor '{}': {why}", info.name));
        let byte_of = |elems: usize| {
            dtype
                .bytes_for(elems as u64)
                .ok_or_else(|| bad(format!("{elems} elements are not whole {dtype} blocks")))
        };
        let byte_start = info.offset as usize + byte_of(elem_start)? as usize;
        let n_bytes = byte_of(n_elems)? as usize;
        let bytes = self
            .file
            .bytes()
            .get(byte_start..byte_start + n_bytes)
            .ok_or_else(|| bad("data lies outside the file".into()))?;
        match dtype {
            DType::F32 | DType::F16 | DType::BF16 => {
                let align = if dtype == DType::F32 { 4 } else { 2 };
                if cfg!(target_endian = "little") && bytes.as_ptr().align_offset(align) == 0 {
                    let file = self.file.clone();
                    return Ok(Weight {
                        n_in,
                        n_out,
                        storage: Storage::Mapped { file, dtype, byte_start, n_elems },
                    });
                }
                // A file held in an unaligned buffer (or a big-endian host): keep a converted copy.
                // The f32 detour is exact for f16 and bf16 values.
                let v = gguf::dequant::to_f32(dtype, bytes, n_elems)?;
                let storage = match dtype {
                    DType::F16 => Storage::F16(v.into_iter().map(f16::from_f32).collect()),
                    DType::BF16 => Storage::BF16(v.into_iter().map(bf16::from_f32).collect()),
                    _ => Storage::F32(v),
                };
                Ok(Weight { n_in, n_out, storage })
            }
            // MXFP4 (gpt-oss's experts) spans exponents f16 cannot hold; bf16 holds every value.
            DType::MXFP4 => {
                let v = gguf::dequant::to_f32(dtype, bytes, n_elems).map_err(|e| bad(e.to_string()))?;
                if let Some(bar) = &self.bar {
                    bar.inc(bytes.len() as u64);
                }
                Ok(Weight {
                    n_in,
                    n_out,
                    storage: Storage::BF16(v.into_iter().map(bf16::from_f32).collect()),
                })
            }
            _ => {
                let v = self.dequantize_to_f16(dtype, bytes, n_in, n_out).map_err(|e| bad(e.to_string()))?;
                Ok(Weight { n_in, n_out, storage: Storage::F16(v) })
            }
        }
    }

    /// Dequantize row blocks in parallel, rounding each value to f16 (RNE).
    fn dequantize_to_f16(
        &self,
        dtype: DType,
        bytes: &[u8],
        n_in: usize,
        n_out: usize,
    ) -> Result<Vec<f16>, ModelError> {
        let row_bytes = dtype.bytes_for(n_in as u64).unwrap_or(0) as usize;
        if row_bytes == 0 {
            return Err(ModelError::Invalid(format!("rows of {n_in} are not whole {dtype} blocks")));
        }
        const ROWS_PER_CHUNK: usize = 64;
        let mut out = vec![f16::ZERO; n_in * n_out];
        out.par_chunks_mut(n_in * ROWS_PER_CHUNK)
            .zip(bytes.par_chunks(row_bytes * ROWS_PER_CHUNK))
            .try_for_each(|(dst, src)| -> Result<(), ModelError> {
                let v = gguf::dequant::to_f32(dtype, src, dst.len())?;
                for (d, s) in dst.iter_mut().zip(v) {
                    *d = f16::from_f32(s);
                }
                if let Some(bar) = &self.bar {
                    bar.inc(src.len() as u64);
                }
                Ok(())
            })?;
        Ok(out)
    }
}
