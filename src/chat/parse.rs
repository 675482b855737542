//! The model's answer split into reasoning, content and tool calls, as llama-server 11434 splits
//! it: the chat template says where thinking and tool calls go ([`detect`]), a PEG parser is
//! built from that for the request's tools ([`build`]), and the text — with the template's
//! generation prompt in front, as llama.cpp parses it — is run through it and its tagged spans
//! collected ([`parse`]).
//!
//! llama.cpp finds a template's layout by rendering probe chats and diffing them; rs-llama knows
//! the layouts of the template families it covers (checked against llama.cpp on their real
//! templates, tests/fixtures/chat_tools) and refuses tools for any other template rather than
//! guess.

use super::peg::{is_c_space, Arena, Id, Parsed, Status};

const REASONING: &str = "reasoning";
const CONTENT: &str = "content";
const TOOL_OPEN: &str = "tool-open";
const TOOL_CLOSE: &str = "tool-close";
const TOOL_NAME: &str = "tool-name";
const TOOL_ARGS: &str = "tool-args";
const TOOL_ID: &str = "tool-id";

pub use super::family::{detect, Calls, JsonCalls, Layout, TagCalls};

/// The request's side of the parser.
#[derive(Debug, Clone, Default)]
pub struct ParseOptions {
    /// Whether thinking goes to `reasoning_content` (every reasoning format but "none").
    pub extract_reasoning: bool,
    /// Names of the request's function tools, in order; calls are parsed only when non-empty.
    pub tools: Vec<String>,
    pub parallel_tool_calls: bool,
    /// `tool_choice: "required"`.
    pub require_tools: bool,
    /// The template's generation prompt (what `add_generation_prompt` adds), parsed in front of
    /// the model's text as llama.cpp does.
    pub generation_prompt: String,
}

/// One parsed tool call; `arguments` is the JSON text the model wrote (braces closed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ToolCall {
    pub name: String,
    pub arguments: String,
    pub id: String,
}

/// The assistant message parsed out of the model's text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChatMsg {
    pub content: String,
    pub reasoning_content: String,
    pub tool_calls: Vec<ToolCall>,
}

impl ChatMsg {
    pub fn is_empty(&self) -> bool {
        self.content.is_empty() && self.reasoning_content.is_empty() && self.tool_calls.is_empty()
    }

    /// The message as llama-server answers it (`common_chat_msg::to_json_oaicompat`):
    /// `content` always, `reasoning_content` and `tool_calls` when there are some, a call's `id`
    /// when it has one.
    pub fn to_oai_json(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        m.insert("role".into(), "assistant".into());
        m.insert("content".into(), self.content.clone().into());
        if !self.reasoning_content.is_empty() {
            m.insert("reasoning_content".into(), self.reasoning_content.clone().into());
        }
        if !self.tool_calls.is_empty() {
            let calls = self.tool_calls.iter().map(|c| {
                let mut tc = serde_json::Map::new();
                tc.insert("type".into(), "function".into());
                tc.insert("function".into(), serde_json::json!({ "name": c.name, "arguments": c.arguments }));
                if !c.id.is_empty() {
                    tc.insert("id".into(), c.id.clone().into());
                }
                serde_json::Value::Object(tc)
            });
            m.insert("tool_calls".into(), calls.collect());
        }
        serde_json::Value::Object(m)
    }
}

/// A parser built for one request.
#[derive(Debug, Clone)]
pub struct OutputParser {
    arena: Arena,
    prompt: String,
}

/// llama.cpp's `optspace`: the tag's surrounding whitespace, one optional character at a time.
fn optspace(a: &mut Arena, tag: &str) -> Id {
    let core = tag.trim_matches(|c: char| c.is_ascii() && is_c_space(c as u8));
    let lead = &tag[..tag.find(core).unwrap_or(0)];
    let trail = &tag[lead.len() + core.len()..];
    let mut parts = Vec::new();
    for c in lead.bytes() {
        let l = a.lit(&(c as char).to_string());
        parts.push(a.optional(l));
    }
    parts.push(a.lit(core));
    for c in trail.bytes() {
        let l = a.lit(&(c as char).to_string());
        parts.push(a.optional(l));
    }
    a.seq(&parts)
}

pub(super) fn trim_space(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_ascii() && is_c_space(c as u8))
}

/// The parser for `layout` and the request's options (llama.cpp's autoparser `build_parser`).
pub fn build(layout: &Layout, opts: &ParseOptions) -> OutputParser {
    let mut a = Arena::default();
    let extracting = opts.extract_reasoning && layout.reasoning.is_some();
    let reasoning = match layout.reasoning {
        Some((start, end)) if extracting => {
            let open = optspace(&mut a, start);
            let until = a.until(&[trim_space(end)]);
            let body = a.tag(REASONING, until);
            let close = optspace(&mut a, end);
            let block = a.seq(&[open, body, close]);
            a.optional(block)
        }
        _ => a.eps(),
    };
    let mut pure_content = layout.reasoning.is_none();
    let body = match &layout.tools {
        Some(calls) if !opts.tools.is_empty() => {
            pure_content = false;
            match calls {
                Calls::Json(c) => json_tools(&mut a, c, opts, reasoning),
                Calls::Tagged(c) => tag_tools(&mut a, c, opts, reasoning),
            }
        }
        _ => {
            let rest = a.rest();
            let content = a.tag(CONTENT, rest);
            let end = a.end();
            a.seq(&[reasoning, content, end])
        }
    };
    // The generation prompt up to the thinking tag it may end with (that tag is the reasoning
    // parser's to match).
    let gp = &opts.generation_prompt;
    let prefix = match layout.reasoning.map(|(s, _)| trim_space(s)).filter(|s| !s.is_empty()) {
        _ if gp.is_empty() => a.eps(),
        Some(start) => a.lit(&gp[..gp.find(start).unwrap_or(gp.len())]),
        None => a.lit(gp),
    };
    let root = if pure_content { a.seq(&[prefix, body]) } else { a.spaced(prefix, body) };
    a.set_root(root);
    OutputParser { arena: a, prompt: opts.generation_prompt.clone() }
}

/// Tool calls written as JSON objects (llama.cpp's `JSON_NATIVE` layout with flat keys: the
/// name, the arguments, then the id if the family writes one — each key required in that order,
/// the id's value optional).
fn json_tools(a: &mut Arena, calls: &JsonCalls, opts: &ParseOptions, reasoning: Id) -> Id {
    let (ws, colon, comma, quote) = (a.space(), a.lit(":"), a.lit(","), a.lit("\""));
    let mut choices = Vec::new();
    for name in &opts.tools {
        let open = a.lit("{");
        let open = marker(a, TOOL_OPEN, open);
        let key = a.lit("\"name\"");
        let lit = a.lit(name);
        let fname = marker(a, TOOL_NAME, lit);
        let quoted = a.seq(&[quote, fname, quote]);
        let quoted = a.atomic(quoted);
        let name_part = a.seq(&[key, ws, colon, ws, quoted]);
        let args_key = a.lit(&format!("\"{}\"", calls.args_field));
        let json = a.json();
        let args = a.tag(TOOL_ARGS, json);
        let args_part = a.seq(&[args_key, ws, colon, ws, args]);
        let mut parts = vec![open, ws, name_part, ws, comma, ws, args_part];
        if let Some(field) = calls.id_field {
            let key = a.lit(&format!("\"{field}\""));
            let text = a.string_content();
            let text = marker(a, TOOL_ID, text);
            let string = a.seq(&[quote, text, quote]);
            let number = a.json_number();
            let number = marker(a, TOOL_ID, number);
            let value = a.choice(&[string, number]);
            let id = a.seq(&[key, ws, colon, ws, value]);
            let id = a.atomic(id);
            let id = a.optional(id);
            parts.extend([ws, comma, ws, id]);
        }
        let close = a.lit("}");
        let close = marker(a, TOOL_CLOSE, close);
        parts.extend([ws, close]);
        choices.push(a.seq(&parts));
    }
    let one = a.choice(&choices);
    let mut calls_p = one;
    if opts.parallel_tool_calls {
        let more = a.seq(&[ws, comma, ws, one]);
        let more = a.repeat(more, 0, None);
        calls_p = a.seq(&[one, more]);
    }
    if calls.array_wrapped {
        let (open, close) = (a.lit("["), a.lit("]"));
        calls_p = a.seq(&[open, ws, calls_p, ws, close]);
    }
    let (start, end) = (a.lit(calls.start), a.lit(calls.end));
    let section = a.seq(&[start, ws, calls_p, ws, end]);
    let section = if opts.require_tools { section } else { a.optional(section) };
    let (tools_p, tool_start) = if calls.per_call {
        let each = a.seq(&[section, ws]);
        (a.repeat(each, 1, None), calls.start)
    } else {
        (section, if calls.start.is_empty() { "{" } else { calls.start })
    };
    let until = a.until(&[tool_start]);
    let content = a.tag(CONTENT, until);
    let content = a.optional(content);
    let end = a.end();
    a.seq(&[reasoning, content, tools_p, end])
}

/// Tool calls as tags around the name and JSON arguments (llama.cpp's `TAG_WITH_JSON` layout).
fn tag_tools(a: &mut Arena, calls: &TagCalls, opts: &ParseOptions, reasoning: Id) -> Id {
    let ws = a.space();
    let mut choices = Vec::new();
    for name in &opts.tools {
        let (prefix, suffix, lit) = (a.lit(calls.name_prefix), a.lit(calls.name_suffix), a.lit(name));
        let fname = marker(a, TOOL_NAME, lit);
        let open = a.seq(&[prefix, fname, suffix]);
        let open = marker(a, TOOL_OPEN, open);
        let json = a.json();
        let args = a.tag(TOOL_ARGS, json);
        let mut call = a.seq(&[open, ws, args]);
        if !calls.close.is_empty() {
            let close = a.lit(calls.close);
            let close = marker(a, TOOL_CLOSE, close);
            call = a.seq(&[call, ws, close]);
        } else {
            // Closed where the call's end marker is seen (not consumed here).
            let end = a.lit(calls.call_end);
            let end = a.peek(end);
            let close = marker(a, TOOL_CLOSE, end);
            call = a.seq(&[call, close]);
        }
        // Without a name suffix the name alone does not show the call has begun.
        if calls.name_suffix.is_empty() {
            call = a.atomic(call);
        }
        choices.push(call);
    }
    let one = a.choice(&choices);
    let (start, end) = (a.lit(calls.call_start), a.lit(calls.call_end));
    let wrapped = a.seq(&[start, one, end]);
    let mut tool_calls = wrapped;
    if opts.parallel_tool_calls {
        let more = a.seq(&[ws, wrapped]);
        let more = a.repeat(more, 0, None);
        tool_calls = a.seq(&[wrapped, more]);
    }
    let section_end = if calls.section_end.is_empty() { a.end() } else { a.lit(calls.section_end) };
    let section_start = a.lit(calls.section_start);
    tool_calls = a.seq(&[section_start, ws, tool_calls, ws, section_end]);
    if !opts.require_tools {
        tool_calls = a.optional(tool_calls);
    }
    let until = a.until(&[calls.section_start]);
    let content = a.tag(CONTENT, until);
    let content = a.optional(content);
    let end = a.end();
    a.seq(&[reasoning, content, tool_calls, end])
}

/// A call's open, close, name or id tag: all or nothing (llama.cpp's builder makes these atomic,
/// so a name cut short by the end of the text is not a name yet).
fn marker(a: &mut Arena, tag: &'static str, p: Id) -> Id {
    let t = a.tag(tag, p);
    a.atomic(t)
}

/// What llama.cpp says when the final text does not fit the parser.
pub fn mismatch_error() -> String {
    "The model produced output that does not match the expected peg-native format".to_string()
}

impl OutputParser {
    /// The message in `text` (the model's output so far). A final text that does not fit is an
    /// error; a partial one that does not (yet) fit is an empty message.
    pub fn parse(&self, text: &str, is_partial: bool) -> Result<ChatMsg, String> {
        let input = format!("{}{text}", self.prompt);
        let parsed = self.arena.parse(&input);
        if parsed.status == Status::Fail {
            return if is_partial && parsed.end > 0 { Ok(ChatMsg::default()) } else { Err(mismatch_error()) };
        }
        Ok(map(&parsed, input.as_bytes()))
    }
}

/// Unclosed `{` outside strings.
fn brace_depth(s: &str) -> i32 {
    let (mut depth, mut in_string, mut escaped) = (0, false, false);
    for c in s.bytes() {
        if escaped {
            escaped = false;
        } else if c == b'\\' && in_string {
            escaped = true;
        } else if c == b'"' {
            in_string = !in_string;
        } else if !in_string && c == b'{' {
            depth += 1;
        } else if !in_string && c == b'}' {
            depth -= 1;
        }
    }
    depth
}

fn trim_trailing(s: &str) -> &str {
    s.trim_end_matches(|c: char| c.is_ascii() && is_c_space(c as u8))
}

/// Where the call being read lives: not yet named (pending), or already in the message.
enum Current {
    None,
    Pending,
    Listed(usize),
}

/// The tagged spans → the message (llama.cpp's `common_chat_peg_mapper`).
fn map(parsed: &Parsed, input: &[u8]) -> ChatMsg {
    let mut msg = ChatMsg::default();
    let mut pending: Option<ToolCall> = None;
    let mut current = Current::None;
    let mut args_buffer = String::new();
    parsed.visit(&mut |node| {
        let text = String::from_utf8_lossy(input.get(node.start..node.end).unwrap_or_default()).into_owned();
        match node.tag {
            REASONING => msg.reasoning_content += &text,
            CONTENT => msg.content += &text,
            TOOL_OPEN => {
                pending = Some(ToolCall::default());
                current = Current::Pending;
                args_buffer.clear();
            }
            TOOL_NAME => {
                let call = match current {
                    Current::Pending => pending.as_mut(),
                    Current::Listed(i) => msg.tool_calls.get_mut(i),
                    Current::None => None,
                };
                if let Some(call) = call {
                    call.name = trim_trailing(&text).to_string();
                    if !args_buffer.is_empty() {
                        call.arguments = std::mem::take(&mut args_buffer);
                    } else if call.arguments.is_empty() {
                        call.arguments = "{".to_string();
                    }
                    // Listed as soon as it has a name, so that a stream can show it.
                    if let Some(p) = pending.take() {
                        msg.tool_calls.push(p);
                        current = Current::Listed(msg.tool_calls.len() - 1);
                    }
                }
            }
            TOOL_ID => {
                let call = match current {
                    Current::Pending => pending.as_mut(),
                    Current::Listed(i) => msg.tool_calls.get_mut(i),
                    Current::None => None,
                };
                if let Some(call) = call {
                    let t = trim_trailing(&text);
                    let t = if t.len() >= 2 && t.starts_with('"') && t.ends_with('"') {
                        &t[1..t.len() - 1]
                    } else {
                        t
                    };
                    call.id = t.to_string();
                }
            }
            TOOL_ARGS => {
                let t = trim_trailing(&text);
                if t.starts_with('{') {
                    match current {
                        Current::Listed(i) if !msg.tool_calls[i].name.is_empty() => {
                            msg.tool_calls[i].arguments = t.to_string()
                        }
                        Current::Pending if pending.as_ref().is_some_and(|p| !p.name.is_empty()) => {
                            if let Some(p) = pending.as_mut() {
                                p.arguments = t.to_string();
                            }
                        }
                        Current::None => {}
                        _ => args_buffer = t.to_string(),
                    }
                }
            }
            TOOL_CLOSE => {
                let call = match current {
                    Current::Pending => pending.as_mut(),
                    Current::Listed(i) => msg.tool_calls.get_mut(i),
                    Current::None => None,
                };
                if let Some(call) = call {
                    if call.name.is_empty() && !args_buffer.is_empty() {
                        call.arguments = std::mem::take(&mut args_buffer);
                    }
                    for _ in 0..brace_depth(&call.arguments).max(0) {
                        call.arguments.push('}');
                    }
                    if let Some(p) = pending.take() {
                        if !p.name.is_empty() {
                            msg.tool_calls.push(p);
                        }
                        current = Current::None;
                    }
                }
            }
            _ => {}
        }
    });
    if let Some(mut p) = pending.take().filter(|p| !p.name.is_empty()) {
        if !args_buffer.is_empty() {
            p.arguments = args_buffer;
        }
        msg.tool_calls.push(p);
    }
    if msg.reasoning_content.bytes().all(|c| matches!(c, b' ' | b'\n' | b'\r' | b'\t')) {
        msg.reasoning_content.clear();
    }
    msg
}
