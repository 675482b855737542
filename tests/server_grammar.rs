//! `rs-llama-server` with a `grammar` field: `/completion` answers the same text llama-completion
//! printed for the CLI fixtures of tests/fixtures/grammar/cli_expected.json (greedy, seeded, a
//! grammar file's text, a grammar that ends the generation); `/v1/completions` and
//! `/v1/chat/completions` take the field too; a bad grammar is llama-server's 400
//! `invalid_request_error`, streaming or not; lazy grammars are refused with a 400 (JSON schemas:
//! tests/server_json_schema.rs).

mod server_support;

use serde_json::{json, Value};
use server_support::*;

// llama.cpp made the expected outputs from its own f16 conversion of the same Q4_1 file
// (`smollm2-135m-f16.llamacpp.gguf`, llama-quantize); ours holds the same values and vocabulary
// and is the one CI has, so these tests run there.
const MODEL: &str = "smollm2-135m-f16.gguf";

fn post(s: &Server, path: &str, body: &Value) -> Resp {
    send(s.port, "POST", path, body.to_string().as_bytes()).expect("request")
}

/// The fixture's value for `flag` in its arguments.
fn arg<'a>(args: &'a [&'a str], flag: &str) -> Option<&'a str> {
    args.iter().position(|a| *a == flag).and_then(|i| args.get(i + 1)).copied()
}

#[test]
fn completion_with_a_grammar_matches_the_cli_fixtures() {
    let Some(m) = model(MODEL) else { return };
    let s = Server::ready(&m, &["-t", "2"]);
    let dir = format!("{}/tests/fixtures/grammar", env!("CARGO_MANIFEST_DIR"));
    let fixtures: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(format!("{dir}/cli_expected.json")).unwrap()).unwrap();
    let mut n = 0;
    for f in &fixtures {
        let name = f["name"].as_str().unwrap();
        // Output cut inside a UTF-8 sequence is held back by the server; those stay CLI-only.
        // The AVX2 path follows llama.cpp's AVX2 build, whose output the fixture carries where it
        // differs (see tests/cli_grammar.rs).
        let avx2 = rs_llama::cpu::path::active() == rs_llama::cpu::CpuPath::Avx2;
        let key = if avx2 && f.get("stdout_avx2").is_some() { "stdout_avx2" } else { "stdout" };
        let Some(stdout) = f[key].as_str() else { continue };
        let args: Vec<&str> = f["args"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
        let prompt = arg(&args, "-p").unwrap();
        let grammar = match (arg(&args, "--grammar"), arg(&args, "--grammar-file")) {
            (Some(g), _) => g.to_string(),
            (_, Some(file)) => std::fs::read_to_string(format!("{dir}/{file}")).unwrap(),
            _ => panic!("{name}: no grammar"),
        };
        let (ended, text) = match stdout.strip_suffix(" [end of text]\n\n\n") {
            Some(t) => (true, t),
            None => (false, stdout.strip_suffix("\n\n").unwrap()),
        };
        let want = text.strip_prefix(prompt).unwrap();
        let mut body = json!({
            "prompt": prompt,
            "n_predict": arg(&args, "-n").unwrap().parse::<i64>().unwrap(),
            "temperature": arg(&args, "--temp").unwrap().parse::<f64>().unwrap(),
            "grammar": grammar,
        });
        if let Some(seed) = arg(&args, "-s") {
            body["seed"] = json!(seed.parse::<u64>().unwrap());
        }
        let r = post(&s, "/completion", &body);
        assert_eq!(r.status, 200, "{name}: {}", r.text());
        let v = r.json();
        assert_eq!(v["content"].as_str().unwrap(), want, "{name}");
        assert_eq!(v["stop_type"].as_str().unwrap(), if ended { "eos" } else { "limit" }, "{name}");
        assert_eq!(v["generation_settings"]["grammar"].as_str().unwrap(), grammar, "{name}");
        n += 1;
    }
    assert!(n >= 6, "{n} fixtures checked");
}

#[test]
fn openai_endpoints_take_a_grammar_and_bad_ones_are_400() {
    let Some(m) = model(MODEL) else { return };
    let s = Server::ready(&m, &["-t", "2"]);
    let yes_no = r#"root ::= " "? ("yes" | "no")"#;

    let r = post(
        &s,
        "/v1/completions",
        &json!({"prompt": "Is the sky green? Answer:", "max_tokens": 8,
        "temperature": 0, "grammar": yes_no}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let text = r.json()["choices"][0]["text"].as_str().unwrap().to_string();
    assert!(["yes", "no", " yes", " no"].contains(&text.as_str()), "{text:?}");
    assert_eq!(r.json()["choices"][0]["finish_reason"], "stop");

    let r = post(
        &s,
        "/v1/chat/completions",
        &json!({"messages": [{"role": "user", "content": "Is the sky green?"}],
        "max_tokens": 8, "temperature": 0, "grammar": yes_no}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let content = r.json()["choices"][0]["message"]["content"].as_str().unwrap().to_string();
    assert!(["yes", "no", " yes", " no"].contains(&content.as_str()), "{content:?}");

    // (path, body, start of the message)
    let refused = [
        ("/completion", json!({"prompt": "x", "grammar": "root ::= \"a"}),
            "Failed to initialize samplers: failed to parse grammar: unterminated string literal at line 1, column 10"),
        ("/completion", json!({"prompt": "x", "grammar": "root ::= foo", "stream": true}),
            "Failed to initialize samplers: failed to parse grammar: undefined rule 'foo'"),
        ("/completion", json!({"prompt": "x", "grammar": "root ::= root \"a\" | \"b\""}),
            "Failed to initialize samplers: failed to parse grammar: left recursion in rule 'root'"),
        ("/v1/completions", json!({"prompt": "x", "grammar": "rot ::= \"a\""}),
            "Failed to initialize samplers: failed to parse grammar: the grammar has no 'root' rule"),
        ("/completion", json!({"prompt": "x", "grammar": yes_no, "grammar_lazy": true}), "grammar_lazy is not supported yet"),
        ("/completion", json!({"prompt": "x", "grammar": yes_no, "grammar_triggers": [{"type": 0, "value": "a"}]}),
            "grammar_triggers are not supported yet"),
    ];
    for (path, body, message) in refused {
        let r = post(&s, path, &body);
        assert_eq!(r.status, 400, "{path} {body}: {}", r.text());
        let (code, got, kind) = r.error();
        assert_eq!((code, kind.as_str()), (400, "invalid_request_error"), "{body}");
        assert!(got.starts_with(message), "{body}: {got}");
    }

    // A grammar field alongside a schema wins, as in llama-server; a null schema is no schema.
    let r = post(
        &s,
        "/completion",
        &json!({"prompt": "Is the sky green? Answer:", "n_predict": 4, "temperature": 0,
        "grammar": yes_no, "json_schema": {"type": "object"}}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let r = post(&s, "/completion", &json!({"prompt": "Hi", "n_predict": 2, "json_schema": null}));
    assert_eq!(r.status, 200, "{}", r.text());
}
