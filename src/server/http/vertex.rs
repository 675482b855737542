//! Vertex AI's prediction protocol, as llama-server serves it when `AIP_MODE=PREDICTION`: the
//! server listens on `AIP_HTTP_PORT` (default 8080, over `--port`), `AIP_HEALTH_ROUTE` (if set)
//! answers as `/health`, and `POST AIP_PREDICT_ROUTE` (default `/predict`) takes
//! `{"instances": [...]}` — each instance a request body for the endpoint its `@requestFormat`
//! names, by path (`/v1/chat/completions`) or camelCase alias (`chatCompletions`) — runs them
//! at once, never streamed, and answers `{"predictions": [...]}` in their order, each the
//! endpoint's JSON (its error object included) or an error of its own.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use futures_util::future::join_all;
use serde_json::Value;

use super::info::Ctx;
use super::{error_json, get, post, ApiError, GET_PATHS, POST_PATHS};
use crate::server::api::ErrorKind;

/// The most instances one request may hold (llama-server's limit).
const MAX_INSTANCES: usize = 128;

/// The routes of `AIP_MODE=PREDICTION`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VertexAi {
    /// `AIP_HEALTH_ROUTE`: another path for `/health`.
    pub health: Option<String>,
    /// `AIP_PREDICT_ROUTE`.
    pub predict: String,
    /// `AIP_HTTP_PORT`.
    pub port: u16,
}

impl VertexAi {
    /// The routes `env` describes; `None` unless `AIP_MODE` is `PREDICTION`. Routes get a leading
    /// slash; a predict route that is one of llama-server's own paths is refused, as there.
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> Result<Option<VertexAi>, String> {
        let var = |name: &str| env(name).filter(|v| !v.is_empty());
        if var("AIP_MODE").as_deref() != Some("PREDICTION") {
            return Ok(None);
        }
        let route = |v: String| if v.starts_with('/') { v } else { format!("/{v}") };
        let predict = var("AIP_PREDICT_ROUTE").map_or_else(|| "/predict".to_string(), route);
        if GET_PATHS.contains(&predict.as_str()) || POST_PATHS.contains(&predict.as_str()) {
            return Err(format!("AIP_PREDICT_ROUTE={predict} conflicts with an existing llama-server route"));
        }
        let port = match var("AIP_HTTP_PORT") {
            None => 8080,
            Some(p) => p.trim().parse().map_err(|_| format!("AIP_HTTP_PORT '{p}' is not a port number"))?,
        };
        Ok(Some(VertexAi { health: var("AIP_HEALTH_ROUTE").map(route), predict, port }))
    }
}

/// `@requestFormat`'s camelCase alias of a path: `/v1/chat/completions` → `chatCompletions`.
pub fn alias(path: &str) -> String {
    let p = path.strip_prefix("/v1").filter(|rest| !rest.is_empty()).unwrap_or(path);
    let p = p.strip_prefix('/').unwrap_or(p);
    let mut out = String::new();
    let mut upper = false;
    for c in p.chars().take_while(|&c| c != ':') {
        if matches!(c, '/' | '-' | '_') {
            upper = true;
        } else {
            out.push(if upper { c.to_ascii_uppercase() } else { c });
            upper = false;
        }
    }
    out
}

/// The endpoint `format` names: an alias (the first path with it, in llama-server's order of
/// registration — only `completions` is two endpoints' alias, and names the native one), else a
/// path; with whether it is a GET endpoint (`/props` is both, and GET, registered first, wins).
fn endpoint(format: &str) -> Option<(&'static str, bool)> {
    let all = GET_PATHS.iter().map(|p| (*p, true)).chain(POST_PATHS.iter().map(|p| (*p, false)));
    let all: Vec<(&'static str, bool)> = all.collect();
    all.iter().find(|(p, _)| alias(p) == format).or_else(|| all.iter().find(|(p, _)| *p == format)).copied()
}

fn instance_error(message: &str, kind: ErrorKind) -> String {
    super::json::obj! { "error" => error_json(&ApiError::new(kind, message)) }.to_text()
}

/// One instance's prediction, as JSON text.
async fn predict_one(ctx: &Ctx<'_>, instance: &Value) -> String {
    let Some(fields) = instance.as_object() else {
        return instance_error("each instance must be a JSON object", ErrorKind::InvalidRequest);
    };
    let Some(format) = fields.get("@requestFormat").and_then(Value::as_str) else {
        return instance_error(
            "each instance must include a string @requestFormat",
            ErrorKind::InvalidRequest,
        );
    };
    let Some((path, is_get)) = endpoint(format) else {
        let msg = format!("no handler registered for @requestFormat: {format}");
        return instance_error(&msg, ErrorKind::InvalidRequest);
    };
    let mut payload = fields.clone();
    payload.remove("@requestFormat");
    if payload.contains_key("stream") {
        crate::log_warn!(
            "ignoring client-provided stream field in instance, streaming is not supported in predict route\n"
        );
        payload.insert("stream".into(), Value::Bool(false));
    }
    let body = serde_json::to_vec(&Value::Object(payload)).unwrap_or_default();
    let res = if is_get { get(ctx, path, "") } else { post(ctx, path, &body).await };
    let res = match res {
        Ok(r) => r,
        Err(e) => return super::json::obj! { "error" => error_json(&e) }.to_text(),
    };
    let is_stream = res
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    if is_stream {
        return instance_error(
            "predict route does not support streaming responses",
            ErrorKind::InvalidRequest,
        );
    }
    match axum::body::to_bytes(res.into_body(), super::MAX_BODY_BYTES).await {
        Ok(b) if b.is_empty() => "null".into(),
        // The endpoint's JSON as it wrote it (its keys in its order); other text as a string.
        Ok(b) if serde_json::from_slice::<serde::de::IgnoredAny>(&b).is_ok() => {
            String::from_utf8_lossy(&b).into_owned()
        }
        Ok(b) => serde_json::to_string(&String::from_utf8_lossy(&b)).unwrap_or_default(),
        Err(e) => instance_error(&e.to_string(), ErrorKind::Server),
    }
}

/// `POST AIP_PREDICT_ROUTE`.
pub async fn predict(ctx: &Ctx<'_>, body: &[u8]) -> Result<Response, ApiError> {
    let data = super::params::parse_body(body)?;
    let Some(fields) = data.as_object() else {
        return Err(ApiError::invalid("request body must be a JSON object"));
    };
    let Some(instances) = fields.get("instances").and_then(Value::as_array) else {
        return Err(ApiError::invalid("request body must include an array field named instances"));
    };
    if instances.len() > MAX_INSTANCES {
        return Err(ApiError::invalid(format!("instances array exceeds maximum size of {MAX_INSTANCES}")));
    }
    let predictions = join_all(instances.iter().map(|i| predict_one(ctx, i))).await;
    let text = format!("{{\"predictions\":[{}]}}", predictions.join(","));
    let mut res = Response::new(axum::body::Body::from(text));
    *res.status_mut() = StatusCode::OK;
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=utf-8"));
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_are_llama_servers() {
        assert_eq!(alias("/v1/chat/completions"), "chatCompletions");
        assert_eq!(alias("/apply-template"), "applyTemplate");
        assert_eq!(alias("/v1/messages/count_tokens"), "messagesCountTokens");
        assert_eq!(alias("/health"), "health");
        assert_eq!(alias("/slots/:id_slot"), "slots");
        assert_eq!(endpoint("completions"), Some(("/completions", false)));
        assert_eq!(endpoint("/v1/completions"), Some(("/v1/completions", false)));
        assert_eq!(endpoint("props"), Some(("/props", true)));
        assert_eq!(endpoint("embeddings"), Some(("/embeddings", false)));
        // GET, registered first, holds the path (as with /props).
        assert_eq!(endpoint("loraAdapters"), Some(("/lora-adapters", true)));
    }

    /// `POST /predict` over the scripted backend: each instance answered by its endpoint, in
    /// order, never streamed; bad instances get their own error; bad bodies a 400.
    #[tokio::test]
    async fn predictions_are_the_endpoints_answers_in_order() {
        use crate::server::http::tests::{call, post as post_json, server};
        use axum::http::Method;
        use serde_json::json;
        let (mut state, fake) = server(&[]);
        let vertex = VertexAi { health: Some("/ping".into()), predict: "/predict".into(), port: 8080 };
        std::sync::Arc::get_mut(&mut state).expect("one owner").cfg.vertex = Some(vertex);
        let r = post_json(
            &state,
            "/predict",
            json!({"instances": [
                {"@requestFormat": "chatCompletions", "messages": [{"role": "user", "content": "hi"}], "stream": true},
                {"@requestFormat": "/completion", "prompt": "ab"},
                {"@requestFormat": "tokenize", "content": "ab"},
                {"@requestFormat": "embeddings", "input": "x"},
                {"prompt": "no format"},
                7
            ]}),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text);
        let p = r.json()["predictions"].as_array().cloned().expect("predictions");
        assert_eq!(p.len(), 6);
        assert_eq!(p[0]["choices"][0]["message"]["content"], "Hello world");
        assert_eq!(p[0]["object"], "chat.completion");
        assert_eq!(p[1]["content"], "Hello world");
        assert_eq!(p[2]["tokens"], json!([98, 99]));
        // Served, and refused as by a llama-server started without `--embeddings`.
        assert_eq!(p[3]["error"]["code"], 501);
        assert_eq!(p[4]["error"]["message"], "each instance must include a string @requestFormat");
        assert_eq!(p[5]["error"]["code"], 400);
        assert!(!fake.seen.lock().unwrap()[0].stream, "an instance is never streamed");
        // The native answer's text as the endpoint wrote it, keys in its order.
        let native = post_json(&state, "/completion", json!({"prompt": "ab"})).await;
        assert!(r.text.contains(&native.text), "{}", r.text);

        for (body, message) in [
            (json!([1]), "request body must be a JSON object"),
            (json!({"instances": 1}), "request body must include an array field named instances"),
            (json!({"instances": vec![json!({}); 129]}), "instances array exceeds maximum size of 128"),
        ] {
            let r = post_json(&state, "/predict", body).await;
            assert_eq!((r.status.as_u16(), r.json()["error"]["message"].as_str()), (400, Some(message)));
        }
        let r = call(&state, Method::GET, "/ping", &[], "").await;
        assert_eq!((r.status.as_u16(), r.text.as_str()), (200, r#"{"status":"ok"}"#));
    }

    #[test]
    fn routes_come_from_the_environment() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |k: &str| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
        };
        assert_eq!(VertexAi::from_env(env(&[])), Ok(None));
        assert_eq!(VertexAi::from_env(env(&[("AIP_MODE", "TRAINING")])), Ok(None));
        let v = VertexAi::from_env(env(&[("AIP_MODE", "PREDICTION"), ("AIP_HEALTH_ROUTE", "ping")]));
        assert_eq!(
            v,
            Ok(Some(VertexAi { health: Some("/ping".into()), predict: "/predict".into(), port: 8080 }))
        );
        let v = VertexAi::from_env(env(&[("AIP_MODE", "PREDICTION"), ("AIP_PREDICT_ROUTE", "/v1/models")]));
        assert!(v.is_err_and(|e| e.contains("conflicts")));
        let v = VertexAi::from_env(env(&[("AIP_MODE", "PREDICTION"), ("AIP_HTTP_PORT", "90x")]));
        assert!(v.is_err_and(|e| e.contains("AIP_HTTP_PORT")));
    }
}
