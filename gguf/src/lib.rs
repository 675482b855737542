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
