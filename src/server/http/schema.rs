//! JSON schemas in requests, read as llama-server reads them: `json_schema` on the completion
//! endpoints; on chat also `response_format` (`json_object`, optionally with `schema`, or
//! `json_schema` with `json_schema.schema`), an empty schema meaning any object. The schema
//! becomes a GBNF grammar through [`crate::sample::json_schema`].
//!
//! Key order matters to the grammar (properties are emitted in schema order), and the body's
//! `serde_json::Value` has sorted them, so the schema is taken from the body text again, parsed
//! with its order kept; that is done only when the body has a schema field.

use serde_json::Value;

use crate::sample::json_schema::{schema_to_grammar, Json as SchemaJson};
use crate::server::api::ApiError;

/// The body with its objects in the client's order, when it has a schema field (else `None`,
/// and nothing is parsed twice).
pub fn ordered_body(bytes: &[u8], body: &Value) -> Option<SchemaJson> {
    if !["json_schema", "response_format"].iter().any(|k| body.get(*k).is_some()) {
        return None;
    }
    std::str::from_utf8(bytes).ok().and_then(|t| SchemaJson::parse(t).ok())
}

/// `body[key]`, from the ordered body when there is one (it has the same keys).
fn field(body: &Value, ordered: Option<&SchemaJson>, key: &str) -> Option<SchemaJson> {
    match ordered {
        Some(o) => o.get(key).cloned(),
        None => body.get(key).map(SchemaJson::from_serde),
    }
}

/// nlohmann's `empty()`: true for null and for an empty object or array.
fn is_empty(v: &SchemaJson) -> bool {
    match v {
        SchemaJson::Null => true,
        SchemaJson::Obj(f) => f.is_empty(),
        SchemaJson::Arr(a) => a.is_empty(),
        _ => false,
    }
}

/// llama-server's `json_value(obj, key, {})` for a JSON default: the value unless absent or null.
fn value_or_empty(obj: &SchemaJson, key: &str) -> SchemaJson {
    match obj.get(key) {
        None | Some(SchemaJson::Null) => SchemaJson::Obj(Vec::new()),
        Some(v) => v.clone(),
    }
}

/// An empty object schema is `{"type": "object"}`: any JSON object.
fn any_object_if_empty(schema: SchemaJson) -> SchemaJson {
    match schema {
        SchemaJson::Obj(f) if f.is_empty() => {
            SchemaJson::Obj(vec![("type".into(), SchemaJson::Str("object".into()))])
        }
        other => other,
    }
}

/// The schema a chat body asks for, if any: `json_schema`, replaced by `response_format`'s
/// (`json_object` takes its `schema`, or any object when there is no `json_schema`; `json_schema`
/// takes `json_schema.schema`). An unknown `response_format.type` is llama-server's 400.
pub fn chat_schema(body: &Value, ordered: Option<&SchemaJson>) -> Result<Option<SchemaJson>, ApiError> {
    let mut schema = field(body, ordered, "json_schema").filter(|s| *s != SchemaJson::Null);
    if body.get("response_format").is_some() {
        let format = match field(body, ordered, "response_format") {
            None | Some(SchemaJson::Null) => SchemaJson::Obj(Vec::new()),
            Some(f) => f,
        };
        // a `type` that is not a string reads as none, as llama-server's json_value does
        let kind = format.get("type").and_then(SchemaJson::as_str).unwrap_or_default().to_string();
        match kind.as_str() {
            "json_object" => {
                if format.has("schema") || schema.as_ref().is_none_or(is_empty) {
                    schema = Some(value_or_empty(&format, "schema"));
                }
            }
            "json_schema" => schema = Some(value_or_empty(&value_or_empty(&format, "json_schema"), "schema")),
            "" | "text" => {}
            other => {
                return Err(ApiError::invalid(format!(
                    "response_format type must be one of \"text\" or \"json_object\", but got: {other}"
                )))
            }
        }
    }
    Ok(schema.map(any_object_if_empty))
}

/// A chat schema's grammar, for a template applied without Jinja (llama.cpp's legacy chat path
/// converts the schema alone); a bad schema is a 400 with the converter's message.
pub fn chat_grammar(schema: &SchemaJson) -> Result<String, ApiError> {
    let converted = schema_to_grammar(schema).map_err(ApiError::invalid)?;
    if let Some(w) = converted.warning_line() {
        eprintln!("{w}");
    }
    Ok(converted.grammar)
}

/// The grammar of a completion body's `json_schema`, used when the body has no `grammar` key at
/// all (a `grammar` key, even null, wins, as in llama-server); a bad schema is the 400 llama-server
/// gives for the field.
pub fn completion_grammar(data: &Value, ordered: Option<&SchemaJson>) -> Result<Option<String>, ApiError> {
    if data.get("grammar").is_some() || data.get("json_schema").is_none_or(Value::is_null) {
        return Ok(None);
    }
    let schema = any_object_if_empty(field(data, ordered, "json_schema").unwrap_or(SchemaJson::Null));
    let converted = schema_to_grammar(&schema)
        .map_err(|e| ApiError::invalid(format!("Field 'json_schema': \"json_schema\": {e}")))?;
    if let Some(w) = converted.warning_line() {
        eprintln!("{w}");
    }
    Ok(Some(converted.grammar))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn chat(body: Value) -> Option<String> {
        let text = body.to_string();
        let ordered = ordered_body(text.as_bytes(), &body);
        chat_schema(&body, ordered.as_ref()).unwrap().map(|s| s.dump())
    }

    #[test]
    fn response_format_precedence_as_llama_server() {
        assert_eq!(chat(json!({"messages": []})), None);
        assert_eq!(chat(json!({"json_schema": null})), None);
        assert_eq!(chat(json!({"json_schema": {}})).as_deref(), Some(r#"{"type":"object"}"#));
        assert_eq!(
            chat(json!({"response_format": {"type": "json_object"}})).as_deref(),
            Some(r#"{"type":"object"}"#)
        );
        // json_object keeps a given json_schema unless it brings its own schema
        assert_eq!(
            chat(json!({"json_schema": {"type": "string"}, "response_format": {"type": "json_object"}}))
                .as_deref(),
            Some(r#"{"type":"string"}"#)
        );
        assert_eq!(
            chat(json!({"json_schema": {"type": "string"}, "response_format": {"type": "json_object", "schema": {"type": "null"}}}))
                .as_deref(),
            Some(r#"{"type":"null"}"#)
        );
        assert_eq!(
            chat(json!({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "integer"}}}}))
                .as_deref(),
            Some(r#"{"type":"integer"}"#)
        );
        assert_eq!(
            chat(json!({"response_format": {"type": "json_schema"}})).as_deref(),
            Some(r#"{"type":"object"}"#)
        );
        assert_eq!(chat(json!({"response_format": {"type": "text"}})), None);
        let e = chat_schema(&json!({"response_format": {"type": "xml"}}), None).unwrap_err();
        assert!(e.to_string().contains("but got: xml"), "{e}");
    }

    #[test]
    fn ordered_body_keeps_property_order() {
        let text = r#"{"json_schema": {"properties": {"z": {"type": "integer"}, "a": {"type": "string"}}, "required": ["z", "a"]}}"#;
        let body: Value = serde_json::from_str(text).unwrap();
        let ordered = ordered_body(text.as_bytes(), &body);
        let g = completion_grammar(&body, ordered.as_ref()).unwrap().unwrap();
        assert!(g.contains("root ::= \"{\" space z-kv \",\" space a-kv space \"}\"\n"), "{g}");
        // serde_json keeps the body's key order too (its `preserve_order` feature, which the
        // chat tools need): both readings give the schema's order
        let g = completion_grammar(&body, None).unwrap().unwrap();
        assert!(g.contains("root ::= \"{\" space z-kv \",\" space a-kv space \"}\"\n"), "{g}");
    }
}
