//! A JSON value whose objects keep their keys in insertion order.
//!
//! llama-server writes its objects in the order its code lists the fields, and clients and
//! fixtures compare against that text. `serde_json::Value` (without its `preserve_order` feature,
//! which this workspace does not enable) sorts keys, so responses are built with [`Json`] instead.

use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Int(i64),
    /// Written as llama-server writes a C++ `double` (so an `f32` is widened first); not finite
    /// values become `null`, as nlohmann's dump does.
    Float(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    pub fn obj() -> Json {
        Json::Obj(Vec::new())
    }

    /// Set `key` (replacing its value in place if it is there, else appending it).
    pub fn set(&mut self, key: &str, value: impl Into<Json>) {
        if let Json::Obj(fields) = self {
            let value = value.into();
            match fields.iter_mut().find(|(k, _)| k == key) {
                Some((_, v)) => *v = value,
                None => fields.push((key.to_string(), value)),
            }
        }
    }

    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Obj(fields) => fields.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn to_text(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "null".into())
    }
}

/// `obj! { "a" => 1, "b" => "x" }`: an ordered object.
macro_rules! obj {
    ($($key:expr => $value:expr),* $(,)?) => {
        $crate::server::http::json::Json::Obj(vec![$(($key.to_string(), $crate::server::http::json::Json::from($value))),*])
    };
}
pub(crate) use obj;

impl Serialize for Json {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Json::Null => s.serialize_unit(),
            Json::Bool(b) => s.serialize_bool(*b),
            Json::Int(i) => s.serialize_i64(*i),
            Json::Float(f) if f.is_finite() => s.serialize_f64(*f),
            Json::Float(_) => s.serialize_unit(),
            Json::Str(t) => s.serialize_str(t),
            Json::Arr(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Json::Obj(fields) => {
                let mut map = s.serialize_map(Some(fields.len()))?;
                for (k, v) in fields {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

impl From<bool> for Json {
    fn from(b: bool) -> Json {
        Json::Bool(b)
    }
}

macro_rules! from_int {
    ($($t:ty),*) => {$(
        impl From<$t> for Json {
            fn from(i: $t) -> Json {
                Json::Int(i as i64)
            }
        }
    )*};
}
from_int!(i32, i64, u16, u32, u64, usize);

impl From<f32> for Json {
    fn from(f: f32) -> Json {
        Json::Float(f64::from(f))
    }
}

impl From<f64> for Json {
    fn from(f: f64) -> Json {
        Json::Float(f)
    }
}

impl From<&str> for Json {
    fn from(t: &str) -> Json {
        Json::Str(t.to_string())
    }
}

impl From<String> for Json {
    fn from(t: String) -> Json {
        Json::Str(t)
    }
}

impl From<&String> for Json {
    fn from(t: &String) -> Json {
        Json::Str(t.clone())
    }
}

impl<T: Into<Json>> From<Vec<T>> for Json {
    fn from(items: Vec<T>) -> Json {
        Json::Arr(items.into_iter().map(Into::into).collect())
    }
}

impl<T: Into<Json>> From<Option<T>> for Json {
    fn from(v: Option<T>) -> Json {
        v.map_or(Json::Null, Into::into)
    }
}

/// A request value, as received, turned into an ordered one (keys keep serde_json's order).
impl From<&serde_json::Value> for Json {
    fn from(v: &serde_json::Value) -> Json {
        match v {
            serde_json::Value::Null => Json::Null,
            serde_json::Value::Bool(b) => Json::Bool(*b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => Json::Int(i),
                None => Json::Float(n.as_f64().unwrap_or(0.0)),
            },
            serde_json::Value::String(s) => Json::Str(s.clone()),
            serde_json::Value::Array(a) => Json::Arr(a.iter().map(Json::from).collect()),
            serde_json::Value::Object(o) => {
                Json::Obj(o.iter().map(|(k, v)| (k.clone(), Json::from(v))).collect())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_keep_insertion_order_and_floats_widen_like_cpp() {
        let mut o = obj! { "z" => 1, "a" => 0.8f32, "m" => Json::Null };
        o.set("b", "x");
        o.set("z", 2);
        assert_eq!(o.to_text(), r#"{"z":2,"a":0.800000011920929,"m":null,"b":"x"}"#);
        assert_eq!(Json::Float(f64::INFINITY).to_text(), "null");
    }
}
