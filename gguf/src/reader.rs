//! The GGUF reader: parse and validate the header, metadata and tensor table; map the data.
//!
//! Nothing read from the file is trusted: every count is checked against the bytes that remain before
//! anything is allocated, every size is computed with checked arithmetic, and every tensor must lie
//! inside the file, aligned, without overlapping another.

use std::collections::HashMap;
use std::path::Path;

use crate::dtype::DType;
use crate::error::{GgufError, Result};
use crate::value::{Metadata, Value, ValueType};

pub const MAGIC: [u8; 4] = *b"GGUF";
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml's GGML_MAX_DIMS.
pub const MAX_DIMS: u32 = 4;
/// ggml's GGML_MAX_NAME: tensor names must be shorter than this.
pub const MAX_NAME: usize = 64;
/// gguf.cpp refuses strings and arrays longer than this (1 GiB / 2^30 elements).
pub const MAX_STRING_LEN: u64 = 1 << 30;
pub const MAX_ARRAY_LEN: u64 = 1 << 30;

/// One entry of the tensor table, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// ggml order: `dims[0]` is contiguous.
    pub dims: Vec<u64>,
    pub dtype: DType,
    /// Absolute offset of the data in the file.
    pub offset: u64,
    pub n_bytes: u64,
}

impl TensorInfo {
    pub fn n_elems(&self) -> u64 {
        self.dims.iter().product()
    }
    /// Number of rows (product of all but the first dimension).
    pub fn n_rows(&self) -> u64 {
        self.dims.iter().skip(1).product()
    }
}

enum Storage {
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl Storage {
    fn bytes(&self) -> &[u8] {
        match self {
            Storage::Mapped(m) => m,
            Storage::Owned(v) => v,
        }
    }
}

/// An open, validated GGUF file.
pub struct GgufFile {
    storage: Storage,
    pub version: u32,
    pub alignment: u64,
    /// Absolute offset where the tensor data section starts.
    pub data_offset: u64,
    /// Metadata in file order.
    pub kv: Vec<(String, Value)>,
    kv_index: HashMap<String, usize>,
    pub tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("version", &self.version)
            .field("n_kv", &self.kv.len())
            .field("n_tensors", &self.tensors.len())
            .finish()
    }
}

impl GgufFile {
    /// Open and validate a file; tensor data stays in the page cache (mmap).
    pub fn open(path: impl AsRef<Path>) -> Result<GgufFile> {
        let path = path.as_ref();
        let open_err = |source| GgufError::Open { path: path.display().to_string(), source };
        let file = std::fs::File::open(path).map_err(open_err)?;
        let meta = file.metadata().map_err(open_err)?;
        if meta.is_dir() {
            return Err(open_err(std::io::Error::other("is a directory")));
        }
        if meta.len() == 0 {
            return Err(GgufError::Truncated { what: "magic".into(), offset: 0, len: 0 });
        }
        // SAFETY: the map is read-only; a file truncated by another process while mapped is outside
        // what any mmap-based loader (llama.cpp included) can defend against.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(open_err)?;
        Self::parse(Storage::Mapped(map))
    }

    /// Parse a file held in memory (tests, fuzzing).
    pub fn from_bytes(bytes: Vec<u8>) -> Result<GgufFile> {
        Self::parse(Storage::Owned(bytes))
    }

    fn parse(storage: Storage) -> Result<GgufFile> {
        let bytes = storage.bytes();
        let mut r = Cursor { bytes, pos: 0 };
        let magic: [u8; 4] = r.take(4, "magic")?.try_into().unwrap_or([0; 4]);
        if magic != MAGIC {
            return Err(GgufError::BadMagic(magic));
        }
        let version = r.u32("version")?;
        if !(2..=3).contains(&version) {
            return Err(GgufError::BadVersion(version));
        }
        let n_tensors = r.u64("tensor count")?;
        let n_kv = r.u64("metadata count")?;
        // A key/value takes at least 8 (key length) + 1 (non-empty key) + 4 (type) + 1 bytes; a tensor
        // entry at least 8 (name length) + 4 (n_dims) + 8 (one dim) + 4 (type) + 8 (offset).
        r.check_count(n_kv, 14, "metadata")?;
        r.check_count(n_tensors, 32, "tensor")?;

        let mut kv = Vec::with_capacity(n_kv as usize);
        let mut kv_index = HashMap::with_capacity(n_kv as usize);
        for _ in 0..n_kv {
            let key = r.string("metadata key")?;
            if key.is_empty() {
                return Err(GgufError::EmptyKey { index: kv.len() as u64 });
            }
            let ty = r.u32("metadata value type")?;
            let value = r.value(&key, ty, true)?;
            if kv_index.insert(key.clone(), kv.len()).is_some() {
                return Err(GgufError::Duplicate { what: "metadata key", name: key });
            }
            kv.push((key, value));
        }

        let alignment = match kv_index.get("general.alignment").map(|&i| &kv[i].1) {
            None => DEFAULT_ALIGNMENT,
            // gguf.cpp insists on exactly u32 here, not just any integer.
            Some(Value::U32(a)) if a.is_power_of_two() => u64::from(*a),
            Some(Value::U32(a)) => return Err(GgufError::BadAlignment(u64::from(*a))),
            Some(v) => {
                return Err(GgufError::WrongType {
                    key: "general.alignment".into(),
                    expected: "u32",
                    found: v.type_name(),
                })
            }
        };

        let mut raw = Vec::with_capacity(n_tensors as usize);
        for _ in 0..n_tensors {
            raw.push(r.tensor_entry()?);
        }
        let len = bytes.len() as u64;
        // Without tensors there is no data section and no padding to expect (as in gguf.cpp).
        let data_offset = if raw.is_empty() {
            r.pos
        } else {
            match align_up(r.pos, alignment) {
                Some(offset) if offset <= len => offset,
                _ => return Err(GgufError::Truncated { what: "data section".into(), offset: r.pos, len }),
            }
        };

        let mut tensors: Vec<TensorInfo> = Vec::with_capacity(raw.len());
        let mut tensor_index = HashMap::with_capacity(raw.len());
        // gguf.cpp requires the data to be packed in table order, each tensor padded to the alignment.
        let mut expected_rel = 0u64;
        for (name, dims, type_id, rel_offset) in raw {
            if tensor_index.contains_key(&name) {
                return Err(GgufError::Duplicate { what: "tensor", name });
            }
            let info = validate_tensor(name, dims, type_id, rel_offset, data_offset, alignment, len)?;
            if rel_offset != expected_rel {
                return Err(match tensors.last() {
                    Some(prev) if rel_offset < expected_rel => {
                        GgufError::Overlap { a: prev.name.clone(), b: info.name }
                    }
                    _ => GgufError::Gap { name: info.name, offset: rel_offset, expected: expected_rel },
                });
            }
            // Cannot overflow: the tensor ends inside the file and padding adds less than `alignment`.
            expected_rel = align_up(rel_offset + info.n_bytes, alignment).unwrap_or(u64::MAX);
            tensor_index.insert(info.name.clone(), tensors.len());
            tensors.push(info);
        }

        Ok(GgufFile { storage, version, alignment, data_offset, kv, kv_index, tensors, tensor_index })
    }

    /// The whole file.
    pub fn bytes(&self) -> &[u8] {
        self.storage.bytes()
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    pub fn require_tensor(&self, name: &str) -> Result<&TensorInfo> {
        self.tensor(name).ok_or_else(|| GgufError::MissingTensor(name.to_string()))
    }

    /// The raw bytes of a tensor. Entries of this file's table were checked to lie inside the file at
    /// open; a hand-made `TensorInfo` that does not gets an empty slice rather than a panic.
    pub fn tensor_bytes(&self, info: &TensorInfo) -> &[u8] {
        let range = usize::try_from(info.offset)
            .ok()
            .and_then(|start| Some(start..start.checked_add(usize::try_from(info.n_bytes).ok()?)?));
        range.and_then(|r| self.bytes().get(r)).unwrap_or(&[])
    }

    /// `general.architecture`, required by every model file.
    pub fn architecture(&self) -> Result<&str> {
        self.require_str(crate::names::KEY_ARCHITECTURE)
    }
}

impl Metadata for GgufFile {
    fn get(&self, key: &str) -> Option<&Value> {
        self.kv_index.get(key).map(|&i| &self.kv[i].1)
    }
}

fn align_up(x: u64, a: u64) -> Option<u64> {
    x.checked_add(a - 1).map(|v| v / a * a)
}

fn validate_tensor(
    name: String,
    dims: Vec<u64>,
    type_id: u32,
    rel_offset: u64,
    data_offset: u64,
    alignment: u64,
    len: u64,
) -> Result<TensorInfo> {
    let dtype =
        DType::from_id(type_id).ok_or_else(|| GgufError::BadDType { name: name.clone(), id: type_id })?;
    let bad_shape =
        |why: &str| GgufError::BadShape { name: name.clone(), shape: dims.clone(), why: why.into() };
    if dims.iter().any(|&d| d == 0 || d > i64::MAX as u64) {
        return Err(bad_shape("every dimension must be in 1..2^63"));
    }
    let n_elems = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d).filter(|&n| n <= i64::MAX as u64))
        .ok_or_else(|| bad_shape("element count overflows"))?;
    if dims.first().is_some_and(|&row| row % dtype.block_elems() != 0) {
        return Err(bad_shape(&format!("row length is not a multiple of the {} block size", dtype)));
    }
    let n_bytes = dtype.bytes_for(n_elems).ok_or_else(|| bad_shape("byte size overflows"))?;
    if !rel_offset.is_multiple_of(alignment) {
        return Err(GgufError::Misaligned { name, offset: rel_offset, align: alignment });
    }
    let start = data_offset.checked_add(rel_offset);
    let end = start.and_then(|s| s.checked_add(n_bytes));
    match (start, end) {
        (Some(start), Some(end)) if end <= len => {
            Ok(TensorInfo { name, dims, dtype, offset: start, n_bytes })
        }
        _ => Err(GgufError::OutOfFile { name, offset: rel_offset, n_bytes, len }),
    }
}

/// A bounds-checked little-endian reader over the file bytes.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: u64,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> u64 {
        self.bytes.len() as u64 - self.pos
    }

    fn take(&mut self, n: u64, what: &str) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(GgufError::Truncated {
                what: what.into(),
                offset: self.pos,
                len: self.bytes.len() as u64,
            });
        }
        let start = self.pos as usize;
        self.pos += n;
        Ok(&self.bytes[start..start + n as usize])
    }

    fn check_count(&self, count: u64, min_item_size: u64, what: &str) -> Result<()> {
        match count.checked_mul(min_item_size) {
            Some(need) if need <= self.remaining() => Ok(()),
            _ => Err(GgufError::HugeCount { what: what.into(), count, len: self.bytes.len() as u64 }),
        }
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let s = self.take(N as u64, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    fn string(&mut self, what: &str) -> Result<String> {
        let n = self.u64(what)?;
        if n > MAX_STRING_LEN {
            return Err(GgufError::OverLimit { what: what.into(), count: n, limit: MAX_STRING_LEN });
        }
        let at = self.pos;
        let raw = self.take(n, what)?;
        String::from_utf8(raw.to_vec()).map_err(|_| GgufError::BadUtf8 { what: what.into(), offset: at })
    }

    fn value(&mut self, key: &str, ty: u32, allow_array: bool) -> Result<Value> {
        let vt = ValueType::from_id(ty).ok_or_else(|| GgufError::BadValueType { key: key.into(), ty })?;
        Ok(match vt {
            ValueType::U8 => Value::U8(self.array::<1>(key)?[0]),
            ValueType::I8 => Value::I8(self.array::<1>(key)?[0] as i8),
            ValueType::U16 => Value::U16(u16::from_le_bytes(self.array(key)?)),
            ValueType::I16 => Value::I16(i16::from_le_bytes(self.array(key)?)),
            ValueType::U32 => Value::U32(u32::from_le_bytes(self.array(key)?)),
            ValueType::I32 => Value::I32(i32::from_le_bytes(self.array(key)?)),
            ValueType::F32 => Value::F32(f32::from_le_bytes(self.array(key)?)),
            ValueType::U64 => Value::U64(u64::from_le_bytes(self.array(key)?)),
            ValueType::I64 => Value::I64(i64::from_le_bytes(self.array(key)?)),
            ValueType::F64 => Value::F64(f64::from_le_bytes(self.array(key)?)),
            ValueType::Bool => match self.array::<1>(key)?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => {
                    return Err(GgufError::OutOfRange {
                        key: key.into(),
                        value: b.to_string(),
                        why: "a bool must be 0 or 1".into(),
                    })
                }
            },
            ValueType::String => Value::String(self.string(key)?),
            ValueType::Array => {
                if !allow_array {
                    return Err(GgufError::NestedArray { key: key.into() });
                }
                let elem_ty = self.u32(key)?;
                let elem = ValueType::from_id(elem_ty)
                    .ok_or_else(|| GgufError::BadValueType { key: key.into(), ty: elem_ty })?;
                if elem == ValueType::Array {
                    return Err(GgufError::NestedArray { key: key.into() });
                }
                let n = self.u64(key)?;
                if n > MAX_ARRAY_LEN {
                    return Err(GgufError::OverLimit {
                        what: format!("array '{key}'"),
                        count: n,
                        limit: MAX_ARRAY_LEN,
                    });
                }
                // Strings take at least their 8-byte length each.
                self.check_count(n, elem.scalar_size().unwrap_or(8), key)?;
                let mut items = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    items.push(self.value(key, elem_ty, false)?);
                }
                Value::Array(elem, items)
            }
        })
    }

    fn tensor_entry(&mut self) -> Result<(String, Vec<u64>, u32, u64)> {
        let name = self.string("tensor name")?;
        if name.len() >= MAX_NAME {
            return Err(GgufError::Tensor {
                name,
                why: format!("name is longer than {} bytes", MAX_NAME - 1),
            });
        }
        let n_dims = self.u32("tensor dimension count")?;
        if n_dims == 0 || n_dims > MAX_DIMS {
            return Err(GgufError::TooManyDims { name, dims: n_dims });
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            dims.push(self.u64("tensor dimension")?);
        }
        let ty = self.u32("tensor type")?;
        let offset = self.u64("tensor offset")?;
        Ok((name, dims, ty, offset))
    }
}
