//! What the HTTP side and the slot scheduler say to each other: a generation request (already
//! tokenized and checked by the HTTP side), the events that answer it, and llama-server's error
//! kinds. The HTTP side turns these into llama-server's JSON (native, OpenAI, streamed or not).

use crate::sample::SamplingParams;
use crate::TokenId;

/// One generation, as the scheduler runs it on a slot.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateRequest {
    /// The prompt's tokens (non-empty; ids below `n_vocab`).
    pub prompt: Vec<TokenId>,
    /// Tokens to generate; -1: until an end-of-generation token or the slot's context is full.
    pub n_predict: i32,
    pub sampling: SamplingParams,
    /// Stop strings: the text ends before the first one that appears (`stop_type: "word"`).
    pub stop: Vec<String>,
    /// Top candidates to report per generated token (0: none).
    pub n_probs: usize,
    /// Report probabilities after the sampler chain instead of softmax of the raw logits.
    pub post_sampling_probs: bool,
    /// Reuse the slot's KV cache for the prompt's prefix in common with the slot's last sequence.
    pub cache_prompt: bool,
    /// The slot to run on (`id_slot`); `None`: the scheduler picks one.
    pub id_slot: Option<usize>,
    /// Stream partial results ([`GenerateEvent::Partial`]) as tokens come.
    pub stream: bool,
    /// The request's `lora` list, adapter id → scale (empty: the server-wide scales).
    pub lora: std::collections::BTreeMap<i64, f32>,
}

/// One candidate token with its probability (or log-probability, as the caller asked).
#[derive(Debug, Clone, PartialEq)]
pub struct TokenProb {
    pub id: TokenId,
    /// The token's bytes (may be part of a UTF-8 sequence).
    pub piece: Vec<u8>,
    /// Probability in `0..=1` (softmax of the logits, or after the sampler chain when
    /// `post_sampling_probs`).
    pub prob: f32,
}

/// The probabilities reported for one generated token.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenProbs {
    /// The token that was sampled, with its own probability.
    pub chosen: TokenProb,
    /// The `n_probs` most probable candidates, best first.
    pub top: Vec<TokenProb>,
}

/// Why a generation ended (llama-server's `stop_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopType {
    /// Not ended (a partial result), or cancelled.
    None,
    /// An end-of-generation token.
    Eos,
    /// `n_predict` tokens, or the slot's context is full.
    Limit,
    /// A stop string.
    Word,
}

impl StopType {
    pub fn as_str(self) -> &'static str {
        match self {
            StopType::None => "none",
            StopType::Eos => "eos",
            StopType::Limit => "limit",
            StopType::Word => "word",
        }
    }
}

/// llama-server's `timings` object (`server_slot_stats::to_json`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Timings {
    /// Prompt tokens taken from the slot's cache (not evaluated again).
    pub cache_n: usize,
    /// Prompt tokens evaluated.
    pub prompt_n: usize,
    pub prompt_ms: f64,
    /// Generated tokens so far.
    pub predicted_n: usize,
    pub predicted_ms: f64,
}

impl Timings {
    pub fn prompt_per_token_ms(&self) -> f64 {
        per_token(self.prompt_ms, self.prompt_n)
    }
    pub fn prompt_per_second(&self) -> f64 {
        per_second(self.prompt_ms, self.prompt_n)
    }
    pub fn predicted_per_token_ms(&self) -> f64 {
        per_token(self.predicted_ms, self.predicted_n)
    }
    pub fn predicted_per_second(&self) -> f64 {
        per_second(self.predicted_ms, self.predicted_n)
    }
}

fn per_token(ms: f64, n: usize) -> f64 {
    if n == 0 {
        0.0
    } else {
        ms / n as f64
    }
}

fn per_second(ms: f64, n: usize) -> f64 {
    if ms <= 0.0 {
        0.0
    } else {
        1e3 * n as f64 / ms
    }
}

/// A piece of a streamed generation: the text that can be sent now (it never ends inside a UTF-8
/// sequence or inside what may become a stop string).
#[derive(Debug, Clone, PartialEq)]
pub struct Partial {
    pub text: String,
    /// The generated tokens this text came from (`return_tokens`).
    pub tokens: Vec<TokenId>,
    /// One entry per token in `tokens` when `n_probs > 0`.
    pub probs: Vec<TokenProbs>,
    pub id_slot: usize,
    pub tokens_predicted: usize,
    pub tokens_evaluated: usize,
    pub timings: Timings,
}

/// The end of a generation.
#[derive(Debug, Clone, PartialEq)]
pub struct Final {
    /// All the generated text, cut before a stop string.
    pub content: String,
    /// When streaming: the end of the text no partial carried (held back as the possible start
    /// of a stop string when the generation ended); the final chunk carries it.
    pub unsent: String,
    /// All the generated tokens.
    pub tokens: Vec<TokenId>,
    /// One entry per generated token when `n_probs > 0` (all of them, also when streamed).
    pub probs: Vec<TokenProbs>,
    pub id_slot: usize,
    pub stop_type: StopType,
    /// The stop string that ended it (`stop_type` Word), else "".
    pub stopping_word: String,
    pub tokens_predicted: usize,
    /// Prompt tokens (evaluated or cached).
    pub tokens_evaluated: usize,
    /// Tokens in the slot's cache at the end (prompt and generated; llama-server's
    /// `tokens_cached`). The prompt tokens reused from it are `timings.cache_n`.
    pub tokens_cached: usize,
    /// The context filled up before the generation ended by itself.
    pub truncated: bool,
    pub timings: Timings,
}

/// What the scheduler sends back for a request, in order: partials (when streaming), then one
/// final or one error.
#[derive(Debug, Clone, PartialEq)]
pub enum GenerateEvent {
    Partial(Partial),
    Final(Box<Final>),
    Error(ApiError),
}

/// llama-server's error types, with their HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    InvalidRequest,
    Authentication,
    Permission,
    NotFound,
    Server,
    NotSupported,
    Unavailable,
    ExceedContextSize,
}

impl ErrorKind {
    pub fn status(self) -> u16 {
        match self {
            ErrorKind::InvalidRequest | ErrorKind::ExceedContextSize => 400,
            ErrorKind::Authentication => 401,
            ErrorKind::Permission => 403,
            ErrorKind::NotFound => 404,
            ErrorKind::Server => 500,
            ErrorKind::NotSupported => 501,
            ErrorKind::Unavailable => 503,
        }
    }

    /// The `type` field of the error body.
    pub fn type_name(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest => "invalid_request_error",
            ErrorKind::Authentication => "authentication_error",
            ErrorKind::Permission => "permission_error",
            ErrorKind::NotFound => "not_found_error",
            ErrorKind::Server => "server_error",
            ErrorKind::NotSupported => "not_supported_error",
            ErrorKind::Unavailable => "unavailable_error",
            ErrorKind::ExceedContextSize => "exceed_context_size_error",
        }
    }
}

/// An error answered as `{"error":{"code","message","type"}}` (plus `n_prompt_tokens` and `n_ctx`
/// for a prompt that does not fit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub kind: ErrorKind,
    pub message: String,
    /// `(n_prompt_tokens, n_ctx)` for [`ErrorKind::ExceedContextSize`].
    pub context: Option<(usize, usize)>,
}

impl ApiError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> ApiError {
        ApiError { kind, message: message.into(), context: None }
    }

    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorKind::InvalidRequest, message)
    }

    /// llama-server's message for a prompt longer than a slot's context.
    pub fn exceeds_context(n_prompt_tokens: usize, n_ctx: usize) -> ApiError {
        ApiError {
            kind: ErrorKind::ExceedContextSize,
            message: format!(
                "request ({n_prompt_tokens} tokens) exceeds the available context size ({n_ctx} tokens), \
                 try increasing it"
            ),
            context: Some((n_prompt_tokens, n_ctx)),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.kind.type_name())
    }
}

/// One slot's state for `GET /slots`.
#[derive(Debug, Clone, PartialEq)]
pub struct SlotInfo {
    pub id: usize,
    /// The task running on it (a request counter), else the last one it ran: like llama-server,
    /// an idle slot still shows its previous task's numbers. `None`: it never ran one.
    pub id_task: Option<u64>,
    pub n_ctx: usize,
    pub is_processing: bool,
    /// Tokens in the slot's cache (llama-server's `n_prompt_tokens`).
    pub n_cached: usize,
    /// The task's prompt tokens evaluated so far (not taken from the cache).
    pub n_prompt_processed: usize,
    /// The task's prompt tokens taken from the slot's cache.
    pub n_prompt_cached: usize,
    pub n_decoded: usize,
    pub n_remaining: i64,
    /// The task is running and may produce more tokens.
    pub has_next_token: bool,
    /// Its text so far holds a newline.
    pub has_new_line: bool,
    /// The task's request (without its prompt) for the slot's `params`.
    pub params: Option<std::sync::Arc<GenerateRequest>>,
}

/// Counters for `GET /metrics` (llamacpp: names) since the server started.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Metrics {
    /// Prompt tokens evaluated (not those reused from a slot's cache).
    pub prompt_tokens_total: u64,
    /// Prompt tokens reused from a slot's cache.
    pub prompt_tokens_cached_total: u64,
    pub prompt_seconds_total: f64,
    pub tokens_predicted_total: u64,
    pub tokens_predicted_seconds_total: f64,
    /// Batched forwards run.
    pub n_decode_total: u64,
    /// Sum over forwards of the slots busy in them (`n_busy_slots_per_decode` = this / decodes).
    pub n_busy_slots_total: u64,
    /// Largest prompt+generated length seen.
    pub n_tokens_max: u64,
    pub requests_processing: u64,
    pub requests_deferred: u64,
}

/// `POST /slots/{id}?action=…` (with `--slot-save-path`): what the scheduler is asked to do with
/// an idle slot's KV cache. Waits while the slot is busy, as llama-server defers it.
#[derive(Debug, Clone, PartialEq)]
pub enum SlotAction {
    /// Write the slot's tokens and KV rows to `path` (`filename` is echoed in the answer).
    Save { id_slot: i64, path: std::path::PathBuf, filename: String },
    /// Replace the slot's cache with a saved one.
    Restore { id_slot: i64, path: std::path::PathBuf, filename: String },
    /// Empty the slot's cache.
    Erase { id_slot: i64 },
}

impl SlotAction {
    pub fn id_slot(&self) -> i64 {
        match self {
            SlotAction::Save { id_slot, .. }
            | SlotAction::Restore { id_slot, .. }
            | SlotAction::Erase { id_slot } => *id_slot,
        }
    }
}

/// What a [`SlotAction`] did (llama-server's answer fields; `id_slot` as asked).
#[derive(Debug, Clone, PartialEq)]
pub enum SlotActionDone {
    Saved { id_slot: i64, filename: String, n_saved: usize, n_written: u64, ms: f64 },
    Restored { id_slot: i64, filename: String, n_restored: usize, n_read: u64, ms: f64 },
    Erased { id_slot: i64, n_erased: usize },
}

/// How a sequence's hidden states become its embedding (llama.cpp's `llama_pooling_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pooling {
    /// Every token's own vector (not normalized; refused by the OpenAI endpoint). llama.cpp's
    /// default for a model that names none.
    #[default]
    None,
    Mean,
    /// The first token's.
    Cls,
    /// The last token's (a prompt may then be evaluated in several passes).
    Last,
}

impl Pooling {
    /// `--pooling`'s names and the GGUF `{arch}.pooling_type` numbers (`rank`, 4, is not served).
    pub fn from_name(name: &str) -> Option<Pooling> {
        match name {
            "none" => Some(Pooling::None),
            "mean" => Some(Pooling::Mean),
            "cls" => Some(Pooling::Cls),
            "last" => Some(Pooling::Last),
            _ => None,
        }
    }

    pub fn from_gguf(n: u32) -> Option<Pooling> {
        match n {
            0 => Some(Pooling::None),
            1 => Some(Pooling::Mean),
            2 => Some(Pooling::Cls),
            3 => Some(Pooling::Last),
            _ => None,
        }
    }
}

/// One prompt to embed (its tokens checked by the HTTP side), and how to pool it.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbedRequest {
    pub tokens: Vec<TokenId>,
    pub pooling: Pooling,
}

/// The answer to an [`EmbedRequest`]: one pooled vector, or (pooling none) one per token, each
/// `n_embd` long and not yet normalized.
pub type EmbedResult = Result<Vec<Vec<f32>>, ApiError>;
