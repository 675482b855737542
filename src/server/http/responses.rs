//! OpenAI's Responses API as llama-server serves it (`server_chat_convert_responses_to_chatcmpl`,
//! `to_json_oaicompat_resp*` in its source): `input` (a string or a list of items) and
//! `instructions` rewritten as chat messages, `max_output_tokens` as `max_tokens`, every other
//! field passed on to the chat path; the answer as a `response` object or as the events
//! `response.created`, `response.in_progress`, `response.output_item.added`,
//! `response.content_part.added`, `response.output_text.delta`, `response.output_text.done`,
//! `response.content_part.done`, `response.output_item.done`, `response.completed`.
//!
//! Errors are llama-server's `{"error":{...}}`, in a started stream as a plain `data:` event.

use serde_json::{Map, Value};

use super::apis::{self, str_or_empty, Event, Meta, Render};
use super::chat::{ChatState, Diff};
use super::json::{obj, Json};
use crate::chat::parse::ToolCall;
use crate::server::api::{ApiError, Final, Partial};

fn invalid(message: &str) -> ApiError {
    ApiError::invalid(message)
}

fn is_str(v: &Value, key: &str) -> bool {
    v.get(key).is_some_and(Value::is_string)
}

fn is_arr(v: &Value, key: &str) -> bool {
    v.get(key).is_some_and(Value::is_array)
}

fn text_part(text: &Value) -> Value {
    serde_json::json!({"text": text, "type": "text"})
}

/// A Responses body → a chat-completions body.
pub fn to_chat(body: &Value) -> Result<Value, ApiError> {
    let input = body.get("input").ok_or_else(|| invalid("'input' is required"))?;
    if !str_or_empty(body, "previous_response_id").is_empty() {
        return Err(invalid("llama.cpp does not support 'previous_response_id'."));
    }
    let mut out: Map<String, Value> = body.as_object().cloned().unwrap_or_default();
    out.remove("input");
    let mut messages: Vec<Value> = Vec::new();
    if body.get("instructions").is_some() {
        messages.push(serde_json::json!({"role": "system", "content": str_or_empty(body, "instructions")}));
        out.remove("instructions");
    }
    match input {
        Value::String(_) => messages.push(serde_json::json!({"role": "user", "content": input})),
        Value::Array(items) => {
            for item in items {
                input_item(item.clone(), &mut messages)?;
            }
        }
        _ => return Err(invalid("'input' must be a string or array of objects")),
    }
    out.insert("messages".into(), Value::Array(messages));
    if let Some(tools) = body.get("tools") {
        let tools = tools.as_array().ok_or_else(|| invalid("'tools' must be an array of objects"))?;
        let mut chat_tools = Vec::new();
        for tool in tools {
            // Only function tools have a chat-completions equivalent; the others are skipped.
            if str_or_empty(tool, "type") != "function" {
                continue;
            }
            let mut function = tool.as_object().cloned().unwrap_or_default();
            function.remove("type");
            function.entry("strict").or_insert(Value::Bool(true));
            chat_tools.push(serde_json::json!({"type": "function", "function": function}));
        }
        out.remove("tools");
        if !chat_tools.is_empty() {
            out.insert("tools".into(), Value::Array(chat_tools));
        }
    }
    if let Some(n) = body.get("max_output_tokens") {
        out.remove("max_output_tokens");
        out.insert("max_tokens".into(), n.clone());
    }
    if let Some(reasoning) = body.get("reasoning") {
        if let Some(effort) = reasoning.get("effort") {
            out.insert("reasoning_effort".into(), effort.clone());
        }
        out.remove("reasoning");
    }
    Ok(Value::Object(out))
}

/// One item of an `input` list as chat messages (an assistant item right after an assistant
/// message joins it).
fn input_item(mut item: Value, messages: &mut Vec<Value>) -> Result<(), ApiError> {
    let merge_prev = messages.last().is_some_and(|m| str_or_empty(m, "role") == "assistant");
    if is_str(&item, "content") {
        // A message with text content: the same as one with a single `input_text` part.
        let text = item["content"].clone();
        item["content"] = serde_json::json!([{"text": text, "type": "input_text"}]);
    }
    let role = str_or_empty(&item, "role").to_string();
    let kind = str_or_empty(&item, "type").to_string();
    let has_role = is_str(&item, "role");
    if is_arr(&item, "content") && has_role && matches!(role.as_str(), "user" | "system" | "developer") {
        let mut parts = Vec::new();
        for part in item["content"].as_array().map(Vec::as_slice).unwrap_or_default() {
            match str_or_empty(part, "type") {
                "input_text" => {
                    let text = part.get("text").ok_or_else(|| invalid("'Input text' requires 'text'"))?;
                    parts.push(text_part(text));
                }
                "input_image" => {
                    let url = part.get("image_url").ok_or_else(|| invalid("'image_url' is required"))?;
                    parts.push(serde_json::json!({"image_url": {"url": url}, "type": "image_url"}));
                }
                "input_file" => {
                    return Err(invalid("'input_file' is not supported by llamacpp at this moment"))
                }
                _ => {
                    return Err(invalid("'type' must be one of 'input_text', 'input_image', or 'input_file'"))
                }
            }
        }
        if let Some(obj) = item.as_object_mut() {
            obj.remove("type");
            obj.remove("status");
            obj.insert("content".into(), Value::Array(parts));
        }
        messages.push(item);
    } else if has_role && role == "assistant" && kind == "message" {
        let mut parts = Vec::new();
        for part in item.get("content").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default() {
            match str_or_empty(part, "type") {
                "output_text" | "input_text" => {
                    if !is_str(part, "text") {
                        return Err(invalid("'Output text' requires 'text'"));
                    }
                    parts.push(text_part(&part["text"]));
                }
                "refusal" => {
                    if !is_str(part, "refusal") {
                        return Err(invalid("'Refusal' requires 'refusal'"));
                    }
                    parts.push(serde_json::json!({"refusal": part["refusal"], "type": "refusal"}));
                }
                _ => return Err(invalid("'type' must be one of 'output_text' or 'refusal'")),
            }
        }
        match messages.last_mut().filter(|_| merge_prev) {
            Some(prev) => {
                if !is_arr(prev, "content") {
                    prev["content"] = Value::Array(Vec::new());
                }
                if let Some(list) = prev["content"].as_array_mut() {
                    list.extend(parts);
                }
            }
            None => {
                if let Some(obj) = item.as_object_mut() {
                    obj.remove("status");
                    obj.remove("type");
                    obj.insert("content".into(), Value::Array(parts));
                }
                messages.push(item);
            }
        }
    } else if kind == "function_call"
        && is_str(&item, "arguments")
        && is_str(&item, "call_id")
        && is_str(&item, "name")
    {
        let call = serde_json::json!({
            "function": {"arguments": item["arguments"], "name": item["name"]},
            "id": item["call_id"], "type": "function",
        });
        match messages.last_mut().filter(|_| merge_prev) {
            Some(prev) => {
                if !is_arr(prev, "tool_calls") {
                    prev["tool_calls"] = Value::Array(Vec::new());
                }
                if let Some(list) = prev["tool_calls"].as_array_mut() {
                    list.push(call);
                }
            }
            None => messages.push(serde_json::json!({"role": "assistant", "tool_calls": [call]})),
        }
    } else if kind == "function_call_output"
        && is_str(&item, "call_id")
        && (is_str(&item, "output") || is_arr(&item, "output"))
    {
        let content = match &item["output"] {
            Value::Array(outputs) => {
                let mut parts = Vec::new();
                for o in outputs {
                    let mut o = o.clone();
                    match o.get("type").map(|t| t.as_str()) {
                        None => return Err(invalid("Output of tool call missing 'type' field")),
                        Some(Some("input_text")) => o["type"] = "text".into(),
                        Some(Some("input_image")) => {
                            let url = o
                                .get("image_url")
                                .cloned()
                                .ok_or_else(|| invalid("'image_url' is required"))?;
                            o["type"] = "image_url".into();
                            o["image_url"] = serde_json::json!({"url": url});
                        }
                        Some(_) => {
                            return Err(invalid(
                                "Output of tool call should be 'Input text' or 'Input image'",
                            ))
                        }
                    }
                    parts.push(o);
                }
                Value::Array(parts)
            }
            text => text.clone(),
        };
        messages
            .push(serde_json::json!({"content": content, "role": "tool", "tool_call_id": item["call_id"]}));
    } else if kind == "reasoning" && is_arr(&item, "summary") {
        let content = item
            .get("content")
            .and_then(Value::as_array)
            .ok_or_else(|| invalid("item['content'] is not an array"))?;
        let first = content.first().ok_or_else(|| invalid("item['content'] is empty"))?;
        if !is_str(first, "text") {
            return Err(invalid("item['content']['text'] is not a string"));
        }
        let text = first["text"].clone();
        match messages.last_mut().filter(|_| merge_prev) {
            Some(prev) => prev["reasoning_content"] = text,
            None => messages
                .push(serde_json::json!({"role": "assistant", "content": [], "reasoning_content": text})),
        }
    } else {
        return Err(invalid("Cannot determine type of 'item'"));
    }
    Ok(())
}

fn usage(f: &Final) -> Json {
    obj! {
        "input_tokens" => f.tokens_evaluated, "output_tokens" => f.tokens_predicted,
        "total_tokens" => f.tokens_evaluated + f.tokens_predicted,
        "input_tokens_details" => obj! { "cached_tokens" => f.timings.cache_n },
    }
}

fn output_text(text: &str) -> Json {
    obj! {
        "type" => "output_text", "annotations" => Json::Arr(Vec::new()), "logprobs" => Json::Arr(Vec::new()),
        "text" => text,
    }
}

fn in_progress(kind: &'static str, id: &str) -> Event {
    Event::new(
        kind,
        obj! {
            "type" => kind,
            "response" => obj! { "id" => id, "object" => "response", "status" => "in_progress" },
        },
    )
}

/// A reasoning output item (the streamed one has no `status`, as llama-server's).
fn reasoning_item(id: &str, text: &str, status: bool) -> Json {
    let mut item = obj! {
        "id" => id, "summary" => Json::Arr(Vec::new()), "type" => "reasoning",
        "content" => vec![obj! { "text" => text, "type" => "reasoning_text" }], "encrypted_content" => "",
    };
    if status {
        item.set("status", "completed");
    }
    item
}

/// A tool call as a `function_call` output item.
fn call_item(call: &ToolCall, status: &str, arguments: &str) -> Json {
    obj! {
        "id" => format!("fc_{}", call.id), "type" => "function_call", "status" => status,
        "arguments" => arguments, "call_id" => format!("call_{}", call.id), "name" => call.name.as_str(),
    }
}

/// One generation's answer, streamed or whole.
pub struct Stream {
    /// `resp_…`.
    id: String,
    /// `msg_…` and `rs_…`, the output message's and reasoning's ids in the stream.
    message_id: String,
    reasoning_id: String,
    model: String,
    timings_per_token: bool,
    started: bool,
    text_started: bool,
    thinking_started: bool,
    /// The id of the call whose arguments are streaming.
    call_id: String,
    salt: u64,
    chat: ChatState,
}

impl Stream {
    pub fn new(meta: &Meta, salt: u64, chat: ChatState) -> Stream {
        Stream {
            id: format!("resp_{}", apis::random_id(32, salt)),
            message_id: format!("msg_{}", apis::random_id(32, salt ^ 1)),
            reasoning_id: format!("rs_{}", apis::random_id(32, salt ^ 3)),
            model: meta.model.clone(),
            timings_per_token: meta.timings_per_token,
            started: false,
            text_started: false,
            thinking_started: false,
            call_id: String::new(),
            salt,
            chat,
        }
    }

    /// `response.created` and `response.in_progress` before anything else.
    fn start(&mut self, out: &mut Vec<Event>) {
        if !self.started {
            self.started = true;
            out.push(in_progress("response.created", &self.id));
            out.push(in_progress("response.in_progress", &self.id));
        }
    }

    fn reasoning(&mut self, text: &str, out: &mut Vec<Event>) {
        if !self.thinking_started {
            self.thinking_started = true;
            let item = obj! {
                "id" => self.reasoning_id.as_str(), "summary" => Json::Arr(Vec::new()), "type" => "reasoning",
                "content" => Json::Arr(Vec::new()), "encrypted_content" => "", "status" => "in_progress",
            };
            out.push(Event::new(
                "response.output_item.added",
                obj! { "type" => "response.output_item.added", "item" => item },
            ));
        }
        out.push(Event::new(
            "response.reasoning_text.delta",
            obj! { "type" => "response.reasoning_text.delta", "delta" => text, "item_id" => self.reasoning_id.as_str() },
        ));
    }

    fn text(&mut self, text: &str, out: &mut Vec<Event>) {
        let id = self.message_id.as_str();
        if !self.text_started {
            self.text_started = true;
            let item = obj! {
                "content" => Json::Arr(Vec::new()), "id" => id, "role" => "assistant",
                "status" => "in_progress", "type" => "message",
            };
            out.push(Event::new(
                "response.output_item.added",
                obj! { "type" => "response.output_item.added", "item" => item },
            ));
            out.push(Event::new(
                "response.content_part.added",
                obj! {
                    "type" => "response.content_part.added", "item_id" => id,
                    "part" => obj! { "type" => "output_text", "text" => "" },
                },
            ));
        }
        out.push(Event::new(
            "response.output_text.delta",
            obj! { "type" => "response.output_text.delta", "item_id" => id, "delta" => text },
        ));
    }

    /// The events for one piece's changes to the parsed answer.
    fn diff_events(&mut self, diffs: &[Diff], out: &mut Vec<Event>) {
        for d in diffs {
            if !d.reasoning.is_empty() {
                self.reasoning(&d.reasoning, out);
            }
            if !d.content.is_empty() {
                self.text(&d.content, out);
            }
            let Some((_, call)) = &d.tool else { continue };
            if !call.name.is_empty() {
                let item = call_item(call, "in_progress", "");
                out.push(Event::new(
                    "response.output_item.added",
                    obj! { "type" => "response.output_item.added", "item" => item },
                ));
                self.call_id = call.id.clone();
            }
            if !call.arguments.is_empty() {
                out.push(Event::new(
                    "response.function_call_arguments.delta",
                    obj! {
                        "type" => "response.function_call_arguments.delta", "delta" => call.arguments.as_str(),
                        "item_id" => format!("fc_{}", self.call_id),
                    },
                ));
            }
        }
    }
}

impl Render for Stream {
    fn whole(&mut self, f: &Final) -> Result<Json, ApiError> {
        self.chat.update(&f.content, false)?;
        let msg = &self.chat.msg;
        let content = if msg.is_empty() { f.content.as_str() } else { msg.content.as_str() };
        let mut output = Vec::new();
        if !msg.reasoning_content.is_empty() {
            let id = format!("rs_{}", apis::random_id(32, self.salt ^ 4));
            output.push(reasoning_item(&id, &msg.reasoning_content, true));
        }
        if !content.is_empty() {
            output.push(obj! {
                "content" => vec![output_text(content)],
                "id" => format!("msg_{}", apis::random_id(32, self.salt ^ 2)),
                "role" => "assistant", "status" => "completed", "type" => "message",
            });
        }
        output.extend(msg.tool_calls.iter().map(|c| call_item(c, "completed", &c.arguments)));
        let t = super::completion::unix_now();
        Ok(obj! {
            "completed_at" => t, "created_at" => t, "id" => self.id.as_str(), "model" => self.model.as_str(),
            "object" => "response", "output" => output, "status" => "completed", "usage" => usage(f),
        })
    }

    fn partial(&mut self, p: &Partial) -> Result<Vec<Event>, ApiError> {
        let mut out = Vec::new();
        self.start(&mut out);
        let diffs = self.chat.update(&p.text, true)?;
        self.diff_events(&diffs, &mut out);
        if self.timings_per_token {
            if let Some(last) = out.last_mut() {
                last.data.set("timings", super::render::timings(&p.timings));
            }
        }
        Ok(out)
    }

    /// Any text held back until the end goes out as llama-server's last partial would carry it;
    /// the whole text is parsed once more (llama-server sends no deltas for that), then the
    /// `*.done` events — reasoning, text, each call — and `response.completed` with the response
    /// and `timings`.
    fn finish(&mut self, f: &Final) -> Result<Vec<Event>, ApiError> {
        let mut out = Vec::new();
        self.start(&mut out);
        if !f.unsent.is_empty() {
            let diffs = self.chat.update(&f.unsent, true)?;
            self.diff_events(&diffs, &mut out);
        }
        self.chat.update("", false)?;
        let msg = &self.chat.msg;
        let content = if msg.is_empty() { self.chat.text() } else { msg.content.as_str() };
        let mut output = Vec::new();
        if !msg.reasoning_content.is_empty() {
            let item = reasoning_item(&self.reasoning_id, &msg.reasoning_content, false);
            out.push(Event::new(
                "response.output_item.done",
                obj! { "type" => "response.output_item.done", "item" => item.clone() },
            ));
            output.push(item);
        }
        if !content.is_empty() {
            let id = self.message_id.as_str();
            out.push(Event::new(
                "response.output_text.done",
                obj! { "type" => "response.output_text.done", "item_id" => id, "text" => content },
            ));
            out.push(Event::new(
                "response.content_part.done",
                obj! { "type" => "response.content_part.done", "item_id" => id, "part" => output_text(content) },
            ));
            let item = obj! {
                "type" => "message", "status" => "completed", "id" => id,
                "content" => vec![output_text(content)], "role" => "assistant",
            };
            out.push(Event::new(
                "response.output_item.done",
                obj! { "type" => "response.output_item.done", "item" => item.clone() },
            ));
            output.push(item);
        }
        for call in &msg.tool_calls {
            let item = call_item(call, "completed", &call.arguments);
            out.push(Event::new(
                "response.output_item.done",
                obj! { "type" => "response.output_item.done", "item" => item.clone() },
            ));
            output.push(item);
        }
        let response = obj! {
            "id" => self.id.as_str(), "object" => "response", "created_at" => super::completion::unix_now(),
            "status" => "completed", "model" => self.model.as_str(), "output" => output, "usage" => usage(f),
        };
        out.push(Event::new(
            "response.completed",
            obj! { "type" => "response.completed", "response" => response, "timings" => apis::timings(f) },
        ));
        Ok(out)
    }

    fn error(&self, e: &ApiError) -> String {
        super::render::sse(&obj! { "error" => super::error_json(e) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn converts_as_llama_server() {
        let body = json!({
            "model": "x", "instructions": "Be brief.", "max_output_tokens": 5, "temperature": 0,
            "reasoning": {"effort": "low"}, "tools": [{"type": "web_search"}],
            "input": [
                {"role": "user", "content": "Hi"},
                {"type": "message", "role": "assistant", "status": "completed", "content": [{"type": "output_text", "text": "Hello"}]},
                {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "!"}]},
                {"role": "developer", "content": [{"type": "input_text", "text": "Bye"}]},
            ],
        });
        assert_eq!(
            to_chat(&body).unwrap(),
            json!({
                "model": "x", "temperature": 0, "max_tokens": 5, "reasoning_effort": "low",
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
                    {"role": "assistant", "content": [{"type": "text", "text": "Hello"}, {"type": "text", "text": "!"}]},
                    {"role": "developer", "content": [{"type": "text", "text": "Bye"}]},
                ],
            })
        );
        let chat = to_chat(&json!({"input": "Hi"})).unwrap();
        assert_eq!(chat, json!({"messages": [{"role": "user", "content": "Hi"}]}));
        let err = |b: Value| to_chat(&b).unwrap_err().message;
        assert_eq!(err(json!({"max_output_tokens": 4})), "'input' is required");
        assert_eq!(err(json!([1])), "'input' is required");
        assert_eq!(err(json!({"input": 5})), "'input' must be a string or array of objects");
        assert_eq!(err(json!({"input": [{"foo": 1}]})), "Cannot determine type of 'item'");
        assert_eq!(err(json!({"input": [7]})), "Cannot determine type of 'item'");
        assert_eq!(
            err(json!({"input": "x", "previous_response_id": "r"})),
            "llama.cpp does not support 'previous_response_id'."
        );
        assert_eq!(
            err(json!({"input": [{"role": "user", "content": [{"type": "input_file"}]}]})),
            "'input_file' is not supported by llamacpp at this moment"
        );
        assert_eq!(err(json!({"input": "x", "tools": 1})), "'tools' must be an array of objects");
    }
}
