//! `/completion`, `/v1/completions` and `/v1/chat/completions`: parse, check the prompt against
//! the vocabulary and the slot's context, submit one generation per prompt and choice, and answer
//! with one JSON body or a stream of server-sent events.
//!
//! In a stream the first event is awaited before the response starts, so that an error the
//! scheduler reports at once (as OpenAI's API does) is a plain JSON error with its status.
//! A client that goes away drops the response body, which drops the receivers, which cancels the
//! generations and frees their slots.

use axum::http::StatusCode;
use axum::response::Response;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use super::chat::{self, ChatState};
use super::info::Ctx;
use super::json::{obj, Json};
use super::params::{self, CompletionParams};
use super::render::{self, Meta};
use super::sse::{sse_response, wait_final, SseRender};
use super::{error_json, json_response};
use crate::server::api::{ApiError, Final, GenerateEvent, StopType};
use crate::TokenId;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `/completion`: llama-server's own objects; a stream ends without `[DONE]`.
    Native,
    /// `/v1/completions`.
    OaiText,
    /// `/v1/chat/completions`.
    OaiChat,
}

/// One submitted generation.
struct Task {
    index: usize,
    /// The prompt as text (the native final's `prompt`).
    prompt: String,
    rx: UnboundedReceiver<GenerateEvent>,
}

pub async fn handle(ctx: &Ctx<'_>, kind: Kind, bytes: &[u8], id: u64) -> Result<Response, ApiError> {
    let body = params::parse_body(bytes)?;
    if !body.is_object() {
        return Err(ApiError::invalid(format!(
            "[json.exception.type_error.304] cannot use at() with {}",
            params::type_error("", &body).rsplit(' ').next().unwrap_or("null")
        )));
    }
    let loaded = ctx.loaded;
    let vocab = loaded.vocab.as_ref();
    let ordered = super::schema::ordered_body(bytes, &body);
    let mut chat_prompt = None;
    let (data, prompts, ordered) = match kind {
        Kind::OaiChat => {
            // the schema is a grammar in `mapped` from here on
            let (chat, mapped) = params::chat_prompt(&body, ordered.as_ref(), loaded, &ctx.state.cfg)?;
            let prompt = vocab.encode(&chat.prompt, true, true);
            chat_prompt = Some(chat);
            (mapped, vec![prompt], None)
        }
        _ => {
            let prompts = params::prompts(&body, vocab)?;
            (body, prompts, ordered)
        }
    };
    let p = params::completion_params(&data, ordered.as_ref(), loaded, &ctx.state.cfg)?;
    let n_ctx = loaded.backend.n_ctx_slot();
    for prompt in &prompts {
        params::check_tokens(prompt, vocab.n_vocab())?;
        if prompt.len() >= n_ctx {
            return Err(ApiError::exceeds_context(prompt.len(), n_ctx));
        }
    }
    let meta = Meta {
        model: loaded.info.name.clone(),
        id: format!("chatcmpl-{}", random_id(id)),
        created: unix_now(),
        post_sampling_probs: p.base.post_sampling_probs,
        timings_per_token: p.timings_per_token,
        return_tokens: p.return_tokens,
    };
    let settings = params::settings_json(&p.base, p.timings_per_token);
    let tasks = submit(ctx, &p, &prompts);
    // One parse of the answer per choice (the tool-call ids differ between choices).
    let mut chats: Vec<ChatState> = match &chat_prompt {
        Some(c) => (0..tasks.len())
            .map(|i| ChatState::new(c, id.wrapping_mul(1 << 16).wrapping_add(i as u64)))
            .collect(),
        None => Vec::new(),
    };
    if p.base.stream {
        stream_response(kind, meta, settings, p.include_usage, tasks, chats).await
    } else {
        let mut results = Vec::with_capacity(tasks.len());
        for (i, t) in tasks.into_iter().enumerate() {
            let f = wait_final(t.rx).await?;
            results.push(match kind {
                Kind::Native => render::native_final(&meta, t.index, &f, false, &t.prompt, &settings),
                Kind::OaiText => render::oai_text(&meta, t.index, &f.content, &f.probs, Some(&f)),
                Kind::OaiChat => {
                    let st = &mut chats[i];
                    st.update(&f.content, false)?;
                    render::oai_chat(&meta, t.index, &f, st.message(), !st.msg.tool_calls.is_empty())
                }
            });
        }
        let body = match (kind, results.len()) {
            (_, 1) => results.pop().unwrap_or(Json::Null),
            (Kind::Native, _) => Json::Arr(results),
            _ => merge_choices(results),
        };
        Ok(json_response(StatusCode::OK, &body))
    }
}

/// One generation per prompt and choice, indexed in that order.
fn submit(ctx: &Ctx<'_>, p: &CompletionParams, prompts: &[Vec<TokenId>]) -> Vec<Task> {
    let vocab = ctx.loaded.vocab.as_ref();
    let mut tasks = Vec::new();
    for prompt in prompts {
        let text = super::info::detokenize_text(vocab, prompt);
        for _ in 0..p.n_cmpl {
            let index = tasks.len();
            let rx = if prompt.is_empty() {
                empty_result()
            } else {
                let mut req = p.base.clone();
                req.prompt = prompt.clone();
                ctx.loaded.backend.submit(req)
            };
            tasks.push(Task { index, prompt: text.clone(), rx });
        }
    }
    tasks
}

/// llama-server answers an empty prompt with an empty result, without running anything.
fn empty_result() -> UnboundedReceiver<GenerateEvent> {
    let (tx, rx) = unbounded_channel();
    let _ = tx.send(GenerateEvent::Final(Box::new(Final {
        content: String::new(),
        unsent: String::new(),
        tokens: Vec::new(),
        probs: Vec::new(),
        id_slot: 0,
        stop_type: StopType::None,
        stopping_word: String::new(),
        tokens_predicted: 0,
        tokens_evaluated: 0,
        tokens_cached: 0,
        truncated: false,
        timings: Default::default(),
    })));
    rx
}

/// Several OpenAI results as one: the first object with every choice.
fn merge_choices(results: Vec<Json>) -> Json {
    let mut iter = results.into_iter();
    let mut first = iter.next().unwrap_or(Json::Null);
    let mut choices: Vec<Json> = Vec::new();
    for r in std::iter::once(&first).chain(iter.as_slice()) {
        if let Some(Json::Arr(c)) = r.get("choices") {
            choices.extend(c.iter().cloned());
        }
    }
    first.set("choices", Json::Arr(choices));
    first
}

/// What a stream remembers per choice.
#[derive(Default, Clone)]
struct Progress {
    started: bool,
}

struct StreamState {
    kind: Kind,
    /// Per choice, for chat completions: the answer parsed so far.
    chats: Vec<ChatState>,
    meta: Meta,
    settings: Json,
    include_usage: bool,
    prompts: Vec<String>,
    progress: Vec<Progress>,
}

impl SseRender for StreamState {
    fn render(&mut self, index: usize, ev: GenerateEvent) -> (String, bool) {
        let m = &self.meta;
        let prog = &mut self.progress[index];
        let events: Vec<Json> = match ev {
            GenerateEvent::Partial(p) => {
                let first = !prog.started;
                prog.started = true;
                match self.kind {
                    Kind::Native => vec![render::native_partial(m, index, &p)],
                    Kind::OaiText => vec![render::oai_text_partial(m, index, &p)],
                    Kind::OaiChat => match self.chats[index].update(&p.text, true) {
                        Ok(diffs) => {
                            let deltas = diffs.iter().map(chat::delta_json).collect();
                            render::oai_chat_partial(m, index, &p, first, deltas)
                        }
                        Err(e) => return (render::sse(&obj! { "error" => error_json(&e) }), true),
                    },
                }
            }
            GenerateEvent::Final(f) => {
                let rest = f.unsent.clone();
                match self.kind {
                    Kind::Native => {
                        let mut out = Vec::new();
                        if !rest.is_empty() {
                            out.push(obj! {
                                "index" => index, "content" => rest.as_str(), "tokens" => Json::Arr(Vec::new()),
                                "stop" => false, "id_slot" => -1, "tokens_predicted" => f.tokens_predicted,
                                "tokens_evaluated" => f.tokens_evaluated,
                            });
                        }
                        out.push(render::native_final(
                            m,
                            index,
                            &f,
                            true,
                            &self.prompts[index],
                            &self.settings,
                        ));
                        out
                    }
                    Kind::OaiText => {
                        let mut out = Vec::new();
                        if !rest.is_empty() {
                            out.push(render::oai_text(m, index, &rest, &[], None));
                        }
                        out.push(render::oai_text(m, index, "", &[], Some(&f)));
                        out
                    }
                    Kind::OaiChat => {
                        let st = &mut self.chats[index];
                        // Held-back text goes out as llama-server's last partial would carry
                        // it, then the whole text is parsed as final.
                        let held = if rest.is_empty() { Ok(Vec::new()) } else { st.update(&rest, true) };
                        match held.and_then(|mut d| {
                            st.update("", false).map(|f| {
                                d.extend(f);
                                d
                            })
                        }) {
                            Ok(diffs) => {
                                let deltas = diffs.iter().map(chat::delta_json).collect();
                                let calls = !st.msg.tool_calls.is_empty();
                                render::oai_chat_final(m, index, &f, deltas, calls, self.include_usage)
                            }
                            Err(e) => return (render::sse(&obj! { "error" => error_json(&e) }), true),
                        }
                    }
                }
            }
            GenerateEvent::Error(e) => {
                return (render::sse(&obj! { "error" => error_json(&e) }), true);
            }
        };
        (events.iter().map(render::sse).collect(), false)
    }

    fn closing(&self) -> Option<String> {
        (self.kind != Kind::Native).then(|| "data: [DONE]\n\n".to_string())
    }
}

async fn stream_response(
    kind: Kind,
    meta: Meta,
    settings: Json,
    include_usage: bool,
    tasks: Vec<Task>,
    chats: Vec<ChatState>,
) -> Result<Response, ApiError> {
    let prompts: Vec<String> = tasks.iter().map(|t| t.prompt.clone()).collect();
    let progress = vec![Progress::default(); tasks.len()];
    let state = StreamState { kind, chats, meta, settings, include_usage, prompts, progress };
    sse_response(state, tasks.into_iter().map(|t| (t.index, t.rx)).collect()).await
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// 32 letters and digits, as llama-server's completion ids.
pub fn random_id(salt: u64) -> String {
    use std::hash::{BuildHasher, Hasher};
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let mut out = String::with_capacity(32);
    let mut round = 0u64;
    while out.len() < 32 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(nanos);
        h.write_u64(salt);
        h.write_u64(round);
        let mut x = h.finish();
        for _ in 0..10 {
            out.push(ALPHABET[(x % 62) as usize] as char);
            x /= 62;
        }
        round += 1;
    }
    out.truncate(32);
    out
}
