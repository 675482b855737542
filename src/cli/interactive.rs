//! llama-completion's interactive loop (`-i`, `-if`, and conversation mode `-cnv`): generate until a
//! reverse prompt, an end-of-generation token or the `-n` budget hands control to the user, read a
//! line from stdin, format it (through the chat template in conversation mode) and go on; an empty
//! read (EOF) ends the session with "EOF by user".
//!
//! The order of the checks, the budget rule (`-n` restarts at each hand-over and the user's tokens
//! count against it) and what is echoed follow llama-completion, so that a scripted session prints
//! the same bytes.

use super::args::process_escapes;
use super::completion::{LoopParts, StopReason};
use super::engine::{Engine, Vocab};
use super::perf::ContextPerf;
use super::utf8::Utf8Stream;
use crate::chat::{ChatError, ChatMessage, ChatTemplates};
use crate::model::ModelError;
use crate::{log_debug, log_info, log_warn, TokenId};
use std::collections::VecDeque;
use std::io::BufRead;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// How much accepted history the reverse-prompt check reads (llama.cpp: 32 tokens).
const REVERSE_PROMPT_WINDOW: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum InteractiveError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Chat(#[from] ChatError),
    #[error(transparent)]
    Sample(#[from] crate::sample::SampleError),
}

impl From<super::completion::LoopError> for InteractiveError {
    fn from(e: super::completion::LoopError) -> Self {
        match e {
            super::completion::LoopError::Model(e) => InteractiveError::Model(e),
            super::completion::LoopError::Sample(e) => InteractiveError::Sample(e),
        }
    }
}

/// The settings of one interactive session, resolved as llama-completion resolves them.
#[derive(Debug, Clone)]
pub struct InteractiveSettings {
    pub n_predict: i32,
    pub n_batch: usize,
    pub display_prompt: bool,
    pub special: bool,
    pub escape: bool,
    pub verbose_prompt: bool,
    pub reverse_prompts: Vec<String>,
    /// Conversation mode (`> ` prompts, the assistant's reply is recorded).
    pub conversation: bool,
    /// Still interactive after the start (false for `-st` once its turn is done).
    pub interactive: bool,
    /// Wait for the user before generating.
    pub interactive_first: bool,
    pub single_turn: bool,
    pub multiline_input: bool,
    pub input_prefix: String,
    pub input_suffix: String,
    pub input_prefix_bos: bool,
    /// Conversation mode with no `-p`: the first thing is the user's input.
    pub waiting_for_first_input: bool,
    /// A formatted initial prompt exists (its first reply is generated before any input).
    pub has_initial_prompt: bool,
}

/// The chat so far and the template that formats each new message.
pub struct Conversation<'t> {
    pub templates: &'t ChatTemplates,
    pub messages: Vec<ChatMessage>,
}

impl Conversation<'_> {
    /// Append a message and return the text it adds to the prompt.
    pub fn add(&mut self, role: &str, content: &str) -> Result<String, ChatError> {
        let msg = ChatMessage::new(role, content);
        let formatted = self.templates.format_single(&self.messages, &msg, role == "user")?;
        self.messages.push(msg);
        log_debug!("formatted: '{formatted}'\n");
        Ok(formatted)
    }
}

/// What one read of the user's input gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LineRead {
    /// A line (possibly empty at end of input); `more`: another line follows.
    Line { more: bool },
    /// Ctrl-C while waiting.
    Interrupted,
}

/// One line of input as llama.cpp's simple console reads it: the newline is dropped, then a final
/// `/` returns control at once, a final `\` flips "another line follows", and `\n` is appended.
/// `line` is empty at end of input. A read broken by Ctrl-C (EINTR with the flag set) is reported.
fn read_line(
    input: &mut dyn BufRead,
    line: &mut String,
    multiline: bool,
    interrupted: &AtomicBool,
) -> LineRead {
    line.clear();
    let mut bytes = Vec::new();
    let mut got_any = false;
    loop {
        let available = match input.fill_buf() {
            Ok(buf) => buf,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {
                if interrupted.load(Ordering::SeqCst) {
                    return LineRead::Interrupted;
                }
                continue;
            }
            Err(_) => &[],
        };
        if available.is_empty() {
            break;
        }
        got_any = true;
        if let Some(end) = available.iter().position(|&b| b == b'\n') {
            bytes.extend_from_slice(&available[..end]);
            input.consume(end + 1);
            break;
        }
        let n = available.len();
        bytes.extend_from_slice(available);
        input.consume(n);
    }
    if !got_any {
        return LineRead::Line { more: false };
    }
    *line = String::from_utf8_lossy(&bytes).into_owned();
    let mut more = multiline;
    match line.chars().last() {
        Some('/') => {
            line.pop();
            line.push('\n');
            return LineRead::Line { more: false };
        }
        Some('\\') => {
            line.pop();
            more = !more;
        }
        _ => {}
    }
    line.push('\n');
    LineRead::Line { more }
}

fn timed_decode<E: Engine>(
    engine: &mut E,
    tokens: &[TokenId],
    perf: &mut ContextPerf,
) -> Result<Vec<f32>, ModelError> {
    let start = Instant::now();
    let logits = engine.decode(tokens)?;
    perf.record_decode(tokens.len(), start.elapsed());
    Ok(logits)
}

/// Run the session from the initial prompt tokens (may be empty when waiting for the first input).
/// `last_logits`: what the context holds before anything is decoded (the warm-up's last row).
pub fn run_session<E: Engine, V: Vocab>(
    settings: &InteractiveSettings,
    initial: &[TokenId],
    last_logits: Vec<f32>,
    mut chat: Option<Conversation<'_>>,
    input: &mut dyn BufRead,
    parts: LoopParts<'_, E, V>,
) -> Result<StopReason, InteractiveError> {
    let LoopParts { engine, vocab, chain, perf, interrupted, text } = parts;
    let s = settings;
    let n_ctx = engine.n_ctx();
    let n_batch = s.n_batch.max(1);
    let reverse_tokens: Vec<TokenId> = s
        .reverse_prompts
        .iter()
        .filter_map(|r| match vocab.encode(r, false, true).as_slice() {
            [one] => Some(*one),
            _ => None,
        })
        .collect();

    let mut interactive = s.interactive;
    let mut waiting = s.waiting_for_first_input;
    let mut initial_pending = s.has_initial_prompt;
    let mut is_interacting = s.interactive_first && interactive;
    let mut need_insert_eot = false;
    let mut is_antiprompt = false;
    let mut input_echo = true;
    let mut display = s.display_prompt;
    let mut n_past = 0usize;
    let mut n_remain = s.n_predict;
    let mut n_consumed = 0usize;
    let mut pending: Vec<TokenId> = initial.to_vec();
    let mut batch: Vec<TokenId> = Vec::new();
    let mut logits = last_logits;
    let mut history: VecDeque<TokenId> = VecDeque::new();
    let mut reply: Vec<u8> = Vec::new();
    let mut out = Utf8Stream::new();
    let mut reason = StopReason::Budget;

    let remember = |history: &mut VecDeque<TokenId>, id: TokenId| {
        history.push_back(id);
        if history.len() > REVERSE_PROMPT_WINDOW {
            history.pop_front();
        }
    };

    while (n_remain != 0 && !is_antiprompt) || interactive {
        if interrupted.swap(false, Ordering::SeqCst) {
            if interactive && !is_interacting {
                is_interacting = true;
                need_insert_eot = true;
            } else {
                reason = StopReason::Interrupted;
                break;
            }
        }
        if !batch.is_empty() {
            let max = n_ctx.saturating_sub(4);
            if batch.len() > max {
                let skipped = batch.len() - max;
                batch.truncate(max);
                log_warn!(
                    "<<input too long: skipped {skipped} token{}>>",
                    if skipped != 1 { "s" } else { "" }
                );
            }
            if n_past + batch.len() >= n_ctx {
                text(&out.finish());
                log_warn!("\n\nllama_completion: context full and context shift is disabled => stopping\n");
                reason = StopReason::ContextFull;
                break;
            }
            for piece in batch.chunks(n_batch) {
                logits = timed_decode(engine, piece, perf)?;
            }
            n_past += batch.len();
        }
        batch.clear();

        if pending.len() <= n_consumed && !is_interacting {
            let id = super::completion::sample_next(chain, &logits)?;
            chain.accept_generated(id)?;
            remember(&mut history, id);
            batch.push(id);
            if s.conversation && !waiting && !vocab.is_eog(id) {
                reply.extend(vocab.piece(id, false));
            }
            input_echo = true;
            n_remain -= 1;
        } else {
            while pending.len() > n_consumed {
                batch.push(pending[n_consumed]);
                // Prompt and user input feed the penalties, not the grammar.
                chain.accept(pending[n_consumed]);
                remember(&mut history, pending[n_consumed]);
                n_consumed += 1;
                if batch.len() == n_batch {
                    break;
                }
            }
        }

        if input_echo && display {
            for &id in &batch {
                text(&out.push(&vocab.piece(id, s.special)));
            }
        }
        if input_echo && pending.len() == n_consumed {
            display = true;
        }

        if pending.len() <= n_consumed {
            if !s.reverse_prompts.is_empty() {
                is_antiprompt = ends_with_reverse_prompt(s, interactive, vocab, &history, &reverse_tokens);
                if is_antiprompt && interactive {
                    is_interacting = true;
                }
            }
            if !waiting && history.back().is_some_and(|&id| vocab.is_eog(id)) && interactive {
                if let Some(first) = s.reverse_prompts.first() {
                    pending.extend(vocab.encode(first, false, true));
                    is_antiprompt = true;
                }
                if let Some(chat) = chat.as_mut() {
                    chat.add("assistant", &String::from_utf8_lossy(&reply))?;
                }
                is_interacting = true;
                text(&out.finish());
                text(b"\n");
            }
            if s.conversation && !waiting && initial_pending {
                initial_pending = false;
                is_interacting = false;
            }

            if (n_past > 0 || waiting) && is_interacting {
                text(&out.finish());
                if s.conversation {
                    text(b"\n> ");
                }
                if s.input_prefix_bos {
                    pending.extend(vocab.bos());
                }
                if !s.input_prefix.is_empty() && !s.conversation {
                    text(s.input_prefix.as_bytes());
                }
                // (llama.cpp switches `display` to the user-input colour here; the input is not echoed.)
                let mut buffer = String::new();
                let mut line = String::new();
                loop {
                    match read_line(input, &mut line, s.multiline_input, interrupted) {
                        LineRead::Interrupted => {
                            reason = StopReason::Interrupted;
                            break;
                        }
                        LineRead::Line { more } => {
                            buffer.push_str(&line);
                            if !more {
                                break;
                            }
                        }
                    }
                }
                if reason == StopReason::Interrupted {
                    break;
                }
                display = true;
                if buffer.is_empty() {
                    text(b"EOF by user\n");
                    break;
                }
                if buffer.ends_with('\n') {
                    buffer.pop();
                }
                if !buffer.is_empty() {
                    if !s.input_suffix.is_empty() && !s.conversation {
                        text(s.input_suffix.as_bytes());
                    }
                    let n_before = pending.len();
                    if s.escape {
                        buffer = process_escapes(&buffer);
                    }
                    let (user_text, parse_special) = match chat.as_mut() {
                        Some(chat) => (chat.add("user", &buffer)?, true),
                        None => (buffer, false),
                    };
                    let prefix = vocab.encode(&s.input_prefix, false, true);
                    let line_tokens = vocab.encode(&user_text, false, parse_special);
                    let suffix = vocab.encode(&s.input_suffix, false, true);
                    if need_insert_eot && chat.is_some() {
                        pending.extend(vocab.eot().or(vocab.eos()));
                        need_insert_eot = false;
                    }
                    pending.extend(prefix);
                    pending.extend(&line_tokens);
                    pending.extend(suffix);
                    if s.verbose_prompt {
                        log_info!(
                            "llama_completion: number of tokens in prompt = {}\n",
                            pending.len() - n_before
                        );
                        for &id in &pending[n_before..] {
                            log_info!("{id:6} -> '{}'\n", String::from_utf8_lossy(&vocab.piece(id, true)));
                        }
                    }
                    reply.clear();
                    n_remain -= line_tokens.len() as i32;
                }
                input_echo = false;
            }

            if n_past > 0 || waiting {
                if is_interacting {
                    chain.reset();
                    history.clear();
                }
                is_interacting = false;
                if waiting && s.single_turn {
                    interactive = false;
                }
                waiting = false;
            }
        }

        if !interactive && batch.last().is_some_and(|&id| vocab.is_eog(id)) {
            text(&out.finish());
            text(b" [end of text]\n");
            reason = StopReason::EndOfGeneration;
            break;
        }
        if interactive && n_remain <= 0 && s.n_predict >= 0 {
            n_remain = s.n_predict;
            is_interacting = true;
        }
    }
    if reason == StopReason::Budget && is_antiprompt {
        reason = StopReason::ReversePrompt;
    }
    text(&out.finish());
    Ok(reason)
}

/// A reverse prompt ends the text of the recent history (searched from its length, plus 2 bytes
/// when not interactive, before the end), or the last token is a one-token reverse prompt.
fn ends_with_reverse_prompt<V: Vocab>(
    s: &InteractiveSettings,
    interactive: bool,
    vocab: &V,
    history: &VecDeque<TokenId>,
    reverse_tokens: &[TokenId],
) -> bool {
    let text: Vec<u8> = history.iter().flat_map(|&id| vocab.piece(id, true)).collect();
    let pad = if interactive { 0 } else { 2 };
    let found = s.reverse_prompts.iter().any(|r| {
        let needle = r.as_bytes();
        let from = text.len().saturating_sub(needle.len() + pad);
        needle.is_empty() || text[from..].windows(needle.len()).any(|w| w == needle)
    });
    found || (!text.is_empty() && history.back().is_some_and(|id| reverse_tokens.contains(id)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &str, multiline: bool) -> Vec<(String, bool)> {
        let mut reader = std::io::Cursor::new(input.as_bytes().to_vec());
        let never = AtomicBool::new(false);
        let mut out = Vec::new();
        loop {
            let mut line = String::new();
            let LineRead::Line { more } = read_line(&mut reader, &mut line, multiline, &never) else {
                panic!("not interrupted");
            };
            if line.is_empty() {
                break;
            }
            out.push((line, more));
        }
        out
    }

    #[test]
    fn console_line_rules() {
        assert_eq!(lines("hi\nthere", false), [("hi\n".into(), false), ("there\n".into(), false)]);
        assert_eq!(lines("a\\\nb/\n", false), [("a\n".into(), true), ("b\n".into(), false)]);
        assert_eq!(lines("a\nb\\\n", true), [("a\n".into(), true), ("b\n".into(), false)]);
        assert_eq!(lines("\n", false), [("\n".into(), false)]);
    }
}
