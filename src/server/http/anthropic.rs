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
use super::chat::{ChatState, Diff};
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

/// `end_turn` (or `tool_use` when the answer has tool calls) for a stop string or an
/// end-of-generation token, else `max_tokens`.
fn stop_reason(f: &Final, has_tool_calls: bool) -> &'static str {
    match f.stop_type {
        StopType::Word | StopType::Eos if has_tool_calls => "tool_use",
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

/// A tool call's arguments as the `input` object (`{}` when they are not JSON).
fn tool_input(arguments: &str) -> Json {
    match serde_json::from_str::<Value>(arguments) {
        Ok(v) => Json::from(&v),
        Err(_) => Json::obj(),
    }
}

fn block_start(index: usize, block: Json) -> Event {
    Event::new(
        "content_block_start",
        obj! { "type" => "content_block_start", "index" => index, "content_block" => block },
    )
}

fn block_delta(index: usize, delta: Json) -> Event {
    Event::new(
        "content_block_delta",
        obj! { "type" => "content_block_delta", "index" => index, "delta" => delta },
    )
}

fn block_stop(index: usize) -> Event {
    Event::new("content_block_stop", obj! { "type" => "content_block_stop", "index" => index })
}

/// One generation's answer, streamed or whole.
pub struct Stream {
    /// `chatcmpl-…` (llama-server gives a Messages answer its chat-completion id).
    id: String,
    model: String,
    started: bool,
    /// Whether a thinking / text block was opened by an earlier piece.
    thinking_started: bool,
    text_started: bool,
    chat: ChatState,
}

impl Stream {
    pub fn new(meta: &Meta, salt: u64, chat: ChatState) -> Stream {
        Stream {
            id: format!("chatcmpl-{}", apis::random_id(32, salt)),
            model: meta.model.clone(),
            started: false,
            thinking_started: false,
            text_started: false,
            chat,
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

    /// The events for the changes one piece made. Blocks are numbered as llama-server numbers
    /// them: thinking 0, then text, then one per tool call; `text_started` and `tools_started`
    /// are what this run of changes has opened.
    fn diff_events(
        &self,
        diffs: &[Diff],
        text_started: &mut bool,
        tool_starts: Option<&mut Vec<usize>>,
        out: &mut Vec<Event>,
    ) {
        let has_reasoning = !self.chat.msg.reasoning_content.is_empty();
        let text_index = usize::from(has_reasoning);
        let mut thinking_started = self.thinking_started;
        let mut tool_starts = tool_starts;
        for d in diffs {
            if !d.reasoning.is_empty() {
                if !thinking_started {
                    out.push(block_start(0, obj! { "type" => "thinking", "thinking" => "" }));
                    thinking_started = true;
                }
                out.push(block_delta(
                    0,
                    obj! { "type" => "thinking_delta", "thinking" => d.reasoning.as_str() },
                ));
            }
            if !d.content.is_empty() {
                if !*text_started {
                    out.push(block_start(text_index, obj! { "type" => "text", "text" => "" }));
                    *text_started = true;
                }
                out.push(block_delta(
                    text_index,
                    obj! { "type" => "text_delta", "text" => d.content.as_str() },
                ));
            }
            let Some((i, call)) = &d.tool else { continue };
            let index = match &tool_starts {
                // The last events count the text block by the final message, as llama-server.
                Some(_) => text_index + usize::from(!self.chat.msg.content.is_empty()) + i,
                None => text_index + usize::from(*text_started) + i,
            };
            // Streamed, a call's block opens when its name arrives; in the last events, at the
            // first change to it there (llama-server opens it again then).
            let open = match tool_starts.as_deref_mut() {
                Some(started) if !started.contains(i) => {
                    started.push(*i);
                    true
                }
                Some(_) => false,
                None => !call.name.is_empty(),
            };
            if open {
                let full = &self.chat.msg.tool_calls[*i];
                let (id, name) =
                    if tool_starts.is_some() { (&full.id, &full.name) } else { (&call.id, &call.name) };
                out.push(block_start(
                    index,
                    obj! { "type" => "tool_use", "id" => id.as_str(), "name" => name.as_str() },
                ));
            }
            if !call.arguments.is_empty() {
                out.push(block_delta(
                    index,
                    obj! { "type" => "input_json_delta", "partial_json" => call.arguments.as_str() },
                ));
            }
        }
    }
}

impl Render for Stream {
    fn whole(&mut self, f: &Final) -> Result<Json, ApiError> {
        self.chat.update(&f.content, false)?;
        let msg = &self.chat.msg;
        let mut content = Vec::new();
        if msg.is_empty() {
            if !f.content.is_empty() {
                content.push(obj! { "type" => "text", "text" => f.content.as_str() });
            }
        } else {
            if !msg.reasoning_content.is_empty() {
                content.push(obj! { "type" => "thinking", "thinking" => msg.reasoning_content.as_str(), "signature" => "" });
            }
            if !msg.content.is_empty() {
                content.push(obj! { "type" => "text", "text" => msg.content.as_str() });
            }
            for call in &msg.tool_calls {
                content.push(obj! {
                    "type" => "tool_use", "id" => call.id.as_str(), "name" => call.name.as_str(),
                    "input" => tool_input(&call.arguments),
                });
            }
        }
        let (cache, input) = usage_in(f.tokens_evaluated, f.timings.cache_n);
        Ok(obj! {
            "id" => self.id.as_str(), "type" => "message", "role" => "assistant", "content" => content,
            "model" => self.model.as_str(), "stop_reason" => stop_reason(f, !msg.tool_calls.is_empty()),
            "stop_sequence" => stop_sequence(f),
            "usage" => obj! {
                "cache_read_input_tokens" => cache, "input_tokens" => input, "output_tokens" => f.tokens_predicted,
            },
        })
    }

    fn partial(&mut self, p: &Partial) -> Result<Vec<Event>, ApiError> {
        let mut out = Vec::new();
        self.start(p.tokens_evaluated, p.timings.cache_n, &mut out);
        let diffs = self.chat.update(&p.text, true)?;
        let mut text_started = self.text_started;
        self.diff_events(&diffs, &mut text_started, None, &mut out);
        self.text_started = text_started;
        self.thinking_started |= diffs.iter().any(|d| !d.reasoning.is_empty());
        Ok(out)
    }

    /// The changes the end of the text made (counted afresh, as llama-server's last events
    /// are), then every open block closes — thinking with an empty signature first —,
    /// `message_delta` tells why it ended and `message_stop` ends the stream.
    fn finish(&mut self, f: &Final) -> Result<Vec<Event>, ApiError> {
        let mut out = Vec::new();
        self.start(f.tokens_evaluated, f.timings.cache_n, &mut out);
        if !f.unsent.is_empty() {
            // What llama-server's last partial would have carried.
            let p = Partial {
                text: f.unsent.clone(),
                tokens: Vec::new(),
                probs: Vec::new(),
                id_slot: f.id_slot,
                tokens_predicted: f.tokens_predicted,
                tokens_evaluated: f.tokens_evaluated,
                timings: f.timings,
            };
            out.extend(self.partial(&p)?);
        }
        let diffs = self.chat.update("", false)?;
        self.thinking_started = false;
        let (mut text_started, mut tools) = (false, Vec::new());
        self.diff_events(&diffs, &mut text_started, Some(&mut tools), &mut out);
        let msg = &self.chat.msg;
        let (has_thinking, has_text) = (!msg.reasoning_content.is_empty(), !msg.content.is_empty());
        if has_thinking {
            out.push(block_delta(0, obj! { "type" => "signature_delta", "signature" => "" }));
            out.push(block_stop(0));
        }
        if has_text {
            out.push(block_stop(usize::from(has_thinking)));
        }
        for i in 0..msg.tool_calls.len() {
            out.push(block_stop(usize::from(has_thinking) + usize::from(has_text) + i));
        }
        out.push(Event::new(
            "message_delta",
            obj! {
                "type" => "message_delta",
                "delta" => obj! { "stop_reason" => stop_reason(f, !msg.tool_calls.is_empty()), "stop_sequence" => stop_sequence(f) },
                "usage" => obj! { "output_tokens" => f.tokens_predicted },
            },
        ));
        out.push(Event::new("message_stop", obj! { "type" => "message_stop" }));
        Ok(out)
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
