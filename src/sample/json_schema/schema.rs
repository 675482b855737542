//! A JSON schema read into the few shapes the grammar converter knows, with llama.cpp's rules
//! for which keyword decides (`$ref` before `anyOf` before `type` ...), its defaults (no
//! `additionalProperties` on a property-less object means any object) and its refusals, each
//! naming the JSON-pointer-like path where it happened.

use super::value::Json;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    None,
    Uuid,
    Date,
    Time,
    DateTime,
}

#[derive(Debug)]
pub struct Property {
    pub name: String,
    pub schema: Node,
    pub required: bool,
}

#[derive(Debug)]
pub enum Node {
    Any,
    /// A `#/...` reference, looked up in [`Doc::refs`] by its text.
    Ref(String),
    AnyOf(Vec<Node>),
    AllOf(Vec<Node>),
    Const(Json),
    Enum(Vec<Json>),
    Null,
    Boolean,
    Number,
    /// Inclusive bounds; `i64::MIN` / `i64::MAX` stand for none.
    Integer {
        min: i64,
        max: i64,
    },
    /// `max_length` -1 for none; an empty pattern is none.
    String {
        pattern: String,
        format: Format,
        min_length: i32,
        max_length: i32,
    },
    /// `max_items` -1 for none.
    Array {
        items: Box<Node>,
        min_items: i32,
        max_items: i32,
    },
    Tuple(Vec<Node>),
    /// `additional` `None` when extra keys are not allowed.
    Object {
        properties: Vec<Property>,
        additional: Option<Box<Node>>,
    },
}

pub struct Doc {
    pub root: Node,
    pub refs: BTreeMap<String, Node>,
}

impl Doc {
    /// Read `schema`; the error is the one-line reason with its path.
    pub fn build(schema: &Json) -> Result<Doc, String> {
        let mut b = Builder { root: schema, refs: BTreeMap::new() };
        let root = b.node(schema, "#")?;
        let refs = b.refs.into_iter().map(|(k, v)| (k, v.unwrap_or(Node::Any))).collect();
        Ok(Doc { root, refs })
    }
}

struct Builder<'a> {
    root: &'a Json,
    /// A `None` entry is a reference being built: a cycle back to it stops there.
    refs: BTreeMap<String, Option<Node>>,
}

fn fail<T>(path: &str, msg: impl std::fmt::Display) -> Result<T, String> {
    Err(format!("JSON schema error at {path}: {msg}"))
}

/// A count keyword (`minItems`, `maxLength` ...), read as a C++ `int`: a value beyond it keeps
/// its low 32 bits, as nlohmann's `get<int>()` does.
fn count(schema: &Json, key: &str, path: &str, default: i32) -> Result<i32, String> {
    let Some(v) = schema.get(key) else { return Ok(default) };
    match v.as_i64_wrapping() {
        Some(n) if n as i32 >= 0 => Ok(n as i32),
        _ => fail(path, format!("{key} must be a non-negative integer")),
    }
}

/// A bound of an integer range; a fractional one is rounded inwards (up for a minimum, down for
/// a maximum), so that the range keeps exactly the integers the schema admits.
fn bound(schema: &Json, key: &str, path: &str, round_up: bool) -> Result<i64, String> {
    let v = schema.get(key).unwrap_or(&Json::Null);
    if let Some(i) = v.as_i64_wrapping() {
        return Ok(i);
    }
    let Some(d) = v.as_f64() else { return fail(path, format!("{key} must be a number")) };
    let r = if round_up { d.ceil() } else { d.floor() };
    // out of range reads as x86's conversion gives it: the "integer indefinite" value
    // (2^63 as a double: the first value past the range)
    let limit = 9_223_372_036_854_775_808.0_f64;
    Ok(if (-limit..limit).contains(&r) { r as i64 } else { i64::MIN })
}

fn format_of(schema: &Json, path: &str) -> Result<Format, String> {
    let Some(v) = schema.get("format") else { return Ok(Format::None) };
    let Some(f) = v.as_str() else { return fail(path, "format must be a string") };
    Ok(match f {
        "date" => Format::Date,
        "time" => Format::Time,
        "date-time" => Format::DateTime,
        "uuid" | "uuid1" | "uuid2" | "uuid3" | "uuid4" | "uuid5" => Format::Uuid,
        _ => Format::None,
    })
}

/// C++ `std::stoull` on a path segment: optional leading space and sign, then decimal digits
/// (the rest ignored); `None` where it would throw. A `-` negates modulo 2^64, as strtoull does.
fn stoull(s: &str) -> Option<u64> {
    let t = s.trim_start_matches([' ', '\t', '\n', '\x0b', '\x0c', '\r']);
    let (neg, t) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let digits: &str = &t[..t.bytes().take_while(u8::is_ascii_digit).count()];
    if digits.is_empty() {
        return None;
    }
    let v: u64 = digits.parse().ok()?;
    Some(if neg { v.wrapping_neg() } else { v })
}

impl<'a> Builder<'a> {
    /// Follow `#/a/b/0` from the document root; segments are used as written (no `~1`
    /// unescaping), as llama.cpp does.
    fn resolve(&self, reference: &str, path: &str) -> Result<&'a Json, String> {
        let mut target: &'a Json = self.root;
        for sel in reference[1..].split('/').skip(1) {
            target = match target {
                Json::Obj(_) if target.has(sel) => target.get(sel).unwrap_or(&Json::Null),
                Json::Arr(items) => match stoull(sel)
                    .filter(|&i| (i as usize) < items.len() && i <= usize::MAX as u64)
                {
                    Some(i) => &items[i as usize],
                    None => {
                        return fail(path, format!("cannot resolve $ref {reference}, {sel} is out of range"))
                    }
                },
                _ => return fail(path, format!("cannot resolve $ref {reference}, {sel} not found")),
            };
        }
        Ok(target)
    }

    fn reference(&mut self, v: &Json, path: &str) -> Result<Node, String> {
        let Some(r) = v.as_str() else { return fail(path, "$ref must be a string") };
        if !r.starts_with("#/") {
            return fail(
                path,
                format!("unsupported $ref {r}, only references into the same document are supported"),
            );
        }
        if !self.refs.contains_key(r) {
            self.refs.insert(r.to_string(), None);
            let target = self.resolve(r, path)?;
            let node = self.node(target, r)?;
            self.refs.insert(r.to_string(), Some(node));
        }
        Ok(Node::Ref(r.to_string()))
    }

    fn alternatives(&mut self, alts: &Json, path: &str) -> Result<Vec<Node>, String> {
        let Json::Arr(items) = alts else { return fail(path, "must be an array of schemas") };
        if items.is_empty() {
            return fail(path, "must not be empty");
        }
        items.iter().enumerate().map(|(i, alt)| self.node(alt, &format!("{path}/{i}"))).collect()
    }

    fn object(&mut self, schema: &Json, path: &str) -> Result<Node, String> {
        let required: Vec<&str> = match schema.get("required") {
            Some(Json::Arr(names)) => names.iter().filter_map(Json::as_str).collect(),
            _ => Vec::new(),
        };
        let mut properties = Vec::new();
        if let Some(props) = schema.get("properties") {
            let Json::Obj(props) = props else { return fail(path, "properties must be an object") };
            for (name, prop) in props {
                let schema = self.node(prop, &format!("{path}/properties/{name}"))?;
                properties.push(Property {
                    name: name.clone(),
                    schema,
                    required: required.contains(&name.as_str()),
                });
            }
        }
        let additional = match schema.get("additionalProperties") {
            Some(Json::Bool(true)) => Some(Box::new(Node::Any)),
            Some(Json::Bool(false)) => None,
            Some(a @ Json::Obj(_)) => Some(Box::new(self.node(a, &format!("{path}/additionalProperties"))?)),
            Some(_) => return fail(path, "additionalProperties must be a boolean or a schema"),
            // `{"type": "object"}` alone accepts any object
            None if !schema.has("properties") => Some(Box::new(Node::Any)),
            None => None,
        };
        Ok(Node::Object { properties, additional })
    }

    fn array(&mut self, schema: &Json, path: &str) -> Result<Node, String> {
        // `items` wins over `prefixItems`; an array of schemas is a tuple, one schema the items
        let key = if schema.has("items") { "items" } else { "prefixItems" };
        let items = match schema.get(key) {
            Some(Json::Arr(list)) => {
                let mut tuple = Vec::with_capacity(list.len());
                for (i, item) in list.iter().enumerate() {
                    tuple.push(self.node(item, &format!("{path}/{key}/{i}"))?);
                }
                return Ok(Node::Tuple(tuple));
            }
            Some(one) => self.node(one, &format!("{path}/{key}"))?,
            None => Node::Any,
        };
        let min_items = count(schema, "minItems", path, 0)?;
        let max_items = count(schema, "maxItems", path, -1)?;
        Ok(Node::Array { items: Box::new(items), min_items, max_items })
    }

    fn string(&mut self, schema: &Json, path: &str) -> Result<Node, String> {
        let pattern = match schema.get("pattern") {
            None => String::new(),
            Some(Json::Str(p)) => p.clone(),
            Some(_) => return fail(path, "pattern must be a string"),
        };
        let format = format_of(schema, path)?;
        let min_length = count(schema, "minLength", path, 0)?;
        let max_length = count(schema, "maxLength", path, -1)?;
        Ok(Node::String { pattern, format, min_length, max_length })
    }

    fn integer(&mut self, schema: &Json, path: &str) -> Result<Node, String> {
        let min = if schema.has("minimum") {
            bound(schema, "minimum", path, true)?
        } else if schema.has("exclusiveMinimum") {
            bound(schema, "exclusiveMinimum", path, false)?.wrapping_add(1)
        } else {
            i64::MIN
        };
        let max = if schema.has("maximum") {
            bound(schema, "maximum", path, false)?
        } else if schema.has("exclusiveMaximum") {
            bound(schema, "exclusiveMaximum", path, true)?.wrapping_sub(1)
        } else {
            i64::MAX
        };
        Ok(Node::Integer { min, max })
    }

    fn node(&mut self, schema: &Json, path: &str) -> Result<Node, String> {
        if !matches!(schema, Json::Obj(_)) {
            return fail(path, "schema must be an object");
        }
        if let Some(r) = schema.get("$ref") {
            return self.reference(r, path);
        }
        if let Some((key, alts)) = [("oneOf", schema.get("oneOf")), ("anyOf", schema.get("anyOf"))]
            .into_iter()
            .find_map(|(k, v)| v.map(|v| (k, v)))
        {
            return Ok(Node::AnyOf(self.alternatives(alts, &format!("{path}/{key}"))?));
        }
        let ty = schema.get("type").unwrap_or(&Json::Null);
        if let Json::Arr(types) = ty {
            // {"type": [a, b], ...} reads as {"anyOf": [{"type": a, ...}, {"type": b, ...}]}
            if types.is_empty() {
                return fail(path, "type must not be empty");
            }
            let mut alts = Vec::with_capacity(types.len());
            for (i, t) in types.iter().enumerate() {
                let mut alt = schema.clone();
                alt.set("type", t.clone());
                alts.push(self.node(&alt, &format!("{path}/type/{i}"))?);
            }
            return Ok(Node::AnyOf(alts));
        }
        if let Some(c) = schema.get("const") {
            return Ok(Node::Const(c.clone()));
        }
        if let Some(values) = schema.get("enum") {
            return match values {
                Json::Arr(v) if !v.is_empty() => Ok(Node::Enum(v.clone())),
                _ => fail(path, "enum must be a non-empty array"),
            };
        }
        let ty = match ty {
            Json::Null => "",
            Json::Str(s) => s.as_str(),
            _ => return fail(path, "type must be a string or an array of strings"),
        };
        let has_properties = schema.has("properties")
            || schema.get("additionalProperties").is_some_and(|a| *a != Json::Bool(true));
        let all_of = |b: &mut Self| -> Result<Node, String> {
            let alts = schema.get("allOf").unwrap_or(&Json::Null);
            Ok(Node::AllOf(b.alternatives(alts, &format!("{path}/allOf"))?))
        };
        match ty {
            // untyped: the structural keywords decide, objects first
            "" if has_properties => self.object(schema, path),
            "" if schema.has("allOf") => all_of(self),
            "" if schema.has("items") || schema.has("prefixItems") => self.array(schema, path),
            "" if schema.has("pattern")
                || schema.has("minLength")
                || schema.has("maxLength")
                || format_of(schema, path)? != Format::None =>
            {
                self.string(schema, path)
            }
            "" => Ok(Node::Any),
            "object" if !has_properties && schema.has("allOf") => all_of(self),
            "object" => self.object(schema, path),
            "string" if schema.has("allOf") => all_of(self),
            "string" => self.string(schema, path),
            "array" => self.array(schema, path),
            "integer" => self.integer(schema, path),
            "number" => Ok(Node::Number),
            "boolean" => Ok(Node::Boolean),
            "null" => Ok(Node::Null),
            other => fail(path, format!("unrecognized type {other}")),
        }
    }
}
