//! llama-completion's default chat formatting (without `--jinja`): the template text is not run,
//! it is only matched, by name or by telltale substrings, to one of llama.cpp's hand-written
//! formats, which is then applied to the messages. The order of the substring checks decides
//! between look-alike templates, so it follows llama.cpp's exactly.

use super::{ChatError, ChatMessage};

/// The names `--chat-template` accepts for the built-in formats (llama.cpp's list, sorted).
pub const BUILTIN_NAMES: &[&str] = &[
    "bailing",
    "bailing-think",
    "bailing2",
    "chatglm3",
    "chatglm4",
    "chatml",
    "command-r",
    "deepseek",
    "deepseek-ocr",
    "deepseek2",
    "deepseek3",
    "exaone-moe",
    "exaone3",
    "exaone4",
    "falcon3",
    "gemma",
    "gigachat",
    "glmedge",
    "gpt-oss",
    "granite",
    "granite-4.0",
    "granite-4.1",
    "grok-2",
    "hunyuan-dense",
    "hunyuan-moe",
    "hunyuan-vl",
    "kimi-k2",
    "llama2",
    "llama2-sys",
    "llama2-sys-bos",
    "llama2-sys-strip",
    "llama3",
    "llama4",
    "megrez",
    "minicpm",
    "mistral-v1",
    "mistral-v3",
    "mistral-v3-tekken",
    "mistral-v7",
    "mistral-v7-tekken",
    "monarch",
    "openchat",
    "orion",
    "pangu-embedded",
    "phi3",
    "phi4",
    "rwkv-world",
    "seed_oss",
    "smolvlm",
    "solar-open",
    "vicuna",
    "vicuna-orca",
    "yandex",
    "zephyr",
];

/// Which built-in format a template (or a built-in name) stands for; None when llama.cpp would
/// not recognise it either. Formats found only by their text (e.g. "dots1") get an internal name.
pub fn detect(template: &str) -> Option<&'static str> {
    if let Some(name) = BUILTIN_NAMES.iter().find(|&&n| n == template) {
        return Some(name);
    }
    let has = |s: &str| template.contains(s);
    let has_all = |all: &[&str]| all.iter().all(|s| template.contains(s));
    let name = if has("<|im_start|>") {
        if has("<|im_sep|>") {
            "phi4"
        } else if has("<end_of_utterance>") {
            "smolvlm"
        } else {
            "chatml"
        }
    } else if template.starts_with("mistral") || has("[INST]") {
        mistral_or_llama2(template)
    } else if has_all(&["<|assistant|>", "<|end|>"]) {
        "phi3"
    } else if has("[gMASK]<sop>") {
        "chatglm4"
    } else if has_all(&["<|assistant|>", "<|user|>"]) {
        if has("<|tool_declare|>") {
            "exaone-moe"
        } else if has("</s>") {
            "falcon3"
        } else {
            "glmedge"
        }
    } else if has_all(&["<|{{ item['role'] }}|>", "<|begin_of_image|>"]) {
        "glmedge"
    } else if has_all(&["<|user|>", "<|endoftext|>"]) {
        "zephyr"
    } else if has("bos_token + message['role']") {
        "monarch"
    } else if has("<start_of_turn>") {
        "gemma"
    } else if has("'\\n\\nAssistant: ' + eos_token") {
        "orion"
    } else if has("GPT4 Correct ") {
        "openchat"
    } else if has_all(&["USER: ", "ASSISTANT: "]) {
        if has("SYSTEM: ") {
            "vicuna-orca"
        } else {
            "vicuna"
        }
    } else if has_all(&["### Instruction:", "<|EOT|>"]) {
        "deepseek"
    } else if has_all(&["<|START_OF_TURN_TOKEN|>", "<|USER_TOKEN|>"]) {
        "command-r"
    } else if has_all(&["<|start_header_id|>", "<|end_header_id|>"]) {
        "llama3"
    } else if has("[gMASK]sop") {
        "chatglm3"
    } else {
        return detect_rarer(template);
    };
    Some(name)
}

fn mistral_or_llama2(template: &str) -> &'static str {
    let has = |s: &str| template.contains(s);
    if has("[SYSTEM_PROMPT]") {
        "mistral-v7"
    } else if has("' [INST] ' + system_message") || has("[AVAILABLE_TOOLS]") {
        if has(" [INST]") {
            "mistral-v1"
        } else if has("\"[INST]\"") {
            "mistral-v3-tekken"
        } else {
            "mistral-v3"
        }
    } else if has("content.strip()") {
        "llama2-sys-strip"
    } else if has("bos_token + '[INST]") {
        "llama2-sys-bos"
    } else if has("<<SYS>>") {
        "llama2-sys"
    } else {
        "llama2"
    }
}

/// The checks after chatglm3, for formats rs-llama recognises but does not apply (see [`apply`]).
fn detect_rarer(template: &str) -> Option<&'static str> {
    let has = |s: &str| template.contains(s);
    let has_all = |all: &[&str]| all.iter().all(|s| template.contains(s));
    let name = if has("<用户>") {
        "minicpm"
    } else if has("'Assistant: ' + message['content'] + eos_token") {
        "deepseek2"
    } else if has_all(&["<｜Assistant｜>", "<｜User｜>", "<｜end▁of▁sentence｜>"]) {
        "deepseek3"
    } else if has_all(&["[|system|]", "[|assistant|]", "[|endofturn|]"]) {
        if has("[|tool|]") {
            "exaone4"
        } else {
            "exaone3"
        }
    } else if has("rwkv-world") || has("{{- 'User: ' + message['content']|trim + '\\n\\n' -}}") {
        "rwkv-world"
    } else if has("<|start_of_role|>") {
        if !(has("<tool_call>") || has("<tools>")) {
            "granite"
        } else if has("g4_default_system_message") {
            "granite-4.0"
        } else {
            "granite-4.1"
        }
    } else if has(
        "message['role'] + additional_special_tokens[0] + message['content'] + additional_special_tokens[1]",
    ) {
        "gigachat"
    } else if has("<|role_start|>") {
        "megrez"
    } else if has(" Ассистент:") {
        "yandex"
    } else if has_all(&["<role>ASSISTANT</role>", "'HUMAN'"]) {
        "bailing"
    } else if has_all(&["<role>ASSISTANT</role>", "\"HUMAN\"", "<think>"]) {
        "bailing-think"
    } else if has_all(&["<role>ASSISTANT</role>", "<role>HUMAN</role>", "<|role_end|>"]) {
        "bailing2"
    } else if has_all(&["<|header_start|>", "<|header_end|>"]) {
        "llama4"
    } else if has("<|endofuserprompt|>") {
        "dots1"
    } else if has_all(&["<|extra_0|>", "<|extra_4|>"]) {
        "hunyuan-moe"
    } else if has_all(&["<|start|>", "<|channel|>"]) {
        "gpt-oss"
    } else if has_all(&["<｜hy_Assistant｜>", "<｜hy_begin▁of▁sentence｜>"]) {
        "hunyuan-vl"
    } else if has_all(&["<｜hy_Assistant｜>", "<｜hy_place▁holder▁no▁3｜>"]) {
        "hunyuan-dense"
    } else if has("<|im_assistant|>assistant<|im_middle|>") {
        "kimi-k2"
    } else if has("<seed:bos>") {
        "seed_oss"
    } else if has("'Assistant: '  + message['content'] + '<|separator|>") {
        "grok-2"
    } else if has("[unused9]系统：[unused10]") {
        "pangu-embedded"
    } else if has_all(&["<|begin|>", "<|end|>", "<|content|>"]) {
        "solar-open"
    } else {
        return None;
    };
    Some(name)
}

/// C's `isspace` trim (space, \t, \n, \v, \f, \r), as llama.cpp trims message contents.
fn trim(s: &str) -> &str {
    s.trim_matches(|c: char| matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r'))
}

/// Format `messages` with the built-in format `name` (from [`detect`]); `add_assistant` appends
/// the opening of the assistant's turn where the format has one.
pub fn apply(name: &str, messages: &[ChatMessage], add_assistant: bool) -> Result<String, ChatError> {
    let mut out = String::new();
    // The text that opens the assistant's turn, appended when asked for.
    let assistant_open: &str = match name {
        "chatml" => {
            for m in messages {
                out += &format!("<|im_start|>{}\n{}<|im_end|>\n", m.role, m.content);
            }
            "<|im_start|>assistant\n"
        }
        "phi4" => {
            for m in messages {
                out += &format!("<|im_start|>{}<|im_sep|>{}<|im_end|>", m.role, m.content);
            }
            "<|im_start|>assistant<|im_sep|>"
        }
        "mistral-v7" | "mistral-v7-tekken" => {
            let pad = if name == "mistral-v7" { " " } else { "" };
            for m in messages {
                out += &match m.role.as_str() {
                    "system" => format!("[SYSTEM_PROMPT]{pad}{}[/SYSTEM_PROMPT]", m.content),
                    "user" => format!("[INST]{pad}{}[/INST]", m.content),
                    _ => format!("{pad}{}</s>", m.content),
                };
            }
            ""
        }
        "mistral-v1" | "mistral-v3" | "mistral-v3-tekken" => {
            mistral_v1_v3(name, messages, &mut out);
            ""
        }
        "llama2" | "llama2-sys" | "llama2-sys-bos" | "llama2-sys-strip" => {
            llama2(name, messages, &mut out);
            ""
        }
        "phi3" | "zephyr" | "falcon3" => {
            let end = match name {
                "phi3" => "<|end|>\n",
                "zephyr" => "<|endoftext|>\n",
                _ => "\n",
            };
            for m in messages {
                out += &format!("<|{}|>\n{}{end}", m.role, m.content);
            }
            "<|assistant|>\n"
        }
        "monarch" => {
            for (i, m) in messages.iter().enumerate() {
                let bos = if i == 0 { "" } else { "<s>" };
                out += &format!("{bos}{}\n{}</s>\n", m.role, m.content);
            }
            "<s>assistant\n"
        }
        "gemma" => {
            gemma(messages, &mut out);
            "<start_of_turn>model\n"
        }
        "orion" => {
            orion(messages, &mut out);
            ""
        }
        "openchat" => {
            for m in messages {
                if m.role == "system" {
                    out += &format!("{}<|end_of_turn|>", m.content);
                } else {
                    out +=
                        &format!("GPT4 Correct {}: {}<|end_of_turn|>", capitalise_first(&m.role), m.content);
                }
            }
            "GPT4 Correct Assistant:"
        }
        "vicuna" | "vicuna-orca" => {
            for m in messages {
                out += &match (m.role.as_str(), name) {
                    ("system", "vicuna-orca") => format!("SYSTEM: {}\n", m.content),
                    ("system", _) => format!("{}\n\n", m.content),
                    ("user", _) => format!("USER: {}\n", m.content),
                    ("assistant", _) => format!("ASSISTANT: {}</s>\n", m.content),
                    _ => String::new(),
                };
            }
            "ASSISTANT:"
        }
        "deepseek" => {
            for m in messages {
                out += &match m.role.as_str() {
                    "system" => m.content.clone(),
                    "user" => format!("### Instruction:\n{}\n", m.content),
                    "assistant" => format!("### Response:\n{}\n<|EOT|>\n", m.content),
                    _ => String::new(),
                };
            }
            "### Response:\n"
        }
        "command-r" => {
            for m in messages {
                let tag = match m.role.as_str() {
                    "system" => "<|SYSTEM_TOKEN|>",
                    "user" => "<|USER_TOKEN|>",
                    "assistant" => "<|CHATBOT_TOKEN|>",
                    _ => continue,
                };
                out += &format!("<|START_OF_TURN_TOKEN|>{tag}{}<|END_OF_TURN_TOKEN|>", trim(&m.content));
            }
            "<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>"
        }
        "llama3" => {
            for m in messages {
                out += &format!(
                    "<|start_header_id|>{}<|end_header_id|>\n\n{}<|eot_id|>",
                    m.role,
                    trim(&m.content)
                );
            }
            "<|start_header_id|>assistant<|end_header_id|>\n\n"
        }
        "chatglm3" | "chatglm4" | "glmedge" => {
            let (head, sep, open) = match name {
                "chatglm3" => ("[gMASK]sop", "\n ", "<|assistant|>"),
                "chatglm4" => ("[gMASK]<sop>", "\n", "<|assistant|>\n"),
                _ => ("", "\n", "<|assistant|>"),
            };
            out += head;
            for m in messages {
                out += &format!("<|{}|>{sep}{}", m.role, m.content);
            }
            open
        }
        other => return Err(ChatError::BuiltinNotImplemented(other.to_string())),
    };
    if add_assistant {
        out += assistant_open;
    }
    Ok(out)
}

fn capitalise_first(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_ascii_uppercase().to_string() + chars.as_str(),
        None => String::new(),
    }
}

fn mistral_v1_v3(name: &str, messages: &[ChatMessage], out: &mut String) {
    let lead = if name == "mistral-v1" { " " } else { "" };
    let trail = if name == "mistral-v3-tekken" { "" } else { " " };
    let mut in_turn = false;
    for m in messages {
        if !in_turn {
            *out += &format!("{lead}[INST]{trail}");
            in_turn = true;
        }
        match m.role.as_str() {
            "system" => *out += &format!("{}\n\n", m.content),
            "user" => *out += &format!("{}{lead}[/INST]", m.content),
            _ => {
                let content = if name == "mistral-v3" { trim(&m.content) } else { &m.content };
                *out += &format!("{trail}{content}</s>");
                in_turn = false;
            }
        }
    }
}

fn llama2(name: &str, messages: &[ChatMessage], out: &mut String) {
    let system_tags = name != "llama2";
    let bos_between_turns = name == "llama2-sys-bos";
    let strip = name == "llama2-sys-strip";
    // The first turn opens without a BOS (the tokenizer adds it).
    *out += "[INST] ";
    let mut in_turn = true;
    for m in messages {
        let content = if strip { trim(&m.content) } else { &m.content };
        if !in_turn {
            *out += if bos_between_turns { "<s>[INST] " } else { "[INST] " };
            in_turn = true;
        }
        match m.role.as_str() {
            "system" if system_tags => *out += &format!("<<SYS>>\n{content}\n<</SYS>>\n\n"),
            "system" => *out += &format!("{content}\n"),
            "user" => *out += &format!("{content} [/INST]"),
            _ => {
                *out += &format!("{content}</s>");
                in_turn = false;
            }
        }
    }
}

/// Gemma has no system role: the system text joins the next user turn; "assistant" is "model".
fn gemma(messages: &[ChatMessage], out: &mut String) {
    let mut pending_system = String::new();
    for m in messages {
        if m.role == "system" {
            pending_system += trim(&m.content);
            continue;
        }
        let role = if m.role == "assistant" { "model" } else { m.role.as_str() };
        *out += &format!("<start_of_turn>{role}\n");
        if role != "model" && !pending_system.is_empty() {
            *out += &format!("{pending_system}\n\n");
            pending_system.clear();
        }
        *out += &format!("{}<end_of_turn>\n", trim(&m.content));
    }
}

/// Orion has no system role either: the system text opens the next user turn.
fn orion(messages: &[ChatMessage], out: &mut String) {
    let mut pending_system = String::new();
    for m in messages {
        match m.role.as_str() {
            "system" => pending_system += &m.content,
            "user" => {
                *out += "Human: ";
                if !pending_system.is_empty() {
                    *out += &format!("{pending_system}\n\n");
                    pending_system.clear();
                }
                *out += &format!("{}\n\nAssistant: </s>", m.content);
            }
            _ => *out += &format!("{}</s>", m.content),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detection_order_decides_look_alikes() {
        assert_eq!(detect("chatml"), Some("chatml"));
        assert_eq!(detect("{{ '<|im_start|>' }}{{ '<|im_sep|>' }}"), Some("phi4"));
        assert_eq!(detect("<|im_start|><end_of_utterance>"), Some("smolvlm"));
        assert_eq!(detect("mistral-whatever"), Some("llama2"));
        assert_eq!(detect("[INST] <<SYS>> content.strip()"), Some("llama2-sys-strip"));
        assert_eq!(detect("' [INST] ' + system_message"), Some("mistral-v1"));
        assert_eq!(detect("<|user|> <|assistant|> </s>"), Some("falcon3"));
        assert_eq!(detect("<|user|> <|assistant|>"), Some("glmedge"));
        assert_eq!(detect("<|start|><|channel|>"), Some("gpt-oss"));
        assert_eq!(detect("{{ messages }}"), None);
    }

    #[test]
    fn c_trim_keeps_other_unicode_space() {
        assert_eq!(trim("\x0b\t hi \u{a0}\r\n"), "hi \u{a0}");
    }
}
