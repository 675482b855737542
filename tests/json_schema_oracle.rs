//! rs-llama's JSON schema → GBNF converter against llama.cpp's own `json_schema_to_grammar`, run
//! over tests/fixtures/json_schema/cases.json by the oracle program there (see its README): for
//! every schema text, the same grammar text byte for byte, or the same error, and the same
//! warning line llama.cpp prints for what it could not constrain.

use rs_llama::sample::grammar::Grammar;
use rs_llama::sample::json_schema::schema_text_to_grammar;
use serde_json::Value;

fn expected() -> Vec<Value> {
    fixture("expected.json")
}

fn fixture(name: &str) -> Vec<Value> {
    let path = format!("{}/tests/fixtures/json_schema/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    v.as_array().cloned().unwrap_or_default()
}

/// Ours against llama.cpp's answers: the differences, and how many grammars, errors and warnings.
fn compare(cases: &[Value]) -> (Vec<String>, usize, usize, usize) {
    let mut failures = Vec::new();
    let (mut grammars, mut errors, mut warned) = (0, 0, 0);
    for case in cases {
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
    (failures, grammars, errors, warned)
}

fn assert_same(cases: &[Value], failures: &[String]) {
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn grammars_and_errors_match_llama_cpp() {
    let cases = expected();
    assert!(cases.len() >= 150, "{} cases", cases.len());
    let (failures, grammars, errors, warned) = compare(&cases);
    assert_same(&cases, &failures);
    // both sides of the comparison are well populated
    assert!(
        grammars >= 120 && errors >= 25 && warned >= 10,
        "{grammars} grammars, {errors} errors, {warned} warned"
    );
}

/// The 500 random schemas of random_cases.json (make_random_cases.py: integer bounds of every
/// size and sign, random regexes, nested objects/arrays/unions/allOf/$defs).
#[test]
fn random_schemas_match_llama_cpp() {
    let cases = fixture("random_expected.json");
    assert_eq!(cases.len(), 500);
    let (failures, grammars, _, warned) = compare(&cases);
    assert_same(&cases, &failures);
    assert!(grammars >= 450 && warned >= 20, "{grammars} grammars, {warned} warned");
}

/// rs-llama's GBNF parser takes each converted grammar as llama.cpp's parser does; a schema with
/// `minLength` above `maxLength` gives a repetition `{5,2}`, which rs-llama refuses (llama.cpp's
/// parser expands it with a wrapped-around count and runs out of memory).
#[test]
fn converted_grammars_compile_as_in_llama_cpp() {
    let mut n = 0;
    for case in expected() {
        let name = case["name"].as_str().unwrap_or_default();
        if let (Some(want), Some(why)) = (case["grammar"].as_str(), case["not_compiled"].as_str()) {
            // llama.cpp could not be asked (`why`); rs-llama's parser refuses a repetition whose
            // maximum is below its minimum instead of running out of memory
            let e = Grammar::parse(want.as_bytes(), None).expect_err(name);
            assert!(e.to_string().contains("has its maximum below its minimum"), "{name} ({why}): {e}");
            n += 1;
            continue;
        }
        let (Some(want), Some(compiles)) =
            (case.get("grammar").and_then(Value::as_str), case.get("compiles").and_then(Value::as_bool))
        else {
            continue;
        };
        let ours = Grammar::parse(want.as_bytes(), None);
        assert_eq!(ours.is_ok(), compiles, "{name}: {:?}\n{want}", ours.err());
        n += 1;
    }
    assert!(n >= 120, "{n}");
}
