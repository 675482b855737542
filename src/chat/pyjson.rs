//! The `tojson` filter as chat templates expect it: Python's `json.dumps` layout (`", "` and
//! `": "` between items, or one item a line with `indent`), keys in their given order, and text
//! left as UTF-8 — what llama.cpp's template engine writes, which tool descriptions and tool-call
//! arguments in prompts must match byte for byte. (minijinja's own `tojson` is compact and
//! escapes `<`, `>`, `&` and `'` for HTML.)

use minijinja::value::{Kwargs, Value};
use minijinja::Error;

pub fn tojson(value: &Value, indent: Option<Value>, kwargs: Kwargs) -> Result<Value, Error> {
    let indent = match indent.or(kwargs.get::<Option<Value>>("indent")?) {
        Some(v) if v.is_none() || v.is_undefined() => None,
        Some(v) => Some(usize::try_from(v)?),
        None => None,
    };
    kwargs.assert_all_used()?;
    let json = serde_json::to_value(value)
        .map_err(|e| Error::new(minijinja::ErrorKind::InvalidOperation, format!("tojson: {e}")))?;
    let mut out = String::new();
    write(&mut out, &json, indent, 0);
    Ok(Value::from_safe_string(out))
}

/// `value` as JSON text into `out`; `level` is the nesting depth (for indentation).
pub fn write(out: &mut String, value: &serde_json::Value, indent: Option<usize>, level: usize) {
    use serde_json::Value as J;
    let newline = |out: &mut String, level: usize| {
        if let Some(n) = indent {
            out.push('\n');
            out.extend(std::iter::repeat_n(' ', n * level));
        }
    };
    let sep = if indent.is_some() { "," } else { ", " };
    match value {
        J::Array(items) if items.is_empty() => out.push_str("[]"),
        J::Object(map) if map.is_empty() => out.push_str("{}"),
        J::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(sep);
                }
                newline(out, level + 1);
                write(out, item, indent, level + 1);
            }
            newline(out, level);
            out.push(']');
        }
        J::Object(map) => {
            out.push('{');
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(sep);
                }
                newline(out, level + 1);
                out.push_str(&serde_json::Value::String(k.clone()).to_string());
                out.push_str(": ");
                write(out, v, indent, level + 1);
            }
            newline(out, level);
            out.push('}');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// How a template prints a list or a mapping with `{{ }}`: Python's `repr` (`{'a': True}`), as
/// llama.cpp's engine prints them (minijinja would write JSON-like text); other values print as
/// minijinja prints them.
pub fn formatter(out: &mut minijinja::Output, state: &minijinja::State, value: &Value) -> Result<(), Error> {
    use minijinja::value::ValueKind;
    if matches!(value.kind(), ValueKind::Map | ValueKind::Seq) && !value.is_safe() {
        if let Ok(json) = serde_json::to_value(value) {
            let mut text = String::new();
            repr(&mut text, &json);
            return out.write_str(&text).map_err(Error::from);
        }
    }
    minijinja::escape_formatter(out, state, value)
}

/// The `string` filter: lists and mappings as Python's `repr`, as llama.cpp writes them.
pub fn string(value: &Value) -> Value {
    use minijinja::value::ValueKind;
    if matches!(value.kind(), ValueKind::Map | ValueKind::Seq) {
        if let Ok(json) = serde_json::to_value(value) {
            let mut text = String::new();
            repr(&mut text, &json);
            return Value::from(text);
        }
    }
    if value.is_safe() || value.as_str().is_some() {
        return value.clone();
    }
    Value::from(value.to_string())
}

/// Python's `repr` of a JSON value.
fn repr(out: &mut String, value: &serde_json::Value) {
    use serde_json::Value as J;
    match value {
        J::Null => out.push_str("None"),
        J::Bool(b) => out.push_str(if *b { "True" } else { "False" }),
        J::Number(n) => out.push_str(&n.to_string()),
        J::String(s) => {
            let quote = if s.contains('\'') && !s.contains('"') { '"' } else { '\'' };
            out.push(quote);
            for c in s.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    c if c == quote => {
                        out.push('\\');
                        out.push(c);
                    }
                    c => out.push(c),
                }
            }
            out.push(quote);
        }
        J::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                repr(out, item);
            }
            out.push(']');
        }
        J::Object(map) => {
            out.push('{');
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                repr(out, &J::String(k.clone()));
                out.push_str(": ");
                repr(out, v);
            }
            out.push('}');
        }
    }
}
