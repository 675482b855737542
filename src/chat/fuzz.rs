//! Fuzzing entry point of the chat templates (fuzz/ and tests/fuzz_corpus.rs).

use super::builtin::BUILTIN_NAMES;
use super::{verify_template, ChatMessage, ChatTemplates, TokenTexts};

/// The `chat` target. Never panics on any input (a template that fails is an `Err` inside).
///
/// Input layout: byte 0 holds flags — bit 0 `--jinja`, bit 1 `add_generation_prompt`, bits 2/3
/// `add_bos`/`add_eos`, bits 4/5 whether the vocab has a BOS/EOS text, bit 6 "use the built-in
/// named by byte 1" (the template text is then ignored). The rest, split at NUL bytes (read as lossy
/// UTF-8): the template text ("" = the ChatML fallback), then role, content, role, content ...
pub fn fuzz_render(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else { return };
    let bit = |n: u8| flags & (1 << n) != 0;
    let mut parts = rest.split(|&b| b == 0).map(|p| String::from_utf8_lossy(p).into_owned());
    let mut template = parts.next().unwrap_or_default();
    if bit(6) {
        let pick = rest.first().copied().unwrap_or(0);
        template = BUILTIN_NAMES[usize::from(pick) % BUILTIN_NAMES.len()].to_string();
    }
    let rest: Vec<String> = parts.collect();
    let messages: Vec<ChatMessage> = rest
        .chunks(2)
        .take(16)
        .map(|c| ChatMessage { role: c[0].clone(), content: c.get(1).cloned().unwrap_or_default() })
        .collect();
    let tokens = TokenTexts {
        bos: bit(4).then(|| "<s>".to_string()),
        eos: bit(5).then(|| "</s>".to_string()),
        add_bos: bit(2),
        add_eos: bit(3),
    };
    let use_jinja = bit(0);
    let _ = verify_template(&template, use_jinja);
    // As a --chat-template value and as the model's own template.
    for (user, model) in [(template.as_str(), None), ("", Some(template.as_str()))] {
        let Ok(t) = ChatTemplates::new(user, model, None, tokens.clone(), use_jinja) else { continue };
        let _ = (t.caps(), t.warnings(), t.was_explicit(), t.source().len());
        let _ = t.apply(&messages, bit(1));
        let _ = t.format_example();
        if let Some((last, past)) = messages.split_last() {
            let _ = t.format_single(past, last, bit(1));
        }
    }
}
