//! GGUF, the file format of llama.cpp, and nothing else.
//!
//! - [`GgufFile`] opens a file with `mmap`, validates every count, length, dtype, shape and offset with
//!   checked arithmetic, and gives typed access to metadata and zero-copy access to tensor bytes.
//! - [`names`] is the one table of metadata keys and tensor names.
//! - [`dequant`] turns quantized blocks (Q8_0, Q4_0, Q4_1, K-quants) into f16/f32.
//! - [`writer`] writes GGUF v3 files; [`synth`] builds seeded synthetic models with it.
//! - `malformed` builds a corpus of broken files for tests of every binary.
//!
//! Dimension convention, as in ggml: `dims[0]` is the innermost (contiguous) dimension. A weight matrix
//! of a linear layer `y = W x` with `n_in` inputs and `n_out` outputs has `dims = [n_in, n_out]`.

pub mod dequant;
pub mod dtype;
pub mod error;
#[doc(hidden)]
pub mod malformed;
pub mod names;
pub mod reader;
pub mod synth;
pub mod value;
pub mod writer;

pub use dtype::DType;
pub use error::{GgufError, Result};
pub use reader::{GgufFile, TensorInfo};
pub use value::{Value, ValueType};

/// Fuzzing entry point (fuzz/ and tests/fuzz_corpus.rs): parse `data` as a GGUF file and, when it
/// parses, read every metadata value, the architecture, each tensor's bytes, and dequantize the
/// small tensors. Never panics on any input: a malformed file is an `Err` inside, and `None` out.
pub fn fuzz_parse(data: &[u8]) -> Option<GgufFile> {
    let file = GgufFile::from_bytes(data.to_vec()).ok()?;
    for (key, value) in &file.kv {
        let _ = (key.len(), value.display_short(), value.type_name(), value.value_type());
        let _ = (value.as_i128(), value.as_f64(), value.as_str(), value.as_bool());
    }
    let _ = file.architecture();
    for info in &file.tensors {
        let bytes = file.tensor_bytes(info);
        let _ = (info.n_elems(), info.n_rows(), file.tensor(&info.name).is_some());
        let n = info.n_elems();
        if n <= 1 << 16 && dequant::supports(info.dtype) {
            let _ = dequant::to_f32(info.dtype, bytes, n as usize);
        }
    }
    Some(file)
}
