//! llama-completion's generation loop (non-interactive): feed the prompt in `n_batch` pieces, echo it,
//! then sample, print and decode one token at a time until `-n` runs out, an end-of-generation token
//! comes, a reverse prompt shows up at the end of the text, or the context is full.

use super::engine::{Engine, Vocab};
use super::perf::ContextPerf;
use super::utf8::Utf8Stream;
use crate::model::ModelError;
use crate::sample::{SampleError, SamplerChain};
use crate::TokenId;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// How much of the accepted history the reverse-prompt check looks at (llama.cpp: 32 tokens).
const REVERSE_PROMPT_WINDOW: usize = 32;

/// The loop's settings (a slice of the run configuration).
#[derive(Debug, Clone)]
pub struct LoopSettings {
    pub n_predict: i32,
    pub n_batch: usize,
    pub display_prompt: bool,
    pub special: bool,
    pub reverse_prompts: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// `-n` tokens were generated (or `-n 0`).
    Budget,
    EndOfGeneration,
    ReversePrompt,
    ContextFull,
    Interrupted,
}

/// Warm-up like llama.cpp: decode [BOS, EOS] (those that exist, else token 0), then forget the
/// sequence. The last logits are returned: llama.cpp's context keeps them, and an interactive
/// session that samples before decoding anything (the user passed the first turn back with an
/// empty line) samples from them.
pub fn warm_up<E: Engine, V: Vocab>(
    engine: &mut E,
    vocab: &V,
    n_batch: usize,
    perf: &mut ContextPerf,
) -> Result<Vec<f32>, ModelError> {
    let mut tokens: Vec<TokenId> = vocab.bos().into_iter().chain(vocab.eos()).collect();
    if tokens.is_empty() {
        tokens.push(0);
    }
    tokens.truncate(n_batch.max(1));
    let logits = timed_decode(engine, &tokens, perf)?;
    engine.clear();
    Ok(logits)
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

/// Why the loop stopped short: the model failed, or the grammar could not go on.
#[derive(Debug, thiserror::Error)]
pub enum LoopError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Sample(#[from] SampleError),
}

/// Sample the next token: none at all is the model's failure, none the grammar allows is the
/// grammar's (it may be complete while `--ignore-eos` bans the end).
pub fn sample_next(chain: &mut SamplerChain, logits: &[f32]) -> Result<TokenId, LoopError> {
    match chain.sample(logits) {
        Some(id) => Ok(id),
        None if chain.grammar().is_some() => Err(SampleError::GrammarExhausted.into()),
        None => Err(ModelError::Invalid("sampling found no candidate token".into()).into()),
    }
}

/// Where the loop's text goes (stdout through [`super::log::text`] in the binary).
pub type TextSink<'a> = dyn FnMut(&[u8]) + 'a;

/// Everything the loop works on besides its settings.
pub struct LoopParts<'a, E, V> {
    pub engine: &'a mut E,
    pub vocab: &'a V,
    pub chain: &'a mut SamplerChain,
    pub perf: &'a mut ContextPerf,
    pub interrupted: &'a AtomicBool,
    pub text: &'a mut TextSink<'a>,
}

/// Run the loop over an already tokenized prompt.
pub fn generate<E: Engine, V: Vocab>(
    settings: &LoopSettings,
    prompt: &[TokenId],
    parts: LoopParts<'_, E, V>,
) -> Result<StopReason, LoopError> {
    let LoopParts { engine, vocab, chain, perf, interrupted, text } = parts;
    let n_ctx = engine.n_ctx();
    let n_batch = settings.n_batch.max(1);
    // Reverse prompts that are one token are also matched by id (e.g. a control token).
    let reverse_tokens: Vec<TokenId> = settings
        .reverse_prompts
        .iter()
        .filter_map(|r| match vocab.encode(r, false, true).as_slice() {
            [one] => Some(*one),
            _ => None,
        })
        .collect();

    let mut out = Utf8Stream::new();
    let mut history: VecDeque<TokenId> = VecDeque::new();
    let mut logits: Vec<f32> = Vec::new();
    let mut batch: Vec<TokenId> = Vec::new();
    let mut n_past = 0usize;
    let mut n_remain = settings.n_predict;
    let mut n_consumed = 0usize;
    let mut display = settings.display_prompt;
    let mut reason = StopReason::Budget;

    let remember = |history: &mut VecDeque<TokenId>, id: TokenId| {
        history.push_back(id);
        if history.len() > REVERSE_PROMPT_WINDOW {
            history.pop_front();
        }
    };

    while n_remain != 0 {
        if interrupted.load(Ordering::Relaxed) {
            reason = StopReason::Interrupted;
            break;
        }
        if !batch.is_empty() {
            if n_past + batch.len() >= n_ctx {
                text(&out.finish());
                crate::log_warn!(
                    "\n\nllama_completion: context full and context shift is disabled => stopping\n"
                );
                reason = StopReason::ContextFull;
                break;
            }
            logits = timed_decode(engine, &batch, perf)?;
            n_past += batch.len();
        }
        batch.clear();

        if prompt.len() <= n_consumed {
            let id = sample_next(chain, &logits)?;
            chain.accept_generated(id)?;
            remember(&mut history, id);
            batch.push(id);
            n_remain -= 1;
        } else {
            while prompt.len() > n_consumed {
                let id = prompt[n_consumed];
                batch.push(id);
                // The prompt feeds the penalties, not the grammar.
                chain.accept(id);
                remember(&mut history, id);
                n_consumed += 1;
                if batch.len() == n_batch {
                    break;
                }
            }
        }

        if display {
            for &id in &batch {
                text(&out.push(&vocab.piece(id, settings.special)));
            }
        }
        if prompt.len() == n_consumed {
            display = true;
        }

        if prompt.len() <= n_consumed && ends_with_reverse_prompt(settings, vocab, &history, &reverse_tokens)
        {
            reason = StopReason::ReversePrompt;
            break;
        }
        if batch.last().is_some_and(|&id| vocab.is_eog(id)) {
            text(&out.finish());
            text(b" [end of text]\n");
            reason = StopReason::EndOfGeneration;
            break;
        }
    }
    text(&out.finish());
    Ok(reason)
}

/// llama.cpp's check: the text of the last 32 accepted tokens contains a reverse prompt starting no
/// earlier than its length plus 2 bytes from the end, or the last token is a one-token reverse prompt.
fn ends_with_reverse_prompt<V: Vocab>(
    settings: &LoopSettings,
    vocab: &V,
    history: &VecDeque<TokenId>,
    reverse_tokens: &[TokenId],
) -> bool {
    if settings.reverse_prompts.is_empty() {
        return false;
    }
    let text: Vec<u8> = history.iter().flat_map(|&id| vocab.piece(id, true)).collect();
    let found = settings.reverse_prompts.iter().any(|r| {
        let needle = r.as_bytes();
        let from = text.len().saturating_sub(needle.len() + 2);
        needle.is_empty() || text[from..].windows(needle.len()).any(|w| w == needle)
    });
    let last_is_token = !text.is_empty() && history.back().is_some_and(|id| reverse_tokens.contains(id));
    found || last_is_token
}
