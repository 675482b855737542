//! rs-llama's JSON schema → GBNF converter against llama.cpp's own `json_schema_to_grammar`, run
//! over tests/fixtures/json_schema/cases.json by the oracle program there (see its README): for
//! every schema text, the same grammar text byte for byte, or the same error, and the same
//! warning line llama.cpp prints for what it could not constrain.

use rs_llama::sample::grammar::Grammar;
use rs_llama::sample::json_schema::schema_text_to_grammar;
use serde_json::Value;

fn expected() -> Vec<Value> {
    let path = format!("{}/tests/fixtures/json_schema/expected.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    v.as_array().cloned().unwrap_or_default()
}

#[test]
fn grammars_and_errors_match_llama_cpp() {
    let cases = expected();
    assert!(cases.len() >= 150, "{} cases", cases.len());
    let mut failures = Vec::new();
    let (mut grammars, mut errors, mut warned) = (0, 0, 0);
    for case in &cases {
        let name = case["name"].as_str().unwrap_or_default();
        let text = case["text"].as_str().unwrap_or_default();
        let got = schema_text_to_grammar(text);
        match (&got, case.get("grammar").and_then(Value::as_str), case.get("error").and_then(Value::as_str)) {
            (Ok(g), Some(want), None) => {
                grammars += 1;
                if g.grammar != want {
                    failures.push(format!("{name}: grammar\n--- ours\n{}--- llama.cpp\n{want}", g.grammar));
                }
                let stderr = g.warning_line().unwrap_or_default();
                if stderr != case["stderr"].as_str().unwrap_or_default() {
                    failures.push(format!("{name}: warning {stderr:?} vs {:?}", case["stderr"]));
                }
                warned += usize::from(!stderr.is_empty());
            }
            (Err(e), None, Some(want)) => {
                errors += 1;
                if e != want {
                    failures.push(format!("{name}: error\n  ours:      {e:?}\n  llama.cpp: {want:?}"));
                }
            }
            (got, want_grammar, want_error) => failures.push(format!(
                "{name}: ours {got:?}, llama.cpp grammar {} error {want_error:?}",
                want_grammar.is_some()
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    // both sides of the comparison are well populated
    assert!(
        grammars >= 120 && errors >= 25 && warned >= 10,
        "{grammars} grammars, {errors} errors, {warned} warned"
    );
}

/// Every grammar llama.cpp produced for these schemas, but for the ones written with a class its
/// escaping breaks, also compiles in rs-llama's GBNF parser (it is what sampling will use).
#[test]
fn converted_grammars_compile() {
    for case in expected() {
        let Some(want) = case.get("grammar").and_then(Value::as_str) else { continue };
        let name = case["name"].as_str().unwrap_or_default();
        if let Err(e) = Grammar::parse(want.as_bytes(), None) {
            panic!("{name}: {e}\n{want}");
        }
    }
}
