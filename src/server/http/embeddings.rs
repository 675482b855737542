//! `/embedding`, `/embeddings` (llama-server's own answer) and `/v1/embeddings` (OpenAI's): the
//! input forms, checks and error messages of llama-server's `handle_embeddings_impl`, one
//! scheduler embedding per prompt, then `common_embd_normalize` and the two response layouts.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::Value;

use super::info::Ctx;
use super::json::{obj, Json};
use super::{json_response, params, Vocabulary};
use crate::server::api::{ApiError, EmbedRequest, ErrorKind, Pooling};
use crate::server::embed::{base64_f32, normalize};
use crate::TokenId;

/// The prompt element error of llama-server's `tokenize_input_subprompt`.
const BAD_ELEMENT: &str = "\"prompt\" elements must be a string, a list of tokens, a JSON object containing a prompt string, or a list of mixed strings & tokens.";

pub async fn handle(ctx: &Ctx<'_>, oai: bool, bytes: &[u8]) -> Result<Response, ApiError> {
    let cfg = &ctx.state.cfg;
    let pooling = ctx.loaded.info.pooling;
    // Both checks come before the body is read, as in llama-server.
    if !cfg.embedding {
        return Err(ApiError::new(
            ErrorKind::NotSupported,
            "This server does not support embeddings. Start it with `--embeddings`",
        ));
    }
    if oai && pooling == Pooling::None {
        return Err(ApiError::invalid(
            "Pooling type 'none' is not OAI compatible. Please use a different pooling type",
        ));
    }
    let body = params::parse_body(bytes)?;
    let mut oai = oai;
    let prompt = match (body.get("input"), body.get("content")) {
        (Some(p), _) => p,
        (None, Some(p)) => {
            // "content" is llama-server's own field: the answer is its own layout too.
            oai = false;
            p
        }
        _ => return Err(ApiError::invalid("\"input\" or \"content\" must be provided")),
    };
    let use_base64 = match body.get("encoding_format") {
        None => false,
        Some(Value::String(f)) if f == "base64" => true,
        Some(Value::String(f)) if f == "float" => false,
        Some(Value::String(_)) => {
            return Err(ApiError::invalid(
                "The format to return the embeddings in. Can be either float or base64",
            ))
        }
        Some(other) => return Err(ApiError::invalid(params::type_error("string", other))),
    };
    let vocab = ctx.loaded.vocab.as_ref();
    let prompts = tokenize_prompts(prompt, vocab)?;
    if prompts.is_empty() {
        return Err(ApiError::invalid("\"input\" must not be empty"));
    }
    if prompts.iter().any(Vec::is_empty) {
        return Err(ApiError::invalid("Input content cannot be empty"));
    }
    let embd_normalize = match body.get("embd_normalize") {
        None => cfg.embd_normalize,
        Some(v) => int_value(v)?,
    };
    for tokens in &prompts {
        check_prompt(ctx, tokens, pooling)?;
    }
    let receivers: Vec<_> = prompts
        .iter()
        .map(|tokens| ctx.loaded.backend.embed(EmbedRequest { tokens: tokens.clone(), pooling }))
        .collect();
    let mut results = Vec::with_capacity(receivers.len());
    for rx in receivers {
        let rows = rx.await.map_err(|_| ApiError::new(ErrorKind::Server, "the embedding was dropped"))??;
        // Only pooled vectors are normalized (llama-server's `send_embedding`).
        let rows: Vec<Vec<f32>> = if pooling == Pooling::None {
            rows
        } else {
            rows.iter().take(1).map(|r| normalize(r, embd_normalize)).collect()
        };
        results.push(rows);
    }
    let floats = |v: &[f32]| Json::Arr(v.iter().map(|&x| Json::from(x)).collect());
    let answer = if oai {
        let mut data = Vec::with_capacity(results.len());
        for (i, rows) in results.iter().enumerate() {
            let v = rows.first().map_or(&[][..], Vec::as_slice);
            data.push(if use_base64 {
                obj! { "embedding" => base64_f32(v), "index" => i, "object" => "embedding", "encoding_format" => "base64" }
            } else {
                obj! { "embedding" => floats(v), "index" => i, "object" => "embedding" }
            });
        }
        let n_tokens: usize = prompts.iter().map(Vec::len).sum();
        let model = match body.get("model") {
            Some(Value::String(m)) => m.clone(),
            _ => ctx.loaded.info.name.clone(),
        };
        obj! {
            "model" => model,
            "object" => "list",
            "usage" => obj! { "prompt_tokens" => n_tokens, "total_tokens" => n_tokens },
            "data" => Json::Arr(data),
        }
    } else {
        let items = results.iter().enumerate().map(|(i, rows)| {
            obj! { "index" => i, "embedding" => Json::Arr(rows.iter().map(|r| floats(r)).collect()) }
        });
        Json::Arr(items.collect())
    };
    Ok(json_response(StatusCode::OK, &answer))
}

/// nlohmann's `get<int>()`: a number (a float truncated) or a boolean, else its type error.
fn int_value(v: &Value) -> Result<i32, ApiError> {
    match v {
        Value::Number(n) => Ok(n.as_i64().unwrap_or_else(|| n.as_f64().unwrap_or(0.0) as i64) as i32),
        Value::Bool(b) => Ok(i32::from(*b)),
        other => Err(ApiError::invalid(params::type_error("number", other))),
    }
}

/// The checks llama-server makes when a slot takes the task: token ids, then (pooling none,
/// mean or cls, which cannot be split over passes) one physical batch and the slot's context,
/// else (last) the slot's context.
fn check_prompt(ctx: &Ctx<'_>, tokens: &[TokenId], pooling: Pooling) -> Result<(), ApiError> {
    params::check_tokens(tokens, ctx.loaded.vocab.n_vocab())?;
    let cfg = &ctx.state.cfg;
    let n_ubatch = match ctx.loaded.info.n_ubatch {
        0 => cfg.n_ubatch.min(cfg.n_batch) as usize,
        n => n,
    };
    let n_ctx = ctx.loaded.backend.n_ctx_slot();
    let n = tokens.len();
    if pooling != Pooling::Last {
        if n > n_ubatch {
            return Err(ApiError::new(
                ErrorKind::Server,
                format!(
                    "input ({n} tokens) is too large to process. increase the physical batch size (current batch size: {n_ubatch})"
                ),
            ));
        }
        if n > n_ctx {
            let mut e = ApiError::new(
                ErrorKind::ExceedContextSize,
                format!("input ({n} tokens) is larger than the max context size ({n_ctx} tokens). skipping"),
            );
            e.context = Some((n, n_ctx));
            return Err(e);
        }
    } else if n >= n_ctx {
        return Err(ApiError::exceeds_context(n, n_ctx));
    }
    Ok(())
}

/// `input` as llama-server reads it: an array without integers is a list of prompts, anything
/// else one prompt.
fn tokenize_prompts(prompt: &Value, vocab: &dyn Vocabulary) -> Result<Vec<Vec<TokenId>>, ApiError> {
    match prompt {
        Value::Array(items) if !items.iter().any(is_integer) => {
            items.iter().map(|p| tokenize_entry(p, vocab)).collect()
        }
        p => Ok(vec![tokenize_entry(p, vocab)?]),
    }
}

fn is_integer(v: &Value) -> bool {
    v.is_i64() || v.is_u64()
}

/// One prompt (llama-server's `tokenize_input_subprompt` with special tokens added and parsed).
fn tokenize_entry(p: &Value, vocab: &dyn Vocabulary) -> Result<Vec<TokenId>, ApiError> {
    match p {
        Value::String(_) => params::mixed(p, vocab, true, true),
        Value::Array(items) if items.iter().any(Value::is_string) && items.iter().any(is_integer) => {
            params::mixed(p, vocab, true, true)
        }
        Value::Array(items) if items.iter().all(is_integer) => {
            // nlohmann's `get<llama_token>` keeps the low 32 bits.
            Ok(items.iter().map(|t| t.as_i64().unwrap_or(u64::MAX as i64) as i32 as TokenId).collect())
        }
        Value::Object(o) if o.contains_key("content") => {
            Err(ApiError::invalid("multimodal content arrays are not supported yet by rs-llama-server"))
        }
        Value::Object(o) if o.contains_key("prompt_string") => {
            params::mixed(&o["prompt_string"], vocab, true, true)
        }
        _ => Err(ApiError::invalid(BAD_ELEMENT)),
    }
}
