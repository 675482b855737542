//! Running a chat template as Jinja (llama-completion `--jinja`), with the environment HF templates
//! expect: blocks trimmed (`trim_blocks`, `lstrip_blocks`), Python string and dict methods
//! (`strip`, `startswith`, `split`, `items` ... from minijinja-contrib), `raise_exception`, and
//! `strftime_now`.

use super::{ChatError, ChatMessage};
use minijinja::value::Value;
use minijinja::{Environment, Error, ErrorKind};
use std::collections::BTreeMap;

const NAME: &str = "chat_template";

/// A parsed chat template, ready to render.
pub struct JinjaTemplate {
    env: Environment<'static>,
}

/// What a template is rendered with besides the messages.
#[derive(Debug, Clone, Default)]
pub struct RenderInputs {
    pub add_generation_prompt: bool,
    pub bos_token: String,
    pub eos_token: String,
}

/// The request's part of the context: llama.cpp's `enable_thinking`, the `tools` (given only
/// when there are some) and `chat_template_kwargs` (set last, so that they override the rest).
#[derive(Debug, Clone)]
pub struct Extra {
    pub enable_thinking: bool,
    pub tools: Option<serde_json::Value>,
    pub kwargs: Vec<(String, serde_json::Value)>,
}

impl Default for Extra {
    fn default() -> Extra {
        Extra { enable_thinking: true, tools: None, kwargs: Vec::new() }
    }
}

impl JinjaTemplate {
    /// Parse `source` (line ends normalised to `\n`, one trailing newline dropped, as llama.cpp's
    /// lexer does); a syntax error is returned with its line.
    pub fn new(source: &str) -> Result<JinjaTemplate, ChatError> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_keep_trailing_newline(false);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_filter("tojson", super::pyjson::tojson);
        env.set_formatter(super::pyjson::formatter);
        env.add_filter("string", super::pyjson::string);
        env.add_filter("items", items);
        env.add_filter("length", length);
        env.add_filter("count", length);
        let source = source.replace("\r\n", "\n").replace('\r', "\n");
        check_unary_chains(&source)?;
        env.add_template_owned(NAME, source).map_err(jinja_error)?;
        Ok(JinjaTemplate { env })
    }

    /// Render plain role/content messages (see [`JinjaTemplate::render_json`]).
    pub fn render(&self, messages: &[ChatMessage], inputs: &RenderInputs) -> Result<String, ChatError> {
        let messages: Vec<serde_json::Value> =
            messages.iter().map(|m| serde_json::json!({ "role": m.role, "content": m.content })).collect();
        self.render_json(&serde_json::Value::Array(messages), inputs, &Extra::default())
    }

    /// Render messages given as llama.cpp hands them to templates (OpenAI JSON). llama.cpp's
    /// variables: `messages`, `bos_token`, `eos_token`, `add_generation_prompt` (only set when
    /// true), `enable_thinking`, `tools`, `preserve_reasoning`, `datetime` and `date_string`, then
    /// the request's template kwargs.
    pub fn render_json(
        &self,
        messages: &serde_json::Value,
        inputs: &RenderInputs,
        extra: &Extra,
    ) -> Result<String, ChatError> {
        let mut vars: BTreeMap<&str, Value> = BTreeMap::new();
        vars.insert("messages", Value::from_serialize(messages));
        vars.insert("bos_token", Value::from(inputs.bos_token.as_str()));
        vars.insert("eos_token", Value::from(inputs.eos_token.as_str()));
        vars.insert("enable_thinking", Value::from(extra.enable_thinking));
        if let Some(tools) = &extra.tools {
            vars.insert("tools", Value::from_serialize(tools));
        }
        vars.insert("preserve_reasoning", Value::from(true));
        vars.insert("datetime", Value::from(local_time("%b %d %Y")));
        vars.insert("date_string", Value::from(local_time("%d %b %Y")));
        for (k, v) in &extra.kwargs {
            vars.insert(k.as_str(), Value::from_serialize(v));
        }
        if inputs.add_generation_prompt {
            vars.insert("add_generation_prompt", Value::from(true));
        }
        let template = self.env.get_template(NAME).map_err(jinja_error)?;
        template.render(vars).map_err(jinja_error)
    }
}

/// The longest chain of prefix operators (`-`, `not`) in a row that a template may hold inside
/// its tags. minijinja's parser guards its recursion everywhere but there: a chain of thousands
/// (a fuzzed template had 25,000 `-`) overflows the stack while parsing or dropping the tree.
const MAX_UNARY_CHAIN: usize = 100;

/// Refuse a template whose `{{ }}` / `{% %}` tags hold a chain of more than [`MAX_UNARY_CHAIN`]
/// prefix operators (string literals skipped), with minijinja's own words for its other limits.
fn check_unary_chains(source: &str) -> Result<(), ChatError> {
    let b = source.as_bytes();
    let (mut i, mut in_tag, mut chain) = (0, false, 0usize);
    while i < b.len() {
        if !in_tag {
            in_tag = b[i] == b'{' && matches!(b.get(i + 1), Some(b'{' | b'%'));
            i += if in_tag { 2 } else { 1 };
            continue;
        }
        match b[i] {
            b'}' | b'%' if b.get(i + 1) == Some(&b'}') => {
                (in_tag, chain) = (false, 0);
                i += 2;
                continue;
            }
            q @ (b'"' | b'\'') => {
                // A string literal: not operators (a backslash escapes the next byte).
                i += 1;
                while i < b.len() && b[i] != q {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                chain = 0;
            }
            b'-' => chain += 1,
            b'n' if b[i..].starts_with(b"not")
                && !b.get(i + 3).is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_') =>
            {
                chain += 1;
                i += 2;
            }
            c if c.is_ascii_whitespace() || c == b'(' => {}
            _ => chain = 0,
        }
        if chain > MAX_UNARY_CHAIN {
            return Err(ChatError::Jinja(format!(
                "syntax error: template exceeds maximum recursion limits (more than {MAX_UNARY_CHAIN} prefix operators in a row)"
            )));
        }
        i += 1;
    }
    Ok(())
}

/// One line: the error's own text, its line in the template, and its cause (for raise_exception).
fn jinja_error(e: Error) -> ChatError {
    let mut msg = e.to_string();
    if let Some(line) = e.line() {
        if !msg.contains("line ") {
            msg += &format!(" (line {line})");
        }
    }
    ChatError::Jinja(msg.replace('\n', " "))
}

/// `items` that, as llama.cpp's, gives nothing for a missing value (templates iterate
/// `tool.parameters.properties|items` for tools without parameters).
fn items(v: Value) -> Result<Value, Error> {
    if v.is_undefined() || v.is_none() {
        return Ok(Value::from(Vec::<Value>::new()));
    }
    minijinja::filters::items(&v)
}

/// `length` that, as llama.cpp's, is 0 for a missing value.
fn length(v: Value) -> Result<Value, Error> {
    if v.is_undefined() || v.is_none() {
        return Ok(Value::from(0));
    }
    minijinja::filters::length(&v).map(Value::from)
}

fn raise_exception(message: String) -> Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, format!("template raised an exception: {message}")))
}

fn strftime_now(format: String) -> String {
    local_time(&format)
}

/// The local time formatted by C's `strftime` (what Python's `strftime` wraps).
fn local_time(format: &str) -> String {
    let Ok(c_format) = std::ffi::CString::new(format) else {
        return String::new();
    };
    let mut buf = vec![0u8; 256];
    // SAFETY: `time` accepts a null pointer; `localtime_r` writes only into `tm`; `strftime` writes
    // at most `buf.len()` bytes into `buf` and reads the NUL-terminated format.
    let written = unsafe {
        let now = libc::time(std::ptr::null_mut());
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&now, &mut tm).is_null() {
            return String::new();
        }
        libc::strftime(buf.as_mut_ptr().cast(), buf.len(), c_format.as_ptr(), &tm)
    };
    buf.truncate(written);
    String::from_utf8_lossy(&buf).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(role: &str, content: &str) -> ChatMessage {
        ChatMessage { role: role.into(), content: content.into() }
    }

    #[test]
    fn python_methods_and_block_trimming() {
        let t = JinjaTemplate::new(
            "{% for m in messages %}\n  {{ m.role.upper() }}:{{ m.content.strip().split(',')|join('|') }}\n{% endfor %}\n",
        )
        .unwrap();
        let out = t.render(&[msg("user", " a,b ")], &RenderInputs::default()).unwrap();
        assert_eq!(out, "  USER:a|b\n");
    }

    #[test]
    fn raise_exception_is_an_error_with_its_message() {
        let t = JinjaTemplate::new("{{ raise_exception('no system role') }}").unwrap();
        let err = t.render(&[], &RenderInputs::default()).unwrap_err().to_string();
        assert!(err.contains("no system role"), "{err}");
    }

    /// Thousands of `-` or `not` in a row inside a tag are refused before minijinja sees them
    /// (its parser would overflow the stack; a fuzzer found it); dashes in text, in string
    /// literals or a few in a row are fine.
    #[test]
    fn long_prefix_operator_chains_are_refused_not_a_stack_overflow() {
        for chain in ["-".repeat(25_000), "not ".repeat(5_000), "(-".repeat(3_000)] {
            let err = JinjaTemplate::new(&format!("{{{{ {chain}1 }}}}")).err().map(|e| e.to_string());
            assert!(err.as_deref().is_some_and(|e| e.contains("maximum recursion")), "{err:?}");
        }
        let text = format!(
            "{}\n{{{{ '{}' }}}}{{{{ - - 1 }}}}{{% if not not x %}}y{{% endif %}}",
            "-".repeat(500),
            "-".repeat(500)
        );
        let t = JinjaTemplate::new(&text).expect("dashes outside operators are fine");
        assert!(t.render(&[], &RenderInputs::default()).expect("renders").starts_with("-----"));
    }

    #[test]
    fn syntax_error_is_one_line() {
        let err = JinjaTemplate::new("{% for m in messages %}{{ m.content }").err().unwrap().to_string();
        assert!(!err.contains('\n') && err.contains("syntax error"), "{err}");
    }
}
