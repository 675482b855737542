//! Chat template rendering against llama-completion's own output (tests/fixtures/chat/render.json,
//! made by tests/fixtures/chat/make_fixtures.py; see the README there): SmolLM2's template and the
//! ChatML fallback, both without `--jinja` (built-in formats) and with it (minijinja), the
//! built-in formats by name, a custom Jinja template using Python string methods, and the
//! per-turn deltas of two-turn conversations. Needs no model: SmolLM2's template is a fixture.

use rs_llama::chat::{verify_template, ChatMessage, ChatTemplates, TokenTexts};
use serde_json::Value;
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/chat").join(name)
}

fn render_json() -> Value {
    let text = std::fs::read_to_string(fixture("render.json")).expect("render.json");
    serde_json::from_str(&text).expect("render.json parses")
}

fn smollm2_template() -> String {
    std::fs::read_to_string(fixture("smollm2.jinja")).expect("smollm2.jinja")
}

/// SmolLM2's vocabulary: BOS is `<|im_start|>` (1), EOS `<|im_end|>` (2), neither added.
fn smollm2_tokens() -> TokenTexts {
    TokenTexts {
        bos: Some("<|im_start|>".into()),
        eos: Some("<|im_end|>".into()),
        add_bos: false,
        add_eos: false,
    }
}

/// Templates as llama-completion builds them for `--chat-template NAME` ("model" = none given).
fn templates(name: &str, jinja: bool) -> ChatTemplates {
    let model = smollm2_template();
    let user = if name == "model" { "" } else { name };
    ChatTemplates::new(user, Some(&model), None, smollm2_tokens(), jinja).expect("template builds")
}

fn messages(v: &Value) -> Vec<ChatMessage> {
    v.as_array()
        .expect("messages")
        .iter()
        .map(|m| ChatMessage::new(m["role"].as_str().unwrap(), m["content"].as_str().unwrap()))
        .collect()
}

#[test]
fn rendering_equals_llama_completion() {
    let cases = render_json()["cases"].as_array().expect("cases").clone();
    assert!(cases.len() >= 40, "{} cases", cases.len());
    let mut checked = Vec::new();
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        let jinja = case["jinja"].as_bool().unwrap();
        let t = templates(case["template"].as_str().unwrap(), jinja);
        let got = t
            .apply(&messages(&case["messages"]), case["add_generation_prompt"].as_bool().unwrap())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(got, case["expected"].as_str().unwrap(), "{name}");
        checked.push(name);
    }
    // The cases the task names: system+user, user only, two turns with an assistant reply
    // (the 4-message example), add_generation_prompt off (system only), for both template paths.
    for must in ["model-legacy-user", "model-jinja-user", "chatml-jinja-example", "model-jinja-system-only"] {
        assert!(checked.contains(&must), "{must} missing");
    }
}

#[test]
fn smollm2_jinja_adds_its_default_system_prompt_but_legacy_does_not() {
    let user = [ChatMessage::new("user", "Hi")];
    let jinja = templates("model", true).apply(&user, true).unwrap();
    let legacy = templates("model", false).apply(&user, true).unwrap();
    assert!(jinja.starts_with("<|im_start|>system\nYou are a helpful AI assistant named SmolLM"), "{jinja}");
    assert_eq!(legacy, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
}

#[test]
fn no_template_falls_back_to_chatml() {
    for jinja in [false, true] {
        let t = ChatTemplates::new("", None, None, smollm2_tokens(), jinja).unwrap();
        assert!(!t.was_explicit());
        let out = t.apply(&[ChatMessage::new("user", "Hi")], true).unwrap();
        assert_eq!(out, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
    }
    let t = ChatTemplates::new("", Some("{{ x }}"), None, smollm2_tokens(), false).unwrap();
    assert!(t.was_explicit());
}

#[test]
fn turn_deltas_equal_llama_completion() {
    for session in render_json()["sessions"].as_array().unwrap() {
        let jinja = session["jinja"].as_bool().unwrap();
        let deltas: Vec<&str> =
            session["deltas"].as_array().unwrap().iter().map(|d| d.as_str().unwrap()).collect();
        let t = templates("model", jinja);
        // llama-completion formats: user 1 (with the assistant's opening), the assistant's reply
        // (logged, not fed), user 2 ... The replies are the model's text, read back from the deltas.
        let mut past: Vec<ChatMessage> = Vec::new();
        let stdin = session["stdin"].as_str().unwrap();
        let mut users = stdin.lines();
        for (i, expected) in deltas.iter().enumerate() {
            let msg = if i % 2 == 0 {
                ChatMessage::new("user", users.next().unwrap())
            } else {
                let reply = expected
                    .strip_prefix("<|im_start|>assistant\n")
                    .and_then(|r| r.strip_suffix("<|im_end|>\n"))
                    .unwrap_or_else(|| panic!("assistant delta {expected:?}"));
                ChatMessage::new("assistant", reply)
            };
            let got = t.format_single(&past, &msg, msg.role == "user").unwrap();
            assert_eq!(&got, expected, "jinja={jinja} turn {i}");
            past.push(msg);
        }
        assert!(deltas.len() >= 3);
    }
}

#[test]
fn bad_templates_are_errors_not_panics() {
    let err = verify_template("{% for m in messages %}{{ m.content }", true).unwrap_err().to_string();
    assert!(err.contains("syntax error") && !err.contains('\n'), "{err}");
    let err =
        verify_template("{{ raise_exception('only user/assistant roles') }}", true).unwrap_err().to_string();
    assert!(err.contains("only user/assistant roles"), "{err}");
    // Without --jinja a template must be one of the built-in formats.
    assert!(verify_template("{{ messages }}", false).is_err());
    assert!(verify_template("llama3", false).is_ok());
    assert!(verify_template("chatml", true).is_ok());
}
