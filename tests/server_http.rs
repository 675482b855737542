//! `rs-llama-server` over loopback with SmolLM2: every endpoint, llama-server's JSON shapes and
//! error bodies, streaming, a client that hangs up, and shutdown on SIGTERM. A plain HTTP/1.1
//! client on `std::net` (bounded timeouts everywhere); greedy text is checked against `rs-llama`'s
//! and `/tokenize` against `rs-llama-tokenize`'s ids.

mod server_support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use server_support::*;

/// Exit status and stderr of a run that must end by itself.
fn run_to_exit(args: &[&str]) -> (Option<i32>, String) {
    let (mut child, stderr) = spawn(args);
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            std::thread::sleep(Duration::from_millis(100));
            return (status.code(), stderr.lock().unwrap().clone());
        }
        if start.elapsed() > TIMEOUT {
            let _ = child.kill();
            panic!("rs-llama-server {args:?} did not exit: {}", stderr.lock().unwrap());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Start a server on SmolLM2 and wait for `/health`, which must answer llama-server's 503 body
/// until the model is loaded; None (with a note) if the model is missing.
fn start(extra: &[&str]) -> Option<Server> {
    let m = model("smollm2-135m-f16.gguf")?;
    let mut server = Server::launch(&m, &[&["-t", "2"][..], extra].concat());
    let ready = server.wait_ready(|r| {
        assert_eq!(r.status, 503, "{}", r.text());
        assert_eq!(
            r.text(),
            r#"{"error":{"message":"Loading model","type":"unavailable_error","code":503}}"#
        );
    });
    if let Err(e) = ready {
        panic!("rs-llama-server {e}");
    }
    assert!(server.stderr.lock().unwrap().contains("listening on http://127.0.0.1:"));
    Some(server)
}

const KEY: &str = "sekrit";

fn req(s: &Server, method: &str, path: &str, body: &Value) -> Resp {
    let auth = format!("Bearer {KEY}");
    let body = if body.is_null() { Vec::new() } else { body.to_string().into_bytes() };
    try_request(
        s.port,
        method,
        path,
        &[("Authorization", &auth), ("Content-Type", "application/json")],
        &body,
    )
    .unwrap()
}

fn raw(s: &Server, path: &str, body: &str) -> Resp {
    let auth = format!("Bearer {KEY}");
    try_request(s.port, "POST", path, &[("Authorization", &auth)], body.as_bytes()).unwrap()
}

const PROMPT: &str = "The capital of France is";

/// What `rs-llama` generates greedily for PROMPT (its stdout without the echoed prompt).
fn rs_llama_text(n: usize) -> String {
    let m = model("smollm2-135m-f16.gguf").unwrap();
    let n = n.to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_rs-llama"))
        .args([
            "-m",
            &m.to_string_lossy(),
            "-p",
            PROMPT,
            "-n",
            &n,
            "--temp",
            "0",
            "-no-cnv",
            "-c",
            "512",
            "-t",
            "2",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    // rs-llama prints the prompt, the generated text, then "\n\n" as llama-completion does.
    let text = text.strip_suffix("\n\n").expect("rs-llama ends with an empty line");
    text.strip_prefix(PROMPT).expect("rs-llama echoes the prompt").to_string()
}

#[test]
fn command_line_and_startup_errors_are_one_line_and_exit_1() {
    let (code, err) = run_to_exit(&["--bogus"]);
    assert_eq!((code, err.trim()), (Some(1), "error: invalid argument: --bogus"));
    let (code, err) = run_to_exit(&["--mmproj", "x"]);
    assert_eq!((code, err.trim()), (Some(1), "error: argument --mmproj is not supported yet by rs-llama"));
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port().to_string();
    let (code, err) = run_to_exit(&["-m", "/nonexistent.gguf", "--port", &port]);
    assert_eq!(code, Some(1), "{err}");
    let line =
        format!("srv         start: couldn't bind HTTP server socket, hostname: 127.0.0.1, port: {port}");
    assert!(err.lines().any(|l| l == line), "{err}");
    let port = free_port().to_string();
    let (code, err) = run_to_exit(&["-m", "/nonexistent.gguf", "--port", &port]);
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(
        err.lines().filter(|l| l.contains("failed to load model, '/nonexistent.gguf'")).count(),
        1,
        "{err}"
    );
    let bad = std::env::temp_dir().join(format!("rs-llama-server-bad-{}.gguf", std::process::id()));
    std::fs::write(&bad, b"this is not a GGUF file").unwrap();
    let (code, err) = run_to_exit(&["-m", &bad.to_string_lossy(), "--port", &free_port().to_string()]);
    let _ = std::fs::remove_file(&bad);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("failed to load model"), "{err}");
}

#[test]
fn endpoints_and_bad_inputs() {
    let Some(s) = start(&["-np", "2", "-c", "512", "--metrics", "--api-key", KEY, "--temp", "0"]) else {
        return;
    };

    // Public and protected paths.
    let open = try_request(s.port, "GET", "/health", &[], b"").unwrap();
    assert_eq!((open.status, open.text()), (200, r#"{"status":"ok"}"#.to_string()));
    let denied = try_request(s.port, "GET", "/v1/models", &[], b"").unwrap();
    assert_eq!(
        (denied.status, denied.text()),
        (
            401,
            r#"{"error":{"message":"Invalid API Key","type":"authentication_error","code":401}}"#.to_string()
        )
    );
    let r = try_request(s.port, "GET", "/props", &[("X-Api-Key", KEY)], b"").unwrap();
    assert_eq!(r.status, 200);
    let pre =
        try_request(s.port, "OPTIONS", "/v1/chat/completions", &[("Origin", "http://localhost:5173")], b"")
            .unwrap();
    assert_eq!(pre.status, 200);
    assert_eq!(pre.header("access-control-allow-origin"), Some("http://localhost:5173"));
    assert_eq!(pre.header("access-control-allow-methods"), Some("GET, POST, DELETE, OPTIONS"));

    // Model facts.
    let models = req(&s, "GET", "/v1/models", &Value::Null).json();
    // llama-server names the model by its -m path (and lists that name as its alias).
    let path = model("smollm2-135m-f16.gguf").unwrap().to_string_lossy().into_owned();
    assert_eq!(models["data"][0]["id"], path.as_str());
    assert_eq!(models["data"][0]["aliases"], json!([path.as_str()]));
    assert_eq!(models["data"][0]["meta"]["n_vocab"], 49152);
    let props = req(&s, "GET", "/props", &Value::Null).json();
    assert_eq!(props["total_slots"], 2);
    assert_eq!(props["default_generation_settings"]["n_ctx"], 256);
    assert_eq!(props["default_generation_settings"]["params"]["temperature"], 0.0);
    assert!(props["chat_template"].as_str().unwrap().contains("<|im_start|>"));
    assert_eq!(req(&s, "GET", "/slots", &Value::Null).json().as_array().unwrap().len(), 2);
    assert_eq!(req(&s, "POST", "/props", &json!({})).error().0, 501);

    // Tokens (ids as `rs-llama-tokenize -p "Hello world" --ids` prints them).
    assert_eq!(
        req(&s, "POST", "/tokenize", &json!({"content": "Hello world"})).text(),
        r#"{"tokens":[19556,905]}"#
    );
    let pieces = req(&s, "POST", "/tokenize", &json!({"content": "Hello world", "with_pieces": true})).text();
    assert_eq!(pieces, r#"{"tokens":[{"id":19556,"piece":"Hello"},{"id":905,"piece":" world"}]}"#);
    assert_eq!(
        req(&s, "POST", "/detokenize", &json!({"tokens": [19556, 905]})).text(),
        r#"{"content":"Hello world"}"#
    );
    let tpl =
        req(&s, "POST", "/apply-template", &json!({"messages": [{"role": "user", "content": "Hi"}]})).json();
    assert!(
        tpl["prompt"].as_str().unwrap().ends_with("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"),
        "{tpl}"
    );

    // Greedy text equals rs-llama's.
    let expected = rs_llama_text(8);
    let r = req(&s, "POST", "/completion", &json!({"prompt": PROMPT, "n_predict": 8, "n_probs": 3}));
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["content"], expected.as_str());
    assert_eq!(
        (v["tokens_predicted"].clone(), v["stop_type"].clone(), v["stop"].clone()),
        (json!(8), json!("limit"), json!(true))
    );
    assert_eq!(v["tokens_evaluated"], 5);
    assert_eq!(v["model"], path.as_str());
    assert_eq!(v["completion_probabilities"].as_array().unwrap().len(), 8);
    assert_eq!(v["completion_probabilities"][0]["top_logprobs"].as_array().unwrap().len(), 3);
    let stream = req(&s, "POST", "/completion", &json!({"prompt": PROMPT, "n_predict": 8, "stream": true}));
    assert_eq!(stream.header("content-type"), Some("text/event-stream"));
    let events: Vec<Value> = stream.events().iter().map(|e| serde_json::from_str(e).unwrap()).collect();
    let text: String = events.iter().map(|e| e["content"].as_str().unwrap()).collect();
    assert_eq!(text, expected);
    assert_eq!(events.last().unwrap()["stop"], true);
    assert!(events[..events.len() - 1].iter().all(|e| e["stop"] == false));
    assert!(!stream.text().contains("[DONE]"));
    let mixed = req(
        &s,
        "POST",
        "/completion",
        &json!({"prompt": ["The capital", 282, " France is"], "n_predict": 8}),
    )
    .json();
    assert_eq!(mixed["content"], expected.as_str(), "\" of\" is token 282");
    let two = req(
        &s,
        "POST",
        "/completion",
        &json!({"prompt": [PROMPT, [504, 3575, 282, 4649, 314]], "n_predict": 2}),
    )
    .json();
    assert_eq!(two.as_array().map(Vec::len), Some(2), "{two}");

    // OpenAI shapes.
    let oai = req(&s, "POST", "/v1/completions", &json!({"prompt": PROMPT, "max_tokens": 8, "n": 2})).json();
    assert_eq!(oai["object"], "text_completion");
    assert_eq!(oai["choices"][0]["text"], expected.as_str());
    assert_eq!(oai["choices"][1]["text"], expected.as_str());
    assert_eq!(oai["choices"][1]["finish_reason"], "length");
    let msgs = json!([{"role": "user", "content": "What is the capital of France?"}]);
    let chat =
        req(&s, "POST", "/v1/chat/completions", &json!({"messages": msgs, "max_tokens": 8, "seed": 1}))
            .json();
    assert_eq!(chat["object"], "chat.completion");
    assert_eq!(chat["choices"][0]["message"]["role"], "assistant");
    assert_eq!(chat["usage"]["completion_tokens"], 8);
    assert!(chat["id"].as_str().unwrap().starts_with("chatcmpl-"));
    let cs = req(
        &s,
        "POST",
        "/v1/chat/completions",
        &json!({"messages": msgs, "max_tokens": 8, "stream": true, "stream_options": {"include_usage": true}}),
    );
    let ev = cs.events();
    assert_eq!(ev.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = ev[..ev.len() - 1].iter().map(|e| serde_json::from_str(e).unwrap()).collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let streamed: String =
        chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(streamed, chat["choices"][0]["message"]["content"].as_str().unwrap());
    assert_eq!(chunks.last().unwrap()["usage"]["completion_tokens"], 8);

    // Bad inputs: llama-server's status, type and message; the server stays up.
    let cases: &[(&str, &str, u16, &str, &str)] = &[
        ("/completion", "{\"prompt\":", 400, "invalid_request_error", "[json.exception.parse_error.101]"),
        (
            "/completion",
            r#"{"prompt": "x", "top_k": "many"}"#,
            400,
            "invalid_request_error",
            "Field 'top_k': [json.exception.type_error.302] type must be number, but is string",
        ),
        (
            "/completion",
            r#"{"n_predict": 1}"#,
            400,
            "invalid_request_error",
            "[json.exception.out_of_range.403] key 'prompt' not found",
        ),
        (
            "/completion",
            r#"{"prompt": [1, 49152]}"#,
            400,
            "invalid_request_error",
            "Prompt contains invalid tokens",
        ),
        (
            "/v1/chat/completions",
            r#"{"max_tokens": 1}"#,
            400,
            "invalid_request_error",
            "'messages' is required",
        ),
        (
            "/v1/chat/completions",
            r#"{"messages": [{"role": "user", "content": "x"}], "n": 3}"#,
            400,
            "invalid_request_error",
            "Field 'n': Value must be between 1 <= value <= 2, but got 3",
        ),
    ];
    for (path, body, code, kind, msg) in cases {
        let r = raw(&s, path, body);
        let (c, m, t) = r.error();
        assert_eq!((r.status, c, t.as_str()), (*code, *code, *kind), "{body}");
        assert!(m.starts_with(msg), "{body}: {m}");
    }
    let long: Vec<u32> = vec![100; 300];
    let r = req(&s, "POST", "/completion", &json!({"prompt": long}));
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["error"],
        json!({"code": 400, "message": "request (300 tokens) exceeds the available context size (256 tokens), try increasing it", "type": "exceed_context_size_error", "n_prompt_tokens": 300, "n_ctx": 256})
    );
    let r = req(&s, "GET", "/no/such/path", &Value::Null);
    assert_eq!(
        (r.status, r.text()),
        (404, r#"{"error":{"message":"File Not Found","type":"not_found_error","code":404}}"#.to_string())
    );
    let auth = format!("Bearer {KEY}");
    let big = try_request(
        s.port,
        "POST",
        "/completion",
        &[("Authorization", &auth), ("Content-Length", "209715200")],
        b"{}",
    )
    .unwrap();
    assert_eq!(big.status, 413);

    // A client that hangs up mid-stream frees its slot.
    {
        let mut c = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
        c.set_read_timeout(Some(TIMEOUT)).unwrap();
        let body =
            json!({"prompt": PROMPT, "n_predict": 200, "stream": true, "ignore_eos": true}).to_string();
        write_request(&mut c, "POST", "/completion", &[("Authorization", &auth)], body.as_bytes()).unwrap();
        let mut buf = [0u8; 4096];
        let mut seen = Vec::new();
        while !String::from_utf8_lossy(&seen).contains("data: ") {
            let n = c.read(&mut buf).unwrap();
            assert!(n > 0, "stream ended early");
            seen.extend_from_slice(&buf[..n]);
        }
    }
    let start = Instant::now();
    while req(&s, "GET", "/slots", &Value::Null)
        .json()
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x["is_processing"] == true)
    {
        assert!(start.elapsed() < Duration::from_secs(20), "the slot stayed busy after the client left");
        std::thread::sleep(Duration::from_millis(100));
    }
    let metrics = req(&s, "GET", "/metrics", &Value::Null);
    assert_eq!(metrics.header("content-type"), Some("text/plain; version=0.0.4"));
    assert!(
        metrics.text().contains("# TYPE llamacpp:tokens_predicted_total counter\n"),
        "{}",
        metrics.text()
    );
    assert!(metrics.header("process-start-time-unix").is_some());
}

/// `--host` with a TCP address and a UNIX socket (`.sock`): both serve; `--tags` are in
/// `/v1/models`; with `--no-slots` and without `--metrics` those endpoints answer 501; SIGTERM
/// ends the server with 0.
#[test]
fn endpoints_off_by_flag_and_sigterm_exits_0() {
    let sock = std::env::temp_dir().join(format!("rs-llama-test-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&sock);
    let hosts = format!("127.0.0.1,{}", sock.display());
    let Some(mut s) = start(&["--no-slots", "--host", &hosts, "--tags", "code,chat"]) else { return };
    let mut unix = std::os::unix::net::UnixStream::connect(&sock).expect("the UNIX socket listens");
    unix.write_all(b"GET /v1/models HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
    let mut raw = String::new();
    unix.read_to_string(&mut raw).unwrap();
    let body = raw.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let models: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {raw}"));
    assert_eq!(models["data"][0]["tags"], json!(["chat", "code"]), "{raw}");
    let log = s.log_tail(40);
    assert!(log.contains(&format!("listening on unix://{}", sock.display())), "{log}");
    let r = try_request(s.port, "GET", "/metrics", &[], b"").unwrap();
    assert_eq!(
        r.error(),
        (
            501,
            "This server does not support metrics endpoint. Start it with `--metrics`".into(),
            "not_supported_error".into()
        )
    );
    let r = try_request(s.port, "GET", "/slots", &[], b"").unwrap();
    assert_eq!(
        r.error(),
        (
            501,
            "This server does not support slots endpoint. Start it with `--slots`".into(),
            "not_supported_error".into()
        )
    );
    let r = try_request(s.port, "POST", "/props", &[], b"{}").unwrap();
    assert_eq!(r.status, 501);
    let r = try_request(s.port, "GET", "/models", &[], b"").unwrap();
    assert_eq!(r.status, 200, "no API key: everything is open");
    // SAFETY: a plain kill(2) on our own child's pid.
    unsafe { libc::kill(s.child.id() as i32, libc::SIGTERM) };
    let start = Instant::now();
    let status = loop {
        if let Some(st) = s.child.try_wait().unwrap() {
            break st;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "no exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0), "{}", s.stderr.lock().unwrap());
    let _ = std::fs::remove_file(&sock);
}
