//! `rs-llama-server` over loopback with SmolLM2: every endpoint, llama-server's JSON shapes and
//! error bodies, streaming, a client that hangs up, and shutdown on SIGTERM. A plain HTTP/1.1
//! client on `std::net` (bounded timeouts everywhere); greedy text is checked against `rs-llama`'s
//! and `/tokenize` against `rs-llama-tokenize`'s ids.
//!
//! Tests that need generation skip (with a note) while the slot scheduler is not in the tree.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_rs-llama-server");
const TIMEOUT: Duration = Duration::from_secs(60);

fn model(name: &str) -> Option<PathBuf> {
    let home = std::env::var("HOME").ok()?;
    let cache = std::env::var("RS_LLAMA_CACHE").unwrap_or(format!("{home}/.cache/rs-llama"));
    let p = PathBuf::from(format!("{cache}/models/{name}"));
    if !p.exists() {
        eprintln!("skipping: {} is missing (run scripts/fetch-models.sh)", p.display());
        return None;
    }
    Some(p)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Server {
    child: Child,
    port: u16,
    stderr: Arc<Mutex<String>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(args: &[&str]) -> (Child, Arc<Mutex<String>>) {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("rs-llama-server starts");
    let stderr = Arc::new(Mutex::new(String::new()));
    let (pipe, sink) = (child.stderr.take().unwrap(), Arc::clone(&stderr));
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            sink.lock().unwrap().push_str(&(line + "\n"));
        }
    });
    (child, stderr)
}

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

/// Start a server on SmolLM2 and wait for `/health`; None (with a note) if the model or the
/// scheduler is missing.
fn start(extra: &[&str]) -> Option<Server> {
    let m = model("smollm2-135m-f16.gguf")?;
    let port = free_port();
    let port_s = port.to_string();
    let m = m.to_string_lossy().into_owned();
    let args = [&["-m", m.as_str(), "--port", port_s.as_str(), "-t", "2"][..], extra].concat();
    let (child, stderr) = spawn(&args);
    let mut server = Server { child, port, stderr };
    let start = Instant::now();
    loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            std::thread::sleep(Duration::from_millis(100));
            let err = server.stderr.lock().unwrap().clone();
            if err.contains("not yet implemented") || err.contains("the loader stopped") {
                eprintln!("skipping: the slot scheduler is not in this tree yet\n{err}");
                return None;
            }
            panic!("rs-llama-server exited with {status}:\n{err}");
        }
        if let Ok(r) = try_request(port, "GET", "/health", &[], b"") {
            if r.status == 200 {
                assert!(server.stderr.lock().unwrap().contains("listening on http://127.0.0.1:"));
                return Some(server);
            }
            assert_eq!(r.status, 503, "{}", r.text());
            assert_eq!(
                r.text(),
                r#"{"error":{"message":"Loading model","type":"unavailable_error","code":503}}"#
            );
        }
        assert!(start.elapsed() < TIMEOUT, "not ready: {}", server.stderr.lock().unwrap());
        std::thread::sleep(Duration::from_millis(50));
    }
}

struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.text()))
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
    fn events(&self) -> Vec<String> {
        let text = self.text();
        assert!(text.ends_with("\n\n"), "{text}");
        text.split("\n\n")
            .filter(|e| !e.is_empty())
            .map(|e| e.strip_prefix("data: ").unwrap_or(e).to_string())
            .collect()
    }
    fn error(&self) -> (u16, String, String) {
        let e = &self.json()["error"];
        (
            e["code"].as_u64().unwrap() as u16,
            e["message"].as_str().unwrap().into(),
            e["type"].as_str().unwrap().into(),
        )
    }
}

fn write_request(
    s: &mut TcpStream,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<()> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-length")) {
        head += &format!("Content-Length: {}\r\n", body.len());
    }
    for (k, v) in headers {
        head += &format!("{k}: {v}\r\n");
    }
    s.write_all(head.as_bytes())?;
    s.write_all(b"\r\n")?;
    s.write_all(body)
}

fn try_request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Resp> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(TIMEOUT))?;
    s.set_write_timeout(Some(TIMEOUT))?;
    write_request(&mut s, method, path, headers, body)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or(std::io::ErrorKind::InvalidData)?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default().split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':').map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string())))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers.iter().any(|(k, v)| k == "transfer-encoding" && v.contains("chunked")) {
        body = dechunk(&body);
    }
    Ok(Resp { status, headers, body })
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = data.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&data[..eol]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&data[eol + 2..eol + 2 + size]);
        data = &data[eol + 2 + size + 2..];
    }
    out
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

#[test]
fn endpoints_off_by_flag_and_sigterm_exits_0() {
    let Some(mut s) = start(&["--no-slots"]) else { return };
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
}
