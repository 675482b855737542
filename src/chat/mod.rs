//! Chat templates: turning a list of messages into the prompt text a chat model was trained on, as
//! llama-completion does it.
//!
//! The template comes from `--chat-template` (a built-in name or Jinja text) or the model's
//! `tokenizer.chat_template`; with neither, ChatML. llama-completion then formats in one of two
//! ways: by default ([`builtin`]) the template text is only *recognised* as one of llama.cpp's
//! hand-written formats; with `--jinja` ([`jinja`]) it is run as a Jinja program.
//!
//! A conversation is formatted turn by turn: the text added for a new message is the difference
//! between the whole chat rendered with and without it ([`ChatTemplates::format_single`]).

pub mod builtin;
pub mod family;
mod fuzz;
pub mod jinja;
pub mod parse;
pub mod peg;
mod pyjson;
pub mod request;

pub use fuzz::fuzz_render;
use jinja::{JinjaTemplate, RenderInputs};

/// llama.cpp's fallback when there is no template (or `--chat-template chatml`) — ChatML written
/// as Jinja, so that both formatting paths can run it.
pub const CHATML_TEMPLATE: &str = "{%- for message in messages -%}\n  {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' -}}\n{%- endfor -%}\n{%- if add_generation_prompt -%}\n  {{- '<|im_start|>assistant\\n' -}}\n{%- endif -%}";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: &str, content: &str) -> ChatMessage {
        ChatMessage { role: role.to_string(), content: content.to_string() }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error("chat template error: {0}")]
    Jinja(String),
    #[error("the chat template is not one of the built-in formats: run it as Jinja with --jinja, pick a built-in with --chat-template NAME, or use -no-cnv for text completion")]
    NotBuiltin,
    #[error("the built-in chat template '{0}' is not implemented in rs-llama yet; use --jinja")]
    BuiltinNotImplemented(String),
    /// A request the template cannot be given (bad tools or tool calls), in llama.cpp's words.
    #[error("{0}")]
    Request(String),
}

/// The special-token side of a template: texts of BOS/EOS and whether the tokenizer adds them.
#[derive(Debug, Clone, Default)]
pub struct TokenTexts {
    /// None when the vocabulary has no such token.
    pub bos: Option<String>,
    pub eos: Option<String>,
    pub add_bos: bool,
    pub add_eos: bool,
}

/// The template in use and how to run it.
pub struct ChatTemplates {
    /// Template text after the fallbacks (line ends normalised, one trailing newline dropped).
    source: String,
    explicit: bool,
    /// Parsed only with `--jinja`: without it llama.cpp never runs the template.
    jinja: Option<JinjaTemplate>,
    /// Whether the Jinja template shows a system message (else it is folded into the next one).
    system_role: bool,
    /// Whether the Jinja template JSON-encodes a tool call's string arguments (so it wants them
    /// as an object, llama.cpp's `supports_object_arguments`).
    encodes_arguments: bool,
    inputs: RenderInputs,
    tokens: TokenTexts,
}

impl ChatTemplates {
    /// `user_template`: `--chat-template` ("" when not given); `model_template` and
    /// `model_tool_use`: the model's `tokenizer.chat_template[.tool_use]`.
    pub fn new(
        user_template: &str,
        model_template: Option<&str>,
        model_tool_use: Option<&str>,
        tokens: TokenTexts,
        use_jinja: bool,
    ) -> Result<ChatTemplates, ChatError> {
        let (mut source, explicit) = if user_template.is_empty() {
            let from_model = model_template.unwrap_or_default().to_string();
            (from_model, model_template.is_some() || model_tool_use.is_some())
        } else {
            (user_template.to_string(), true)
        };
        if source.is_empty() || source == "chatml" {
            source = match model_tool_use {
                Some(t) if user_template.is_empty() => t.to_string(),
                _ => CHATML_TEMPLATE.to_string(),
            };
        }
        let mut source = source.replace("\r\n", "\n").replace('\r', "\n");
        if source.ends_with('\n') {
            source.pop();
        }
        let jinja = if use_jinja { Some(JinjaTemplate::new(&source)?) } else { None };
        let inputs = RenderInputs {
            add_generation_prompt: false,
            bos_token: tokens.bos.clone().unwrap_or_default(),
            eos_token: tokens.eos.clone().unwrap_or_default(),
        };
        let system_role = jinja.as_ref().is_none_or(|t| shows_system_message(t, &inputs));
        let encodes_arguments = jinja.as_ref().is_some_and(|t| encodes_string_arguments(t, &inputs));
        Ok(ChatTemplates { source, explicit, jinja, inputs, tokens, system_role, encodes_arguments })
    }

    /// Whether the model had a template or one was given (this turns conversation mode on).
    pub fn was_explicit(&self) -> bool {
        self.explicit
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the template runs as Jinja (`--jinja`) rather than as a built-in format.
    pub fn is_jinja(&self) -> bool {
        self.jinja.is_some()
    }

    /// llama.cpp's `chat_template_caps` (in its key order, sorted). llama.cpp finds them by
    /// running the template on probe chats and watching which inputs it reads; this reads them
    /// off the template's text instead (what it names), and the system role as it renders.
    pub fn caps(&self) -> Vec<(&'static str, bool)> {
        let src = self.source.as_str();
        let has = |w: &str| src.contains(w);
        let tools = has("tools");
        let tool_calls = has("tool_calls");
        let typed = has("content[")
            || has("selectattr")
            || has("content is not string")
            || has("content is iterable");
        vec![
            // Templates that index the arguments, or write them with `tojson`, are given objects.
            (
                "supports_object_arguments",
                tool_calls
                    && (has("arguments.items()") || writes_arguments_as_json(src) || self.encodes_arguments),
            ),
            ("supports_parallel_tool_calls", tool_calls && has("for tool_call in")),
            ("supports_preserve_reasoning", has("preserve_thinking") || has("clear_thinking")),
            ("supports_reasoning_effort", has("reasoning_effort") || has("reasoning_strength")),
            ("supports_string_content", true),
            ("supports_system_role", self.system_role),
            ("supports_tool_calls", tool_calls),
            ("supports_tools", tools),
            ("supports_typed_content", typed),
        ]
    }

    /// Warnings llama.cpp gives at start-up (a template that uses a token the vocabulary lacks).
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (text, name, var) in
            [(&self.tokens.bos, "BOS", "bos_token"), (&self.tokens.eos, "EOS", "eos_token")]
        {
            if text.is_none() && self.source.contains(var) {
                out.push(format!(
                    "common_chat_templates_init: warning: vocab does not have a {name} token, jinja template won't work as intended."
                ));
            }
        }
        out
    }

    /// The whole chat as prompt text.
    pub fn apply(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String, ChatError> {
        match &self.jinja {
            Some(template) => {
                let inputs = RenderInputs { add_generation_prompt, ..self.inputs.clone() };
                let folded;
                let messages = if self.system_role {
                    messages
                } else {
                    folded = fold_system_message(messages);
                    &folded
                };
                let mut text = template.render(messages, &inputs)?;
                // The tokenizer adds BOS/EOS itself: drop the template's own copies.
                if self.tokens.add_bos && text.starts_with(&inputs.bos_token) {
                    text.drain(..inputs.bos_token.len());
                }
                if self.tokens.add_eos && text.ends_with(&inputs.eos_token) {
                    text.truncate(text.len() - inputs.eos_token.len());
                }
                Ok(text)
            }
            None => {
                let name = builtin::detect(&self.source).ok_or(ChatError::NotBuiltin)?;
                builtin::apply(name, messages, add_generation_prompt)
            }
        }
    }

    /// The chat given as JSON messages (and tools, kwargs) through the Jinja template, BOS/EOS
    /// dropped as in [`ChatTemplates::apply`]; only with `--jinja`.
    pub fn apply_json(
        &self,
        messages: &serde_json::Value,
        add_generation_prompt: bool,
        extra: &jinja::Extra,
    ) -> Result<String, ChatError> {
        let Some(template) = &self.jinja else {
            return Err(ChatError::Request("tools param requires --jinja flag".into()));
        };
        let inputs = RenderInputs { add_generation_prompt, ..self.inputs.clone() };
        let mut text = template.render_json(messages, &inputs, extra)?;
        if self.tokens.add_bos && text.starts_with(&inputs.bos_token) {
            text.drain(..inputs.bos_token.len());
        }
        if self.tokens.add_eos && text.ends_with(&inputs.eos_token) {
            text.truncate(text.len() - inputs.eos_token.len());
        }
        Ok(text)
    }

    /// The text a new message adds to the chat `past`: the chat rendered with it (and the
    /// assistant's opening when `add_assistant`) minus the chat rendered without it. When the past
    /// ends in a newline and the assistant is to answer, the delta starts with one more newline
    /// (llama.cpp's rule, kept for identical prompts).
    pub fn format_single(
        &self,
        past: &[ChatMessage],
        new: &ChatMessage,
        add_assistant: bool,
    ) -> Result<String, ChatError> {
        let before = if past.is_empty() { String::new() } else { self.apply(past, false)? };
        let mut all = past.to_vec();
        all.push(new.clone());
        let after = self.apply(&all, add_assistant)?;
        let mut delta = String::new();
        if add_assistant && before.ends_with('\n') {
            delta.push('\n');
        }
        // Byte offsets: `after` normally extends `before`; if a template rewrites earlier turns,
        // take whatever lies past the old length, as llama.cpp does.
        delta += after.get(before.len()..).unwrap_or_default();
        Ok(delta)
    }

    /// The example llama-completion logs at start-up.
    pub fn format_example(&self) -> Result<String, ChatError> {
        let messages = [
            ChatMessage::new("system", "You are a helpful assistant"),
            ChatMessage::new("user", "Hello"),
            ChatMessage::new("assistant", "Hi there"),
            ChatMessage::new("user", "How are you?"),
        ];
        self.apply(&messages, true)
    }
}

/// Whether the template pipes a call's `arguments` (`x.arguments`, `x['arguments']`) into
/// `tojson`: such templates are given the arguments as objects.
fn writes_arguments_as_json(src: &str) -> bool {
    src.match_indices("arguments").any(|(at, w)| {
        let rest = src[at + w.len()..].trim_start_matches(['\'', '"', ']']).trim_start();
        rest.strip_prefix('|').is_some_and(|r| r.trim_start().starts_with("tojson"))
    })
}

/// llama.cpp finds object arguments by watching the template index them; rs-llama renders a
/// tool call whose arguments are a JSON string and looks for that string JSON-encoded in the
/// output (`\"arg\"`): a template that encodes it (`tojson` on the arguments or on the whole call)
/// is one that expects an object.
fn encodes_string_arguments(template: &JinjaTemplate, inputs: &RenderInputs) -> bool {
    let messages = serde_json::json!([
        { "role": "user", "content": "User message" },
        { "role": "assistant", "content": "", "tool_calls": [{ "type": "function", "id": "call00001",
            "function": { "name": "tool_name", "arguments": "{\"arg\": \"argvalue\"}" } }] },
    ]);
    let tools = serde_json::json!([{ "type": "function", "function": { "name": "tool_name", "description": "",
        "parameters": { "type": "object", "properties": { "arg": { "type": "string" } } } } }]);
    let extra = jinja::Extra { tools: Some(tools), ..jinja::Extra::default() };
    template.render_json(&messages, inputs, &extra).is_ok_and(|text| text.contains("\\\"arg\\\""))
}

/// llama.cpp's probe of a Jinja template: render a system and a user message and see whether the
/// system text is used. llama.cpp watches the template read it; rs-llama looks for it in the output,
/// letters and digits only and in any case (so `upper()` or `split()|join` still count), which agrees
/// for templates that either show the system message or reject or drop it.
fn shows_system_message(template: &JinjaTemplate, inputs: &RenderInputs) -> bool {
    let probe = [ChatMessage::new("system", "System message"), ChatMessage::new("user", "User message")];
    let squeeze = |text: &str| -> String {
        text.chars().filter(|c| c.is_alphanumeric()).flat_map(char::to_lowercase).collect()
    };
    template.render(&probe, inputs).is_ok_and(|text| squeeze(&text).contains("systemmessage"))
}

/// For templates without a system role: the system text opens the next message (joined by a
/// newline), or is dropped when it is the only message.
fn fold_system_message(messages: &[ChatMessage]) -> Vec<ChatMessage> {
    match messages {
        [first, second, rest @ ..] if first.role == "system" => {
            let joined = ChatMessage {
                role: second.role.clone(),
                content: format!("{}\n{}", first.content, second.content),
            };
            std::iter::once(joined).chain(rest.iter().cloned()).collect()
        }
        [first] if first.role == "system" => {
            crate::log_warn!("Removing system prompt due to template not supporting system role\n");
            Vec::new()
        }
        _ => messages.to_vec(),
    }
}

/// Check a `--chat-template` value as llama.cpp does before loading anything: with `--jinja` it
/// must render a one-message chat, without it it must be a recognised built-in format.
pub fn verify_template(template: &str, use_jinja: bool) -> Result<(), ChatError> {
    let templates = ChatTemplates::new(template, None, None, TokenTexts::default(), use_jinja)?;
    templates.apply(&[ChatMessage::new("user", "test")], true).map(|_| ())
}
