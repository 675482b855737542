//! Anthropic's Messages API as llama-server serves it (`server_chat_convert_anthropic_to_oai`,
//! `to_json_anthropic*` in its source): the request rewritten as a chat-completions body, the
//! answer as a `message` object or as Anthropic's named events (`message_start`,
//! `content_block_start`, `content_block_delta` with `text_delta`, `content_block_stop`,
//! `message_delta`, `message_stop`).
//!
//! Errors keep llama-server's `{"error":{"code","message","type"}}` body (it does not use
//! Anthropic's error shape); a missing `messages` is its 500 `server_error`. In a stream an error
//! is `event: error` with that inner object as data.

use serde_json::{Map, Value};

use super::apis::{self, str_or_empty, Event, Meta, Render};
use super::json::{obj, Json};
use crate::server::api::{ApiError, ErrorKind, Final, Partial, StopType};

/// A Messages body → a chat-completions body, field by field as llama-server converts it (what it
/// does not map, such as `seed`, is dropped).
pub fn to_chat(body: &Value) -> Result<Value, ApiError> {
    let mut out = Map::new();
    let mut messages: Vec<Value> = Vec::new();
    if let Some(system) = body.get("system").filter(|v| !v.is_null()) {
        let text = match system {
            Value::String(s) => normalize_billing_header(s),
            Value::Array(blocks) => blocks
                .iter()
                .filter(|b| str_or_empty(b, "type") == "text")
                .map(|b| normalize_billing_header(str_or_empty(b, "text")))
                .collect(),
            _ => String::new(),
        };
        messages.push(serde_json::json!({"role": "system", "content": text}));
    }
    let list =
        body.get("messages").ok_or_else(|| ApiError::new(ErrorKind::Server, "'messages' is required"))?;
    for msg in list.as_array().map(Vec::as_slice).unwrap_or_default() {
        let role = str_or_empty(msg, "role");
        match msg.get("content") {
            None if role == "assistant" => {}
            Some(Value::Array(blocks)) => convert_blocks(role, blocks, &mut messages),
            // Strings, other types, a missing content: as they are (the chat path judges them).
            _ => messages.push(msg.clone()),
        }
    }
    out.insert("messages".into(), Value::Array(messages));
    if let Some(Value::Array(tools)) = body.get("tools") {
        let tools = tools
            .iter()
            .map(|t| {
                serde_json::json!({"type": "function", "function": {
                    "name": str_or_empty(t, "name"),
                    "description": str_or_empty(t, "description"),
                    "parameters": t.get("input_schema").cloned().unwrap_or_else(|| Value::Object(Map::new())),
                }})
            })
            .collect();
        out.insert("tools".into(), Value::Array(tools));
    }
    if let Some(choice) = body.get("tool_choice").filter(|v| v.is_object()) {
        match str_or_empty(choice, "type") {
            "auto" => drop(out.insert("tool_choice".into(), "auto".into())),
            "any" | "tool" => drop(out.insert("tool_choice".into(), "required".into())),
            _ => {}
        }
    }
    if let Some(stop) = body.get("stop_sequences") {
        out.insert("stop".into(), stop.clone());
    }
    out.insert("max_tokens".into(), body.get("max_tokens").cloned().unwrap_or(Value::from(4096)));
    for key in ["temperature", "top_p", "top_k", "stream", "chat_template_kwargs"] {
        if let Some(v) = body.get(key) {
            out.insert(key.into(), v.clone());
        }
    }
    if let Some(thinking) = body.get("thinking") {
        if str_or_empty(thinking, "type") == "enabled" {
            let budget = thinking.get("budget_tokens").and_then(Value::as_i64).unwrap_or(10000);
            out.insert("thinking_budget_tokens".into(), budget.into());
        }
    }
    Ok(Value::Object(out))
}

/// One message's content blocks: text parts kept, thinking as `reasoning_content`, images as
/// `image_url` parts, `tool_use` as tool calls, `tool_result` as `tool` messages after it.
fn convert_blocks(role: &str, blocks: &[Value], messages: &mut Vec<Value>) {
    let (mut content, mut tool_calls, mut tool_results) = (Vec::new(), Vec::new(), Vec::new());
    let mut reasoning = String::new();
    for block in blocks {
        match str_or_empty(block, "type") {
            "text" => content.push(block.clone()),
            "thinking" => reasoning += str_or_empty(block, "thinking"),
            "image" => content.extend(image_part(block)),
            "tool_use" => {
                let input = block.get("input").cloned().unwrap_or_else(|| Value::Object(Map::new()));
                tool_calls.push(serde_json::json!({
                    "id": str_or_empty(block, "id"), "type": "function",
                    "function": {"name": str_or_empty(block, "name"), "arguments": input.to_string()},
                }));
            }
            "tool_result" => {
                let text = match block.get("content") {
                    Some(Value::String(s)) => Value::from(s.as_str()),
                    Some(Value::Array(parts)) => {
                        // Text only: one string; with an image: the parts as a list.
                        if parts.iter().any(|p| str_or_empty(p, "type") == "image") {
                            let all = parts.iter().filter_map(|p| match str_or_empty(p, "type") {
                                "text" => {
                                    Some(serde_json::json!({"type": "text", "text": str_or_empty(p, "text")}))
                                }
                                _ => image_part(p),
                            });
                            Value::Array(all.collect())
                        } else {
                            let texts = parts.iter().filter(|p| str_or_empty(p, "type") == "text");
                            Value::from(texts.map(|p| str_or_empty(p, "text")).collect::<String>())
                        }
                    }
                    _ => Value::from(""),
                };
                tool_results.push(serde_json::json!({
                    "role": "tool", "tool_call_id": str_or_empty(block, "tool_use_id"), "content": text,
                }));
            }
            _ => {}
        }
    }
    if !content.is_empty() || !tool_calls.is_empty() || !reasoning.is_empty() {
        let mut msg = Map::new();
        msg.insert("role".into(), role.into());
        let content = if content.is_empty() { Value::from("") } else { Value::Array(content) };
        msg.insert("content".into(), content);
        if !tool_calls.is_empty() {
            msg.insert("tool_calls".into(), Value::Array(tool_calls));
        }
        if !reasoning.is_empty() {
            msg.insert("reasoning_content".into(), reasoning.into());
        }
        messages.push(Value::Object(msg));
    }
    messages.extend(tool_results);
}

/// An Anthropic `image` block as an OpenAI `image_url` part (base64 as a data URL).
fn image_part(block: &Value) -> Option<Value> {
    if str_or_empty(block, "type") != "image" {
        return None;
    }
    let source = block.get("source").unwrap_or(&Value::Null);
    let url = match str_or_empty(source, "type") {
        "base64" => {
            let media = source.get("media_type").and_then(Value::as_str).unwrap_or("image/jpeg");
            format!("data:{media};base64,{}", str_or_empty(source, "data"))
        }
        "url" => str_or_empty(source, "url").to_string(),
        _ => return None,
    };
    Some(serde_json::json!({"type": "image_url", "image_url": {"url": url}}))
}

/// Claude Code's system prompt starts with an `x-anthropic-billing-header:` line whose `cch=XXXXX`
/// stamp changes on every request; llama-server writes it as `fffff` so that the prompt cache
/// gets past it. Any other text is kept as it is.
fn normalize_billing_header(text: &str) -> String {
    const PREFIX: &str = "x-anthropic-billing-header:";
    let mut out = text.to_string();
    if !text.starts_with(PREFIX) {
        return out;
    }
    if let Some(at) = text[PREFIX.len()..].find("cch=").map(|i| i + PREFIX.len() + 4) {
        let stamp = text.as_bytes().get(at..at + 6);
        if stamp.is_some_and(|s| s[5] == b';' && s[..5].is_ascii()) {
            out.replace_range(at..at + 5, "fffff");
        }
    }
    out
}

/// `end_turn` for a stop string or an end-of-generation token, else `max_tokens`.
fn stop_reason(f: &Final) -> &'static str {
    match f.stop_type {
        StopType::Word | StopType::Eos => "end_turn",
        _ => "max_tokens",
    }
}

fn stop_sequence(f: &Final) -> Json {
    if f.stopping_word.is_empty() {
        Json::Null
    } else {
        Json::from(f.stopping_word.as_str())
    }
}

/// The prompt tokens read from the cache, and the others.
fn usage_in(evaluated: usize, cached: usize) -> (usize, usize) {
    (cached, evaluated.saturating_sub(cached))
}

/// One generation's answer, streamed or whole.
pub struct Stream {
    /// `chatcmpl-…` (llama-server gives a Messages answer its chat-completion id).
    id: String,
    model: String,
    started: bool,
    text_started: bool,
}

impl Stream {
    pub fn new(meta: &Meta, salt: u64) -> Stream {
        Stream {
            id: format!("chatcmpl-{}", apis::random_id(32, salt)),
            model: meta.model.clone(),
            started: false,
            text_started: false,
        }
    }

    /// `message_start` before the first event of the stream.
    fn start(&mut self, evaluated: usize, cached: usize, out: &mut Vec<Event>) {
        if self.started {
            return;
        }
        self.started = true;
        let (cache, input) = usage_in(evaluated, cached);
        let message = obj! {
            "id" => self.id.as_str(), "type" => "message", "role" => "assistant",
            "content" => Json::Arr(Vec::new()), "model" => self.model.as_str(),
            "stop_reason" => Json::Null, "stop_sequence" => Json::Null,
            "usage" => obj! { "cache_read_input_tokens" => cache, "input_tokens" => input, "output_tokens" => 0 },
        };
        out.push(Event::new("message_start", obj! { "type" => "message_start", "message" => message }));
    }

    fn text(&mut self, text: &str, out: &mut Vec<Event>) {
        if text.is_empty() {
            return;
        }
        if !self.text_started {
            self.text_started = true;
            out.push(Event::new(
                "content_block_start",
                obj! {
                    "type" => "content_block_start", "index" => 0,
                    "content_block" => obj! { "type" => "text", "text" => "" },
                },
            ));
        }
        out.push(Event::new(
            "content_block_delta",
            obj! {
                "type" => "content_block_delta", "index" => 0,
                "delta" => obj! { "type" => "text_delta", "text" => text },
            },
        ));
    }
}

impl Render for Stream {
    fn whole(&self, f: &Final) -> Json {
        let content: Vec<Json> = if f.content.is_empty() {
            Vec::new()
        } else {
            vec![obj! { "type" => "text", "text" => f.content.as_str() }]
        };
        let (cache, input) = usage_in(f.tokens_evaluated, f.timings.cache_n);
        obj! {
            "id" => self.id.as_str(), "type" => "message", "role" => "assistant", "content" => content,
            "model" => self.model.as_str(), "stop_reason" => stop_reason(f), "stop_sequence" => stop_sequence(f),
            "usage" => obj! {
                "cache_read_input_tokens" => cache, "input_tokens" => input, "output_tokens" => f.tokens_predicted,
            },
        }
    }

    fn partial(&mut self, p: &Partial) -> Vec<Event> {
        let mut out = Vec::new();
        self.start(p.tokens_evaluated, p.timings.cache_n, &mut out);
        self.text(&p.text, &mut out);
        out
    }

    /// The text still held back (as the possible start of a stop string) goes out as one more
    /// delta of the same block; then the block closes, `message_delta` tells why it ended and
    /// `message_stop` ends the stream.
    fn finish(&mut self, f: &Final) -> Vec<Event> {
        let mut out = Vec::new();
        self.start(f.tokens_evaluated, f.timings.cache_n, &mut out);
        self.text(&f.unsent, &mut out);
        if self.text_started || !f.content.is_empty() {
            out.push(Event::new("content_block_stop", obj! { "type" => "content_block_stop", "index" => 0 }));
        }
        out.push(Event::new(
            "message_delta",
            obj! {
                "type" => "message_delta",
                "delta" => obj! { "stop_reason" => stop_reason(f), "stop_sequence" => stop_sequence(f) },
                "usage" => obj! { "output_tokens" => f.tokens_predicted },
            },
        ));
        out.push(Event::new("message_stop", obj! { "type" => "message_stop" }));
        out
    }

    fn error(&self, e: &ApiError) -> String {
        apis::sse(&[Event::new("error", super::error_json(e))])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn converts_as_llama_server() {
        let body = json!({
            "model": "x", "max_tokens": 8, "seed": 3, "metadata": {"user_id": "u"},
            "system": [{"type": "text", "text": "Be "}, {"type": "text", "text": "brief."}],
            "stop_sequences": ["\n"], "temperature": 0, "top_k": 1, "stream": true,
            "messages": [
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": [{"type": "text", "text": "Hello"}, {"type": "thinking", "thinking": "hm"}]},
                {"role": "assistant"},
                {"role": "user", "content": []},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": "42"}]}]},
            ],
        });
        let chat = to_chat(&body).unwrap();
        assert_eq!(
            chat,
            json!({
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "Hi"},
                    {"role": "assistant", "content": [{"type": "text", "text": "Hello"}], "reasoning_content": "hm"},
                    {"role": "tool", "tool_call_id": "t1", "content": "42"},
                ],
                "stop": ["\n"], "max_tokens": 8, "temperature": 0, "top_k": 1, "stream": true,
            })
        );
        let chat = to_chat(&json!({"messages": "hello"})).unwrap();
        assert_eq!(chat, json!({"messages": [], "max_tokens": 4096}));
        let e = to_chat(&json!({"max_tokens": 1})).unwrap_err();
        assert_eq!((e.kind, e.message.as_str()), (ErrorKind::Server, "'messages' is required"));
        assert!(to_chat(&json!([1])).is_err());
    }

    #[test]
    fn billing_header_stamp() {
        let h = "x-anthropic-billing-header: cc_version=2.1; cch=a5145;You are";
        assert_eq!(
            normalize_billing_header(h),
            "x-anthropic-billing-header: cc_version=2.1; cch=fffff;You are"
        );
        assert_eq!(normalize_billing_header("cch=a5145;"), "cch=a5145;");
        let odd = "x-anthropic-billing-header: cch=a51é;";
        assert_eq!(normalize_billing_header(odd), odd);
    }
}
