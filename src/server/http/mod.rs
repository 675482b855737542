//! The HTTP side of `rs-llama-server`: llama-server's endpoints, request fields, JSON and
//! server-sent events over axum, in front of a [`Backend`] (the slot scheduler, or a scripted fake
//! in tests).
//!
//! One handler takes every request and routes it itself, because llama-server's answers do not
//! fit a router's defaults: an unknown path *or method* is a 404 with a JSON body, every request
//! (OPTIONS aside) is refused with 503 while the model loads, and the API key is checked before
//! routing on every path but the public ones.

pub mod anthropic;
pub mod apis;
pub mod chat;
pub mod completion;
pub mod cors_proxy;
pub mod cors_proxy_url;
pub mod embeddings;
pub mod infill;
pub mod info;
pub mod json;
pub mod nljson;
pub mod params;
pub mod render;
pub mod responses;
pub mod schema;
pub mod slot_actions;
pub mod sse;
pub mod vertex;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use tokio::sync::mpsc::UnboundedReceiver;

use super::api::{
    ApiError, EmbedRequest, EmbedResult, ErrorKind, GenerateEvent, GenerateRequest, Metrics, SlotAction,
    SlotActionDone, SlotInfo,
};
use super::args::ServerConfig;
use crate::chat::ChatTemplates;
use crate::TokenId;
use json::{obj, Json};

/// What the HTTP side needs from whatever runs generations.
pub trait Backend: Send + Sync {
    /// Queue a generation; dropping the receiver cancels it.
    fn submit(&self, req: GenerateRequest) -> UnboundedReceiver<GenerateEvent>;
    fn slots(&self) -> Vec<SlotInfo>;
    fn metrics(&self) -> Metrics;
    /// The most tokens one request may hold (prompt included).
    fn n_ctx_slot(&self) -> usize;
    fn total_slots(&self) -> usize;
    fn shutdown(&self);
    /// The model is unloaded until the next generation (`--sleep-idle-seconds`).
    fn is_sleeping(&self) -> bool {
        false
    }
    /// `POST /slots/{id}?action=…` (a backend without slots of its own refuses it).
    fn slot_action(
        &self,
        _action: SlotAction,
    ) -> tokio::sync::oneshot::Receiver<Result<SlotActionDone, ApiError>> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let _ = tx.send(Err(ApiError::new(ErrorKind::NotSupported, "slot actions are not supported here")));
        rx
    }
    /// Embed one prompt (a backend without a model refuses it).
    fn embed(&self, _req: EmbedRequest) -> tokio::sync::oneshot::Receiver<EmbedResult> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let _ = tx.send(Err(ApiError::new(ErrorKind::NotSupported, "embeddings are not supported here")));
        rx
    }
}

impl Backend for super::scheduler::SchedulerHandle {
    fn submit(&self, req: GenerateRequest) -> UnboundedReceiver<GenerateEvent> {
        super::scheduler::SchedulerHandle::submit(self, req)
    }
    fn slots(&self) -> Vec<SlotInfo> {
        super::scheduler::SchedulerHandle::slots(self)
    }
    fn metrics(&self) -> Metrics {
        super::scheduler::SchedulerHandle::metrics(self)
    }
    fn n_ctx_slot(&self) -> usize {
        super::scheduler::SchedulerHandle::n_ctx_slot(self)
    }
    fn total_slots(&self) -> usize {
        super::scheduler::SchedulerHandle::total_slots(self)
    }
    fn shutdown(&self) {
        super::scheduler::SchedulerHandle::shutdown(self)
    }
    fn is_sleeping(&self) -> bool {
        super::scheduler::SchedulerHandle::is_sleeping(self)
    }
    fn slot_action(
        &self,
        action: SlotAction,
    ) -> tokio::sync::oneshot::Receiver<Result<SlotActionDone, ApiError>> {
        super::scheduler::SchedulerHandle::slot_action(self, action)
    }
    fn embed(&self, req: EmbedRequest) -> tokio::sync::oneshot::Receiver<EmbedResult> {
        super::scheduler::SchedulerHandle::embed(self, req)
    }
}

/// The tokenizer as the endpoints use it (a trait so that tests need no model file).
pub trait Vocabulary: Send + Sync {
    fn n_vocab(&self) -> usize;
    fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<TokenId>;
    /// A token's bytes, special tokens rendered (llama.cpp's `common_token_to_piece`).
    fn piece(&self, id: TokenId) -> Vec<u8>;
    /// The fill-in-the-middle tokens (`/infill`); none by default.
    fn fim(&self) -> infill::FimTokens {
        infill::FimTokens::default()
    }
}

impl Vocabulary for crate::tokenizer::Tokenizer {
    fn n_vocab(&self) -> usize {
        crate::tokenizer::Tokenizer::n_vocab(self)
    }
    fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<TokenId> {
        crate::tokenizer::Tokenizer::encode(self, text, add_special, parse_special)
    }
    fn piece(&self, id: TokenId) -> Vec<u8> {
        self.token_to_piece(id, true)
    }
    fn fim(&self) -> infill::FimTokens {
        let [pre, suf, mid, rep, sep] = crate::tokenizer::Tokenizer::fim(self);
        let bos = if self.add_bos() { self.bos() } else { None };
        infill::FimTokens { pre, suf, mid, rep, sep, bos }
    }
}

/// Facts about the loaded model for `/props` and `/v1/models`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelInfo {
    /// The first of `-a`, else the `-m` path as given (llama-server's `model_name`).
    pub name: String,
    /// `-a`'s names, else the name alone (`/v1/models`' `aliases`).
    pub aliases: Vec<String>,
    pub path: String,
    pub n_ctx_train: usize,
    pub n_embd: usize,
    pub n_params: u64,
    pub size: u64,
    pub ftype: String,
    /// llama.cpp's `llama_vocab_type` number (1 SPM, 2 BPE).
    pub vocab_type: i32,
    pub bos_token: String,
    pub eos_token: String,
    /// How embeddings are pooled (`--pooling`, else the model's `{arch}.pooling_type`).
    pub pooling: super::api::Pooling,
    /// The physical batch as llama.cpp's context has it (`-ub`, capped by `-b` and `-c`): an
    /// embedding that cannot be split must fit in it (0: `-ub` as given).
    pub n_ubatch: usize,
    /// The LoRA adapters and their server-wide scales (shared with the slots).
    pub lora: Arc<crate::server::lora::ServerLoras>,
}

/// Everything that exists once the model is loaded.
pub struct Loaded {
    pub backend: Arc<dyn Backend>,
    pub vocab: Arc<dyn Vocabulary>,
    pub templates: ChatTemplates,
    pub info: ModelInfo,
    /// The server's default sampling settings with the model's `general.sampling.*` applied.
    pub sampling: crate::sample::SamplingParams,
}

/// The state every request sees.
pub struct AppState {
    pub cfg: ServerConfig,
    /// Empty while the model loads (every request but OPTIONS then gets 503).
    pub loaded: OnceLock<Loaded>,
    /// Unix time the process started (`Process-Start-Time-Unix` on /metrics).
    pub t_start: u64,
    next_id: AtomicU64,
}

impl AppState {
    pub fn new(cfg: ServerConfig) -> AppState {
        let t_start =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        AppState { cfg, loaded: OnceLock::new(), t_start, next_id: AtomicU64::new(0) }
    }

    fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }
}

/// llama-server's limit on a request body (cpp-httplib's default payload limit).
pub const MAX_BODY_BYTES: usize = 100 * 1024 * 1024;

/// The 503 answer's message while the model loads.
const LOADING: &str = "Loading model";

/// The message of the error for a body over [`MAX_BODY_BYTES`] (answered 413 without a body).
const PAYLOAD_TOO_LARGE: &str = "Payload Too Large";

/// The axum service: one fallback handler that routes by itself.
pub fn router(state: Arc<AppState>) -> axum::Router {
    axum::Router::new().fallback(handle).with_state(state)
}

/// Paths served without an API key.
fn is_public(path: &str) -> bool {
    matches!(path, "/health" | "/v1/health" | "/")
}

async fn handle(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let origin = req.headers().get(header::ORIGIN).cloned();
    let mut res = if req.method() == Method::OPTIONS {
        preflight()
    } else {
        match state.loaded.get() {
            None => error_response(&ApiError::new(ErrorKind::Unavailable, LOADING)),
            Some(loaded) => {
                if !is_public(req.uri().path()) && !authorized(&state.cfg.api_keys, req.headers()) {
                    crate::log_warn!("srv  {:>12.12}: unauthorized: Invalid API Key\n", "operator()");
                    error_response(&ApiError::new(ErrorKind::Authentication, "Invalid API Key"))
                } else {
                    route(&state, loaded, req).await.unwrap_or_else(|e| error_response(&e))
                }
            }
        }
    };
    finish_headers(&mut res, origin);
    res
}

/// What llama-server (cpp-httplib) puts on every answer: `Server: llama.cpp`, the CORS origin
/// (the request's `Origin` echoed back, as it allows any origin with credentials; empty without
/// one), and `Connection: close` after an error status (cpp-httplib closes the connection then).
fn finish_headers(res: &mut Response, origin: Option<HeaderValue>) {
    let close = res.status().is_client_error() || res.status().is_server_error();
    let h = res.headers_mut();
    h.insert(header::SERVER, HeaderValue::from_static("llama.cpp"));
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.unwrap_or_else(|| HeaderValue::from_static("")));
    if close {
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
}

fn preflight() -> Response {
    let mut res = Response::new(Body::empty());
    let h = res.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
    h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST, DELETE, OPTIONS"));
    h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("*"));
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
    res
}

/// `Authorization: Bearer K` (or the bare key), else `X-Api-Key: K`.
fn authorized(keys: &[String], headers: &HeaderMap) -> bool {
    if keys.is_empty() {
        return true;
    }
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let mut given = text("authorization");
    if given.is_empty() {
        given = text("x-api-key");
    }
    let given = given.strip_prefix("Bearer ").unwrap_or(&given);
    keys.iter().any(|k| k == given)
}

async fn route(state: &AppState, loaded: &Loaded, req: Request) -> Result<Response, ApiError> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or_default().to_string();
    let ctx = info::Ctx { state, loaded };
    if let Some(v) = &state.cfg.vertex {
        if method == Method::GET && v.health.as_deref() == Some(path.as_str()) {
            return get(&ctx, "/health", &query);
        }
        if method == Method::POST && path == v.predict {
            let body = read_body(req, state.cfg.timeout_s).await?;
            return vertex::predict(&ctx, &body).await;
        }
    }
    if path == "/cors-proxy" && (method == Method::GET || method == Method::POST) {
        if !state.cfg.ui_mcp_proxy {
            return Ok(cors_proxy::disabled());
        }
        let headers = req.headers().clone();
        let body = read_body(req, state.cfg.timeout_s).await?;
        return cors_proxy::handle(&method, &query, &headers, body).await;
    }
    if method == Method::GET {
        return get(&ctx, &path, &query);
    }
    if method == Method::POST && slot_actions::handles(&path) {
        let body = read_body(req, state.cfg.timeout_s).await?;
        return slot_actions::handle(&ctx, &path, &query, &body).await;
    }
    if method != Method::POST || !POST_PATHS.contains(&path.as_str()) {
        return Err(not_found());
    }
    let body = read_body(req, state.cfg.timeout_s).await?;
    post(&ctx, &path, &body).await
}

/// The GET endpoints, in llama-server's order of registration.
pub const GET_PATHS: &[&str] =
    &["/health", "/v1/health", "/metrics", "/props", "/models", "/v1/models", "/lora-adapters", "/slots"];

/// The POST endpoints, in llama-server's order of registration (`/slots/{id}` actions are
/// [`slot_actions`]).
pub const POST_PATHS: &[&str] = &[
    "/props",
    "/completion",
    "/completions",
    "/v1/completions",
    "/chat/completions",
    "/v1/chat/completions",
    "/v1/responses",
    "/responses",
    "/v1/messages",
    "/infill",
    "/embedding",
    "/embeddings",
    "/v1/embeddings",
    "/rerank",
    "/reranking",
    "/v1/rerank",
    "/v1/reranking",
    "/tokenize",
    "/detokenize",
    "/apply-template",
    "/chat/completions/input_tokens",
    "/v1/chat/completions/input_tokens",
    "/responses/input_tokens",
    "/v1/responses/input_tokens",
    "/v1/messages/count_tokens",
    "/lora-adapters",
];

fn get(ctx: &info::Ctx<'_>, path: &str, query: &str) -> Result<Response, ApiError> {
    match path {
        "/health" | "/v1/health" => Ok(json_response(StatusCode::OK, &obj! { "status" => "ok" })),
        "/models" | "/v1/models" => Ok(json_response(StatusCode::OK, &info::models(ctx))),
        "/props" => Ok(json_response(StatusCode::OK, &info::props(ctx))),
        "/slots" => info::slots(ctx, query),
        "/metrics" => info::metrics(ctx),
        "/lora-adapters" => Ok(json_response(StatusCode::OK, &ctx.loaded.info.lora.to_json())),
        _ => Err(not_found()),
    }
}

async fn post(ctx: &info::Ctx<'_>, path: &str, body: &[u8]) -> Result<Response, ApiError> {
    let id = ctx.state.next_id();
    match path {
        "/props" => info::post_props(ctx),
        "/tokenize" => info::tokenize(ctx, &params::parse_body(body)?),
        "/detokenize" => info::detokenize(ctx, &params::parse_body(body)?),
        "/apply-template" => info::apply_template(ctx, body),
        "/completion" | "/completions" => completion::handle(ctx, completion::Kind::Native, body, id).await,
        "/v1/completions" => completion::handle(ctx, completion::Kind::OaiText, body, id).await,
        "/chat/completions" | "/v1/chat/completions" => {
            completion::handle(ctx, completion::Kind::OaiChat, body, id).await
        }
        "/embedding" | "/embeddings" => embeddings::handle(ctx, false, body).await,
        "/v1/embeddings" => embeddings::handle(ctx, true, body).await,
        "/infill" => infill::handle(ctx, body, id).await,
        // Reranking needs a model with a classifier head and `--reranking`, which rs-llama
        // does not have: the answer of a llama-server started without it.
        "/rerank" | "/reranking" | "/v1/rerank" | "/v1/reranking" => Err(ApiError::new(
            ErrorKind::NotSupported,
            "This server does not support reranking. Start it with `--reranking`",
        )),
        p if apis::handles(p) => apis::route(ctx, p, body, id).await,
        "/lora-adapters" => post_lora_adapters(ctx, body),
        _ => Err(not_found()),
    }
}

/// `POST /lora-adapters`: the server-wide scales (see [`crate::server::lora`]).
fn post_lora_adapters(ctx: &info::Ctx<'_>, body: &[u8]) -> Result<Response, ApiError> {
    let body = params::parse_body(body)?;
    let Some(entries) = body.as_array() else {
        return Err(ApiError::invalid("Request body must be an array"));
    };
    ctx.loaded.info.lora.set_global(&crate::server::lora::parse_lora_request(entries));
    Ok(json_response(StatusCode::OK, &obj! { "success" => true }))
}

/// llama-server's answer to a path it has no handler for.
pub fn not_found() -> ApiError {
    ApiError::new(ErrorKind::NotFound, "File Not Found")
}

async fn read_body(req: Request, timeout_s: u64) -> Result<Vec<u8>, ApiError> {
    let too_large = || ApiError::new(ErrorKind::InvalidRequest, PAYLOAD_TOO_LARGE);
    let declared =
        req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(too_large());
    }
    let read = axum::body::to_bytes(req.into_body(), MAX_BODY_BYTES);
    match tokio::time::timeout(std::time::Duration::from_secs(timeout_s.max(1)), read).await {
        Ok(Ok(bytes)) => Ok(bytes.to_vec()),
        Ok(Err(_)) => Err(too_large()),
        Err(_) => Err(ApiError::new(ErrorKind::InvalidRequest, "timed out reading the request body")),
    }
}

/// `{"code","message","type"}` (plus `n_prompt_tokens`, `n_ctx` for a prompt that does not fit).
pub fn error_json(e: &ApiError) -> Json {
    let mut err =
        obj! { "code" => e.kind.status(), "message" => e.message.as_str(), "type" => e.kind.type_name() };
    if let Some((n_prompt, n_ctx)) = e.context {
        err.set("n_prompt_tokens", n_prompt);
        err.set("n_ctx", n_ctx);
    }
    err
}

pub fn error_response(e: &ApiError) -> Response {
    if e.message == PAYLOAD_TOO_LARGE {
        // cpp-httplib refuses an oversize body itself: 413, no body, no Content-Type.
        let mut res = Response::new(Body::empty());
        *res.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
        return res;
    }
    let status = StatusCode::from_u16(e.kind.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    // llama-server's HTTP layer (the API key check, the 404 handler, the loading guard) writes
    // its errors in another key order than the request handlers do.
    let middleware = matches!(e.kind, ErrorKind::Authentication | ErrorKind::NotFound)
        || (e.kind == ErrorKind::Unavailable && e.message == LOADING);
    let err = if middleware {
        obj! { "message" => e.message.as_str(), "type" => e.kind.type_name(), "code" => e.kind.status() }
    } else {
        error_json(e)
    };
    json_response(status, &obj! { "error" => err })
}

pub fn json_response(status: StatusCode, body: &Json) -> Response {
    let mut res = Response::new(Body::from(body.to_text()));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=utf-8"));
    res
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_tools;
