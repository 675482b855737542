//! Request bodies → what the scheduler runs: the prompt forms llama-server takes (string, token
//! ids, mixed, several prompts), its per-request fields with their aliases, limits and error
//! messages, and the OpenAI chat request turned into a prompt by the chat template.
//!
//! Field rules follow llama-server's schema: a field that is absent or `null` keeps the server's
//! default; a number field also takes a boolean (as nlohmann's conversions do); a value of the
//! wrong type is a 400 naming the field.

use serde_json::Value;

use super::json::{obj, Json};
use super::schema;
use super::{Loaded, Vocabulary};
use crate::sample::json_schema::Json as SchemaJson;
use crate::sample::{SamplerKind, SamplingParams};
use crate::server::api::{ApiError, ErrorKind, GenerateRequest};
use crate::TokenId;

/// A body as JSON; a syntax error is a 400 with nlohmann's words (llama-server's JSON library).
pub fn parse_body(bytes: &[u8]) -> Result<Value, ApiError> {
    if let Some(message) = super::nljson::parse_error(bytes) {
        return Err(ApiError::invalid(message));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        // Bodies nlohmann reads and serde_json does not (text after a NUL byte, numbers past
        // serde's range): say it in nlohmann's form.
        let text = e.to_string();
        let reason = text.split(" at line ").next().unwrap_or(&text);
        ApiError::invalid(format!(
            "[json.exception.parse_error.101] parse error at line {}, column {}: syntax error while parsing value - {reason}",
            e.line(),
            e.column()
        ))
    })
}

/// nlohmann's name for a value's type, as its type errors say it.
fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

pub fn type_error(expected: &str, got: &Value) -> String {
    format!("[json.exception.type_error.302] type must be {expected}, but is {}", type_name(got))
}

fn field_error(name: &str, reason: impl std::fmt::Display) -> ApiError {
    ApiError::invalid(format!("Field '{name}': {reason}"))
}

/// The first of `names` that has a non-null value.
fn lookup<'a>(data: &'a Value, names: &[&'static str]) -> Option<(&'static str, &'a Value)> {
    names.iter().find_map(|n| data.get(*n).filter(|v| !v.is_null()).map(|v| (*n, v)))
}

fn number(name: &str, v: &Value) -> Result<f64, ApiError> {
    match v {
        Value::Number(n) => Ok(n.as_f64().unwrap_or(0.0)),
        Value::Bool(b) => Ok(f64::from(u8::from(*b))),
        _ => Err(field_error(name, type_error("number", v))),
    }
}

/// A float field, clamped to `[min, max]` (llama-server's soft limits).
fn float(data: &Value, names: &[&'static str], dst: &mut f32, min: f32, max: f32) -> Result<(), ApiError> {
    if let Some((name, v)) = lookup(data, names) {
        *dst = (number(name, v)? as f32).clamp(min, max);
    }
    Ok(())
}

/// An integer field (a float is truncated); `hard` limits are an error, else a clamp.
fn int(
    data: &Value,
    names: &[&'static str],
    min: i64,
    max: i64,
    hard: bool,
) -> Result<Option<i64>, ApiError> {
    let Some((name, v)) = lookup(data, names) else { return Ok(None) };
    let n = number(name, v)? as i64;
    if hard && (n < min || n > max) {
        return Err(field_error(name, format!("Value must be between {min} <= value <= {max}, but got {n}")));
    }
    Ok(Some(n.clamp(min, max)))
}

fn boolean(data: &Value, name: &'static str, dst: &mut bool) -> Result<(), ApiError> {
    if let Some((name, v)) = lookup(data, &[name]) {
        *dst = v.as_bool().ok_or_else(|| field_error(name, type_error("boolean", v)))?;
    }
    Ok(())
}

/// llama-server's loose reading (`json_value`): a value of the wrong type is the default.
pub fn loose_bool(data: &Value, name: &str, default: bool) -> bool {
    data.get(name).and_then(Value::as_bool).unwrap_or(default)
}

/// How one completion request is run and answered.
#[derive(Debug, Clone)]
pub struct CompletionParams {
    /// The scheduler's request, without its prompt.
    pub base: GenerateRequest,
    pub return_tokens: bool,
    pub timings_per_token: bool,
    pub include_usage: bool,
    /// Completions per prompt (`n_cmpl`, `n`).
    pub n_cmpl: usize,
}

const INT_MAX: i64 = i32::MAX as i64;

/// The per-request fields over the server's defaults.
pub fn completion_params(
    data: &Value,
    ordered: Option<&SchemaJson>,
    loaded: &Loaded,
    cfg: &crate::server::args::ServerConfig,
) -> Result<CompletionParams, ApiError> {
    let mut s: SamplingParams = loaded.sampling.clone();
    let (mut stream, mut cache_prompt, mut return_tokens, mut timings_per_token) =
        (false, cfg.cache_prompt, false, false);
    let (mut post_sampling_probs, mut include_usage) = (false, false);
    boolean(data, "timings_per_token", &mut timings_per_token)?;
    boolean(data, "stream", &mut stream)?;
    if let Some(opts) = data.get("stream_options").filter(|v| v.is_object()) {
        boolean(opts, "include_usage", &mut include_usage)?;
    }
    boolean(data, "cache_prompt", &mut cache_prompt)?;
    boolean(data, "return_tokens", &mut return_tokens)?;
    let n_predict = int(data, &["n_predict", "max_completion_tokens", "max_tokens"], -1, INT_MAX, true)?
        .map_or(cfg.n_predict, |n| n as i32);
    let n_cmpl = int(data, &["n_cmpl", "n"], 1, cfg.n_slots() as i64, true)?.unwrap_or(1) as usize;
    if let Some(k) = int(data, &["top_k"], 0, INT_MAX, false)? {
        s.top_k = k as i32;
    }
    float(data, &["top_p"], &mut s.top_p, 0.0, 1.0)?;
    float(data, &["min_p"], &mut s.min_p, 0.0, 1.0)?;
    float(data, &["top_n_sigma"], &mut s.top_n_sigma, f32::MIN, f32::MAX)?;
    float(data, &["xtc_probability"], &mut s.xtc_probability, 0.0, 1.0)?;
    float(data, &["xtc_threshold"], &mut s.xtc_threshold, 0.0, 1.0)?;
    float(data, &["typical_p"], &mut s.typ_p, f32::MIN, f32::MAX)?;
    float(data, &["temperature"], &mut s.temp, 0.0, f32::INFINITY)?;
    float(data, &["dynatemp_range"], &mut s.dynatemp_range, f32::MIN, f32::MAX)?;
    float(data, &["dynatemp_exponent"], &mut s.dynatemp_exponent, f32::MIN, f32::MAX)?;
    if let Some(n) = int(data, &["repeat_last_n"], 0, INT_MAX, true)? {
        s.penalty_last_n = n as i32;
    }
    float(data, &["repeat_penalty"], &mut s.penalty_repeat, f32::MIN, f32::MAX)?;
    float(data, &["frequency_penalty"], &mut s.penalty_freq, f32::MIN, f32::MAX)?;
    float(data, &["presence_penalty"], &mut s.penalty_present, f32::MIN, f32::MAX)?;
    float(data, &["dry_multiplier"], &mut s.dry_multiplier, f32::MIN, f32::MAX)?;
    if let Some((name, v)) = lookup(data, &["dry_base"]) {
        let b = number(name, v)? as f32;
        s.dry_base = if b < 1.0 { cfg.sampling.dry_base } else { b };
    }
    if let Some(n) = int(data, &["dry_allowed_length"], 0, INT_MAX, true)? {
        s.dry_allowed_length = n as i32;
    }
    if let Some(n) = int(data, &["dry_penalty_last_n"], 0, INT_MAX, true)? {
        s.dry_penalty_last_n = n as i32;
    }
    if let Some(m) = int(data, &["mirostat"], 0, 2, false)? {
        s.mirostat = m as i32;
    }
    float(data, &["mirostat_tau"], &mut s.mirostat_tau, f32::MIN, f32::MAX)?;
    float(data, &["mirostat_eta"], &mut s.mirostat_eta, f32::MIN, f32::MAX)?;
    if let Some(seed) = int(data, &["seed"], i64::MIN, i64::MAX, false)? {
        s.seed = seed as u32;
    }
    let n_probs = int(data, &["n_probs", "logprobs"], 0, INT_MAX, false)?.unwrap_or(0) as usize;
    if let Some(k) = int(data, &["min_keep"], 0, INT_MAX, true)? {
        s.min_keep = k as usize;
    }
    boolean(data, "post_sampling_probs", &mut post_sampling_probs)?;
    if let Some((_, v)) = lookup(data, &["logit_bias"]) {
        s.logit_bias = logit_bias(v, loaded.vocab.as_ref());
    }
    boolean(data, "ignore_eos", &mut s.ignore_eos)?;
    let stop = match lookup(data, &["stop"]) {
        Some((name, v)) => stop_words(name, v)?,
        None => Vec::new(),
    };
    if let Some((name, v)) = lookup(data, &["samplers"]) {
        s.samplers = samplers(name, v)?;
    }
    s.grammar = grammar(data, ordered)?;
    s.preserved_tokens = preserved_tokens(data, loaded.vocab.as_ref());
    let id_slot = data.get("id_slot").and_then(Value::as_i64).filter(|&i| i >= 0).map(|i| i as usize);
    let base = GenerateRequest {
        prompt: Vec::new(),
        n_predict,
        sampling: s,
        stop,
        n_probs,
        post_sampling_probs,
        cache_prompt,
        id_slot,
        stream,
        lora: crate::server::lora::request_field(data).map_err(ApiError::invalid)?,
    };
    Ok(CompletionParams { base, return_tokens, timings_per_token, include_usage, n_cmpl })
}

/// The request's GBNF grammar ("" for none), read as llama-server reads it: `grammar` when the
/// body has that key (a value that is not a string counts as none), else the grammar of
/// `json_schema` (see [`schema::completion_grammar`]; `ordered` is the body with its key order,
/// when it has a schema). Lazy grammars and their triggers are refused. The grammar is compiled
/// when its slot starts (a bad one is a 400 then, as llama-server's).
fn grammar(data: &Value, ordered: Option<&SchemaJson>) -> Result<String, ApiError> {
    if lookup(data, &["grammar_lazy"]).is_some_and(|(_, v)| v.as_bool() == Some(true)) {
        return Err(ApiError::invalid("grammar_lazy is not supported yet by rs-llama"));
    }
    if lookup(data, &["grammar_triggers"]).is_some_and(|(_, v)| v.as_array().is_none_or(|t| !t.is_empty())) {
        return Err(ApiError::invalid("grammar_triggers are not supported yet by rs-llama"));
    }
    if let Some(g) = schema::completion_grammar(data, ordered)? {
        return Ok(g);
    }
    Ok(data.get("grammar").and_then(Value::as_str).unwrap_or_default().to_string())
}

/// `preserved_tokens`: texts that are one token each (others are skipped, as llama-server
/// skips them), written out as text when generated.
fn preserved_tokens(data: &Value, vocab: &dyn Vocabulary) -> Vec<TokenId> {
    let texts = data.get("preserved_tokens").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let mut out: Vec<TokenId> = Vec::new();
    for t in texts.iter().filter_map(Value::as_str) {
        if let [id] = vocab.encode(t, false, true)[..] {
            if !out.contains(&id) {
                out.push(id);
            }
        }
    }
    out
}

/// `[[id, bias], ...]` or `{"id": bias}`; a bias of `false` bans the token; a string instead of
/// an id stands for its tokens; ids out of range are skipped, as llama-server skips them.
pub fn logit_bias(v: &Value, vocab: &dyn Vocabulary) -> Vec<(TokenId, f32)> {
    let bias_of = |b: &Value| match b {
        Value::Number(n) => n.as_f64().map(|f| f as f32),
        Value::Bool(false) => Some(f32::NEG_INFINITY),
        _ => None,
    };
    let n_vocab = vocab.n_vocab() as i64;
    let mut out = Vec::new();
    let mut add = |key: &Value, bias: f32| match key {
        Value::Number(n) if n.is_i64() => {
            let id = n.as_i64().unwrap_or(-1);
            if (0..n_vocab).contains(&id) {
                out.push((id as TokenId, bias));
            }
        }
        Value::String(text) => {
            let id: Option<i64> = text.parse().ok();
            match id {
                Some(id) if (0..n_vocab).contains(&id) => out.push((id as TokenId, bias)),
                Some(_) => {}
                None => out.extend(vocab.encode(text, false, false).into_iter().map(|t| (t, bias))),
            }
        }
        _ => {}
    };
    match v {
        Value::Array(items) => {
            for item in items {
                if let Some([key, b]) = item.as_array().map(Vec::as_slice) {
                    if let Some(bias) = bias_of(b) {
                        add(key, bias);
                    }
                }
            }
        }
        Value::Object(map) => {
            for (key, b) in map {
                if let Some(bias) = bias_of(b) {
                    add(&Value::String(key.clone()), bias);
                }
            }
        }
        _ => {}
    }
    out
}

fn stop_words(name: &str, v: &Value) -> Result<Vec<String>, ApiError> {
    match v {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(items) => items
            .iter()
            .filter(|w| !w.as_str().is_some_and(str::is_empty))
            .map(|w| w.as_str().map(String::from).ok_or_else(|| field_error(name, type_error("string", w))))
            .collect(),
        _ => Ok(Vec::new()),
    }
}

fn samplers(name: &str, v: &Value) -> Result<Vec<SamplerKind>, ApiError> {
    match v {
        Value::Array(items) => items
            .iter()
            .map(|n| n.as_str().ok_or_else(|| field_error(name, type_error("string", n))))
            .filter_map(|n| n.map(SamplerKind::from_name).transpose())
            .collect(),
        Value::String(chars) => Ok(chars.chars().filter_map(SamplerKind::from_char).collect()),
        _ => Ok(SamplingParams::default().samplers),
    }
}

/// `prompt` as llama-server reads it: one prompt (a string, token ids, or mixed strings and
/// ids) or an array of prompts. Strings are tokenized with `add_special` for the first piece only.
pub fn prompts(data: &Value, vocab: &dyn Vocabulary) -> Result<Vec<Vec<TokenId>>, ApiError> {
    let prompt = data
        .get("prompt")
        .ok_or_else(|| ApiError::invalid("[json.exception.out_of_range.403] key 'prompt' not found"))?;
    let out = match prompt {
        Value::Array(items) if !items.iter().any(Value::is_number) => {
            items.iter().map(|p| one_prompt(p, vocab)).collect::<Result<Vec<_>, _>>()?
        }
        p => vec![one_prompt(p, vocab)?],
    };
    if out.is_empty() {
        return Err(ApiError::invalid("\"prompt\" must not be empty"));
    }
    Ok(out)
}

fn one_prompt(p: &Value, vocab: &dyn Vocabulary) -> Result<Vec<TokenId>, ApiError> {
    match p {
        Value::String(_) | Value::Array(_) => mixed(p, vocab, true, true),
        Value::Object(o) if o.contains_key("prompt_string") => mixed(&o["prompt_string"], vocab, true, true),
        _ => Err(ApiError::invalid(
            "\"prompt\" elements must be a string, a list of tokens, a JSON object containing a prompt string, or a list of mixed strings & tokens.",
        )),
    }
}

/// A string, or an array of strings and token ids, as tokens (llama-server's `tokenize_mixed`).
pub fn mixed(
    v: &Value,
    vocab: &dyn Vocabulary,
    add_special: bool,
    parse_special: bool,
) -> Result<Vec<TokenId>, ApiError> {
    let bad = |e: &Value| ApiError::invalid(type_error("number", e));
    match v {
        Value::String(s) => Ok(vocab.encode(s, add_special, parse_special)),
        Value::Array(items) => {
            let mut out = Vec::new();
            for (i, item) in items.iter().enumerate() {
                match item {
                    Value::String(s) => out.extend(vocab.encode(s, add_special && i == 0, parse_special)),
                    Value::Number(n) => out.push(n.as_f64().ok_or_else(|| bad(item))? as i64 as TokenId),
                    other => return Err(bad(other)),
                }
            }
            Ok(out)
        }
        other => Err(ApiError::invalid(type_error("string", other))),
    }
}

/// Every id below `n_vocab` (checked before a request reaches the scheduler).
pub fn check_tokens(tokens: &[TokenId], n_vocab: usize) -> Result<(), ApiError> {
    if tokens.iter().any(|&t| t as usize >= n_vocab) {
        return Err(ApiError::invalid("Prompt contains invalid tokens"));
    }
    Ok(())
}

/// An OpenAI chat body → the prompt (template applied, with its tools and reasoning options; see
/// [`super::chat`]) and the body with its OpenAI fields mapped onto llama-server's (`stop` as a
/// list, `logprobs` → `n_probs`, a JSON schema from `json_schema` or `response_format` →
/// `grammar`). `ordered` is the body with its key order when it has a schema field
/// ([`schema::ordered_body`]).
pub fn chat_prompt(
    body: &Value,
    ordered: Option<&SchemaJson>,
    loaded: &Loaded,
    cfg: &crate::server::args::ServerConfig,
) -> Result<(super::chat::ChatPrompt, Value), ApiError> {
    let has_grammar = body.get("grammar").and_then(Value::as_str).is_some_and(|g| !g.is_empty());
    if has_grammar && lookup(body, &["json_schema"]).is_some() {
        // a 500 in llama-server (it throws a runtime_error there, not an invalid_argument)
        return Err(ApiError::new(ErrorKind::Server, "Cannot use both json_schema and grammar"));
    }
    let json_schema = schema::chat_schema(body, ordered)?;
    let messages = body.get("messages").ok_or_else(|| ApiError::invalid("'messages' is required"))?;
    let messages =
        messages.as_array().ok_or_else(|| ApiError::invalid("Expected 'messages' to be an array"))?;
    for m in messages {
        let role = m.get("role").and_then(Value::as_str).unwrap_or_default();
        match m.get("content") {
            None if role == "assistant" && m.get("tool_calls").is_none() => {
                return Err(ApiError::invalid(
                    "Assistant message must contain either 'content' or 'tool_calls'!",
                ))
            }
            None if role != "assistant" => {
                return Err(ApiError::invalid("All non-assistant messages must contain 'content'"))
            }
            None | Some(Value::Null | Value::String(_) | Value::Array(_)) => {}
            Some(_) => return Err(ApiError::invalid("Expected 'content' to be a string or an array")),
        }
    }
    let text_of = |c: &Value| match c {
        Value::Array(parts) => content_parts(parts).map_err(|e| crate::chat::ChatError::Request(e.message)),
        other => Ok(other.as_str().unwrap_or_default().to_string()),
    };
    let chat = super::chat::read(body, loaded, cfg, &text_of)?;
    // The schema's grammar replaces any `grammar` field, as the chat template's grammar does in
    // llama-server. With a Jinja template llama.cpp builds a different grammar (the chat
    // parser's, which also admits a ```json fence and strips it from the reply): not done yet.
    let schema_grammar = match json_schema {
        Some(_) if loaded.templates.is_jinja() => {
            return Err(ApiError::invalid(
                "json_schema / response_format with a Jinja chat template is not supported yet by rs-llama (start the server with --no-jinja)",
            ))
        }
        Some(schema) => Some(schema::chat_grammar(&schema)?),
        None => None,
    };
    let mut mapped = body.clone();
    if let Some(obj) = mapped.as_object_mut() {
        if let Some(g) = schema_grammar {
            obj.insert("grammar".into(), Value::String(g));
        }
        if let Some(Value::String(s)) = obj.get("stop") {
            let one = Value::Array(vec![Value::String(s.clone())]);
            obj.insert("stop".into(), one);
        }
        let logprobs = obj.get("logprobs").and_then(Value::as_bool);
        let top = obj.get("top_logprobs").filter(|v| !v.is_null()).cloned();
        match (logprobs, top) {
            (Some(true), top) => {
                obj.insert("n_probs".into(), top.unwrap_or(Value::from(20)));
            }
            (_, Some(_)) => {
                return Err(ApiError::invalid("top_logprobs requires logprobs to be set to true"))
            }
            _ => {}
        }
        // `logprobs` is a switch here, not llama-server's alias of n_probs.
        obj.remove("logprobs");
        let markers = chat.preserved.iter().map(|m| Value::from(m.as_str())).collect();
        obj.insert("preserved_tokens".into(), Value::Array(markers));
    }
    Ok((chat, mapped))
}

/// The text parts of a message's content array, joined.
fn content_parts(parts: &[Value]) -> Result<String, ApiError> {
    let mut text = String::new();
    for p in parts {
        match p.get("type").and_then(Value::as_str) {
            Some("text") => text += p.get("text").and_then(Value::as_str).unwrap_or_default(),
            _ => {
                return Err(ApiError::invalid("only text content parts are supported by rs-llama (no media)"))
            }
        }
    }
    Ok(text)
}

/// `generation_settings` for a request (llama-server's `task_params::to_json`).
pub fn settings_json(p: &GenerateRequest, timings_per_token: bool) -> Json {
    let s = &p.sampling;
    let bias: Vec<Json> = s.logit_bias.iter().map(|(t, b)| obj! { "bias" => *b, "token" => *t }).collect();
    let samplers: Vec<Json> = s.samplers.iter().map(|k| Json::from(sampler_name(*k))).collect();
    obj! {
        "seed" => s.seed, "temperature" => s.temp, "dynatemp_range" => s.dynatemp_range,
        "dynatemp_exponent" => s.dynatemp_exponent, "top_k" => s.top_k, "top_p" => s.top_p,
        "min_p" => s.min_p, "top_n_sigma" => s.top_n_sigma, "xtc_probability" => s.xtc_probability,
        "xtc_threshold" => s.xtc_threshold, "typical_p" => s.typ_p, "repeat_last_n" => s.penalty_last_n,
        "repeat_penalty" => s.penalty_repeat, "presence_penalty" => s.penalty_present,
        "frequency_penalty" => s.penalty_freq, "dry_multiplier" => s.dry_multiplier, "dry_base" => s.dry_base,
        "dry_allowed_length" => s.dry_allowed_length, "dry_penalty_last_n" => s.dry_penalty_last_n,
        "dry_sequence_breakers" => vec!["\n", ":", "\"", "*"], "mirostat" => s.mirostat,
        "mirostat_tau" => s.mirostat_tau, "mirostat_eta" => s.mirostat_eta,
        "adaptive_target" => s.adaptive_target, "adaptive_decay" => s.adaptive_decay,
        "stop" => p.stop.clone(), "max_tokens" => p.n_predict, "n_predict" => p.n_predict, "n_keep" => 0,
        "n_discard" => 0, "ignore_eos" => s.ignore_eos, "stream" => p.stream, "logit_bias" => bias,
        "n_probs" => p.n_probs, "min_keep" => s.min_keep, "grammar" => s.grammar.as_str(), "grammar_lazy" => false,
        "grammar_triggers" => Json::Arr(Vec::new()), "preserved_tokens" => Json::Arr(Vec::new()),
        "chat_format" => "Content-only", "reasoning_format" => "deepseek", "reasoning_in_content" => false,
        "generation_prompt" => "", "samplers" => samplers, "speculative.types" => "none",
        "timings_per_token" => timings_per_token, "post_sampling_probs" => p.post_sampling_probs,
        "backend_sampling" => false, "lora" => crate::server::lora::settings_json(&p.lora),
    }
}

/// llama.cpp's `common_sampler_type_to_str`.
pub fn sampler_name(k: SamplerKind) -> &'static str {
    match k {
        SamplerKind::Penalties => "penalties",
        SamplerKind::Dry => "dry",
        SamplerKind::TopNSigma => "top_n_sigma",
        SamplerKind::TopK => "top_k",
        SamplerKind::TypicalP => "typ_p",
        SamplerKind::TopP => "top_p",
        SamplerKind::MinP => "min_p",
        SamplerKind::Xtc => "xtc",
        SamplerKind::Temperature => "temperature",
        SamplerKind::Infill => "infill",
        SamplerKind::AdaptiveP => "adaptive_p",
    }
}
