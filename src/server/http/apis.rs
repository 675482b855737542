//! The chat APIs llama-server serves beside OpenAI's chat completions: Anthropic's Messages API
//! (`/v1/messages`, `/v1/messages/count_tokens`), OpenAI's Responses API (`/v1/responses`) and
//! the input-token counters (`/v1/responses/input_tokens`, `/v1/chat/completions/input_tokens`).
//!
//! As in llama-server, each request is first rewritten as a chat-completions body
//! ([`super::anthropic::to_chat`], [`super::responses::to_chat`]) and then takes the chat path:
//! the chat template, llama-server's request fields, the scheduler. Only the answer differs: a
//! [`Render`] per generation turns its result (or its stream of partials) into the API's JSON and
//! its named server-sent events (`event: NAME` / `data: {...}`). Neither stream ends with
//! `[DONE]`.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::Value;

use super::chat::ChatState;
use super::info::Ctx;
use super::json::{obj, Json};
use super::sse::{sse_response, wait_final, SseRender};
use super::{anthropic, json_response, params, responses};
use crate::sample::json_schema::Json as SchemaJson;
use crate::server::api::{ApiError, Final, GenerateEvent, Partial};

/// The POST paths served here.
pub fn handles(path: &str) -> bool {
    matches!(
        path,
        "/v1/messages"
            | "/v1/messages/count_tokens"
            | "/v1/responses"
            | "/responses"
            | "/v1/responses/input_tokens"
            | "/responses/input_tokens"
            | "/v1/chat/completions/input_tokens"
            | "/chat/completions/input_tokens"
    )
}

/// Answer a POST to one of the [`handles`] paths.
pub async fn route(ctx: &Ctx<'_>, path: &str, bytes: &[u8], id: u64) -> Result<Response, ApiError> {
    let body = params::parse_body(bytes)?;
    // Responses bodies keep their other fields (a schema among them), Anthropic ones do not.
    let ordered = super::schema::ordered_body(bytes, &body);
    let ordered = ordered.as_ref();
    match path {
        "/v1/messages" => run(ctx, &anthropic::to_chat(&body)?, None, Api::Anthropic, id).await,
        "/v1/messages/count_tokens" => count(ctx, &anthropic::to_chat(&body)?, None, false),
        "/v1/responses" | "/responses" => {
            run(ctx, &responses::to_chat(&body)?, ordered, Api::Responses, id).await
        }
        "/v1/responses/input_tokens" | "/responses/input_tokens" => {
            count(ctx, &responses::to_chat(&body)?, ordered, true)
        }
        _ => count(ctx, &body, ordered, true),
    }
}

/// The templated prompt's length: `{"input_tokens": N}`, with `"object": "response.input_tokens"`
/// on the OpenAI paths. Only the chat template is applied (the sampling fields are not checked).
fn count(ctx: &Ctx<'_>, chat: &Value, ordered: Option<&SchemaJson>, oai: bool) -> Result<Response, ApiError> {
    let (chat, _) = params::chat_prompt(chat, ordered, ctx.loaded, &ctx.state.cfg)?;
    let n = ctx.loaded.vocab.encode(&chat.prompt, true, true).len();
    let mut out = obj! { "input_tokens" => n };
    if oai {
        out.set("object", "response.input_tokens");
    }
    Ok(json_response(StatusCode::OK, &out))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    Anthropic,
    Responses,
}

/// One named server-sent event.
pub struct Event {
    pub name: &'static str,
    pub data: Json,
}

impl Event {
    pub fn new(name: &'static str, data: Json) -> Event {
        Event { name, data }
    }
}

/// `event: NAME\ndata: JSON\n\n` for each event.
pub fn sse(events: &[Event]) -> String {
    events.iter().map(|e| format!("event: {}\ndata: {}\n\n", e.name, e.data.to_text())).collect()
}

/// How one generation's result is answered in an API's shape. Each renderer parses its own
/// answer (reasoning, content, tool calls); a parse that fails is the error it returns.
pub trait Render: Send + Sync {
    /// The whole answer (no streaming).
    fn whole(&mut self, f: &Final) -> Result<Json, ApiError>;
    /// The events for a streamed piece.
    fn partial(&mut self, p: &Partial) -> Result<Vec<Event>, ApiError>;
    /// The last events of a stream.
    fn finish(&mut self, f: &Final) -> Result<Vec<Event>, ApiError>;
    /// An error once the stream has started (its last event).
    fn error(&self, e: &ApiError) -> String;
}

/// What every generation of a request shares.
pub struct Meta {
    pub model: String,
    pub timings_per_token: bool,
}

impl Api {
    fn render(self, meta: &Meta, salt: u64, chat: ChatState) -> Box<dyn Render> {
        match self {
            Api::Anthropic => Box::new(anthropic::Stream::new(meta, salt, chat)),
            Api::Responses => Box::new(responses::Stream::new(meta, salt, chat)),
        }
    }
}

/// Run a chat-completions body and answer in `api`'s shape.
async fn run(
    ctx: &Ctx<'_>,
    chat: &Value,
    ordered: Option<&SchemaJson>,
    api: Api,
    id: u64,
) -> Result<Response, ApiError> {
    let loaded = ctx.loaded;
    let vocab = loaded.vocab.as_ref();
    let (chat, mapped) = params::chat_prompt(chat, ordered, loaded, &ctx.state.cfg)?;
    let prompt = vocab.encode(&chat.prompt, true, true);
    let p = params::completion_params(&mapped, None, loaded, &ctx.state.cfg)?;
    params::check_tokens(&prompt, vocab.n_vocab())?;
    let n_ctx = loaded.backend.n_ctx_slot();
    if prompt.len() >= n_ctx {
        return Err(ApiError::exceeds_context(prompt.len(), n_ctx));
    }
    let meta = Meta { model: loaded.info.name.clone(), timings_per_token: p.timings_per_token };
    let mut renders = Vec::with_capacity(p.n_cmpl);
    let mut rxs = Vec::with_capacity(p.n_cmpl);
    for i in 0..p.n_cmpl {
        let mut req = p.base.clone();
        req.prompt = prompt.clone();
        rxs.push(loaded.backend.submit(req));
        let salt = id.wrapping_mul(1 << 16).wrapping_add(i as u64);
        renders.push(api.render(&meta, salt, ChatState::new(&chat, salt)));
    }
    if p.base.stream {
        return sse_response(Renders(renders), rxs.into_iter().enumerate().collect()).await;
    }
    let mut out = Vec::with_capacity(rxs.len());
    for (r, rx) in renders.iter_mut().zip(rxs) {
        let f = wait_final(rx).await?;
        out.push(r.whole(&f)?);
    }
    // One result is an object; several (`n`) an array, as llama-server answers them.
    let body = if out.len() == 1 { out.pop().unwrap_or(Json::Null) } else { Json::Arr(out) };
    Ok(json_response(StatusCode::OK, &body))
}

/// Each generation's own renderer (one per choice).
struct Renders(Vec<Box<dyn Render>>);

impl SseRender for Renders {
    fn render(&mut self, index: usize, ev: GenerateEvent) -> (String, bool) {
        let r = &mut self.0[index];
        match ev {
            GenerateEvent::Partial(p) => match r.partial(&p) {
                Ok(events) => (sse(&events), false),
                Err(e) => (r.error(&e), true),
            },
            GenerateEvent::Final(f) => match r.finish(&f) {
                Ok(events) => (sse(&events), false),
                Err(e) => (r.error(&e), true),
            },
            GenerateEvent::Error(e) => (r.error(&e), true),
        }
    }
}

/// `n` letters and digits (llama-server's `random_string`), different for each call.
pub fn random_id(n: usize, salt: u64) -> String {
    use std::hash::{BuildHasher, Hasher};
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    // A fresh RandomState is freshly keyed: the ids do not repeat across calls or processes.
    let state = std::collections::hash_map::RandomState::new();
    let mut out = String::with_capacity(n);
    let mut block = 0u64;
    while out.len() < n {
        let mut h = state.build_hasher();
        h.write_u128(nanos);
        h.write_u64(salt);
        h.write_u64(block);
        let mut x = h.finish();
        // 10 base-62 digits use 60 of the hash's 64 bits.
        for _ in 0..10.min(n - out.len()) {
            out.push(ALPHABET[(x % 62) as usize] as char);
            x /= 62;
        }
        block += 1;
    }
    out
}

/// `timings` of a final result, as the chat renderer writes them.
pub fn timings(f: &Final) -> Json {
    super::render::timings(&f.timings)
}

/// A value's text if it is a string, else `""` (llama-server's `json_value(.., std::string())`).
pub fn str_or_empty<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::extract::{Request, State};
    use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

    use super::super::{handle, AppState, Backend, Loaded, ModelInfo, Vocabulary};
    use super::*;
    use crate::chat::{ChatTemplates, TokenTexts};
    use axum::body::Body;

    use crate::server::api::{ErrorKind, GenerateRequest, Metrics, SlotInfo, StopType, Timings};
    use crate::TokenId;

    /// Byte-level: byte b is id b.
    struct Bytes;

    impl Vocabulary for Bytes {
        fn n_vocab(&self) -> usize {
            256
        }
        fn encode(&self, text: &str, _add_special: bool, _parse_special: bool) -> Vec<TokenId> {
            text.bytes().map(TokenId::from).collect()
        }
        fn piece(&self, id: TokenId) -> Vec<u8> {
            vec![id as u8]
        }
    }

    /// Streams "Hello" and ends at the token limit with " Par" held back (the possible start of
    /// the stop string "Paris"); or fails after the first piece.
    struct Scripted {
        fail_midway: bool,
    }

    impl Backend for Scripted {
        fn submit(&self, req: GenerateRequest) -> UnboundedReceiver<GenerateEvent> {
            let (tx, rx) = unbounded_channel();
            let timings = Timings { cache_n: 2, prompt_n: req.prompt.len() - 2, ..Default::default() };
            let n = req.prompt.len();
            let _ = tx.send(GenerateEvent::Partial(Partial {
                text: "Hello".into(),
                tokens: vec![1],
                probs: Vec::new(),
                id_slot: 0,
                tokens_predicted: 1,
                tokens_evaluated: n,
                timings,
            }));
            if self.fail_midway {
                let _ = tx.send(GenerateEvent::Error(ApiError::new(ErrorKind::Server, "boom")));
                return rx;
            }
            let _ = tx.send(GenerateEvent::Final(Box::new(Final {
                content: "Hello Par".into(),
                unsent: " Par".into(),
                tokens: vec![1, 2, 3],
                probs: Vec::new(),
                id_slot: 0,
                stop_type: StopType::Limit,
                stopping_word: String::new(),
                tokens_predicted: 3,
                tokens_evaluated: n,
                tokens_cached: n + 3,
                truncated: false,
                timings,
            })));
            rx
        }
        fn slots(&self) -> Vec<SlotInfo> {
            Vec::new()
        }
        fn metrics(&self) -> Metrics {
            Metrics::default()
        }
        fn n_ctx_slot(&self) -> usize {
            4096
        }
        fn total_slots(&self) -> usize {
            1
        }
        fn shutdown(&self) {}
    }

    async fn post(fail_midway: bool, path: &str, body: serde_json::Value) -> (u16, String) {
        let state = Arc::new(AppState::new(crate::server::args::parse::<&str>(&[]).unwrap()));
        let templates = ChatTemplates::new("chatml", None, None, TokenTexts::default(), true).unwrap();
        let info = ModelInfo { name: "fake.gguf".into(), ..Default::default() };
        let backend = Arc::new(Scripted { fail_midway });
        let loaded =
            Loaded { backend, vocab: Arc::new(Bytes), templates, info, sampling: Default::default() };
        let _ = state.loaded.set(loaded);
        let req = Request::post(path).body(Body::from(body.to_string())).unwrap();
        let res = handle(State(state), req).await;
        let status = res.status().as_u16();
        let bytes = axum::body::to_bytes(res.into_body(), usize::MAX).await.unwrap();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }

    /// (event name, data) of each event.
    fn parse(text: &str) -> Vec<(String, serde_json::Value)> {
        text.split("\n\n")
            .filter(|b| !b.is_empty())
            .map(|b| {
                let (name, data) = b.split_once("\ndata: ").unwrap_or(("", b.trim_start_matches("data: ")));
                (name.trim_start_matches("event: ").to_string(), serde_json::from_str(data).unwrap())
            })
            .collect()
    }

    fn names(events: &[(String, serde_json::Value)]) -> Vec<&str> {
        events.iter().map(|(n, _)| n.as_str()).collect()
    }

    #[tokio::test]
    async fn held_back_text_is_one_more_delta() {
        let body = serde_json::json!({"messages": [{"role": "user", "content": "Hi"}], "stream": true});
        let (status, text) = post(false, "/v1/messages", body).await;
        assert_eq!(status, 200, "{text}");
        let ev = parse(&text);
        assert_eq!(
            names(&ev),
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert_eq!(ev[3].1["delta"]["text"], " Par");
        assert_eq!(ev[5].1["delta"]["stop_reason"], "max_tokens");
        let usage = &ev[0].1["message"]["usage"];
        assert_eq!(
            (usage["cache_read_input_tokens"].as_u64(), usage["output_tokens"].as_u64()),
            (Some(2), Some(0))
        );

        let body = serde_json::json!({"input": "Hi", "stream": true});
        let (_, text) = post(false, "/v1/responses", body).await;
        let ev = parse(&text);
        let deltas: String = ev.iter().filter_map(|(_, d)| d["delta"].as_str()).collect();
        assert_eq!(deltas, "Hello Par");
        assert_eq!(names(&ev).iter().filter(|n| **n == "response.output_item.added").count(), 1);
        assert_eq!(ev.last().unwrap().1["response"]["output"][0]["content"][0]["text"], "Hello Par");
    }

    #[tokio::test]
    async fn an_error_midway_ends_the_stream() {
        let body = serde_json::json!({"messages": [{"role": "user", "content": "Hi"}], "stream": true});
        let (status, text) = post(true, "/v1/messages", body).await;
        assert_eq!(status, 200);
        let ev = parse(&text);
        assert_eq!(names(&ev), ["message_start", "content_block_start", "content_block_delta", "error"]);
        assert_eq!(ev[3].1, serde_json::json!({"code": 500, "message": "boom", "type": "server_error"}));
        let (_, text) = post(true, "/v1/responses", serde_json::json!({"input": "Hi", "stream": true})).await;
        assert!(
            text.ends_with(
                "data: {\"error\":{\"code\":500,\"message\":\"boom\",\"type\":\"server_error\"}}\n\n"
            ),
            "{text}"
        );
        let (status, text) = post(true, "/v1/responses", serde_json::json!({"input": "Hi"})).await;
        assert_eq!((status, text.contains("boom")), (500, true));
    }

    #[test]
    fn ids_are_alphanumeric_and_fresh() {
        let a = random_id(32, 1);
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|b| b.is_ascii_alphanumeric()), "{a}");
        assert_ne!(a, random_id(32, 1));
        assert_eq!(random_id(5, 0).len(), 5);
    }

    #[test]
    fn events_are_named() {
        let text = sse(&[Event::new("message_stop", obj! { "type" => "message_stop" })]);
        assert_eq!(text, "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
    }
}
