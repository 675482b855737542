//! The chat side of a chat request, as llama-server 11434 reads and answers it: the body's
//! `messages`, `tools`, `tool_choice`, `parallel_tool_calls`, `reasoning_format`,
//! `chat_template_kwargs` and `reasoning_effort` into the template ([`read`]), and the model's text
//! parsed back into a message — whole, or as the deltas a stream sends when the growing text is
//! parsed again after each piece ([`ChatState`]).

use serde_json::Value;

use super::json::{obj, Json};
use super::params::loose_bool;
use super::Loaded;
use crate::chat::parse::{self, ChatMsg, OutputParser, ParseOptions, ToolCall};
use crate::chat::request::{ChatRequest, ReasoningFormat, ToolChoice};
use crate::chat::{ChatError, ChatMessage};
use crate::server::api::{ApiError, ErrorKind};
use crate::server::args::ServerConfig;

/// A chat request made ready: the prompt and how to read the answer.
#[derive(Debug, Clone)]
pub struct ChatPrompt {
    pub prompt: String,
    pub parser: OutputParser,
    pub reasoning_format: ReasoningFormat,
    /// The generation prompt (llama-server's `generation_prompt` setting).
    pub generation_prompt: String,
    /// The template's markers, to be written out when generated as special tokens.
    pub preserved: Vec<String>,
}

fn bad(e: ChatError) -> ApiError {
    ApiError::invalid(e.to_string())
}

/// A string field read loosely (llama-server's `json_value`: another type is the default).
fn loose_str<'a>(body: &'a Value, name: &str, default: &'a str) -> &'a str {
    body.get(name).and_then(Value::as_str).unwrap_or(default)
}

/// The request's template inputs and answer parser. `text_of` turns a message's content into
/// text; `msgs` are the messages already checked by the caller.
pub fn read(
    body: &Value,
    loaded: &Loaded,
    cfg: &ServerConfig,
    text_of: &dyn Fn(&Value) -> Result<String, ChatError>,
) -> Result<ChatPrompt, ApiError> {
    let templates = &loaded.templates;
    let tools = match body.get("tools") {
        Some(Value::Array(t)) => t.clone(),
        _ => Vec::new(),
    };
    let tool_choice = loose_str(body, "tool_choice", "auto");
    if !templates.is_jinja() {
        if !tools.is_empty() {
            return Err(ApiError::invalid("tools param requires --jinja flag"));
        }
        if tool_choice != "auto" {
            return Err(ApiError::invalid("tool_choice param requires --jinja flag"));
        }
    }
    let tool_choice = ToolChoice::parse(tool_choice).map_err(bad)?;
    if !tools.is_empty() && tool_choice != ToolChoice::None && body.get("grammar").is_some() {
        return Err(ApiError::invalid("Cannot use custom grammar constraints with tools."));
    }
    let reasoning_format = match body.get("reasoning_format") {
        None => cfg.reasoning_format,
        Some(Value::String(s)) => ReasoningFormat::parse(s).map_err(ApiError::invalid)?,
        Some(v) => return Err(ApiError::invalid(super::params::type_error("string", v))),
    };
    // The server's kwargs, then the request's (values kept as JSON).
    let mut kwargs = cfg.chat_template_kwargs.clone();
    if let Some(Value::Object(map)) = body.get("chat_template_kwargs") {
        for (k, v) in map {
            kwargs.insert(k.clone(), v.to_string());
        }
    }
    let mut enable_thinking = cfg.enable_reasoning != 0 && supports_thinking(templates.source());
    match kwargs.get("enable_thinking").map(String::as_str) {
        Some("true") => enable_thinking = true,
        Some("false") => enable_thinking = false,
        Some(v) if v.starts_with('"') => {
            return Err(ApiError::invalid(
                "invalid type for \"enable_thinking\" (expected boolean, got string)",
            ))
        }
        _ => {}
    }
    if body.get("reasoning_effort").is_some() {
        match loose_str(body, "reasoning_effort", "") {
            "none" => {
                enable_thinking = false;
                kwargs.remove("reasoning_effort");
            }
            "" => {}
            effort => {
                kwargs.insert("reasoning_effort".into(), Value::from(effort).to_string());
            }
        }
    }
    let add_generation_prompt = loose_bool(body, "add_generation_prompt", true);
    let caps: std::collections::HashMap<_, _> = templates.caps().into_iter().collect();
    let messages = body.get("messages").and_then(Value::as_array).cloned().unwrap_or_default();
    if !templates.is_jinja() {
        // The built-in formats see roles and text only, and nothing is parsed out of the answer.
        let msgs = messages
            .iter()
            .map(|m| {
                let text = m.get("content").filter(|c| !c.is_null()).map(text_of).transpose()?;
                Ok(ChatMessage::new(loose_str(m, "role", ""), &text.unwrap_or_default()))
            })
            .collect::<Result<Vec<_>, ChatError>>()
            .map_err(bad)?;
        let prompt = templates.apply(&msgs, add_generation_prompt).map_err(bad)?;
        let parser = parse::build(&parse::Layout::default(), &ParseOptions::default());
        return Ok(ChatPrompt {
            prompt,
            parser,
            reasoning_format,
            generation_prompt: String::new(),
            preserved: Vec::new(),
        });
    }
    let req = ChatRequest {
        messages,
        tools,
        enable_thinking,
        kwargs: kwargs
            .iter()
            .map(|(k, v)| serde_json::from_str(v).map(|v| (k.clone(), v)))
            .collect::<Result<_, _>>()
            .map_err(|e| ApiError::invalid(format!("chat_template_kwargs: {e}")))?,
        add_generation_prompt,
        tool_choice,
        parallel_tool_calls: body
            .get("parallel_tool_calls")
            .and_then(Value::as_bool)
            .unwrap_or(caps["supports_parallel_tool_calls"]),
        reasoning_format,
    };
    let prepared = templates.prepare(&req, text_of).map_err(bad)?;
    Ok(ChatPrompt {
        prompt: prepared.rendered.prompt,
        parser: prepared.parser,
        reasoning_format,
        generation_prompt: prepared.rendered.generation_prompt,
        preserved: parse::detect(templates.source()).markers(),
    })
}

/// llama-server turns thinking on (with `--reasoning auto`) for templates its analysis finds
/// thinking in; rs-llama: the families it parses thinking for, and templates that read
/// `enable_thinking` at all (for the others the value changes nothing).
pub fn supports_thinking(src: &str) -> bool {
    parse::detect(src).reasoning.is_some() || src.contains("enable_thinking")
}

/// One change between two parses of the growing answer (llama.cpp's `common_chat_msg_diff`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diff {
    pub reasoning: String,
    pub content: String,
    /// The tool call this change is to, with its new name/id (when they changed) and the
    /// arguments' added text.
    pub tool: Option<(usize, ToolCall)>,
}

/// What `last` grew by to become `current`.
fn grown(last: &str, current: &str) -> Result<String, String> {
    if let Some(rest) = current.strip_prefix(last) {
        return Ok(rest.to_string());
    }
    if last.starts_with(current) {
        // The last piece ended on part of a stop word that the final text has dropped.
        return Ok(String::new());
    }
    Err(format!("Invalid diff: '{last}' not found at start of '{current}'"))
}

/// The changes from `prv` to `new`.
pub fn diffs(prv: &ChatMsg, new: &ChatMsg) -> Result<Vec<Diff>, String> {
    let mut out = Vec::new();
    if prv.reasoning_content != new.reasoning_content {
        out.push(Diff {
            reasoning: grown(&prv.reasoning_content, &new.reasoning_content)?,
            ..Diff::default()
        });
    }
    if prv.content != new.content {
        out.push(Diff { content: grown(&prv.content, &new.content)?, ..Diff::default() });
    }
    if new.tool_calls.len() < prv.tool_calls.len() {
        return Err("Invalid diff: now finding less tool calls!".into());
    }
    if let Some(last) = prv.tool_calls.len().checked_sub(1) {
        let (p, n) = (&prv.tool_calls[last], &new.tool_calls[last]);
        if p.name != n.name && !p.name.is_empty() && !n.name.is_empty() && !n.name.starts_with(&p.name) {
            return Err("Invalid diff: tool call mismatch!".into());
        }
        let args = grown(&p.arguments, &n.arguments)?;
        let renamed = p.id != n.id || p.name != n.name;
        if !args.is_empty() || renamed {
            let mut call = ToolCall { arguments: args, ..ToolCall::default() };
            if renamed {
                (call.id, call.name) = (n.id.clone(), n.name.clone());
            }
            out.push(Diff { tool: Some((last, call)), ..Diff::default() });
        }
    }
    for (i, call) in new.tool_calls.iter().enumerate().skip(prv.tool_calls.len()) {
        out.push(Diff { tool: Some((i, call.clone())), ..Diff::default() });
    }
    Ok(out)
}

/// One answer being parsed: its text so far, the message it last parsed to, and the ids given
/// to its tool calls (kept, so that a stream and its final message agree).
#[derive(Debug, Clone)]
pub struct ChatState {
    parser: OutputParser,
    text: String,
    pub msg: ChatMsg,
    ids: Vec<String>,
    salt: u64,
}

impl ChatState {
    pub fn new(prompt: &ChatPrompt, salt: u64) -> ChatState {
        ChatState {
            parser: prompt.parser.clone(),
            text: String::new(),
            msg: ChatMsg::default(),
            ids: Vec::new(),
            salt,
        }
    }

    /// Add `piece` and parse the text again (`is_partial`: more is to come); the changes.
    pub fn update(&mut self, piece: &str, is_partial: bool) -> Result<Vec<Diff>, ApiError> {
        self.text += piece;
        let server_error = |e: String| ApiError::new(ErrorKind::Server, e);
        let mut new = self.parser.parse(&self.text, is_partial).map_err(server_error)?;
        if new.is_empty() {
            return Ok(Vec::new());
        }
        for (i, call) in new.tool_calls.iter_mut().enumerate() {
            if self.ids.len() <= i {
                let id = if call.id.is_empty() {
                    super::completion::random_id(self.salt ^ ((i as u64) << 48))
                } else {
                    call.id.clone()
                };
                self.ids.push(id);
            }
            call.id = self.ids[i].clone();
        }
        let out = diffs(&self.msg, &new).map_err(server_error)?;
        self.msg = new;
        Ok(out)
    }

    /// The whole text so far.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The message to answer with: the parsed one, or the raw text when nothing was parsed.
    pub fn message(&self) -> Json {
        if self.msg.is_empty() {
            return obj! { "role" => "assistant", "content" => self.text.as_str() };
        }
        Json::from(&self.msg.to_oai_json())
    }
}

/// A change as a chat-completion-chunk `delta` (llama-server's `server_chat_msg_diff_to_json_oaicompat`).
pub fn delta_json(d: &Diff) -> Json {
    let mut delta = Json::obj();
    if !d.reasoning.is_empty() {
        delta.set("reasoning_content", d.reasoning.as_str());
    }
    if !d.content.is_empty() {
        delta.set("content", d.content.as_str());
    }
    if let Some((index, call)) = &d.tool {
        let mut tc = obj! { "index" => *index };
        if !call.id.is_empty() {
            tc.set("id", call.id.as_str());
            tc.set("type", "function");
        }
        if !call.name.is_empty() || !call.arguments.is_empty() {
            let mut f = Json::obj();
            if !call.name.is_empty() {
                f.set("name", call.name.as_str());
            }
            if !call.arguments.is_empty() {
                f.set("arguments", call.arguments.as_str());
            }
            tc.set("function", f);
        }
        delta.set("tool_calls", Json::Arr(vec![tc]));
    }
    delta
}
