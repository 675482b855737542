//! The GGUF v3 writer: metadata in insertion order, tensors aligned as llama.cpp aligns them.

use std::io::Write;
use std::path::Path;

use crate::dtype::DType;
use crate::error::{GgufError, Result};
use crate::reader::{DEFAULT_ALIGNMENT, MAGIC};
use crate::value::Value;

struct PendingTensor {
    name: String,
    dims: Vec<u64>,
    dtype: DType,
    data: Vec<u8>,
}

/// Collects metadata and tensors, then writes one file.
#[derive(Default)]
pub struct GgufWriter {
    kv: Vec<(String, Value)>,
    tensors: Vec<PendingTensor>,
}

impl GgufWriter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Set a key (replacing an earlier value, keeping its position).
    pub fn set(&mut self, key: &str, value: Value) -> &mut Self {
        match self.kv.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value,
            None => self.kv.push((key.to_string(), value)),
        }
        self
    }

    /// Add a tensor; `data` must hold exactly the bytes of `dims` in `dtype`.
    pub fn add_tensor(&mut self, name: &str, dims: &[u64], dtype: DType, data: Vec<u8>) -> Result<&mut Self> {
        let n: u64 = dims.iter().product();
        let expected = dtype.bytes_for(n).ok_or_else(|| GgufError::Tensor {
            name: name.into(),
            why: format!("{n} elements is not a whole number of {dtype} blocks"),
        })?;
        if expected != data.len() as u64 {
            return Err(GgufError::Tensor {
                name: name.into(),
                why: format!("{} bytes of data, shape {dims:?} in {dtype} needs {expected}", data.len()),
            });
        }
        self.tensors.push(PendingTensor { name: name.into(), dims: dims.to_vec(), dtype, data });
        Ok(self)
    }

    /// `general.alignment` if it is a usable power of two, else the default (a bad value is still
    /// written as given, so that tests can make files the reader must refuse).
    fn alignment(&self) -> u64 {
        alignment_of(&self.kv)
    }

    /// Serialise to bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let align = self.alignment() as usize;
        let table: Vec<TensorHeader> = self
            .tensors
            .iter()
            .map(|t| TensorHeader { name: t.name.clone(), dims: t.dims.clone(), dtype: t.dtype })
            .collect();
        // Sizes were checked in `add_tensor`, so the header cannot fail.
        let mut out = header_bytes(&self.kv, &table, align as u64).unwrap_or_default();
        for t in &self.tensors {
            out.extend_from_slice(&t.data);
            out.resize(out.len().div_ceil(align) * align, 0);
        }
        out
    }

    pub fn write(&self, path: impl AsRef<Path>) -> Result<()> {
        let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
        f.write_all(&self.to_bytes())?;
        f.flush()?;
        Ok(())
    }
}

/// One entry of the tensor table to be written (the data follows separately).
#[derive(Debug, Clone, PartialEq)]
pub struct TensorHeader {
    pub name: String,
    /// ggml order: `dims[0]` is contiguous.
    pub dims: Vec<u64>,
    pub dtype: DType,
}

impl TensorHeader {
    /// Bytes of data, or an error if the shape is not whole blocks or overflows.
    pub fn n_bytes(&self) -> Result<u64> {
        let n = self.dims.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d));
        n.and_then(|n| self.dtype.bytes_for(n)).ok_or_else(|| GgufError::Tensor {
            name: self.name.clone(),
            why: format!("shape {:?} is not a whole number of {} blocks", self.dims, self.dtype),
        })
    }
}

/// The alignment a file with this metadata uses: `general.alignment` when it is a u32 power of two,
/// otherwise the default.
pub fn alignment_of(kv: &[(String, Value)]) -> u64 {
    match kv.iter().find(|(k, _)| k == crate::names::KEY_ALIGNMENT).map(|(_, v)| v) {
        Some(Value::U32(a)) if a.is_power_of_two() => u64::from(*a),
        _ => DEFAULT_ALIGNMENT,
    }
}

/// Everything before the tensor data: magic, version 3, counts, metadata in order, the tensor table
/// (offsets packed in order, each tensor padded to `alignment`), and zero padding up to the data.
/// Writers that stream tensor data write this first, then each tensor followed by its padding.
pub fn header_bytes(kv: &[(String, Value)], tensors: &[TensorHeader], alignment: u64) -> Result<Vec<u8>> {
    if !alignment.is_power_of_two() {
        return Err(GgufError::BadAlignment(alignment));
    }
    let mut out = Vec::new();
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&3u32.to_le_bytes());
    out.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    out.extend_from_slice(&(kv.len() as u64).to_le_bytes());
    for (key, value) in kv {
        put_str(&mut out, key);
        out.extend_from_slice(&(value.value_type() as u32).to_le_bytes());
        put_value(&mut out, value);
    }
    let mut offset = 0u64;
    for t in tensors {
        put_str(&mut out, &t.name);
        out.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
        for d in &t.dims {
            out.extend_from_slice(&d.to_le_bytes());
        }
        out.extend_from_slice(&t.dtype.id().to_le_bytes());
        out.extend_from_slice(&offset.to_le_bytes());
        let padded = t.n_bytes()?.checked_next_multiple_of(alignment);
        offset = padded
            .and_then(|p| offset.checked_add(p))
            .ok_or_else(|| GgufError::Tensor { name: t.name.clone(), why: "data offsets overflow".into() })?;
    }
    let align = alignment as usize;
    out.resize(out.len().div_ceil(align) * align, 0);
    Ok(out)
}

pub(crate) fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

pub(crate) fn put_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::U8(x) => out.push(*x),
        Value::I8(x) => out.push(*x as u8),
        Value::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => out.push(*x as u8),
        Value::String(s) => put_str(out, s),
        Value::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::Array(ty, items) => {
            out.extend_from_slice(&(*ty as u32).to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for item in items {
                put_value(out, item);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::{Metadata, ValueType};
    use crate::GgufFile;

    #[test]
    fn round_trip() {
        let mut w = GgufWriter::new();
        w.set("general.architecture", Value::String("llama".into()));
        w.set("llama.block_count", Value::U32(3));
        w.set(
            "tokenizer.ggml.tokens",
            Value::Array(ValueType::String, vec![Value::String("a".into()), Value::String("b".into())]),
        );
        let data: Vec<u8> = (0..24u8).collect();
        w.add_tensor("t0", &[3, 2], DType::F32, data.clone()).unwrap();
        w.add_tensor("t1", &[4], DType::F16, vec![1; 8]).unwrap();
        let f = GgufFile::from_bytes(w.to_bytes()).unwrap();
        assert_eq!(f.architecture().unwrap(), "llama");
        assert_eq!(f.get_u32("llama.block_count").unwrap(), Some(3));
        assert_eq!(f.get_str_array("tokenizer.ggml.tokens").unwrap().unwrap(), vec!["a", "b"]);
        let t0 = f.tensor("t0").unwrap();
        assert_eq!(t0.dims, vec![3, 2]);
        assert_eq!(f.tensor_bytes(t0), &data[..]);
        assert_eq!(f.tensor("t1").unwrap().offset % 32, 0);
    }
}
