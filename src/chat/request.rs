//! A chat request with tools rendered as llama.cpp 11434 renders it (`common_chat_templates_apply`):
//! messages rebuilt in llama.cpp's OpenAI form (fixed key order, `content` always present, tool
//! calls with string arguments), its per-template fixes (developer → system, a system message
//! folded into the next one, arguments turned into objects for templates that index them), the
//! tools as `{type, function: {name, description, parameters}}`, and the template kwargs.

use serde_json::{json, Map, Value};

use super::jinja::Extra;
use super::parse::{self, OutputParser, ParseOptions};
use super::{ChatError, ChatTemplates};

/// `tool_choice`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ToolChoice {
    #[default]
    Auto,
    None,
    Required,
}

impl ToolChoice {
    pub fn parse(s: &str) -> Result<ToolChoice, ChatError> {
        match s {
            "auto" => Ok(ToolChoice::Auto),
            "none" => Ok(ToolChoice::None),
            "required" => Ok(ToolChoice::Required),
            _ => Err(ChatError::Request(format!("Invalid tool_choice: {s}"))),
        }
    }
}

/// `--reasoning-format` / the request's `reasoning_format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReasoningFormat {
    None,
    Auto,
    #[default]
    Deepseek,
    DeepseekLegacy,
}

impl ReasoningFormat {
    pub fn parse(s: &str) -> Result<ReasoningFormat, String> {
        match s {
            "none" => Ok(ReasoningFormat::None),
            "auto" => Ok(ReasoningFormat::Auto),
            "deepseek" => Ok(ReasoningFormat::Deepseek),
            "deepseek-legacy" => Ok(ReasoningFormat::DeepseekLegacy),
            _ => Err(format!("Unknown reasoning format: {s}")),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ReasoningFormat::None => "none",
            ReasoningFormat::Auto => "auto",
            ReasoningFormat::Deepseek => "deepseek",
            ReasoningFormat::DeepseekLegacy => "deepseek-legacy",
        }
    }
}

/// What a chat request gives the template.
#[derive(Debug, Clone, Default)]
pub struct ChatRequest {
    /// OpenAI messages, as the client sent them.
    pub messages: Vec<Value>,
    /// OpenAI function tools, as the client sent them.
    pub tools: Vec<Value>,
    pub enable_thinking: bool,
    /// Template kwargs (server's, then the request's), values as JSON.
    pub kwargs: Vec<(String, Value)>,
    pub add_generation_prompt: bool,
    pub tool_choice: ToolChoice,
    pub parallel_tool_calls: bool,
    pub reasoning_format: ReasoningFormat,
}

/// A request made ready: its prompt, and the parser for what the model answers.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub rendered: Rendered,
    pub parser: OutputParser,
    /// Whether tool calls are looked for (tools given, `tool_choice` not "none").
    pub parse_tools: bool,
}

/// The rendered prompt and what the template adds to open the assistant's turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub prompt: String,
    pub generation_prompt: String,
}

fn invalid(what: &str, reason: String) -> ChatError {
    ChatError::Request(format!("Failed to parse {what}: {reason}"))
}

/// One message in llama.cpp's form (`common_chat_msg::to_json_oaicompat`).
fn message(m: &Value, text_of: &dyn Fn(&Value) -> Result<String, ChatError>) -> Result<Value, ChatError> {
    let dump = || m.to_string();
    let role = m.get("role").and_then(Value::as_str).unwrap_or_default();
    let mut out = Map::new();
    out.insert("role".into(), json!(role));
    let content = match m.get("content") {
        None | Some(Value::Null) => String::new(),
        Some(c) => text_of(c)?,
    };
    out.insert("content".into(), json!(content));
    let str_field = |k: &str| m.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
    if let Some(r) = str_field("reasoning_content") {
        out.insert("reasoning_content".into(), json!(r));
    }
    if let Some(n) = str_field("name") {
        out.insert("name".into(), json!(n));
    }
    if let Some(id) = str_field("tool_call_id") {
        out.insert("tool_call_id".into(), json!(id));
    }
    let calls = match m.get("tool_calls") {
        None | Some(Value::Null) => &[][..],
        Some(Value::Array(calls)) => calls.as_slice(),
        Some(_) => {
            return Err(invalid("messages", format!("Expected 'tool_calls' to be an array, got {}", dump())))
        }
    };
    if !calls.is_empty() {
        let mut list = Vec::new();
        for call in calls {
            match call.get("type").and_then(Value::as_str) {
                None => return Err(invalid("messages", format!("Missing tool call type: {call}"))),
                Some("function") => {}
                Some(_) => return Err(invalid("messages", format!("Unsupported tool call type: {call}"))),
            }
            let function = call
                .get("function")
                .ok_or_else(|| invalid("messages", format!("Missing tool call function: {call}")))?;
            let name = function
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| invalid("messages", format!("Missing tool call name: {call}")))?;
            let arguments = match function.get("arguments") {
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
                None => "null".to_string(),
            };
            let mut tc = Map::new();
            tc.insert("type".into(), json!("function"));
            tc.insert("function".into(), json!({ "name": name, "arguments": arguments }));
            if let Some(id) = call.get("id").and_then(Value::as_str).filter(|s| !s.is_empty()) {
                tc.insert("id".into(), json!(id));
            }
            list.push(Value::Object(tc));
        }
        out.insert("tool_calls".into(), Value::Array(list));
    }
    Ok(Value::Object(out))
}

/// The tools as llama.cpp hands them to templates; a tool that is not a function is an error.
pub fn normalize_tools(tools: &[Value]) -> Result<Vec<Value>, ChatError> {
    let all = || serde_json::to_string_pretty(tools).unwrap_or_default();
    let mut out = Vec::new();
    for tool in tools {
        let bad = |why: &str| invalid("tools", format!("{why}: {tool}; tools = {}", all()));
        match tool.get("type") {
            None => return Err(bad("Missing tool type")),
            Some(Value::String(t)) if t == "function" => {}
            Some(_) => return Err(bad("Unsupported tool type")),
        }
        let function = tool.get("function").ok_or_else(|| bad("Missing tool function"))?;
        let name = function.get("name").and_then(Value::as_str).ok_or_else(|| bad("Missing tool name"))?;
        let description = function.get("description").and_then(Value::as_str).unwrap_or_default();
        let parameters = function.get("parameters").cloned().unwrap_or_else(|| json!({}));
        out.push(json!({
            "type": "function",
            "function": { "name": name, "description": description, "parameters": parameters },
        }));
    }
    Ok(out)
}

/// The names of the (normalized) tools, in order.
pub fn tool_names(tools: &[Value]) -> Vec<String> {
    tools.iter().filter_map(|t| t["function"]["name"].as_str().map(String::from)).collect()
}

impl ChatTemplates {
    /// Render `req` and build the parser for the answer. Tools for a template that writes tool
    /// calls in a layout rs-llama does not parse are refused (never parsed wrongly).
    pub fn prepare(
        &self,
        req: &ChatRequest,
        text_of: &dyn Fn(&Value) -> Result<String, ChatError>,
    ) -> Result<Prepared, ChatError> {
        let tools = normalize_tools(&req.tools)?;
        let layout = parse::detect(self.source());
        let template_calls = self.caps().contains(&("supports_tool_calls", true));
        let parse_tools = !tools.is_empty() && req.tool_choice != ToolChoice::None && template_calls;
        if parse_tools && layout.tools.is_none() {
            return Err(ChatError::Request(format!(
                "tool calls are not supported yet by rs-llama for this chat template ({}); it parses the Hermes/Qwen <tool_call>, Llama 3.x JSON, Mistral Nemo [TOOL_CALLS] and DeepSeek R1/V3.1 layouts",
                layout.family
            )));
        }
        let rendered = self.apply_request(req, text_of)?;
        let opts = ParseOptions {
            extract_reasoning: req.reasoning_format != ReasoningFormat::None,
            tools: if parse_tools { tool_names(&tools) } else { Vec::new() },
            parallel_tool_calls: req.parallel_tool_calls,
            require_tools: req.tool_choice == ToolChoice::Required,
            generation_prompt: rendered.generation_prompt.clone(),
        };
        let parser = parse::build(&layout, &opts);
        Ok(Prepared { rendered, parser, parse_tools })
    }

    /// The prompt for `req` and the generation prompt (the text `add_generation_prompt` adds,
    /// found as llama.cpp finds it: what the rendering with it has past the common prefix of the
    /// rendering without it). `text_of` turns a message's `content` into text.
    pub fn apply_request(
        &self,
        req: &ChatRequest,
        text_of: &dyn Fn(&Value) -> Result<String, ChatError>,
    ) -> Result<Rendered, ChatError> {
        let caps: std::collections::HashMap<_, _> = self.caps().into_iter().collect();
        let mut messages = req.messages.iter().map(|m| message(m, text_of)).collect::<Result<Vec<_>, _>>()?;
        if !self.source().contains("<|channel|>") {
            for m in &mut messages {
                if m["role"] == "developer" {
                    m["role"] = json!("system");
                }
            }
        }
        if !caps["supports_system_role"] && messages.first().is_some_and(|m| m["role"] == "system") {
            let first = messages.remove(0);
            match messages.first_mut() {
                Some(next) => {
                    let joined = format!(
                        "{}\n{}",
                        first["content"].as_str().unwrap_or_default(),
                        next["content"].as_str().unwrap_or_default()
                    );
                    next["content"] = json!(joined);
                }
                None => {
                    crate::log_warn!("Removing system prompt due to template not supporting system role\n")
                }
            }
        }
        if caps["supports_object_arguments"] {
            for m in &mut messages {
                for call in m.get_mut("tool_calls").and_then(Value::as_array_mut).into_iter().flatten() {
                    let args = &mut call["function"]["arguments"];
                    if let Some(text) = args.as_str() {
                        *args = serde_json::from_str(text).map_err(|e| {
                            ChatError::Request(format!("Failed to parse tool call arguments as JSON: {e}"))
                        })?;
                    }
                }
            }
        }
        let tools = normalize_tools(&req.tools)?;
        let extra = Extra {
            enable_thinking: req.enable_thinking,
            tools: (!tools.is_empty()).then(|| Value::Array(tools)),
            kwargs: req.kwargs.clone(),
        };
        let messages = Value::Array(messages);
        let with = self.apply_json(&messages, req.add_generation_prompt, &extra)?;
        let (without, with_gp) = if req.add_generation_prompt {
            (self.apply_json(&messages, false, &extra)?, with.clone())
        } else {
            (with.clone(), self.apply_json(&messages, true, &extra)?)
        };
        let common = without.bytes().zip(with_gp.bytes()).take_while(|(a, b)| a == b).count();
        // Back to a character boundary: the two renderings may part inside a character.
        let mut cut = common;
        while !with_gp.is_char_boundary(cut) {
            cut -= 1;
        }
        Ok(Rendered { prompt: with, generation_prompt: with_gp[cut..].to_string() })
    }
}
