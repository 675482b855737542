//! `rs-llama-server`'s Anthropic Messages API, OpenAI Responses API and input-token counters over
//! loopback with SmolLM2, against the real llama-server's answers to the same requests
//! (tests/fixtures/server/llama-server/apis/, made by make-api-fixtures.sh): status codes, key
//! sets and value types, the names and order of the stream's events, the greedy texts and the
//! error bodies; and against our own `/v1/chat/completions` for the same messages (text, prompt
//! tokens, stream deltas joined).

mod server_support;

use std::path::PathBuf;

use serde_json::{json, Value};
use server_support::*;

/// A server as the fixtures' llama-server was started (`-np 1 -c 2048 -t 2 --metrics`), ready.
fn start() -> Option<Server> {
    let m = model("smollm2-135m-f16.gguf")?;
    Some(Server::ready(&m, &["-np", "1", "-c", "2048", "-t", "2", "--metrics", "--no-webui"]))
}

fn post(s: &Server, path: &str, body: &Value) -> Resp {
    send(s.port, "POST", path, body.to_string().as_bytes()).unwrap()
}

/// The events of an SSE body: (the `event:` name if any, the `data:` JSON).
fn events(body: &[u8]) -> Vec<(Option<String>, Value)> {
    let text = String::from_utf8_lossy(body);
    assert!(text.ends_with("\n\n"), "{text}");
    text.split("\n\n")
        .filter(|b| !b.is_empty())
        .map(|block| {
            let mut name = None;
            let mut data = Value::Null;
            for line in block.lines() {
                if let Some(n) = line.strip_prefix("event: ") {
                    name = Some(n.to_string());
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data = serde_json::from_str(d).unwrap_or_else(|e| panic!("{e}: {d}"));
                } else {
                    panic!("unexpected SSE line {line:?} in {text}");
                }
            }
            (name, data)
        })
        .collect()
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Key sets and value types of `got` against `want`, recursively (arrays by their first item).
fn shape_diffs(want: &Value, got: &Value, path: &str, out: &mut Vec<String>) {
    if kind(want) != kind(got) {
        out.push(format!("{path}: {} ({got}), fixture has {} ({want})", kind(got), kind(want)));
        return;
    }
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => {
            for k in w.keys().filter(|k| !g.contains_key(*k)) {
                out.push(format!("{path}.{k}: missing"));
            }
            for k in g.keys().filter(|k| !w.contains_key(*k)) {
                out.push(format!("{path}.{k}: extra"));
            }
            for (k, v) in w {
                if let Some(gv) = g.get(k) {
                    shape_diffs(v, gv, &format!("{path}.{k}"), out);
                }
            }
        }
        (Value::Array(w), Value::Array(g)) => match (w.first(), g.first()) {
            (Some(a), Some(b)) => shape_diffs(a, b, &format!("{path}[0]"), out),
            (None, None) => {}
            _ => out.push(format!("{path}: {} items, fixture has {}", g.len(), w.len())),
        },
        _ => {}
    }
}

/// The text of a Messages answer, a Responses answer, or a chat completion.
fn text_of(v: &Value) -> String {
    if let Some(blocks) = v["content"].as_array() {
        return blocks.iter().filter_map(|b| b["text"].as_str()).collect();
    }
    if let Some(items) = v["output"].as_array() {
        return items
            .iter()
            .flat_map(|i| i["content"].as_array().cloned().unwrap_or_default())
            .filter_map(|p| p["text"].as_str().map(String::from))
            .collect();
    }
    v["choices"][0]["message"]["content"].as_str().unwrap_or_default().to_string()
}

/// The text deltas of a Messages or Responses stream, joined.
fn streamed_text(evs: &[(Option<String>, Value)]) -> String {
    evs.iter()
        .filter_map(|(_, d)| match d["type"].as_str() {
            Some("content_block_delta") => d["delta"]["text"].as_str(),
            Some("response.output_text.delta") => d["delta"].as_str(),
            _ => None,
        })
        .collect()
}

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/server/llama-server/apis")
}

/// Every request of the fixtures' index.json, answered by rs-llama-server as by llama-server.
#[test]
fn same_answers_as_llama_server() {
    let dir = fixture_dir();
    let index: Value = serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let Some(s) = start() else { return };
    let mut failures = Vec::new();
    for entry in index["fixtures"].as_array().unwrap() {
        let name = entry["name"].as_str().unwrap();
        let req = &entry["request"];
        let body = match &req["body"] {
            Value::String(raw) => raw.clone().into_bytes(),
            Value::Null => Vec::new(),
            v => v.to_string().into_bytes(),
        };
        let got =
            send(s.port, req["method"].as_str().unwrap(), req["path"].as_str().unwrap(), &body).unwrap();
        let want_body = std::fs::read(dir.join(entry["file"].as_str().unwrap())).unwrap();
        let mut diffs = Vec::new();
        if u64::from(got.status) != entry["status"].as_u64().unwrap() {
            diffs.push(format!("status {}, fixture has {}", got.status, entry["status"]));
        }
        let want_type = entry["headers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h[0].as_str().unwrap().eq_ignore_ascii_case("content-type"))
            .and_then(|h| h[1].as_str());
        if got.header("content-type") != want_type {
            diffs.push(format!("content-type {:?}, fixture has {want_type:?}", got.header("content-type")));
        }
        if entry["kind"] == "sse" {
            let (want, have) = (events(&want_body), events(&got.body));
            let names = |e: &[(Option<String>, Value)]| e.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
            if names(&want) != names(&have) {
                diffs.push(format!("events {:?}, fixture has {:?}", names(&have), names(&want)));
            }
            for (i, ((_, w), (_, g))) in want.iter().zip(&have).enumerate() {
                shape_diffs(w, g, &format!("event[{i}]"), &mut diffs);
            }
            if streamed_text(&want) != streamed_text(&have) {
                diffs.push(format!(
                    "text {:?}, fixture has {:?}",
                    streamed_text(&have),
                    streamed_text(&want)
                ));
            }
        } else {
            let want: Value = serde_json::from_slice(&want_body).unwrap();
            let have: Value = serde_json::from_slice(&got.body).unwrap_or(Value::Null);
            shape_diffs(&want, &have, "$", &mut diffs);
            if name.starts_with("error_") {
                // The same error; a JSON syntax error names the place in serde's words.
                let (w, g) = (&want["error"], &have["error"]);
                let same_message = if name.ends_with("malformed_json") {
                    g["message"].as_str().unwrap_or_default().starts_with("[json.exception.parse_error.101]")
                } else {
                    w["message"] == g["message"]
                };
                if w["code"] != g["code"] || w["type"] != g["type"] || !same_message {
                    diffs.push(format!("error {g}, fixture has {w}"));
                }
            } else if want.get("input_tokens").is_some() {
                if want["input_tokens"] != have["input_tokens"] {
                    diffs.push(format!(
                        "input_tokens {}, fixture has {}",
                        have["input_tokens"], want["input_tokens"]
                    ));
                }
            } else if text_of(&want) != text_of(&have) {
                diffs.push(format!("text {:?}, fixture has {:?}", text_of(&have), text_of(&want)));
            }
        }
        failures.extend(diffs.into_iter().map(|d| format!("{name}: {d}")));
    }
    assert!(failures.is_empty(), "differences from llama-server:\n{}", failures.join("\n"));
}

/// The same conversation through /v1/messages, /v1/responses and /v1/chat/completions.
#[test]
fn same_generation_as_chat_completions() {
    let Some(s) = start() else { return };
    let msgs = json!([
        {"role": "system", "content": "You are a geography teacher."},
        {"role": "user", "content": "Name the capital of Italy and one sight there."},
    ]);
    let chat =
        post(&s, "/v1/chat/completions", &json!({"messages": msgs, "max_tokens": 16, "temperature": 0}));
    assert_eq!(chat.status, 200, "{}", chat.text());
    let chat = chat.json();
    let text = text_of(&chat);
    assert!(!text.is_empty());
    let prompt_tokens = chat["usage"]["prompt_tokens"].clone();

    // Anthropic: the system message apart, content as blocks.
    let anthropic = json!({
        "model": "any", "max_tokens": 16, "temperature": 0, "system": msgs[0]["content"],
        "messages": [{"role": "user", "content": [{"type": "text", "text": msgs[1]["content"]}]}],
    });
    let m = post(&s, "/v1/messages", &anthropic);
    assert_eq!(m.status, 200, "{}", m.text());
    let m = m.json();
    assert_eq!(text_of(&m), text);
    assert_eq!(m["type"], "message");
    assert!(m["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(
        m["stop_reason"],
        if chat["choices"][0]["finish_reason"] == "length" { "max_tokens" } else { "end_turn" }
    );
    assert_eq!(m["usage"]["output_tokens"], chat["usage"]["completion_tokens"]);
    let n_in = m["usage"]["input_tokens"].as_u64().unwrap()
        + m["usage"]["cache_read_input_tokens"].as_u64().unwrap();
    assert_eq!(json!(n_in), prompt_tokens);
    let mut stream_body = anthropic.clone();
    stream_body["stream"] = json!(true);
    let streamed = post(&s, "/v1/messages", &stream_body);
    assert_eq!(streamed.header("content-type"), Some("text/event-stream"));
    let evs = events(&streamed.body);
    assert_eq!(streamed_text(&evs), text);
    assert_eq!(evs.first().unwrap().0.as_deref(), Some("message_start"));
    assert_eq!(evs.last().unwrap().0.as_deref(), Some("message_stop"));
    assert!(!streamed.text().contains("[DONE]"));
    let delta = &evs[evs.len() - 2].1;
    assert_eq!(delta["delta"]["stop_reason"], m["stop_reason"]);
    assert_eq!(delta["usage"]["output_tokens"], m["usage"]["output_tokens"]);
    let counted = post(&s, "/v1/messages/count_tokens", &anthropic).json();
    assert_eq!(counted, json!({"input_tokens": prompt_tokens}));

    // Responses: the system message as instructions, the question as an input item.
    let responses = json!({
        "model": "any", "max_output_tokens": 16, "temperature": 0, "instructions": msgs[0]["content"],
        "input": [{"role": "user", "content": msgs[1]["content"]}],
    });
    let r = post(&s, "/v1/responses", &responses);
    assert_eq!(r.status, 200, "{}", r.text());
    let r = r.json();
    assert_eq!(text_of(&r), text);
    assert_eq!(r["object"], "response");
    assert_eq!(r["usage"]["input_tokens"], prompt_tokens);
    assert_eq!(r["usage"]["output_tokens"], chat["usage"]["completion_tokens"]);
    let mut stream_body = responses.clone();
    stream_body["stream"] = json!(true);
    let streamed = post(&s, "/v1/responses", &stream_body);
    let evs = events(&streamed.body);
    assert_eq!(streamed_text(&evs), text);
    assert_eq!(evs.first().unwrap().0.as_deref(), Some("response.created"));
    let done = &evs.last().unwrap().1;
    assert_eq!(done["type"], "response.completed");
    assert_eq!(text_of(&done["response"]), text);
    assert!(done["timings"]["predicted_n"].is_u64());
    let counted = post(&s, "/v1/responses/input_tokens", &responses).json();
    assert_eq!(counted, json!({"input_tokens": prompt_tokens, "object": "response.input_tokens"}));
    for path in ["/v1/chat/completions/input_tokens", "/chat/completions/input_tokens"] {
        let counted = post(&s, path, &json!({"messages": msgs})).json();
        assert_eq!(
            counted,
            json!({"input_tokens": prompt_tokens, "object": "response.input_tokens"}),
            "{path}"
        );
    }
    let r = post(&s, "/responses", &responses);
    assert_eq!(text_of(&r.json()), text, "/responses is /v1/responses");
}

/// Bad input: llama-server's status and error body, and the server keeps serving.
#[test]
fn bad_inputs() {
    let Some(s) = start() else { return };
    let cases: &[(&str, &str, u16, &str, &str)] = &[
        ("/v1/messages", r#"{"max_tokens": 4}"#, 500, "server_error", "'messages' is required"),
        ("/v1/messages", r#"[1]"#, 500, "server_error", "'messages' is required"),
        ("/v1/messages/count_tokens", r#"{}"#, 500, "server_error", "'messages' is required"),
        (
            "/v1/messages",
            r#"{"messages": [{"role": "user", "content": 5}]}"#,
            400,
            "invalid_request_error",
            "Expected 'content' to be a string or an array",
        ),
        (
            "/v1/messages",
            r#"{"messages": [{"role": "user"}]}"#,
            400,
            "invalid_request_error",
            "All non-assistant messages must contain 'content'",
        ),
        (
            "/v1/messages",
            r#"{"messages": [{"role": "user", "content": "x"}], "max_tokens": "many"}"#,
            400,
            "invalid_request_error",
            "Field 'max_tokens': [json.exception.type_error.302] type must be number, but is string",
        ),
        (
            "/v1/messages",
            r#"{"messages": [{"role": "user", "content": "x"}], "top_k": "1", "stream": true}"#,
            400,
            "invalid_request_error",
            "Field 'top_k': [json.exception.type_error.302] type must be number, but is string",
        ),
        (
            "/v1/messages",
            r#"{"messages": [}"#,
            400,
            "invalid_request_error",
            "[json.exception.parse_error.101]",
        ),
        ("/v1/responses", r#"{"max_output_tokens": 4}"#, 400, "invalid_request_error", "'input' is required"),
        (
            "/v1/responses",
            r#"{"input": {"role": "user"}}"#,
            400,
            "invalid_request_error",
            "'input' must be a string or array of objects",
        ),
        (
            "/v1/responses",
            r#"{"input": [3]}"#,
            400,
            "invalid_request_error",
            "Cannot determine type of 'item'",
        ),
        (
            "/v1/responses",
            r#"{"input": [{"type": "message", "role": "assistant", "content": [{"type": "output_text"}]}]}"#,
            400,
            "invalid_request_error",
            "'Output text' requires 'text'",
        ),
        (
            "/v1/responses",
            r#"{"input": "x", "max_output_tokens": "x"}"#,
            400,
            "invalid_request_error",
            "Field 'max_tokens': [json.exception.type_error.302] type must be number, but is string",
        ),
        (
            "/v1/responses/input_tokens",
            r#"{"input": 1}"#,
            400,
            "invalid_request_error",
            "'input' must be a string",
        ),
        (
            "/v1/chat/completions/input_tokens",
            r#"{"messages": "x"}"#,
            400,
            "invalid_request_error",
            "Expected 'messages' to be an array",
        ),
    ];
    for (path, body, code, kind, msg) in cases {
        let r = send(s.port, "POST", path, body.as_bytes()).unwrap();
        let v = r.json();
        let e = &v["error"];
        assert_eq!(
            (r.status, e["code"].as_u64(), e["type"].as_str()),
            (*code, Some(u64::from(*code)), Some(*kind)),
            "{path} {body}: {v}"
        );
        assert!(e["message"].as_str().unwrap().starts_with(msg), "{path} {body}: {v}");
        assert_eq!(r.header("content-type"), Some("application/json; charset=utf-8"));
    }
    // A prompt longer than the context, also when streaming: a plain JSON error.
    let long = "hello ".repeat(2100);
    for stream in [false, true] {
        let r = post(
            &s,
            "/v1/messages",
            &json!({"messages": [{"role": "user", "content": long}], "stream": stream}),
        );
        assert_eq!(r.status, 400);
        assert_eq!(r.json()["error"]["type"], "exceed_context_size_error", "{}", r.text());
    }
    let r = send(s.port, "GET", "/v1/messages", b"").unwrap();
    assert_eq!(r.status, 404);
    let ok = post(&s, "/v1/messages/count_tokens", &json!({"messages": [{"role": "user", "content": "Hi"}]}));
    assert_eq!(ok.status, 200, "still serving: {}", ok.text());
}
