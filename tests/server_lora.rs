//! rs-llama-server's LoRA endpoints and the per-request `lora` field against llama-server's own
//! answers (tests/fixtures/server/lora-llama-server.json, recorded by make-lora.py there from a
//! fresh llama-server on synth-dense-s42 with the seeded adapter of scripts/make-lora-fixtures.sh):
//! the same sequence of requests gives the same statuses, bodies and greedy tokens; two slots at
//! different scales running at once each give their own tokens; a bad adapter stops the start.
//! That llama-server was llama.cpp's AVX2 build (the machine had no AVX-512), so the servers here
//! run rs-llama's AVX2 path, which follows that build's arithmetic, wherever the CPU has it.

mod server_support;

use std::path::PathBuf;

use serde_json::Value;
use server_support::*;

fn fixture() -> Value {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/server/lora-llama-server.json");
    serde_json::from_str(&std::fs::read_to_string(p).expect("fixture")).expect("fixture json")
}

fn files() -> (PathBuf, PathBuf) {
    let m = model("synth-dense-s42.f16.gguf").expect("synth-dense-s42.f16.gguf (scripts/fetch-models.sh)");
    let a =
        model("lora-synth-dense-s42-r16-s7.f16.gguf").expect("the adapter (scripts/make-lora-fixtures.sh)");
    (m, a)
}

fn send_json(s: &Server, method: &str, path: &str, body: &Value) -> Resp {
    let bytes = match body {
        Value::Null => Vec::new(),
        Value::String(text) => text.clone().into_bytes(),
        v => v.to_string().into_bytes(),
    };
    try_request(s.port, method, path, &[("Content-Type", "application/json")], &bytes).expect("request")
}

/// llama-server's answer with its adapter path replaced by the one this server was given.
fn theirs(response: &str, adapter: &str) -> Value {
    let mut v: Value = serde_json::from_str(response).expect("recorded json");
    if let Some(list) = v.as_array_mut() {
        for e in list {
            e["path"] = Value::String(adapter.to_string());
        }
    }
    v
}

#[test]
fn endpoints_and_request_field_answer_as_llama_server() {
    let (m, a) = files();
    let adapter = a.display().to_string();
    let s = Server::ready_with_env(
        &m,
        &["--lora", &adapter, "-np", "1", "-c", "512", "-t", "2"],
        &avx2_build_env(),
    );
    for r in fixture()["requests"].as_array().expect("requests") {
        let name = r["name"].as_str().expect("name");
        let ours = send_json(
            &s,
            r["method"].as_str().expect("method"),
            r["path"].as_str().expect("path"),
            &r["body"],
        );
        assert_eq!(ours.status as u64, r["status"].as_u64().expect("status"), "{name}: {}", ours.text());
        let want = theirs(r["response"].as_str().expect("response"), &adapter);
        let got = ours.json();
        if name.starts_with("gen_") && ours.status == 200 {
            assert_eq!(got["tokens"], want["tokens"], "{name}");
            assert_eq!(got["generation_settings"]["lora"], want["generation_settings"]["lora"], "{name}");
        } else {
            assert_eq!(got, want, "{name}");
        }
    }
}

#[test]
fn slots_at_different_scales_run_together_with_their_own_adapters() {
    let (m, a) = files();
    let adapter = a.display().to_string();
    let s = Server::ready_with_env(
        &m,
        &["--lora", &adapter, "--lora-init-without-apply", "-np", "2", "-c", "1024", "-t", "2"],
        &avx2_build_env(),
    );
    let f = fixture();
    let by_name =
        |n: &str| f["requests"].as_array().unwrap().iter().find(|r| r["name"] == n).unwrap().clone();
    // `--lora-init-without-apply` leaves the adapter at its scale, as llama-server does.
    let listed = send_json(&s, "GET", "/lora-adapters", &Value::Null).json();
    assert_eq!(listed, theirs(by_name("get_initial")["response"].as_str().unwrap(), &adapter));
    let port = s.port;
    let runs: Vec<_> = ["gen_half", "gen_off", "gen_default"]
        .into_iter()
        .map(|n| {
            let r = by_name(n);
            std::thread::spawn(move || {
                let body = r["body"].to_string();
                let resp = try_request(port, "POST", "/completion", &[], body.as_bytes()).expect("request");
                let want: Value = serde_json::from_str(r["response"].as_str().unwrap()).unwrap();
                (n, resp.json()["tokens"].clone(), want["tokens"].clone())
            })
        })
        .collect();
    for h in runs {
        let (n, got, want) = h.join().expect("client thread");
        assert_eq!(got, want, "{n}");
    }
}

#[test]
fn an_adapter_for_another_model_stops_the_start() {
    let (_, a) = files();
    let m = model("smollm2-135m-f16.gguf").expect("smollm2-135m-f16.gguf");
    let mut s = Server::launch(&m, &["--lora", &a.display().to_string(), "-t", "2"]);
    let err = s.wait_ready(|_| {}).expect_err("the server must not start");
    assert!(
        err.contains("failed to load lora adapter")
            && err.contains("has incorrect shape (hint: maybe wrong base model?)"),
        "{err}"
    );
}
