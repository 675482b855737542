//! One error type for everything that can be wrong with a GGUF file.

use thiserror::Error;

pub type Result<T> = std::result::Result<T, GgufError>;

#[derive(Debug, Error)]
pub enum GgufError {
    // ---- I/O ---------------------------------------------------------------------------------
    #[error("cannot open {path}: {source}")]
    Open { path: String, source: std::io::Error },
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),

    // ---- structure ---------------------------------------------------------------------------
    #[error("not a GGUF file (magic is \"{}\", expected \"GGUF\")", .0.escape_ascii())]
    BadMagic([u8; 4]),
    #[error("unsupported GGUF version {0} (supported: 2, 3)")]
    BadVersion(u32),
    #[error("file truncated while reading {what} at offset {offset} (file is {len} bytes)")]
    Truncated { what: String, offset: u64, len: u64 },
    #[error("{what} count {count} is implausible for a {len}-byte file")]
    HugeCount { what: String, count: u64, len: u64 },
    #[error("{what}: length {count} is over the limit of {limit}")]
    OverLimit { what: String, count: u64, limit: u64 },
    #[error("invalid UTF-8 in {what} at offset {offset}")]
    BadUtf8 { what: String, offset: u64 },
    #[error("unknown metadata value type {ty} for key '{key}'")]
    BadValueType { key: String, ty: u32 },
    #[error("nested arrays are not supported (key '{key}')")]
    NestedArray { key: String },
    #[error("duplicate {what} '{name}'")]
    Duplicate { what: &'static str, name: String },
    #[error("metadata key #{index} is empty")]
    EmptyKey { index: u64 },
    #[error("bad alignment {0} (general.alignment must be a non-zero power of two)")]
    BadAlignment(u64),

    // ---- tensors -----------------------------------------------------------------------------
    #[error("tensor '{name}': unknown ggml type id {id}")]
    BadDType { name: String, id: u32 },
    #[error("tensor '{name}': {dims} dimensions (must be 1 to 4)")]
    TooManyDims { name: String, dims: u32 },
    #[error("tensor '{name}': bad shape {shape:?} ({why})")]
    BadShape { name: String, shape: Vec<u64>, why: String },
    #[error("tensor '{name}': data offset {offset} is not a multiple of the alignment {align}")]
    Misaligned { name: String, offset: u64, align: u64 },
    #[error("tensor '{name}': {n_bytes} bytes at data offset {offset} lie outside the file ({len} bytes)")]
    OutOfFile { name: String, offset: u64, n_bytes: u64, len: u64 },
    #[error("tensor '{a}' overlaps tensor '{b}'")]
    Overlap { a: String, b: String },
    #[error(
        "tensor '{name}': data offset {offset} leaves a gap (the data must be packed; expected {expected})"
    )]
    Gap { name: String, offset: u64, expected: u64 },

    // ---- access ------------------------------------------------------------------------------
    #[error("missing metadata key '{0}'")]
    MissingKey(String),
    #[error("metadata key '{key}' has type {found}, expected {expected}")]
    WrongType { key: String, expected: &'static str, found: &'static str },
    #[error("metadata key '{key}': value {value} out of range ({why})")]
    OutOfRange { key: String, value: String, why: String },
    #[error("missing tensor '{0}'")]
    MissingTensor(String),
    #[error("tensor '{name}': {why}")]
    Tensor { name: String, why: String },
    #[error("{0}")]
    Unsupported(String),
}
