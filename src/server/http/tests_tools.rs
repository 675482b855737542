//! Tool calls and reasoning over HTTP, against a backend that answers with scripted pieces and a
//! real template (Qwen2.5's and Qwen3's, from tests/fixtures/chat_tools): the JSON shapes of
//! `/v1/chat/completions` whole and streamed, `/v1/messages`, the errors, and the flags. What the
//! parser makes of a text is checked against llama.cpp in tests/chat_tools_oracle.rs; the
//! expected deltas here follow llama-server's diffing of successive parses (server-task.cpp
//! `update_chat_msg`, `compute_diffs`), worked out by hand from its source.

use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use super::tests::{post, Bytes};
use super::*;
use crate::chat::TokenTexts;
use crate::server::api::{Final, Partial, StopType, Timings};

const QWEN25: &str =
    include_str!("../../../tests/fixtures/chat_tools/templates/Qwen-Qwen2.5-7B-Instruct.jinja");
const QWEN3: &str = include_str!("../../../tests/fixtures/chat_tools/templates/Qwen-Qwen3-0.6B.jinja");

/// Answers with the scripted pieces (streamed one by one, or whole), ending with `stop`.
struct Script {
    pieces: Vec<&'static str>,
    stop: StopType,
    seen: Mutex<Vec<GenerateRequest>>,
}

impl Backend for Script {
    fn submit(&self, req: GenerateRequest) -> UnboundedReceiver<GenerateEvent> {
        let (tx, rx) = unbounded_channel();
        self.seen.lock().unwrap().push(req.clone());
        let timings = Timings { prompt_n: 1, predicted_n: self.pieces.len(), ..Default::default() };
        if req.stream {
            for (i, text) in self.pieces.iter().enumerate() {
                let p = Partial {
                    text: text.to_string(),
                    tokens: vec![1],
                    probs: Vec::new(),
                    id_slot: 0,
                    tokens_predicted: i + 1,
                    tokens_evaluated: req.prompt.len(),
                    timings,
                };
                let _ = tx.send(GenerateEvent::Partial(p));
            }
        }
        let f = Final {
            content: self.pieces.concat(),
            unsent: String::new(),
            tokens: Vec::new(),
            probs: Vec::new(),
            id_slot: 0,
            stop_type: self.stop,
            stopping_word: String::new(),
            tokens_predicted: self.pieces.len(),
            tokens_evaluated: req.prompt.len(),
            tokens_cached: 0,
            truncated: false,
            timings,
        };
        let _ = tx.send(GenerateEvent::Final(Box::new(f)));
        rx
    }
    fn slots(&self) -> Vec<SlotInfo> {
        Vec::new()
    }
    fn metrics(&self) -> Metrics {
        Metrics::default()
    }
    fn n_ctx_slot(&self) -> usize {
        1 << 20
    }
    fn total_slots(&self) -> usize {
        1
    }
    fn shutdown(&self) {}
}

fn server(template: &str, pieces: Vec<&'static str>, args: &[&str]) -> (Arc<AppState>, Arc<Script>) {
    let state = Arc::new(AppState::new(crate::server::args::parse(args).unwrap()));
    let script = Arc::new(Script { pieces, stop: StopType::Eos, seen: Mutex::default() });
    let tokens = TokenTexts { bos: None, eos: Some("<|im_end|>".into()), add_bos: false, add_eos: false };
    let jinja = state.cfg.use_jinja;
    let templates = ChatTemplates::new(template, None, None, tokens, jinja).unwrap();
    let info = ModelInfo { name: "m".into(), aliases: vec!["m".into()], ..Default::default() };
    let loaded = Loaded {
        backend: script.clone(),
        vocab: Arc::new(Bytes),
        templates,
        info,
        sampling: Default::default(),
    };
    let _ = state.loaded.set(loaded);
    (state, script)
}

fn weather() -> Value {
    json!([{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}}}}])
}

fn chat(tools: bool, stream: bool) -> Value {
    let mut body = json!({"messages": [{"role": "user", "content": "Weather in Paris?"}], "stream": stream});
    if tools {
        body["tools"] = weather();
    }
    body
}

const CALL: [&str; 4] = [
    "Let me check.\n",
    "<tool_call>\n{\"name\": \"get_weather\", ",
    "\"arguments\": {\"city\": \"Pa",
    "ris\"}}\n</tool_call>",
];

fn prompt_text(s: &Script) -> String {
    let seen = s.seen.lock().unwrap();
    seen.last().unwrap().prompt.iter().skip(1).map(|&t| (t - 1) as u8 as char).collect()
}

#[tokio::test]
async fn tool_call_answer_whole() {
    let (state, script) = server(QWEN25, CALL.to_vec(), &[]);
    let r = post(&state, "/v1/chat/completions", chat(true, false)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json();
    let choice = &v["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    let msg = &choice["message"];
    assert_eq!(msg["content"], "Let me check.\n");
    let call = &msg["tool_calls"][0];
    assert_eq!(
        (call["type"].as_str(), call["function"]["name"].as_str()),
        (Some("function"), Some("get_weather"))
    );
    assert_eq!(call["function"]["arguments"], "{\"city\": \"Paris\"}");
    let id = call["id"].as_str().unwrap();
    assert!(id.len() == 32 && id.bytes().all(|b| b.is_ascii_alphanumeric()), "{id}");
    // The tools went into the prompt the way the template writes them.
    assert!(prompt_text(&script)
        .contains("<tools>\n{\"type\": \"function\", \"function\": {\"name\": \"get_weather\""));
}

#[tokio::test]
async fn tool_call_answer_streamed() {
    let (state, _) = server(QWEN25, CALL.to_vec(), &[]);
    let r = post(&state, "/v1/chat/completions", chat(true, true)).await;
    let events = r.events();
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> =
        events[..events.len() - 1].iter().map(|e| serde_json::from_str(e).unwrap()).collect();
    let deltas: Vec<&Value> = chunks.iter().map(|c| &c["choices"][0]["delta"]).collect();
    assert_eq!(deltas[0], &json!({"role": "assistant", "content": null}));
    assert_eq!(deltas[1], &json!({"content": "Let me check.\n"}));
    let id = deltas[2]["tool_calls"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(
        deltas[2],
        &json!({"tool_calls": [{"index": 0, "id": id, "type": "function", "function": {"name": "get_weather", "arguments": "{"}}]})
    );
    assert_eq!(
        deltas[3],
        &json!({"tool_calls": [{"index": 0, "function": {"arguments": "\"city\": \"Pa"}}]})
    );
    assert_eq!(deltas[4], &json!({"tool_calls": [{"index": 0, "function": {"arguments": "ris\"}"}}]}));
    assert_eq!(chunks[5]["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(chunks.len(), 6);
}

#[tokio::test]
async fn thinking_goes_to_reasoning_content() {
    let pieces = vec!["<think>\nThe user", " asks.\n</think>\n\n", "Sunny."];
    let (state, _) = server(QWEN3, pieces.clone(), &[]);
    let v = post(&state, "/v1/chat/completions", chat(false, false)).await.json();
    let msg = &v["choices"][0]["message"];
    assert_eq!(
        msg,
        &json!({"role": "assistant", "content": "Sunny.", "reasoning_content": "The user asks.\n"})
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    let events = post(&state, "/v1/chat/completions", chat(false, true)).await.events();
    let deltas: Vec<Value> = events[1..events.len() - 2]
        .iter()
        .map(|e| serde_json::from_str::<Value>(e).unwrap()["choices"][0]["delta"].clone())
        .collect();
    assert_eq!(
        deltas,
        vec![
            json!({"reasoning_content": "The user"}),
            json!({"reasoning_content": " asks.\n"}),
            json!({"content": "Sunny."})
        ]
    );
    // reasoning_format none (request or flag) leaves the text as it is.
    let mut body = chat(false, false);
    body["reasoning_format"] = json!("none");
    let v = post(&state, "/v1/chat/completions", body).await.json();
    assert_eq!(v["choices"][0]["message"]["content"], pieces.concat());
    let (state, _) = server(QWEN3, pieces.clone(), &["--reasoning-format", "none"]);
    let v = post(&state, "/v1/chat/completions", chat(false, false)).await.json();
    assert!(v["choices"][0]["message"].get("reasoning_content").is_none(), "{v}");
}

#[tokio::test]
async fn thinking_switches_reach_the_template() {
    let (state, script) = server(QWEN3, vec!["x"], &[]);
    post(&state, "/v1/chat/completions", chat(false, false)).await;
    assert!(prompt_text(&script).ends_with("<|im_start|>assistant\n"));
    let mut body = chat(false, false);
    body["chat_template_kwargs"] = json!({"enable_thinking": false});
    post(&state, "/v1/chat/completions", body).await;
    assert!(prompt_text(&script).ends_with("<|im_start|>assistant\n<think>\n\n</think>\n\n"));
    let (state, script) = server(QWEN3, vec!["x"], &["-rea", "off"]);
    post(&state, "/v1/chat/completions", chat(false, false)).await;
    assert!(prompt_text(&script).ends_with("<think>\n\n</think>\n\n"));
    let (state, script) =
        server(QWEN3, vec!["x"], &["--chat-template-kwargs", "{\"enable_thinking\": false}"]);
    post(&state, "/v1/chat/completions", chat(false, false)).await;
    assert!(prompt_text(&script).ends_with("<think>\n\n</think>\n\n"));
    let mut body = chat(false, false);
    body["reasoning_effort"] = json!("none");
    let (state, script) = server(QWEN3, vec!["x"], &[]);
    post(&state, "/v1/chat/completions", body).await;
    assert!(prompt_text(&script).ends_with("<think>\n\n</think>\n\n"));
}

#[tokio::test]
async fn errors_are_llama_servers() {
    let (state, _) =
        server(QWEN25, vec!["<tool_call>\n{\"name\": \"nope\", \"arguments\": {}}\n</tool_call>"], &[]);
    let cases = [
        (json!({"tool_choice": "sometimes"}), 400, "Invalid tool_choice: sometimes"),
        (json!({"grammar": "root ::= \"a\""}), 400, "Cannot use custom grammar constraints with tools."),
        (json!({"reasoning_format": "loud"}), 400, "Unknown reasoning format: loud"),
        (
            json!({"chat_template_kwargs": {"enable_thinking": "yes"}}),
            400,
            "invalid type for \"enable_thinking\"",
        ),
        (json!({"tools": [{"type": "retrieval"}]}), 400, "Failed to parse tools: Unsupported tool type"),
        // An answer that does not fit the template's layout is llama-server's 500.
        (json!({}), 500, "does not match the expected peg-native format"),
    ];
    for (extra, code, msg) in cases {
        let mut body = chat(true, false);
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let r = post(&state, "/v1/chat/completions", body.clone()).await;
        assert_eq!(r.status.as_u16(), code, "{body}: {}", r.text);
        assert!(r.json()["error"]["message"].as_str().unwrap().contains(msg), "{}", r.text);
    }
    // A template whose tool calls rs-llama cannot parse: a 400 that says so, not a guess.
    let gpt_oss = include_str!("../../../tests/fixtures/chat_tools/templates/openai-gpt-oss-120b.jinja");
    let (state, _) = server(gpt_oss, vec!["x"], &[]);
    let r = post(&state, "/v1/chat/completions", chat(true, false)).await;
    assert_eq!(r.status, 400);
    assert!(r.text.contains("not supported yet by rs-llama for this chat template (GPT-OSS"), "{}", r.text);
    // Without --jinja there are no tools at all.
    let (state, _) = server(QWEN25, vec!["x"], &["--no-jinja"]);
    let r = post(&state, "/v1/chat/completions", chat(true, false)).await;
    assert!(r.text.contains("tools param requires --jinja flag"), "{}", r.text);
}

#[tokio::test]
async fn preserved_tokens_are_single_tokens() {
    let (state, script) = server(QWEN25, vec!["x"], &[]);
    post(&state, "/completion", json!({"prompt": "hi", "preserved_tokens": ["a", "bc", "a", "é"]})).await;
    // One byte is one token here: "a" (id 98) is kept once, "bc" and the two-byte "é" are not.
    assert_eq!(script.seen.lock().unwrap()[0].sampling.preserved_tokens, vec![98]);
}

#[test]
fn reasoning_flags() {
    use crate::chat::request::ReasoningFormat;
    let c = crate::server::args::parse(&["--reasoning-format", "deepseek-legacy", "-rea", "on"]).unwrap();
    assert_eq!((c.reasoning_format, c.enable_reasoning), (ReasoningFormat::DeepseekLegacy, 1));
    assert_eq!(c.chat_template_kwargs.get("enable_thinking").map(String::as_str), Some("true"));
    let c = crate::server::args::parse(&["--reasoning", "auto"]).unwrap();
    assert_eq!((c.reasoning_format, c.enable_reasoning), (ReasoningFormat::Deepseek, -1));
    for bad in [
        &["--reasoning-format", "x"][..],
        &["-rea", "maybe"],
        &["--reasoning-budget", "10"],
        &["--chat-template-kwargs", "[1]"],
    ] {
        assert!(crate::server::args::parse(bad).is_err(), "{bad:?}");
    }
    assert!(crate::server::args::parse(&["--reasoning-budget", "-1"]).is_ok());
}

/// `(name, data)` of each `event: NAME\ndata: JSON` of a named-event stream.
fn named_events(text: &str) -> Vec<(String, Value)> {
    text.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            let (name, data) = e.split_once('\n').unwrap();
            let name = name.strip_prefix("event: ").unwrap().to_string();
            (name, serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap())
        })
        .collect()
}

fn anthropic_body(stream: bool) -> Value {
    json!({"max_tokens": 64, "stream": stream, "messages": [{"role": "user", "content": "Weather?"}],
           "tools": [{"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]})
}

const THINK_CALL: [&str; 3] = [
    "<think>\nNeed data.\n</think>\n\n",
    "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": ",
    "\"Oslo\"}}\n</tool_call>",
];

#[tokio::test]
async fn anthropic_thinking_and_tool_use_blocks() {
    let (state, _) = server(QWEN3, THINK_CALL.to_vec(), &[]);
    let v = post(&state, "/v1/messages", anthropic_body(false)).await.json();
    assert_eq!(v["stop_reason"], "tool_use");
    let blocks = v["content"].as_array().unwrap();
    assert_eq!(blocks[0], json!({"type": "thinking", "thinking": "Need data.\n", "signature": ""}));
    assert_eq!(
        (blocks[1]["type"].as_str(), blocks[1]["name"].as_str()),
        (Some("tool_use"), Some("get_weather"))
    );
    assert_eq!(blocks[1]["input"], json!({"city": "Oslo"}));
    assert_eq!(blocks.len(), 2);

    let r = post(&state, "/v1/messages", anthropic_body(true)).await;
    let events = named_events(&r.text);
    let shape: Vec<String> = events
        .iter()
        .map(|(name, d)| match d.get("delta").or(d.get("content_block")) {
            Some(x) => format!("{name}:{}:{}", d["index"], x["type"].as_str().unwrap_or("-")),
            None => name.clone(),
        })
        .collect();
    // Thinking is block 0, the call block 1; the call's block opens with its name and its
    // arguments follow as input_json_delta; the end closes thinking (after an empty signature)
    // and the call.
    assert_eq!(
        shape,
        [
            "message_start",
            "content_block_start:0:thinking",
            "content_block_delta:0:thinking_delta",
            "content_block_start:1:tool_use",
            "content_block_delta:1:input_json_delta",
            "content_block_delta:1:input_json_delta",
            "content_block_delta:0:signature_delta",
            "content_block_stop",
            "content_block_stop",
            "message_delta:null:-",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain(["message_stop".to_string()])
        .collect::<Vec<_>>()
    );
    let args: String = events.iter().filter_map(|(_, d)| d["delta"]["partial_json"].as_str()).collect();
    assert_eq!(args, "{\"city\": \"Oslo\"}");
    assert_eq!(events[events.len() - 2].1["delta"]["stop_reason"], "tool_use");
}

#[tokio::test]
async fn responses_reasoning_and_function_call_items() {
    let (state, _) = server(QWEN3, THINK_CALL.to_vec(), &[]);
    let tools = json!([{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}]);
    let body = json!({"input": "Weather?", "tools": tools});
    let v = post(&state, "/v1/responses", body.clone()).await.json();
    let output = v["output"].as_array().unwrap();
    assert_eq!(output[0]["type"], "reasoning");
    assert_eq!(output[0]["content"][0], json!({"text": "Need data.\n", "type": "reasoning_text"}));
    let call = &output[1];
    assert_eq!((call["type"].as_str(), call["name"].as_str()), (Some("function_call"), Some("get_weather")));
    assert_eq!(call["arguments"], "{\"city\": \"Oslo\"}");
    let id = call["id"].as_str().unwrap().strip_prefix("fc_").unwrap();
    assert_eq!(call["call_id"], format!("call_{id}"));

    let mut body = body;
    body["stream"] = json!(true);
    let r = post(&state, "/v1/responses", body).await;
    let names: Vec<String> = named_events(&r.text).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.reasoning_text.delta",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.delta",
            "response.output_item.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
}
