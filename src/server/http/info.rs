//! The endpoints that run no generation: `/v1/models`, `/props`, `/slots`, `/metrics`,
//! `/tokenize`, `/detokenize`, `/apply-template` and `POST /props`.

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use serde_json::Value;

use super::json::{obj, Json};
use super::{json_response, params, render, AppState, Loaded, Vocabulary};
use crate::server::api::{ApiError, ErrorKind, GenerateRequest};
use crate::TokenId;

/// What a handler sees: the server's state and the loaded model.
pub struct Ctx<'a> {
    pub state: &'a AppState,
    pub loaded: &'a Loaded,
}

/// Token pieces joined (llama-server's `tokens_to_str`); bytes that are not UTF-8 become U+FFFD.
pub fn detokenize_text(vocab: &dyn Vocabulary, tokens: &[TokenId]) -> String {
    let bytes: Vec<u8> = tokens.iter().flat_map(|&t| vocab.piece(t)).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

pub fn models(ctx: &Ctx<'_>) -> Json {
    let info = &ctx.loaded.info;
    let aliases = info.aliases.clone();
    let details = obj! {
        "parent_model" => "", "format" => "gguf", "family" => "", "families" => vec![""],
        "parameter_size" => "", "quantization_level" => "",
    };
    let listed = obj! {
        "name" => info.name.as_str(), "model" => info.name.as_str(), "modified_at" => "", "size" => "",
        "digest" => "", "type" => "model", "description" => "", "tags" => vec![""],
        "capabilities" => vec!["completion"], "parameters" => "", "details" => details,
    };
    let meta = obj! {
        "vocab_type" => info.vocab_type, "n_vocab" => ctx.loaded.vocab.n_vocab(),
        "n_ctx" => ctx.loaded.backend.n_ctx_slot(), "n_ctx_train" => info.n_ctx_train, "n_embd" => info.n_embd,
        "n_params" => info.n_params, "size" => info.size, "ftype" => info.ftype.as_str(),
    };
    let data = obj! {
        "id" => info.name.as_str(), "aliases" => aliases, "tags" => ctx.state.cfg.tags.clone(), "object" => "model",
        "architecture" => obj! { "input_modalities" => vec!["text"], "output_modalities" => vec!["text"] },
        "created" => super::completion::unix_now(), "owned_by" => "llamacpp", "meta" => meta,
    };
    obj! { "models" => vec![listed], "object" => "list", "data" => vec![data] }
}

/// The server's defaults as a request would get them.
fn default_request(ctx: &Ctx<'_>) -> GenerateRequest {
    GenerateRequest {
        prompt: Vec::new(),
        n_predict: ctx.state.cfg.n_predict,
        sampling: ctx.loaded.sampling.clone(),
        stop: Vec::new(),
        n_probs: 0,
        post_sampling_probs: false,
        cache_prompt: ctx.state.cfg.cache_prompt,
        id_slot: None,
        stream: false,
        lora: Default::default(),
    }
}

/// `generation_settings` without the fields llama-server leaves out of `/props` and `/slots`.
fn short_settings(ctx: &Ctx<'_>) -> Json {
    let mut s = settings_of(&default_request(ctx));
    // The server's own default; a request gets llama-server's per-request default ("deepseek").
    s.set("reasoning_format", "none");
    s
}

/// A request's settings as `/props` and `/slots` show them.
fn settings_of(req: &GenerateRequest) -> Json {
    let full = params::settings_json(req, false);
    let dropped = [
        "dry_sequence_breakers",
        "stop",
        "logit_bias",
        "grammar",
        "grammar_lazy",
        "grammar_triggers",
        "preserved_tokens",
    ];
    match full {
        Json::Obj(fields) => {
            Json::Obj(fields.into_iter().filter(|(k, _)| !dropped.contains(&k.as_str())).collect())
        }
        other => other,
    }
}

/// llama-server's marker for media in prompts: random per process unless `LLAMA_MEDIA_MARKER`
/// pins it (rs-llama takes no media; the marker is only reported).
fn media_marker() -> &'static str {
    static MARKER: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    MARKER.get_or_init(|| match std::env::var("LLAMA_MEDIA_MARKER") {
        Ok(m) if !m.is_empty() => m,
        _ => format!("<__media_{}__>", super::completion::random_id(u64::from(std::process::id()))),
    })
}

pub fn props(ctx: &Ctx<'_>) -> Json {
    let (cfg, info) = (&ctx.state.cfg, &ctx.loaded.info);
    let settings = obj! { "params" => short_settings(ctx), "n_ctx" => ctx.loaded.backend.n_ctx_slot() };
    let caps = Json::Obj(
        ctx.loaded.templates.caps().into_iter().map(|(k, v)| (k.to_string(), Json::from(v))).collect(),
    );
    obj! {
        "default_generation_settings" => settings, "total_slots" => ctx.loaded.backend.total_slots(),
        "model_alias" => info.name.as_str(), "model_ftype" => info.ftype.as_str(), "model_path" => info.path.as_str(),
        "modalities" => obj! { "vision" => false, "video" => false, "audio" => false },
        "media_marker" => media_marker(), "endpoint_slots" => cfg.endpoint_slots,
        "endpoint_props" => cfg.endpoint_props, "endpoint_metrics" => cfg.endpoint_metrics,
        // There is no web UI to serve, whatever --ui says.
        "ui" => false, "ui_settings" => Json::obj(), "chat_template" => ctx.loaded.templates.source(),
        "chat_template_caps" => caps, "bos_token" => info.bos_token.as_str(),
        "eos_token" => info.eos_token.as_str(), "build_info" => render::build_info(), "is_sleeping" => ctx.loaded.backend.is_sleeping(),
        "cors_proxy_enabled" => cfg.ui_mcp_proxy,
    }
}

pub fn post_props(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    if !ctx.state.cfg.endpoint_props {
        return Err(ApiError::new(
            ErrorKind::NotSupported,
            "This server does not support changing global properties. Start it with `--props`",
        ));
    }
    Ok(json_response(StatusCode::OK, &obj! { "success" => true }))
}

pub fn slots(ctx: &Ctx<'_>, query: &str) -> Result<Response, ApiError> {
    if !ctx.state.cfg.endpoint_slots {
        return Err(ApiError::new(
            ErrorKind::NotSupported,
            "This server does not support slots endpoint. Start it with `--slots`",
        ));
    }
    let slots = ctx.loaded.backend.slots();
    let fail_on_no_slot = query.split('&').any(|kv| kv.starts_with("fail_on_no_slot=") && kv.len() > 16);
    if fail_on_no_slot && slots.iter().all(|s| s.is_processing) {
        return Err(ApiError::new(ErrorKind::Unavailable, "no slot available"));
    }
    let list: Vec<Json> = slots
        .iter()
        .map(|s| {
            let mut o = obj! { "id" => s.id, "n_ctx" => s.n_ctx, "speculative" => false, "is_processing" => s.is_processing };
            // A slot that never ran a task lists only the four keys above.
            if let Some(task) = s.id_task {
                o.set("id_task", task);
                o.set("n_prompt_tokens", s.n_cached);
                o.set("n_prompt_tokens_processed", s.n_prompt_processed);
                o.set("n_prompt_tokens_cache", s.n_prompt_cached);
                o.set("params", s.params.as_deref().map_or_else(|| short_settings(ctx), settings_of));
                let next = obj! {
                    "has_next_token" => s.has_next_token, "has_new_line" => s.has_new_line,
                    "n_remain" => s.n_remaining, "n_decoded" => s.n_decoded,
                };
                o.set("next_token", vec![next]);
            }
            o
        })
        .collect();
    Ok(json_response(StatusCode::OK, &Json::Arr(list)))
}

/// A number as C++'s `ostream <<` writes a double (`%g`, six significant digits).
pub fn format_g(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return if v.is_nan() {
            "nan".into()
        } else if v.is_infinite() {
            if v > 0.0 {
                "inf".into()
            } else {
                "-inf".into()
            }
        } else {
            "0".into()
        };
    }
    let exp = v.abs().log10().floor() as i32;
    let trim = |s: String| {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        }
    };
    if (-4..6).contains(&exp) {
        let decimals = (5 - exp).max(0) as usize;
        trim(format!("{v:.decimals$}"))
    } else {
        let s = format!("{v:.5e}");
        let (mantissa, e) = s.split_once('e').unwrap_or((&s, "0"));
        let e: i32 = e.parse().unwrap_or(0);
        format!("{}e{}{:02}", trim(mantissa.to_string()), if e < 0 { '-' } else { '+' }, e.abs())
    }
}

pub fn metrics(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    if !ctx.state.cfg.endpoint_metrics {
        return Err(ApiError::new(
            ErrorKind::NotSupported,
            "This server does not support metrics endpoint. Start it with `--metrics`",
        ));
    }
    let m = ctx.loaded.backend.metrics();
    let rate = |n: u64, s: f64| if s > 0.0 { n as f64 / s } else { 0.0 };
    let counters: [(&str, &str, f64); 10] = [
        (
            "prompt_tokens_total",
            "Number of prompt tokens processed, excluding cached tokens",
            m.prompt_tokens_total as f64,
        ),
        (
            "prompt_tokens_cached_total",
            "Number of prompt tokens reused from the cache",
            m.prompt_tokens_cached_total as f64,
        ),
        ("prompt_seconds_total", "Total time spent processing prompts", m.prompt_seconds_total),
        ("tokens_predicted_total", "Number of generation tokens processed", m.tokens_predicted_total as f64),
        (
            "tokens_predicted_seconds_total",
            "Total time spent generating tokens",
            m.tokens_predicted_seconds_total,
        ),
        (
            "n_decode_total",
            "Total number of llama_decode() calls, excluding speculative decoding and multimodal decoding",
            m.n_decode_total as f64,
        ),
        ("n_tokens_max", "Largest observed sequence length (prompt + generation)", m.n_tokens_max as f64),
        ("spec_decode_num_draft_tokens_total", "Speculative: Total draft tokens generated", 0.0),
        (
            "spec_decode_num_accepted_tokens_total",
            "Speculative: Total draft tokens accepted by the target model",
            0.0,
        ),
        ("spec_decode_num_drafts_total", "Speculative: Total speculative decoding verification steps", 0.0),
    ];
    let gauges: [(&str, &str, f64); 5] = [
        (
            "prompt_tokens_seconds",
            "Average prompt throughput in tokens/s",
            rate(m.prompt_tokens_total, m.prompt_seconds_total),
        ),
        (
            "predicted_tokens_seconds",
            "Average generation throughput in tokens/s",
            rate(m.tokens_predicted_total, m.tokens_predicted_seconds_total),
        ),
        ("requests_processing", "Number of requests processing", m.requests_processing as f64),
        ("requests_deferred", "Number of requests deferred", m.requests_deferred as f64),
        (
            "n_busy_slots_per_decode",
            "Average number of busy slots per llama_decode() call",
            m.n_busy_slots_total as f64 / (m.n_decode_total as f64).max(1.0),
        ),
    ];
    let mut text = String::new();
    for (kind, items) in [("counter", &counters[..]), ("gauge", &gauges[..])] {
        for (name, help, value) in items {
            text += &format!(
                "# HELP llamacpp:{name} {help}\n# TYPE llamacpp:{name} {kind}\nllamacpp:{name} {}\n",
                format_g(*value)
            );
        }
    }
    let mut res = Response::new(Body::from(text));
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
    if let Ok(v) = HeaderValue::from_str(&ctx.state.t_start.to_string()) {
        h.insert("process-start-time-unix", v);
    }
    Ok(res)
}

pub fn tokenize(ctx: &Ctx<'_>, body: &Value) -> Result<Response, ApiError> {
    let vocab = ctx.loaded.vocab.as_ref();
    let mut out = Vec::new();
    if let Some(content) = body.get("content") {
        let add_special = params::loose_bool(body, "add_special", false);
        let parse_special = params::loose_bool(body, "parse_special", true);
        let with_pieces = params::loose_bool(body, "with_pieces", false);
        let tokens = params::mixed(content, vocab, add_special, parse_special)?;
        for t in tokens {
            out.push(if with_pieces {
                let piece = vocab.piece(t);
                let piece = match String::from_utf8(piece) {
                    Ok(s) => Json::Str(s),
                    Err(e) => Json::from(e.into_bytes().into_iter().map(u32::from).collect::<Vec<_>>()),
                };
                obj! { "id" => t, "piece" => piece }
            } else {
                Json::from(t)
            });
        }
    }
    Ok(json_response(StatusCode::OK, &obj! { "tokens" => Json::Arr(out) }))
}

pub fn detokenize(ctx: &Ctx<'_>, body: &Value) -> Result<Response, ApiError> {
    let vocab = ctx.loaded.vocab.as_ref();
    let mut tokens = Vec::new();
    if let Some(list) = body.get("tokens") {
        let items = list.as_array().ok_or_else(|| ApiError::invalid(params::type_error("array", list)))?;
        for t in items {
            let id = t.as_f64().ok_or_else(|| ApiError::invalid(params::type_error("number", t)))? as i64;
            if id < 0 || id as usize >= vocab.n_vocab() {
                return Err(ApiError::invalid(format!(
                    "token id {id} is out of range (n_vocab = {})",
                    vocab.n_vocab()
                )));
            }
            tokens.push(id as TokenId);
        }
    }
    Ok(json_response(StatusCode::OK, &obj! { "content" => detokenize_text(vocab, &tokens) }))
}

pub fn apply_template(ctx: &Ctx<'_>, bytes: &[u8]) -> Result<Response, ApiError> {
    let body = params::parse_body(bytes)?;
    let ordered = super::schema::ordered_body(bytes, &body);
    let (chat, _) = params::chat_prompt(&body, ordered.as_ref(), ctx.loaded, &ctx.state.cfg)?;
    Ok(json_response(StatusCode::OK, &obj! { "prompt" => chat.prompt }))
}
