//! The embedding, infill and rerank endpoints against the scripted backend (its embeddings are
//! `[3, 4]` pooled, `[id, 1]` per token): the checks before a request reaches the scheduler, the
//! normalization and both layouts. `tests/server_embeddings.rs` compares them with llama-server.

use super::*;

fn message(r: &Reply) -> (StatusCode, String) {
    (r.status, r.json()["error"]["message"].as_str().unwrap_or_default().to_string())
}

#[tokio::test]
async fn off_without_the_flag() {
    let (state, _) = server(&[]);
    for path in ["/embedding", "/embeddings", "/v1/embeddings"] {
        let r = call(&state, Method::POST, path, &[], "{not json").await;
        let want = "This server does not support embeddings. Start it with `--embeddings`";
        assert_eq!(message(&r), (StatusCode::NOT_IMPLEMENTED, want.into()));
    }
    for path in ["/rerank", "/reranking", "/v1/rerank", "/v1/reranking"] {
        let r = post(&state, path, json!({"query": "q", "documents": ["a"]})).await;
        assert_eq!(r.status, StatusCode::NOT_IMPLEMENTED, "{path}");
    }
    let r = post(&state, "/infill", json!({"input_prefix": "a", "input_suffix": "b"})).await;
    let want = "Infill is not supported by this model: prefix token is missing. suffix token is missing. middle token is missing. ";
    assert_eq!(message(&r), (StatusCode::NOT_IMPLEMENTED, want.into()));
}

#[tokio::test]
async fn pooled_layouts_and_normalization() {
    let (state, _) = server(&["--embeddings", "--pooling", "mean"]);
    let r = post(&state, "/v1/embeddings", json!({"input": ["ab", "c"]})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let v = r.json();
    assert_eq!(v["data"][1]["embedding"], json!([0.6000000238418579, 0.800000011920929]));
    assert_eq!(v["data"][1]["index"], 1);
    // BOS and one id per byte.
    assert_eq!(v["usage"], json!({"prompt_tokens": 5, "total_tokens": 5}));
    assert_eq!(v["model"], "fake.gguf");
    let r = post(&state, "/v1/embeddings", json!({"input": "x", "encoding_format": "base64", "model": "m"}))
        .await;
    let v = r.json();
    assert_eq!(v["data"][0]["embedding"], crate::server::embed::base64_f32(&[0.6, 0.8]));
    assert_eq!(v["data"][0]["encoding_format"], "base64");
    assert_eq!(v["model"], "m");
    let r = post(&state, "/embedding", json!({"content": "x", "embd_normalize": -1})).await;
    assert_eq!(r.json(), json!([{"index": 0, "embedding": [[3.0, 4.0]]}]));
    let r = post(&state, "/embedding", json!({"content": []})).await;
    assert_eq!(message(&r), (StatusCode::BAD_REQUEST, "\"input\" must not be empty".into()));
    let r = post(&state, "/embedding", json!({"content": [[]]})).await;
    assert_eq!(message(&r), (StatusCode::BAD_REQUEST, "Input content cannot be empty".into()));
    let r = post(&state, "/embedding", json!({"content": [9999]})).await;
    assert_eq!(message(&r), (StatusCode::BAD_REQUEST, "Prompt contains invalid tokens".into()));
    let r = post(&state, "/embedding", json!({"content": "x".repeat(600)})).await;
    let want = "input (601 tokens) is too large to process. increase the physical batch size (current batch size: 512)";
    assert_eq!(message(&r), (StatusCode::INTERNAL_SERVER_ERROR, want.into()));
}

#[tokio::test]
async fn pooling_none_is_per_token_and_not_openai() {
    let (state, _) = server(&["--embeddings", "--pooling", "none"]);
    let r = post(&state, "/v1/embeddings", json!({"input": "x"})).await;
    let want = "Pooling type 'none' is not OAI compatible. Please use a different pooling type";
    assert_eq!(message(&r), (StatusCode::BAD_REQUEST, want.into()));
    // Rows are not normalized without pooling.
    let r = post(&state, "/embeddings", json!({"content": [5, 6], "embd_normalize": 2})).await;
    assert_eq!(r.json(), json!([{"index": 0, "embedding": [[5.0, 1.0], [6.0, 1.0]]}]));
}

#[test]
fn embedding_flags_and_environment() {
    let c =
        crate::server::args::parse(&["--embedding", "--pooling", "cls", "--embd-normalize", "3"]).unwrap();
    assert!(c.embedding);
    assert_eq!((c.pooling, c.embd_normalize), (Some(Pooling::Cls), 3));
    assert!(crate::server::args::parse(&["--pooling", "sum"]).is_err());
    assert!(crate::server::args::parse(&["--pooling", "rank"]).is_err());
    let env = |k: &str| match k {
        "LLAMA_ARG_EMBEDDINGS" => Some("1".to_string()),
        "LLAMA_ARG_POOLING" => Some("last".to_string()),
        _ => None,
    };
    let args = crate::server::args::env_args(env).unwrap();
    let c = crate::server::args::parse(&args).unwrap();
    assert!(c.embedding);
    assert_eq!(c.pooling, Some(Pooling::Last));
    assert!(crate::server::args::parse(&["--spm-infill"]).unwrap().spm_infill);
}
