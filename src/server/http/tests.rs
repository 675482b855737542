//! The HTTP side against a scripted backend and a byte-level vocabulary: routes, auth, CORS,
//! request fields as the scheduler receives them, response JSON and the SSE framing.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use super::*;
use crate::chat::TokenTexts;
use crate::server::api::{Final, Partial, Pooling, StopType, Timings, TokenProb, TokenProbs};

/// Byte-level: id 0 is BOS, byte b is id b+1.
pub(super) struct Bytes;

impl Vocabulary for Bytes {
    fn n_vocab(&self) -> usize {
        257
    }
    fn encode(&self, text: &str, add_special: bool, _parse_special: bool) -> Vec<TokenId> {
        let mut out = if add_special { vec![0] } else { vec![] };
        out.extend(text.bytes().map(|b| b as TokenId + 1));
        out
    }
    fn piece(&self, id: TokenId) -> Vec<u8> {
        if id == 0 {
            b"<s>".to_vec()
        } else {
            vec![(id - 1) as u8]
        }
    }
}

/// Answers every request with "Hello world" in two pieces (or an error, when scripted so).
#[derive(Default)]
pub(super) struct Fake {
    pub(super) seen: Mutex<Vec<GenerateRequest>>,
    fail: Mutex<Option<ApiError>>,
}

impl Backend for Fake {
    fn submit(&self, req: GenerateRequest) -> UnboundedReceiver<GenerateEvent> {
        let (tx, rx) = unbounded_channel();
        self.seen.lock().unwrap().push(req.clone());
        if let Some(e) = self.fail.lock().unwrap().clone() {
            let _ = tx.send(GenerateEvent::Error(e));
            return rx;
        }
        let timings = Timings {
            cache_n: 1,
            prompt_n: req.prompt.len() - 1,
            prompt_ms: 2.0,
            predicted_n: 2,
            predicted_ms: 4.0,
        };
        let prob = |id: TokenId| TokenProbs {
            chosen: TokenProb { id, piece: vec![b'H'], prob: 0.5 },
            top: vec![
                TokenProb { id, piece: vec![b'H'], prob: 0.5 },
                TokenProb { id: 3, piece: vec![0xe2], prob: 0.0 },
            ],
        };
        let probs = if req.n_probs > 0 { vec![prob(73), prob(74)] } else { vec![] };
        if req.stream {
            for (i, text) in ["Hello", " world"].into_iter().enumerate() {
                let p = Partial {
                    text: text.into(),
                    tokens: vec![70 + i as TokenId],
                    probs: probs.get(i).cloned().into_iter().collect(),
                    id_slot: 1,
                    tokens_predicted: i + 1,
                    tokens_evaluated: req.prompt.len(),
                    timings,
                };
                let _ = tx.send(GenerateEvent::Partial(p));
            }
        }
        let f = Final {
            content: "Hello world".into(),
            unsent: String::new(),
            tokens: vec![70, 71],
            probs,
            id_slot: 1,
            stop_type: StopType::Eos,
            stopping_word: String::new(),
            tokens_predicted: 2,
            tokens_evaluated: req.prompt.len(),
            tokens_cached: req.prompt.len() + 2,
            truncated: false,
            timings,
        };
        let _ = tx.send(GenerateEvent::Final(Box::new(f)));
        rx
    }
    fn slots(&self) -> Vec<SlotInfo> {
        vec![SlotInfo {
            id: 0,
            id_task: None,
            n_ctx: 64,
            is_processing: false,
            n_cached: 0,
            n_prompt_processed: 0,
            n_prompt_cached: 0,
            n_decoded: 0,
            n_remaining: -1,
            has_next_token: false,
            has_new_line: false,
            params: None,
        }]
    }
    fn metrics(&self) -> Metrics {
        Metrics {
            prompt_tokens_total: 10,
            prompt_seconds_total: 0.5,
            n_decode_total: 4,
            n_busy_slots_total: 6,
            ..Default::default()
        }
    }
    fn n_ctx_slot(&self) -> usize {
        128
    }
    fn total_slots(&self) -> usize {
        4
    }
    fn shutdown(&self) {}
    /// Pooled: `[3, 4]`; pooling none: `[id, 1]` per token.
    fn embed(&self, req: EmbedRequest) -> tokio::sync::oneshot::Receiver<EmbedResult> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let rows = match req.pooling {
            Pooling::None => req.tokens.iter().map(|&t| vec![t as f32, 1.0]).collect(),
            _ => vec![vec![3.0, 4.0]],
        };
        let _ = tx.send(Ok(rows));
        rx
    }
}

pub(super) fn server(args: &[&str]) -> (Arc<AppState>, Arc<Fake>) {
    let state = Arc::new(AppState::new(crate::server::args::parse(args).unwrap()));
    let fake = Arc::new(Fake::default());
    let templates = ChatTemplates::new("chatml", None, None, TokenTexts::default(), true).unwrap();
    let name = state.cfg.alias.first().cloned().unwrap_or("fake.gguf".into());
    let aliases = if state.cfg.alias.is_empty() { vec![name.clone()] } else { state.cfg.alias.clone() };
    let pooling = state.cfg.pooling.unwrap_or_default();
    let info = ModelInfo {
        name,
        aliases,
        path: "/m/fake.gguf".into(),
        n_ctx_train: 2048,
        pooling,
        ..Default::default()
    };
    let loaded = Loaded {
        backend: fake.clone(),
        vocab: Arc::new(Bytes),
        templates,
        info,
        sampling: Default::default(),
    };
    let _ = state.loaded.set(loaded);
    (state, fake)
}

pub(super) struct Reply {
    pub(super) status: StatusCode,
    pub(super) headers: HeaderMap,
    pub(super) text: String,
}

impl Reply {
    pub(super) fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("{e}: {}", self.text))
    }
    /// The `data:` payloads of an SSE body.
    pub(super) fn events(&self) -> Vec<String> {
        assert!(self.text.ends_with("\n\n"), "{}", self.text);
        self.text
            .split("\n\n")
            .filter(|e| !e.is_empty())
            .map(|e| e.strip_prefix("data: ").unwrap().to_string())
            .collect()
    }
}

pub(super) async fn call(
    state: &Arc<AppState>,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply {
    let mut req = Request::builder().method(method).uri(path);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = handle(State(state.clone()), req.body(Body::from(body.to_string())).unwrap()).await;
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = axum::body::to_bytes(res.into_body(), usize::MAX).await.unwrap();
    Reply { status, headers, text: String::from_utf8(bytes.to_vec()).unwrap() }
}

pub(super) async fn post(state: &Arc<AppState>, path: &str, body: Value) -> Reply {
    call(state, Method::POST, path, &[], &body.to_string()).await
}

fn error_of(r: &Reply) -> (u64, String, String) {
    let e = &r.json()["error"];
    (e["code"].as_u64().unwrap(), e["message"].as_str().unwrap().into(), e["type"].as_str().unwrap().into())
}

#[path = "tests_embed.rs"]
mod embed;

#[tokio::test]
async fn health_loading_and_unknown_paths() {
    let state = Arc::new(AppState::new(crate::server::args::parse::<&str>(&[]).unwrap()));
    let r = call(&state, Method::GET, "/health", &[], "").await;
    assert_eq!(r.status, 503);
    assert_eq!(r.text, r#"{"error":{"message":"Loading model","type":"unavailable_error","code":503}}"#);
    let (state, _) = server(&[]);
    for path in ["/health", "/v1/health"] {
        let r = call(&state, Method::GET, path, &[], "").await;
        assert_eq!((r.status, r.text.as_str()), (StatusCode::OK, r#"{"status":"ok"}"#));
    }
    for (m, path) in [(Method::GET, "/nope"), (Method::GET, "/completion"), (Method::DELETE, "/health")] {
        let r = call(&state, m, path, &[], "").await;
        assert_eq!(r.status, 404);
        assert_eq!(r.text, r#"{"error":{"message":"File Not Found","type":"not_found_error","code":404}}"#);
    }
}

#[tokio::test]
async fn api_keys_cors_and_preflight() {
    let (state, _) = server(&["--api-key", "k1,k2"]);
    assert_eq!(call(&state, Method::GET, "/health", &[], "").await.status, 200);
    let r = call(&state, Method::GET, "/v1/models", &[], "").await;
    assert_eq!(r.status, 401);
    assert_eq!(r.text, r#"{"error":{"message":"Invalid API Key","type":"authentication_error","code":401}}"#);
    assert_eq!(call(&state, Method::GET, "/models", &[("Authorization", "Bearer k3")], "").await.status, 401);
    assert_eq!(call(&state, Method::GET, "/models", &[("Authorization", "Bearer k2")], "").await.status, 200);
    assert_eq!(call(&state, Method::GET, "/props", &[("X-Api-Key", "k1")], "").await.status, 200);
    let r = call(&state, Method::OPTIONS, "/v1/chat/completions", &[("Origin", "http://localhost:3000")], "")
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["access-control-allow-origin"], "http://localhost:3000");
    assert_eq!(r.headers["access-control-allow-methods"], "GET, POST, DELETE, OPTIONS");
    assert_eq!(r.headers["access-control-allow-headers"], "*");
    assert_eq!(r.headers["access-control-allow-credentials"], "true");
}

#[tokio::test]
async fn native_completion_fields_and_response() {
    let (state, fake) = server(&["-n", "7"]);
    let body = json!({"prompt": "Hi", "temperature": 0, "top_k": 1, "seed": 42, "stop": "\n", "n_probs": 2,
        "logit_bias": [[5, -1.5], [999, 1.0]], "ignore_eos": true, "return_tokens": true, "id_slot": 1});
    let r = post(&state, "/completion", body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert!(r.text.starts_with(r#"{"index":0,"content":"Hello world","tokens":[70,71],"id_slot":1,"stop":true,"model":"fake.gguf","tokens_predicted":2,"tokens_evaluated":3,"generation_settings":{"seed":42,"temperature":0.0,"#), "{}", r.text);
    assert!(r.text.contains(r#""prompt":"<s>Hi","has_new_line":false,"truncated":false,"stop_type":"eos","stopping_word":"","tokens_cached":5,"timings":{"cache_n":1,"prompt_n":2,"prompt_ms":2.0,"prompt_per_token_ms":1.0,"prompt_per_second":1000.0,"predicted_n":2"#), "{}", r.text);
    let probs = &v["completion_probabilities"];
    assert_eq!(probs[0]["logprob"].as_f64().unwrap() as f32, 0.5f32.ln());
    assert_eq!(probs[0]["top_logprobs"][1]["token"], "", "a piece cut inside UTF-8 keeps its whole prefix");
    assert_eq!(probs[0]["top_logprobs"][1]["bytes"], json!([0xe2]));
    assert_eq!(probs[0]["top_logprobs"][1]["logprob"].as_f64().unwrap() as f32, f32::MIN);
    let req = fake.seen.lock().unwrap()[0].clone();
    assert_eq!(req.prompt, vec![0, b'H' as TokenId + 1, b'i' as TokenId + 1]);
    assert_eq!((req.n_predict, req.sampling.temp, req.sampling.top_k, req.sampling.seed), (7, 0.0, 1, 42));
    assert_eq!((req.stop, req.n_probs, req.id_slot, req.stream), (vec!["\n".to_string()], 2, Some(1), false));
    assert_eq!(req.sampling.logit_bias, vec![(5, -1.5)], "ids beyond n_vocab are skipped");
    assert!(req.sampling.ignore_eos);
    assert_eq!(v["generation_settings"]["logit_bias"], json!([{"bias": -1.5, "token": 5}]));
    assert_eq!(v["generation_settings"]["n_predict"], 7);
}

#[tokio::test]
async fn prompt_forms() {
    let (state, fake) = server(&[]);
    let r = post(
        &state,
        "/completions",
        json!({"prompt": [["a", 5, "b"], [7, 8], "c"], "logit_bias": {"5": false, "b": 2}}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let arr = r.json();
    assert_eq!(arr.as_array().unwrap().len(), 3);
    assert_eq!(arr[2]["index"], 2);
    let seen = fake.seen.lock().unwrap().clone();
    assert_eq!(seen[0].prompt, vec![0, 98, 5, 99], "BOS before the first string only");
    assert_eq!(seen[1].prompt, vec![7, 8]);
    assert_eq!(seen[2].prompt, vec![0, 100]);
    assert_eq!(seen[0].sampling.logit_bias, vec![(5, f32::NEG_INFINITY), (99, 2.0)]);
    let r = post(&state, "/completion", json!({"prompt": [1, 2, 3]})).await;
    assert_eq!(fake.seen.lock().unwrap()[3].prompt, vec![1, 2, 3]);
    assert_eq!(r.json()["tokens"], json!([]), "tokens only with return_tokens");
}

#[tokio::test]
async fn bad_inputs() {
    let (state, fake) = server(&[]);
    let cases: &[(&str, &str, u16, &str, &str)] = &[
        (
            "/completion",
            "{not json",
            400,
            "invalid_request_error",
            "[json.exception.parse_error.101] parse error at line 1, column 3: syntax error while parsing object key - invalid literal; last read: '{no'; expected string literal",
        ),
        (
            "/completion",
            "",
            400,
            "invalid_request_error",
            "[json.exception.parse_error.101] parse error at line 1, column 1: attempting",
        ),
        (
            "/completion",
            r#"{"n_predict": 3}"#,
            400,
            "invalid_request_error",
            "[json.exception.out_of_range.403] key 'prompt' not found",
        ),
        (
            "/completion",
            r#"{"prompt": "x", "temperature": "hot"}"#,
            400,
            "invalid_request_error",
            "Field 'temperature': [json.exception.type_error.302] type must be number, but is string",
        ),
        (
            "/completion",
            r#"{"prompt": "x", "stream": 1}"#,
            400,
            "invalid_request_error",
            "Field 'stream': [json.exception.type_error.302] type must be boolean, but is number",
        ),
        (
            "/completion",
            r#"{"prompt": "x", "n_predict": -5}"#,
            400,
            "invalid_request_error",
            "Field 'n_predict': Value must be between -1 <= value <= 2147483647, but got -5",
        ),
        (
            "/completion",
            r#"{"prompt": [1, 257]}"#,
            400,
            "invalid_request_error",
            "Prompt contains invalid tokens",
        ),
        (
            "/completion",
            r#"{"prompt": [1, -1]}"#,
            400,
            "invalid_request_error",
            "Prompt contains invalid tokens",
        ),
        ("/completion", r#"{"prompt": []}"#, 400, "invalid_request_error", "\"prompt\" must not be empty"),
        ("/completion", r#"{"prompt": 5}"#, 400, "invalid_request_error", "\"prompt\" elements must be"),
        ("/v1/chat/completions", r#"{"model": "x"}"#, 400, "invalid_request_error", "'messages' is required"),
        (
            "/v1/chat/completions",
            r#"{"messages": {}}"#,
            400,
            "invalid_request_error",
            "Expected 'messages' to be an array",
        ),
        (
            "/v1/chat/completions",
            r#"{"messages": [{"role": "user"}]}"#,
            400,
            "invalid_request_error",
            "All non-assistant messages must contain 'content'",
        ),
        (
            "/v1/chat/completions",
            r#"{"messages": [{"role": "user", "content": "x"}], "n": 9}"#,
            400,
            "invalid_request_error",
            "Field 'n': Value must be between 1 <= value <= 4, but got 9",
        ),
        (
            "/v1/chat/completions",
            r#"{"messages": [{"role": "user", "content": "x"}], "top_logprobs": 2}"#,
            400,
            "invalid_request_error",
            "top_logprobs requires logprobs to be set to true",
        ),
    ];
    for (path, body, code, kind, msg) in cases {
        let r = call(&state, Method::POST, path, &[], body).await;
        let (c, m, t) = error_of(&r);
        assert_eq!((r.status.as_u16(), c, t.as_str()), (*code, *code as u64, *kind), "{body}: {}", r.text);
        assert!(m.starts_with(msg), "{body}: {m}");
    }
    let long = "x".repeat(128);
    let r = post(&state, "/completion", json!({"prompt": long})).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.text,
        r#"{"error":{"code":400,"message":"request (129 tokens) exceeds the available context size (128 tokens), try increasing it","type":"exceed_context_size_error","n_prompt_tokens":129,"n_ctx":128}}"#
    );
    assert!(fake.seen.lock().unwrap().is_empty(), "no bad request reached the scheduler");
    let big = format!(r#"{{"prompt": "{}"}}"#, "a".repeat(MAX_BODY_BYTES + 1));
    assert_eq!(call(&state, Method::POST, "/completion", &[], &big).await.status, 413);
}

#[tokio::test]
async fn scheduler_errors_keep_their_status_in_a_stream() {
    let (state, fake) = server(&[]);
    *fake.fail.lock().unwrap() = Some(ApiError::new(ErrorKind::Server, "boom"));
    let r = post(&state, "/completion", json!({"prompt": "x", "stream": true})).await;
    assert_eq!(r.status, 500);
    assert_eq!(r.text, r#"{"error":{"code":500,"message":"boom","type":"server_error"}}"#);
}

#[tokio::test]
async fn native_stream_ends_with_the_final_object_and_no_done() {
    let (state, _) = server(&[]);
    let r = post(&state, "/completion", json!({"prompt": "x", "stream": true})).await;
    assert_eq!(r.headers["content-type"], "text/event-stream");
    let ev = r.events();
    assert_eq!(ev.len(), 3, "{ev:?}");
    assert_eq!(
        ev[0],
        r#"{"index":0,"content":"Hello","tokens":[70],"stop":false,"id_slot":-1,"tokens_predicted":1,"tokens_evaluated":2}"#
    );
    let last: Value = serde_json::from_str(&ev[2]).unwrap();
    assert_eq!((last["stop"].clone(), last["content"].clone()), (json!(true), json!("")));
    assert!(!r.text.contains("[DONE]"));
}

#[tokio::test]
async fn chat_completion_and_its_stream() {
    let (state, fake) = server(&["-a", "smol"]);
    let msgs = json!([{"role": "system", "content": "Be brief."}, {"role": "user", "content": [{"type": "text", "text": "Hi"}]}]);
    let r = post(
        &state,
        "/v1/chat/completions",
        json!({"messages": msgs, "max_tokens": 5, "stop": "x", "logprobs": true, "top_logprobs": 1}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json();
    assert!(r.text.starts_with(r#"{"choices":[{"finish_reason":"stop","index":0,"message":{"role":"assistant","content":"Hello world"},"logprobs":{"content":[{"id":73,"#), "{}", r.text);
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "smol");
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-") && v["id"].as_str().unwrap().len() == 41);
    let prompt_len =
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
            .len()
            + 1;
    assert_eq!(
        v["usage"],
        json!({"completion_tokens": 2, "prompt_tokens": prompt_len, "total_tokens": prompt_len + 2, "prompt_tokens_details": {"cached_tokens": 1}})
    );
    let req = fake.seen.lock().unwrap()[0].clone();
    assert_eq!((req.n_predict, req.stop.clone(), req.n_probs), (5, vec!["x".to_string()], 1));

    let r = post(
        &state,
        "/chat/completions",
        json!({"messages": msgs, "stream": true, "stream_options": {"include_usage": true}}),
    )
    .await;
    let ev = r.events();
    assert_eq!(ev.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = ev[..ev.len() - 1].iter().map(|e| serde_json::from_str(e).unwrap()).collect();
    assert_eq!(chunks[0]["choices"][0]["delta"], json!({"role": "assistant", "content": null}));
    assert_eq!(chunks[1]["choices"][0]["delta"], json!({"content": "Hello"}));
    assert_eq!(chunks[2]["choices"][0]["delta"], json!({"content": " world"}));
    assert_eq!(chunks[3]["choices"][0]["finish_reason"], "stop");
    assert_eq!(chunks[3]["choices"][0]["delta"], json!({}));
    assert_eq!(chunks[4]["choices"], json!([]));
    assert_eq!(chunks[4]["usage"]["completion_tokens"], 2);
    assert!(chunks[4].get("timings").is_some());
    assert!(chunks.iter().all(|c| c["object"] == "chat.completion.chunk" && c["id"] == chunks[0]["id"]));
}

#[tokio::test]
async fn oai_text_completion_with_n_choices() {
    let (state, fake) = server(&[]);
    let r = post(&state, "/v1/completions", json!({"prompt": "x", "n": 2, "max_tokens": 3})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json();
    assert_eq!(v["object"], "text_completion");
    assert_eq!(
        v["choices"],
        json!([
            {"text": "Hello world", "index": 0, "logprobs": null, "finish_reason": "stop"},
            {"text": "Hello world", "index": 1, "logprobs": null, "finish_reason": "stop"},
        ])
    );
    assert_eq!(fake.seen.lock().unwrap().len(), 2);
    let r = post(&state, "/v1/completions", json!({"prompt": "x", "stream": true})).await;
    let ev = r.events();
    assert_eq!(ev.last().unwrap(), "[DONE]");
    let last: Value = serde_json::from_str(&ev[ev.len() - 2]).unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
    assert!(last.get("usage").is_some());
}

#[tokio::test]
async fn tokenize_detokenize_and_template() {
    let (state, _) = server(&[]);
    let r = post(&state, "/tokenize", json!({"content": "Hi"})).await;
    assert_eq!(r.text, r#"{"tokens":[73,106]}"#);
    let r =
        post(&state, "/tokenize", json!({"content": "Hi", "add_special": true, "with_pieces": true})).await;
    assert_eq!(r.text, r#"{"tokens":[{"id":0,"piece":"<s>"},{"id":73,"piece":"H"},{"id":106,"piece":"i"}]}"#);
    let r = post(&state, "/tokenize", json!({"content": "\u{e9}", "with_pieces": true})).await;
    assert_eq!(r.text, r#"{"tokens":[{"id":196,"piece":[195]},{"id":170,"piece":[169]}]}"#);
    let r = post(&state, "/detokenize", json!({"tokens": [73, 106]})).await;
    assert_eq!(r.text, r#"{"content":"Hi"}"#);
    assert_eq!(post(&state, "/detokenize", json!({"tokens": [999]})).await.status, 400);
    let r = post(&state, "/apply-template", json!({"messages": [{"role": "user", "content": "Hi"}]})).await;
    assert_eq!(r.text, r#"{"prompt":"<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"}"#);
}

#[tokio::test]
async fn props_models_slots_metrics() {
    let (state, _) = server(&[]);
    let v = call(&state, Method::GET, "/props", &[], "").await.json();
    assert_eq!((v["total_slots"].clone(), v["model_path"].clone()), (json!(4), json!("/m/fake.gguf")));
    assert_eq!(v["default_generation_settings"]["n_ctx"], 128);
    assert_eq!(v["default_generation_settings"]["params"]["top_k"], 40);
    assert!(v["default_generation_settings"]["params"].get("stop").is_none());
    assert_eq!(v["is_sleeping"], false);
    let v = call(&state, Method::GET, "/v1/models", &[], "").await.json();
    assert_eq!((v["object"].clone(), v["data"][0]["id"].clone()), (json!("list"), json!("fake.gguf")));
    assert_eq!(v["data"][0]["meta"]["n_ctx"], 128);
    let v = call(&state, Method::GET, "/slots", &[], "").await.json();
    assert_eq!(v, json!([{"id": 0, "n_ctx": 64, "speculative": false, "is_processing": false}]));
    let r = call(&state, Method::GET, "/metrics", &[], "").await;
    assert_eq!(
        error_of(&r),
        (
            501,
            "This server does not support metrics endpoint. Start it with `--metrics`".into(),
            "not_supported_error".into()
        )
    );
    assert_eq!(error_of(&post(&state, "/props", json!({})).await).0, 501);

    let (state, _) = server(&["--metrics", "--no-slots", "--props"]);
    let r = call(&state, Method::GET, "/metrics", &[], "").await;
    assert_eq!(r.headers["content-type"], "text/plain; version=0.0.4");
    assert!(r.headers.contains_key("process-start-time-unix"));
    assert!(
        r.text.contains("# TYPE llamacpp:prompt_tokens_total counter\nllamacpp:prompt_tokens_total 10\n"),
        "{}",
        r.text
    );
    assert!(r.text.contains("llamacpp:prompt_tokens_seconds 20\n"));
    assert!(r.text.contains("llamacpp:n_busy_slots_per_decode 1.5\n"));
    assert_eq!(error_of(&call(&state, Method::GET, "/slots", &[], "").await).0, 501);
    assert_eq!(post(&state, "/props", json!({})).await.text, r#"{"success":true}"#);
}

#[test]
fn numbers_print_like_cpp_streams() {
    use super::info::format_g;
    for (v, s) in [
        (0.0, "0"),
        (10.0, "10"),
        (1.5, "1.5"),
        (1234567.0, "1.23457e+06"),
        (0.000012345, "1.2345e-05"),
        (123.456789, "123.457"),
    ] {
        assert_eq!(format_g(v), s);
    }
}
