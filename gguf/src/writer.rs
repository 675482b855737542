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

    fn alignment(&self) -> u64 {
        self.kv
            .iter()
            .find(|(k, _)| k == "general.alignment")
            .and_then(|(_, v)| v.as_i128())
            .map(|a| a as u64)
            .unwrap_or(DEFAULT_ALIGNMENT)
    }

    /// Serialise to bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let align = self.alignment() as usize;
        let mut out = Vec::new();
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&(self.kv.len() as u64).to_le_bytes());
        for (key, value) in &self.kv {
            put_str(&mut out, key);
            out.extend_from_slice(&(value.value_type() as u32).to_le_bytes());
            put_value(&mut out, value);
        }
        let mut offset = 0usize;
        for t in &self.tensors {
            put_str(&mut out, &t.name);
            out.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                out.extend_from_slice(&d.to_le_bytes());
            }
            out.extend_from_slice(&t.dtype.id().to_le_bytes());
            out.extend_from_slice(&(offset as u64).to_le_bytes());
            offset += t.data.len().div_ceil(align) * align;
        }
        out.resize(out.len().div_ceil(align) * align, 0);
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

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, v: &Value) {
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
