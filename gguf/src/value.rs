//! Metadata values and their typed access.

use crate::error::{GgufError, Result};

/// The value type ids of GGUF metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum ValueType {
    U8 = 0,
    I8 = 1,
    U16 = 2,
    I16 = 3,
    U32 = 4,
    I32 = 5,
    F32 = 6,
    Bool = 7,
    String = 8,
    Array = 9,
    U64 = 10,
    I64 = 11,
    F64 = 12,
}

impl ValueType {
    pub fn from_id(id: u32) -> Option<ValueType> {
        use ValueType::*;
        Some(match id {
            0 => U8,
            1 => I8,
            2 => U16,
            3 => I16,
            4 => U32,
            5 => I32,
            6 => F32,
            7 => Bool,
            8 => String,
            9 => Array,
            10 => U64,
            11 => I64,
            12 => F64,
            _ => return None,
        })
    }

    /// Size in the file of one scalar of this type (strings and arrays have none).
    pub fn scalar_size(self) -> Option<u64> {
        use ValueType::*;
        match self {
            U8 | I8 | Bool => Some(1),
            U16 | I16 => Some(2),
            U32 | I32 | F32 => Some(4),
            U64 | I64 | F64 => Some(8),
            String | Array => None,
        }
    }
}

/// One metadata value. Arrays hold values of a single element type (checked at parse time).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    U64(u64),
    I64(i64),
    F64(f64),
    Array(ValueType, Vec<Value>),
}

impl Value {
    pub fn value_type(&self) -> ValueType {
        match self {
            Value::U8(_) => ValueType::U8,
            Value::I8(_) => ValueType::I8,
            Value::U16(_) => ValueType::U16,
            Value::I16(_) => ValueType::I16,
            Value::U32(_) => ValueType::U32,
            Value::I32(_) => ValueType::I32,
            Value::F32(_) => ValueType::F32,
            Value::Bool(_) => ValueType::Bool,
            Value::String(_) => ValueType::String,
            Value::U64(_) => ValueType::U64,
            Value::I64(_) => ValueType::I64,
            Value::F64(_) => ValueType::F64,
            Value::Array(..) => ValueType::Array,
        }
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            Value::U8(_) => "u8",
            Value::I8(_) => "i8",
            Value::U16(_) => "u16",
            Value::I16(_) => "i16",
            Value::U32(_) => "u32",
            Value::I32(_) => "i32",
            Value::F32(_) => "f32",
            Value::Bool(_) => "bool",
            Value::String(_) => "string",
            Value::U64(_) => "u64",
            Value::I64(_) => "i64",
            Value::F64(_) => "f64",
            Value::Array(..) => "array",
        }
    }

    /// Any integer type, widened. Floats and others are not integers.
    pub fn as_i128(&self) -> Option<i128> {
        Some(match *self {
            Value::U8(v) => v as i128,
            Value::I8(v) => v as i128,
            Value::U16(v) => v as i128,
            Value::I16(v) => v as i128,
            Value::U32(v) => v as i128,
            Value::I32(v) => v as i128,
            Value::U64(v) => v as i128,
            Value::I64(v) => v as i128,
            _ => return None,
        })
    }

    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v as f64),
            Value::F64(v) => Some(v),
            _ => self.as_i128().map(|v| v as f64),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// A short human-readable form (arrays abbreviated), as `rs-llama-gguf info` prints it.
    pub fn display_short(&self) -> String {
        match self {
            Value::String(s) => format!("{s:?}"),
            Value::Array(ty, items) => {
                let shown: Vec<String> = items.iter().take(5).map(|v| v.display_short()).collect();
                let more = if items.len() > 5 { ", ..." } else { "" };
                format!("[{:?}; {}] [{}{}]", ty, items.len(), shown.join(", "), more)
            }
            Value::F32(v) => format!("{v}"),
            Value::F64(v) => format!("{v}"),
            Value::Bool(b) => format!("{b}"),
            other => other.as_i128().map(|v| v.to_string()).unwrap_or_default(),
        }
    }
}

/// Typed views of a metadata map; implemented by [`crate::GgufFile`].
///
/// Integer accessors accept any stored integer width whose value fits; a value of another kind is a
/// [`GgufError::WrongType`] error, an absent key is `Ok(None)`.
pub trait Metadata {
    fn get(&self, key: &str) -> Option<&Value>;

    fn get_u32(&self, key: &str) -> Result<Option<u32>> {
        self.get_int(key, "u32", 0, u32::MAX as i128).map(|v| v.map(|v| v as u32))
    }
    fn get_u64(&self, key: &str) -> Result<Option<u64>> {
        self.get_int(key, "u64", 0, u64::MAX as i128).map(|v| v.map(|v| v as u64))
    }
    fn get_i32(&self, key: &str) -> Result<Option<i32>> {
        self.get_int(key, "i32", i32::MIN as i128, i32::MAX as i128).map(|v| v.map(|v| v as i32))
    }
    fn get_int(&self, key: &str, expected: &'static str, lo: i128, hi: i128) -> Result<Option<i128>> {
        let Some(v) = self.get(key) else { return Ok(None) };
        let i = v.as_i128().ok_or_else(|| wrong(key, expected, v))?;
        if i < lo || i > hi {
            return Err(GgufError::OutOfRange {
                key: key.to_string(),
                value: i.to_string(),
                why: format!("must fit in {expected}"),
            });
        }
        Ok(Some(i))
    }
    fn get_f32(&self, key: &str) -> Result<Option<f32>> {
        let Some(v) = self.get(key) else { return Ok(None) };
        match v {
            Value::F32(x) => Ok(Some(*x)),
            Value::F64(x) => Ok(Some(*x as f32)),
            _ => Err(wrong(key, "f32", v)),
        }
    }
    fn get_bool(&self, key: &str) -> Result<Option<bool>> {
        let Some(v) = self.get(key) else { return Ok(None) };
        v.as_bool().map(Some).ok_or_else(|| wrong(key, "bool", v))
    }
    fn get_str(&self, key: &str) -> Result<Option<&str>> {
        let Some(v) = self.get(key) else { return Ok(None) };
        v.as_str().map(Some).ok_or_else(|| wrong(key, "string", v))
    }
    fn get_array(&self, key: &str) -> Result<Option<(ValueType, &[Value])>> {
        let Some(v) = self.get(key) else { return Ok(None) };
        match v {
            Value::Array(ty, items) => Ok(Some((*ty, items.as_slice()))),
            _ => Err(wrong(key, "array", v)),
        }
    }
    fn get_str_array(&self, key: &str) -> Result<Option<Vec<&str>>> {
        let Some((_, items)) = self.get_array(key)? else { return Ok(None) };
        items
            .iter()
            .map(|v| v.as_str().ok_or_else(|| wrong(key, "array of string", v)))
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }
    fn get_f32_array(&self, key: &str) -> Result<Option<Vec<f32>>> {
        let Some((_, items)) = self.get_array(key)? else { return Ok(None) };
        items
            .iter()
            .map(|v| v.as_f64().map(|x| x as f32).ok_or_else(|| wrong(key, "array of number", v)))
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }
    fn get_i32_array(&self, key: &str) -> Result<Option<Vec<i32>>> {
        let Some((_, items)) = self.get_array(key)? else { return Ok(None) };
        items
            .iter()
            .map(|v| {
                v.as_i128().and_then(|i| i32::try_from(i).ok()).ok_or_else(|| wrong(key, "array of i32", v))
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    fn require_u32(&self, key: &str) -> Result<u32> {
        self.get_u32(key)?.ok_or_else(|| GgufError::MissingKey(key.to_string()))
    }
    fn require_f32(&self, key: &str) -> Result<f32> {
        self.get_f32(key)?.ok_or_else(|| GgufError::MissingKey(key.to_string()))
    }
    fn require_str(&self, key: &str) -> Result<&str> {
        self.get_str(key)?.ok_or_else(|| GgufError::MissingKey(key.to_string()))
    }
}

fn wrong(key: &str, expected: &'static str, found: &Value) -> GgufError {
    GgufError::WrongType { key: key.to_string(), expected, found: found.type_name() }
}
