//! Chat template families: where each puts its thinking and tool calls, as llama.cpp 11434's
//! differential analysis of the template finds them (read off llama.cpp for these templates —
//! tests/fixtures/chat_tools — and recognised here by the template's text), and the markers that
//! must reach the answer's parser as text.

use super::parse::trim_space;

/// Tool calls as JSON objects `{"name": ..., ARGS: {...}[, "id": ...]}`: per call between
/// `start` and `end` (`per_call`), or all in one section after `start` (empty for bare JSON),
/// optionally as a JSON array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonCalls {
    pub start: &'static str,
    pub end: &'static str,
    pub per_call: bool,
    pub args_field: &'static str,
    pub array_wrapped: bool,
    /// The key of a call id the model writes after the arguments (Mistral's `"id"`).
    pub id_field: Option<&'static str>,
}

/// Tool calls as tags around a name and JSON arguments: `section_start`, then per call
/// `call_start name_prefix NAME name_suffix ARGS close call_end`, then `section_end`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagCalls {
    pub section_start: &'static str,
    pub section_end: &'static str,
    pub call_start: &'static str,
    pub call_end: &'static str,
    pub name_prefix: &'static str,
    pub name_suffix: &'static str,
    pub close: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Calls {
    Json(JsonCalls),
    Tagged(TagCalls),
}

/// Where a template family puts thinking and tool calls.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Layout {
    /// The thinking block's opening and closing tags as the template writes them (with the
    /// whitespace around them, which the parser accepts but does not require).
    pub reasoning: Option<(&'static str, &'static str)>,
    pub tools: Option<Calls>,
    /// The name of the family, for error messages and logs.
    pub family: &'static str,
}

impl Layout {
    /// The markers llama.cpp preserves as tokens (its `preserved_tokens`): every tag of the
    /// layout, trimmed, without repeats.
    pub fn markers(&self) -> Vec<String> {
        let mut all: Vec<&str> = Vec::new();
        if let Some((start, end)) = self.reasoning {
            all.extend([start, end]);
        }
        match &self.tools {
            Some(Calls::Json(t)) => all.extend([t.start, t.end]),
            Some(Calls::Tagged(t)) => all.extend([
                t.section_start,
                t.section_end,
                t.call_start,
                t.call_end,
                t.name_prefix,
                t.name_suffix,
                t.close,
            ]),
            None => {}
        }
        let mut out: Vec<String> = Vec::new();
        for m in all.into_iter().map(trim_space).filter(|m| !m.is_empty()) {
            if !out.iter().any(|o| o == m) {
                out.push(m.to_string());
            }
        }
        out
    }
}

const HERMES: JsonCalls = JsonCalls {
    start: "<tool_call>\n",
    end: "</tool_call>",
    per_call: true,
    args_field: "arguments",
    array_wrapped: false,
    id_field: None,
};
const LLAMA3: JsonCalls = JsonCalls {
    start: "",
    end: "",
    per_call: false,
    args_field: "parameters",
    array_wrapped: false,
    id_field: None,
};
const MISTRAL_NEMO: JsonCalls = JsonCalls {
    start: "[TOOL_CALLS]",
    end: "",
    per_call: false,
    args_field: "arguments",
    array_wrapped: true,
    id_field: Some("id"),
};
/// DeepSeek R1: `<｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME` and the arguments in a
/// ```json fence.
const DEEPSEEK_R1: TagCalls = TagCalls {
    section_start: "<｜tool▁calls▁begin｜>",
    section_end: "<｜tool▁calls▁end｜>",
    call_start: "<｜tool▁call▁begin｜>",
    call_end: "<｜tool▁call▁end｜>",
    name_prefix: "function<｜tool▁sep｜>",
    name_suffix: "\n```json\n",
    close: "```",
};
/// DeepSeek V3.1: `<｜tool▁call▁begin｜>NAME<｜tool▁sep｜>ARGS<｜tool▁call▁end｜>`.
const DEEPSEEK_V31: TagCalls = TagCalls {
    section_start: "<｜tool▁calls▁begin｜>",
    section_end: "<｜tool▁calls▁end｜>",
    call_start: "<｜tool▁call▁begin｜>",
    call_end: "<｜tool▁call▁end｜>",
    name_prefix: "",
    name_suffix: "<｜tool▁sep｜>",
    close: "",
};

/// Templates llama.cpp handles with a dedicated parser (or whose layout rs-llama has not been
/// checked on); their markers. rs-llama does not parse their tool calls.
const OTHERS: &[(&str, &[&str])] = &[
    ("GPT-OSS (harmony channels)", &["<|channel|>"]),
    ("Mistral / Ministral", &["[TOOL_CALLS]"]),
    ("Functionary", &[">>>all"]),
    ("Kimi K2", &["<|tool_calls_section_begin|>"]),
    ("DeepSeek tool calls", &["<｜tool▁calls▁begin｜>"]),
    ("DeepSeek V3.2 (DSML)", &["dsml_token"]),
    ("Gemma 4", &["'<|tool_call>call:'"]),
    ("Qwen3-Coder XML", &["<function=", "<parameter="]),
    ("LFM2", &["<|tool_list_start|>"]),
    ("LFM2.5", &["List of tools: ["]),
    ("tagged arguments", &["<arg_key>"]),
    ("Command R", &["<|START_ACTION|>"]),
    ("MiniMax", &["<invoke name="]),
    // Writes `<tool_call>` in its instructions but calls as `<tool_calls>[...]`.
    ("Apriel", &["[BEGIN FINAL RESPONSE]"]),
];

/// The layout of the template `src`. Without a tool layout only reasoning and content are
/// parsed (for a template with tool calls, rs-llama then refuses requests with tools).
pub fn detect(src: &str) -> Layout {
    let has = |s: &str| src.contains(s);
    let writes_reasoning = has("<think>\\n' + reasoning_content");
    let reasoning = if writes_reasoning && has("\\n</think>\\n\\n'") {
        // Qwen3: the template writes `<think>\n…\n</think>\n\n` before the answer.
        Some(("<think>\n", "\n</think>\n\n"))
    } else if writes_reasoning && has("\\n</think>\\n'") {
        // Bielik: `<think>\n…\n</think>\n`.
        Some(("<think>\n", "\n</think>\n"))
    } else if has("<think>") && has("</think>") {
        Some(("<think>", "</think>"))
    } else {
        None
    };
    // The families rs-llama parses, by how their templates write a call.
    let known: Option<(&'static str, Calls)> =
        if has("'<｜tool▁sep｜>' + tool['function']['arguments'] | tojson") {
            Some(("DeepSeek V3.1", Calls::Tagged(DEEPSEEK_V31)))
        } else if has("<｜tool▁calls▁begin｜>")
            && (has("'```json' + '\\n' + tool['function']['arguments'] | tojson")
                || has("'```json' + '\\n' + tool_args | tojson"))
        {
            Some(("DeepSeek R1", Calls::Tagged(DEEPSEEK_R1)))
        } else if has("[TOOL_CALLS]")
            && has("[AVAILABLE_TOOLS]")
            && !has("[SYSTEM_PROMPT]")
            && !has("[CALL_ID]")
        {
            Some(("Mistral Nemo [TOOL_CALLS]", Calls::Json(MISTRAL_NEMO)))
        } else if OTHERS.iter().any(|(_, marks)| marks.iter().all(|m| has(m))) {
            None
        } else if has("<tool_call>") && has("</tool_call>") && has("\"name\": ") && has("\"arguments\": ") {
            Some(("Hermes <tool_call>", Calls::Json(HERMES)))
        } else if has("<|start_header_id|>") && has("\"parameters\": ") && has("ipython") {
            Some(("Llama 3.x JSON", Calls::Json(LLAMA3)))
        } else {
            None
        };
    match known {
        Some((family, calls)) => Layout { reasoning, tools: Some(calls), family },
        None => {
            let other = OTHERS.iter().find(|(_, marks)| marks.iter().all(|m| has(m)));
            Layout { reasoning, tools: None, family: other.map_or("content only", |(name, _)| name) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The layouts of a few templates by their text, and the markers kept as tokens.
    #[test]
    fn families_and_their_markers() {
        let qwen3 = "{{- '<|im_start|>' + message.role + '\\n<think>\\n' + reasoning_content + '\\n</think>\\n\\n' }}<tool_call>\\n{\"name\": \"x\", \"arguments\": 1}</tool_call>";
        let l = detect(qwen3);
        assert_eq!((l.family, l.reasoning), ("Hermes <tool_call>", Some(("<think>\n", "\n</think>\n\n"))));
        assert_eq!(l.markers(), ["<think>", "</think>", "<tool_call>", "</tool_call>"]);
        // Hermes-looking text in a template of another family is not taken for Hermes.
        let coder = "<tool_call>\n<function=x>\n<parameter=y>\"name\": \"arguments\": </tool_call>";
        assert_eq!((detect(coder).family, detect(coder).tools), ("Qwen3-Coder XML", None));
        let oss = "<|channel|>analysis<|message|>";
        assert_eq!((detect(oss).family, detect(oss).tools), ("GPT-OSS (harmony channels)", None));
        let plain = "{% for m in messages %}{{ m.content }}{% endfor %}";
        assert_eq!(detect(plain), Layout { reasoning: None, tools: None, family: "content only" });
        assert!(detect(plain).markers().is_empty());
    }
}
