//! Tools and reasoning in chat prompts and answers, against llama.cpp 11434 itself: every case of
//! tests/fixtures/chat_tools/cases.json was run through llama.cpp's `common_chat_templates_apply`
//! and `common_chat_parse` by oracle/chat_oracle.cpp (expected.json; README there). Here rs-llama
//! renders the same chats on the same real templates and parses the same model outputs, and
//! both must agree byte for byte: the prompt, the generation prompt, and each parsed message
//! (content, reasoning_content, tool_calls) or the fact that llama.cpp refused it.

use rs_llama::chat::parse::OutputParser;
use rs_llama::chat::request::{ChatRequest, ReasoningFormat, ToolChoice};
use rs_llama::chat::{ChatError, ChatTemplates, TokenTexts};
use rs_llama::server::http::chat::{ChatPrompt, ChatState};
use serde_json::Value;
use std::path::PathBuf;

/// The fixture folder, or another made the same way (`RS_LLAMA_CHAT_TOOLS_DIR`, with its
/// templates in `templates/`), to try other templates against llama.cpp.
fn fixture(name: &str) -> PathBuf {
    match std::env::var_os("RS_LLAMA_CHAT_TOOLS_DIR") {
        Some(dir) => PathBuf::from(dir).join(name),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/chat_tools").join(name),
    }
}

fn load(name: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    serde_json::from_str::<Value>(&text).expect("fixture parses").as_array().expect("an array").clone()
}

fn text_of(v: &Value) -> Result<String, ChatError> {
    v.as_str().map(String::from).ok_or_else(|| ChatError::Request("text content only".into()))
}

fn templates(case: &Value) -> Result<ChatTemplates, ChatError> {
    let src = std::fs::read_to_string(fixture("templates").join(case["template"].as_str().unwrap())).unwrap();
    let tokens = TokenTexts {
        bos: Some(case["bos"].as_str().unwrap().to_string()),
        eos: Some(case["eos"].as_str().unwrap().to_string()),
        add_bos: false,
        add_eos: false,
    };
    ChatTemplates::new(&src, None, None, tokens, true)
}

fn request(case: &Value) -> ChatRequest {
    let default_messages = serde_json::json!([{ "role": "user", "content": "Hi" }]);
    let list = |k: &str| case.get(k).and_then(Value::as_array).cloned().unwrap_or_default();
    ChatRequest {
        messages: case.get("messages").unwrap_or(&default_messages).as_array().unwrap().clone(),
        tools: list("tools"),
        enable_thinking: case.get("enable_thinking").and_then(Value::as_bool).unwrap_or(true),
        kwargs: case["chat_template_kwargs"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        add_generation_prompt: case.get("add_generation_prompt").and_then(Value::as_bool).unwrap_or(true),
        tool_choice: ToolChoice::parse(case.get("tool_choice").and_then(Value::as_str).unwrap_or("auto"))
            .unwrap(),
        parallel_tool_calls: case.get("parallel_tool_calls").and_then(Value::as_bool).unwrap_or(false),
        reasoning_format: ReasoningFormat::parse(
            case.get("reasoning_format").and_then(Value::as_str).unwrap_or("deepseek"),
        )
        .unwrap(),
    }
}

#[test]
fn prompts_and_parsed_messages_equal_llama_cpp() {
    let cases = load("cases.json");
    let expected = load("expected.json");
    assert_eq!(cases.len(), expected.len());
    let (mut prompts, mut outputs, mut streams, mut failures) = (0, 0, 0, Vec::new());
    for (case, want) in cases.iter().zip(&expected) {
        let name = case["name"].as_str().unwrap();
        assert_eq!(want["name"], case["name"]);
        let got = templates(case).and_then(|t| t.prepare(&request(case), &text_of));
        let prepared = match (got, want.get("error")) {
            (Err(_), Some(_)) => {
                prompts += 1;
                continue;
            }
            (Ok(_), Some(e)) => {
                failures.push(format!("{name}: llama.cpp refused it ({e}), rs-llama did not"));
                continue;
            }
            (Err(e), None) => {
                failures.push(format!("{name}: rs-llama refused it: {e}"));
                continue;
            }
            (Ok(p), None) => p,
        };
        prompts += 1;
        if prepared.rendered.prompt != want["prompt"].as_str().unwrap() {
            failures.push(format!(
                "{name}: prompt\n--- rs-llama\n{}\n--- llama.cpp\n{}",
                prepared.rendered.prompt,
                want["prompt"].as_str().unwrap()
            ));
        }
        if prepared.rendered.generation_prompt != want["generation_prompt"].as_str().unwrap() {
            failures.push(format!(
                "{name}: generation prompt {:?} vs {:?}",
                prepared.rendered.generation_prompt, want["generation_prompt"]
            ));
        }
        let partial = case.get("partial").and_then(Value::as_bool).unwrap_or(false);
        let outs = case.get("outputs").and_then(Value::as_array).cloned().unwrap_or_default();
        for (i, (out, want)) in outs.iter().zip(want["parsed"].as_array().unwrap()).enumerate() {
            outputs += 1;
            let got = prepared.parser.parse(out.as_str().unwrap(), partial);
            let got = match got {
                Ok(msg) => msg.to_oai_json(),
                Err(e) => serde_json::json!({ "error": e }),
            };
            if &got != want {
                failures.push(format!("{name} output {i} {out}:\n  rs-llama  {got}\n  llama.cpp {want}"));
            }
        }
        if let (Some(n), Some(all)) = (case.get("stream_chunk").and_then(Value::as_u64), want.get("streamed"))
        {
            for (i, (out, want)) in outs.iter().zip(all.as_array().unwrap()).enumerate() {
                streams += 1;
                let got = Value::Array(streamed(&prepared.parser, out.as_str().unwrap(), n as usize));
                if &got != want {
                    failures.push(format!("{name} stream {i} {out}:\n  rs-llama  {got}\n  llama.cpp {want}"));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {prompts} prompts / {outputs} outputs differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        prompts >= 100 && outputs >= 500 && streams >= 150,
        "{prompts} prompts, {outputs} outputs, {streams} streams"
    );
}

/// `text` in pieces of `n` bytes (moved on to a character boundary), as the oracle cuts it.
fn chunks(text: &str, n: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < text.len() {
        let mut end = (at + n).min(text.len());
        while !text.is_char_boundary(end) {
            end += 1;
        }
        out.push(&text[at..end]);
        at = end;
    }
    out
}

/// What the server streams for `text` arriving in pieces: each change between successive
/// parses (the last one final), tool-call ids written as "id" + the call's index.
fn streamed(parser: &OutputParser, text: &str, n: usize) -> Vec<Value> {
    let prompt = ChatPrompt {
        prompt: String::new(),
        parser: parser.clone(),
        reasoning_format: ReasoningFormat::Deepseek,
        generation_prompt: String::new(),
        preserved: Vec::new(),
    };
    let mut state = ChatState::new(&prompt, 7);
    let mut out = Vec::new();
    let pieces = chunks(text, n);
    for i in 0..=pieces.len() {
        let (piece, partial) = if i < pieces.len() { (pieces[i], true) } else { ("", false) };
        match state.update(piece, partial) {
            Ok(diffs) => {
                for d in diffs {
                    let mut j = serde_json::json!({ "reasoning": d.reasoning, "content": d.content });
                    if let Some((index, call)) = &d.tool {
                        j["index"] = (*index).into();
                        j["name"] = call.name.clone().into();
                        j["id"] =
                            if call.id.is_empty() { String::new() } else { format!("id{index}") }.into();
                        j["arguments"] = call.arguments.clone().into();
                    }
                    out.push(j);
                }
            }
            Err(e) => {
                out.push(serde_json::json!({ "error": e.message }));
                break;
            }
        }
    }
    out
}
