//! The embedding, infill and rerank endpoints against llama-server's own answers: every request
//! of `tests/fixtures/server/embeddings-llama-server.json` (made by `make-embeddings.py` with the
//! real llama-server 11434, good and bad input under seven flag sets; its README says which
//! build and why) is replayed against
//! rs-llama-server started with the same flags and environment. The status must be the same, and
//! the JSON too: the same keys in the same order, the same strings, integers and booleans, and
//! embedding vectors (base64 ones decoded) within [`TOLERANCE`] of the vector's largest
//! magnitude. Infill answers are completions: their text, tokens, prompt and counts must be the
//! same, their keys the same set (timings and settings are the completion tests' business).

mod server_support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use server_support::*;

/// Largest difference allowed in an embedding, relative to the vector's largest magnitude.
/// rs-llama's forward is llama.cpp's bit for bit (on the kernel path of the golden traces), so
/// per-token rows agree to the fixture's 7 digits; pooling and normalization may sum in another
/// order. The test prints the worst case it saw. (Against a llama-server built natively on a CPU
/// with AVX-512 FP16, whose f16 vector arithmetic is half precision, differences reach 2e-3:
/// the fixture's header says how its llama-server was built.)
const TOLERANCE: f64 = 1e-4;

/// [`TOLERANCE`], or 5e-3 on the AVX2 path: the fixture comes from llama-server's AVX-512 build,
/// and the AVX2 kernels sum in that build's AVX2 orders (up to 1.9e-3 measured on Zen 3, unnormalized CLS pooling).
fn tolerance() -> f64 {
    if rs_llama::cpu::path::active() == rs_llama::cpu::CpuPath::Avx2 {
        5e-3
    } else {
        TOLERANCE
    }
}

/// What the comparison saw, for the summary line.
#[derive(Default)]
struct Seen {
    floats: usize,
    identical: usize,
    max_rel: f64,
}

fn launch(model: &std::path::Path, flags: &[&str], env: &[(String, String)]) -> Server {
    let port = free_port();
    let (m, p) = (model.to_string_lossy().into_owned(), port.to_string());
    let args = [&["-m", m.as_str(), "--host", "127.0.0.1", "--port", p.as_str()][..], flags].concat();
    let mut cmd = Command::new(BIN);
    cmd.args(&args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("rs-llama-server starts");
    let stderr = Arc::new(Mutex::new(String::new()));
    let (pipe, sink) = (child.stderr.take().unwrap(), Arc::clone(&stderr));
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            sink.lock().unwrap().push_str(&(line + "\n"));
        }
    });
    let mut s = Server { child, port, stderr };
    if let Err(e) = s.wait_ready(|_| {}) {
        panic!("rs-llama-server {e}");
    }
    s
}

fn b64_f32(s: &str) -> Vec<f64> {
    const ABC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bytes = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes().filter(|&c| c != b'=') {
        let v = ABC.iter().position(|&a| a == c).expect("base64 digit") as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            bytes.push((acc >> bits) as u8);
        }
    }
    bytes.chunks_exact(4).map(|b| f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]]))).collect()
}

fn compare_vectors(want: &[f64], got: &[f64], at: &str, seen: &mut Seen) {
    assert_eq!(want.len(), got.len(), "{at}: vector length");
    let scale = want.iter().fold(0f64, |m, x| m.max(x.abs())).max(f64::MIN_POSITIVE);
    for (i, (w, g)) in want.iter().zip(got).enumerate() {
        let rel = (w - g).abs() / scale;
        seen.floats += 1;
        // The fixture keeps 7 significant digits.
        if (w - g).abs() <= w.abs() * 6e-7 {
            seen.identical += 1;
        }
        seen.max_rel = seen.max_rel.max(rel);
        assert!(rel <= tolerance(), "{at}[{i}]: {g} vs llama-server's {w} (|d|/max|v| = {rel:.2e})");
    }
}

fn numbers(v: &Value) -> Option<Vec<f64>> {
    let items = v.as_array()?;
    items.iter().map(Value::as_f64).collect::<Option<Vec<_>>>().filter(|n| n.len() >= 8)
}

/// `got` has `want`'s shape and values (see the module note); `at` names the place for messages.
fn compare(want: &Value, got: &Value, at: &str, seen: &mut Seen) {
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => {
            let (wk, gk): (Vec<&String>, Vec<&String>) = (w.keys().collect(), g.keys().collect());
            assert_eq!(wk, gk, "{at}: keys");
            for (k, wv) in w {
                let gv = &g[k];
                let at = format!("{at}.{k}");
                match (k.as_str(), wv, gv) {
                    ("embedding", Value::String(ws), Value::String(gs)) => {
                        compare_vectors(&b64_f32(ws), &b64_f32(gs), &at, seen)
                    }
                    // The model's path as the fixture's machine spelt it.
                    ("model", Value::String(ws), Value::String(gs)) if ws.ends_with(".gguf") => {
                        assert_eq!(ws.rsplit('/').next(), gs.rsplit('/').next(), "{at}")
                    }
                    _ => compare(wv, gv, &at, seen),
                }
            }
        }
        (Value::Array(w), Value::Array(g)) => match (numbers(want), numbers(got)) {
            (Some(wn), Some(gn)) if wn.iter().any(|x| x.fract() != 0.0) => {
                compare_vectors(&wn, &gn, at, seen)
            }
            _ => {
                assert_eq!(w.len(), g.len(), "{at}: length");
                for (i, (wv, gv)) in w.iter().zip(g).enumerate() {
                    compare(wv, gv, &format!("{at}[{i}]"), seen);
                }
            }
        },
        _ => assert_eq!(want, got, "{at}"),
    }
}

/// An infill answer: what it says about the prompt and the text, and its keys.
fn compare_infill(want: &Value, got: &Value, at: &str) {
    let keys = |v: &Value| {
        let mut k: Vec<String> = v.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default();
        k.sort();
        k
    };
    assert_eq!(keys(want), keys(got), "{at}: keys");
    for k in ["content", "tokens", "prompt", "tokens_evaluated", "tokens_predicted", "stop_type", "truncated"]
    {
        assert_eq!(want[k], got[k], "{at}.{k}");
    }
}

#[test]
fn embeddings_infill_and_rerank_answer_as_llama_server() {
    let fixture: Value = serde_json::from_str(include_str!("fixtures/server/embeddings-llama-server.json"))
        .expect("fixture parses");
    let scenarios = fixture["scenarios"].as_array().expect("scenarios");
    assert_eq!(scenarios.len(), 7);
    let (mut seen, mut n_requests, mut n_sets) = (Seen::default(), 0, 0);
    for sc in scenarios {
        let Some(model) = model(sc["model"].as_str().unwrap()) else { continue };
        let flags: Vec<&str> = sc["flags"].as_array().unwrap().iter().map(|f| f.as_str().unwrap()).collect();
        let env: Vec<(String, String)> = sc["env"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
            .collect();
        let server = launch(&model, &flags, &env);
        n_sets += 1;
        for (k, r) in sc["requests"].as_array().unwrap().iter().enumerate() {
            let path = r["path"].as_str().unwrap();
            let body = match r.get("raw") {
                Some(raw) => raw.as_str().unwrap().as_bytes().to_vec(),
                None => r["json"].to_string().into_bytes(),
            };
            let at = format!("{flags:?} {env:?} request {k} {path} {}", String::from_utf8_lossy(&body));
            let at: String = at.chars().take(300).collect();
            let got = send(server.port, "POST", path, &body).expect("answer");
            assert_eq!(u64::from(got.status), r["status"].as_u64().unwrap(), "{at}: {}", got.text());
            let (want, got) = (&r["response"], got.json());
            if path == "/infill" && got.status_ok() {
                compare_infill(want, &got, &at);
            } else {
                compare(want, &got, &at, &mut seen);
            }
            n_requests += 1;
        }
    }
    if n_sets > 0 {
        assert!(seen.floats > 10_000, "the fixture's vectors were compared ({} floats)", seen.floats);
    }
    eprintln!(
        "{n_requests} requests under {n_sets} flag sets; {} floats compared, {} identical (to the fixture's 7 digits), \
         largest difference {:.2e} of the vector's largest magnitude",
        seen.floats, seen.identical, seen.max_rel
    );
}

trait StatusOk {
    fn status_ok(&self) -> bool;
}

impl StatusOk for Value {
    /// A completion's answer (an error has an `error` key instead).
    fn status_ok(&self) -> bool {
        self.get("error").is_none()
    }
}
