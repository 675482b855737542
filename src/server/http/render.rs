//! llama-server's response JSON for one generation: the native `/completion` objects, OpenAI text
//! completions, chat completions and their stream chunks, `timings`, `usage` and token
//! probabilities. Field names and order are llama-server's (server-task.cpp's `to_json_*`).

use super::json::{obj, Json};
use crate::server::api::{Final, Partial, StopType, Timings, TokenProb, TokenProbs};

/// What every chunk of one response shares.
#[derive(Debug, Clone)]
pub struct Meta {
    pub model: String,
    /// `chatcmpl-…`, shared by the choices of one request.
    pub id: String,
    pub created: u64,
    pub post_sampling_probs: bool,
    pub timings_per_token: bool,
    pub return_tokens: bool,
}

/// Our `system_fingerprint` and `build_info` (llama-server: `b<build>-<commit>`).
pub fn build_info() -> String {
    format!("rs-llama-{}", env!("CARGO_PKG_VERSION"))
}

pub fn timings(t: &Timings) -> Json {
    obj! {
        "cache_n" => t.cache_n, "prompt_n" => t.prompt_n, "prompt_ms" => t.prompt_ms,
        "prompt_per_token_ms" => t.prompt_per_token_ms(), "prompt_per_second" => t.prompt_per_second(),
        "predicted_n" => t.predicted_n, "predicted_ms" => t.predicted_ms,
        "predicted_per_token_ms" => t.predicted_per_token_ms(), "predicted_per_second" => t.predicted_per_second(),
    }
}

/// The longest prefix of `bytes` that is whole UTF-8 (a piece may end inside a character).
fn utf8_prefix(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_string(),
        Err(e) => String::from_utf8_lossy(&bytes[..e.valid_up_to()]).into_owned(),
    }
}

/// ln(p), with 0 as the lowest float (JSON has no -inf).
fn logarithm(p: f32) -> f32 {
    if p == 0.0 {
        f32::MIN
    } else {
        p.ln()
    }
}

fn prob_entry(p: &TokenProb, post: bool) -> Json {
    let mut o = obj! { "id" => p.id, "token" => utf8_prefix(&p.piece), "bytes" => p.piece.iter().map(|&b| b as u32).collect::<Vec<_>>() };
    if post {
        o.set("prob", p.prob);
    } else {
        o.set("logprob", logarithm(p.prob));
    }
    o
}

/// `completion_probabilities` (and OpenAI's `logprobs.content`).
pub fn probs(list: &[TokenProbs], post: bool) -> Json {
    Json::Arr(
        list.iter()
            .map(|tp| {
                let mut o = prob_entry(&tp.chosen, post);
                let top = Json::Arr(tp.top.iter().map(|p| prob_entry(p, post)).collect());
                o.set(if post { "top_probs" } else { "top_logprobs" }, top);
                o
            })
            .collect(),
    )
}

/// OpenAI's reason: a stop string or an end-of-generation token is "stop", anything else "length".
pub fn finish_reason(stop: StopType) -> &'static str {
    match stop {
        StopType::Word | StopType::Eos => "stop",
        _ => "length",
    }
}

fn usage(f: &Final) -> Json {
    obj! {
        "completion_tokens" => f.tokens_predicted, "prompt_tokens" => f.tokens_evaluated,
        "total_tokens" => f.tokens_predicted + f.tokens_evaluated,
        "prompt_tokens_details" => obj! { "cached_tokens" => f.timings.cache_n },
    }
}

fn tokens(m: &Meta, t: &[crate::TokenId]) -> Json {
    if m.return_tokens {
        Json::from(t.to_vec())
    } else {
        Json::Arr(Vec::new())
    }
}

/// A native streamed chunk. llama-server always lists the chunk's token (whatever
/// `return_tokens` says) and leaves `id_slot` at -1 in partial results.
pub fn native_partial(m: &Meta, index: usize, p: &Partial) -> Json {
    let mut o = obj! {
        "index" => index, "content" => p.text.as_str(), "tokens" => p.tokens.clone(), "stop" => false,
        "id_slot" => -1, "tokens_predicted" => p.tokens_predicted, "tokens_evaluated" => p.tokens_evaluated,
    };
    if m.timings_per_token {
        o.set("timings", timings(&p.timings));
    }
    if !p.probs.is_empty() {
        o.set("completion_probabilities", probs(&p.probs, m.post_sampling_probs));
    }
    o
}

/// The native final object. Streamed, its text and tokens went out in the chunks before it.
pub fn native_final(
    m: &Meta,
    index: usize,
    f: &Final,
    streamed: bool,
    prompt: &str,
    settings: &Json,
) -> Json {
    let (content, toks) = if streamed { ("", &[][..]) } else { (f.content.as_str(), &f.tokens[..]) };
    let mut o = obj! {
        "index" => index, "content" => content, "tokens" => tokens(m, toks), "id_slot" => f.id_slot,
        "stop" => true, "model" => m.model.as_str(), "tokens_predicted" => f.tokens_predicted,
        "tokens_evaluated" => f.tokens_evaluated, "generation_settings" => settings.clone(), "prompt" => prompt,
        "has_new_line" => f.content.contains('\n'), "truncated" => f.truncated,
        "stop_type" => f.stop_type.as_str(), "stopping_word" => f.stopping_word.as_str(),
        "tokens_cached" => f.tokens_cached, "timings" => timings(&f.timings),
    };
    if !streamed && !f.probs.is_empty() {
        o.set("completion_probabilities", probs(&f.probs, m.post_sampling_probs));
    }
    o
}

fn oai_logprobs(list: &[TokenProbs], post: bool) -> Json {
    if list.is_empty() {
        Json::Null
    } else {
        obj! { "content" => probs(list, post) }
    }
}

/// `/v1/completions`: a chunk (`finish` None) or the final object.
pub fn oai_text(m: &Meta, index: usize, text: &str, list: &[TokenProbs], finish: Option<&Final>) -> Json {
    let choice = obj! {
        "text" => text, "index" => index, "logprobs" => oai_logprobs(list, m.post_sampling_probs),
        "finish_reason" => finish.map(|f| finish_reason(f.stop_type)),
    };
    let mut o = obj! {
        "choices" => vec![choice], "created" => m.created, "model" => m.model.as_str(),
        "system_fingerprint" => build_info(), "object" => "text_completion",
    };
    if let Some(f) = finish {
        o.set("usage", usage(f));
    }
    o.set("id", m.id.as_str());
    if let Some(f) = finish {
        o.set("timings", timings(&f.timings));
    }
    o
}

pub fn oai_text_partial(m: &Meta, index: usize, p: &Partial) -> Json {
    let mut o = oai_text(m, index, &p.text, &p.probs, None);
    if m.timings_per_token {
        o.set("timings", timings(&p.timings));
    }
    o
}

/// A chat answer's reason: as [`finish_reason`], but "tool_calls" when it stopped with calls.
pub fn chat_finish_reason(stop: StopType, has_tool_calls: bool) -> &'static str {
    match finish_reason(stop) {
        "stop" if has_tool_calls => "tool_calls",
        other => other,
    }
}

/// `/v1/chat/completions` without streaming; `message` is the parsed answer.
pub fn oai_chat(m: &Meta, index: usize, f: &Final, message: Json, has_tool_calls: bool) -> Json {
    let mut choice = obj! {
        "finish_reason" => chat_finish_reason(f.stop_type, has_tool_calls), "index" => index,
        "message" => message,
    };
    if !f.probs.is_empty() {
        choice.set("logprobs", oai_logprobs(&f.probs, m.post_sampling_probs));
    }
    obj! {
        "choices" => vec![choice], "created" => m.created, "model" => m.model.as_str(),
        "system_fingerprint" => build_info(), "object" => "chat.completion", "usage" => usage(f),
        "id" => m.id.as_str(), "timings" => timings(&f.timings),
    }
}

fn chunk(m: &Meta, choices: Vec<Json>) -> Json {
    obj! {
        "choices" => choices, "created" => m.created, "id" => m.id.as_str(), "model" => m.model.as_str(),
        "system_fingerprint" => build_info(), "object" => "chat.completion.chunk",
    }
}

fn delta_chunk(m: &Meta, index: usize, delta: Json) -> Json {
    chunk(m, vec![obj! { "finish_reason" => Json::Null, "index" => index, "delta" => delta }])
}

/// The chunks for one streamed piece: the `role` delta first, then one chunk per change the
/// piece made to the parsed answer (`deltas`, see [`super::chat::delta_json`]).
pub fn oai_chat_partial(m: &Meta, index: usize, p: &Partial, first: bool, deltas: Vec<Json>) -> Vec<Json> {
    let mut out = Vec::new();
    if first {
        out.push(delta_chunk(m, index, obj! { "role" => "assistant", "content" => Json::Null }));
    }
    out.extend(deltas.into_iter().map(|d| delta_chunk(m, index, d)));
    if let Some(Json::Obj(fields)) = out.last_mut() {
        if !p.probs.is_empty() {
            if let Some((_, Json::Arr(choices))) = fields.iter_mut().find(|(k, _)| k == "choices") {
                choices[0].set("logprobs", oai_logprobs(&p.probs, m.post_sampling_probs));
            }
        }
        if m.timings_per_token {
            fields.push(("timings".into(), timings(&p.timings)));
        }
    }
    out
}

/// The last chunks: the changes the end of the text made, the `finish_reason`, then `usage` if
/// asked.
pub fn oai_chat_final(
    m: &Meta,
    index: usize,
    f: &Final,
    deltas: Vec<Json>,
    has_tool_calls: bool,
    include_usage: bool,
) -> Vec<Json> {
    let mut out: Vec<Json> = deltas.into_iter().map(|d| delta_chunk(m, index, d)).collect();
    let reason = chat_finish_reason(f.stop_type, has_tool_calls);
    let finish = obj! { "finish_reason" => reason, "index" => index, "delta" => Json::obj() };
    out.push(chunk(m, vec![finish]));
    if include_usage {
        let mut u = chunk(m, Vec::new());
        u.set("usage", usage(f));
        out.push(u);
    }
    if let Some(last) = out.last_mut() {
        last.set("timings", timings(&f.timings));
    }
    out
}

/// One server-sent event.
pub fn sse(data: &Json) -> String {
    format!("data: {}\n\n", data.to_text())
}
