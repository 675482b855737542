//! JSON schema → GBNF grammar, as llama.cpp's `json_schema_to_grammar` converts one for
//! `-j/--json-schema`, `-jf/--json-schema-file` and the server's `json_schema` /
//! `response_format`: the same subset of JSON schema, the same refusals, and the same grammar
//! text rule for rule, so that constrained sampling picks the same tokens in both engines.
//!
//! - [`value`]: the schema's JSON with key order and number kinds kept;
//! - [`schema`]: the JSON read into schema nodes (which keyword decides, defaults, refusals);
//! - [`convert`]: nodes → named rules; [`pattern`] regex → rules; [`ranges`] integer ranges.

mod convert;
mod pattern;
mod ranges;
pub mod schema;
pub mod value;

pub use value::Json;

/// A converted schema: the grammar text and the warnings llama.cpp prints for the parts it
/// could not constrain (an unsupported `pattern` accepts any string).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaGrammar {
    pub grammar: String,
    pub warnings: Vec<String>,
}

impl SchemaGrammar {
    /// The line llama.cpp writes to stderr for the warnings, if there are any.
    pub fn warning_line(&self) -> Option<String> {
        (!self.warnings.is_empty())
            .then(|| format!("WARNING: JSON schema conversion was incomplete: {}", self.warnings.join("; ")))
    }
}

/// The grammar for `schema`, or llama.cpp's error text ("JSON schema conversion failed:\n...").
pub fn schema_to_grammar(schema: &Json) -> Result<SchemaGrammar, String> {
    let doc = schema::Doc::build(schema).map_err(|e| format!("JSON schema conversion failed:\n{e}"))?;
    let mut conv = convert::Converter::new(&doc);
    conv.visit(&doc.root, "");
    let (grammar, warnings) = conv.grammar()?;
    Ok(SchemaGrammar { grammar, warnings })
}

/// [`schema_to_grammar`] of a schema given as text (the `-j` value, a `-jf` file); a text that
/// is not JSON gets nlohmann's parse error.
pub fn schema_text_to_grammar(text: &str) -> Result<SchemaGrammar, String> {
    schema_to_grammar(&Json::parse(text)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grammar(schema: &str) -> String {
        schema_text_to_grammar(schema).unwrap().grammar
    }

    #[test]
    fn small_schemas() {
        assert_eq!(
            grammar(r#"{"type": "boolean"}"#),
            "root ::= (\"true\" | \"false\")\nspace ::= | \" \" | \"\\n\"{1,2} [ \\t]{0,20}\n"
        );
        let g = grammar(r#"{"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}"#);
        assert!(g.contains("a-kv ::= \"\\\"a\\\"\" space \":\" space string\n"), "{g}");
        assert!(g.contains("root ::= \"{\" space a-kv space \"}\"\n"), "{g}");
    }

    #[test]
    fn refusals_name_the_place() {
        let e = schema_text_to_grammar(r#"{"$ref": "https://example.com/s.json"}"#).unwrap_err();
        assert_eq!(
            e,
            "JSON schema conversion failed:\nJSON schema error at #: unsupported $ref https://example.com/s.json, only references into the same document are supported"
        );
        let w = schema_text_to_grammar(r#"{"type": "string", "pattern": "^\\d+$"}"#).unwrap();
        assert_eq!(
            w.warning_line().unwrap(),
            "WARNING: JSON schema conversion was incomplete: pattern ^\\d+$ is not supported (unsupported escape: \\d), accepting any string"
        );
    }
}
