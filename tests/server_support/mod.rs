//! The harness the `rs-llama-server` tests share: the model file, a server process on a free
//! loopback port whose stderr is kept for failure messages (killed and reaped when dropped), a
//! plain HTTP/1.1 client on `std::net` with bounded timeouts, and the Python check of the tests
//! that drive the server from Python.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_rs-llama-server");
/// Longest wait for one response, or for a server to come up or exit.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// A model under `$RS_LLAMA_CACHE/models` (default `~/.cache/rs-llama`); None, with a note, when
/// it is missing.
pub fn model(name: &str) -> Option<PathBuf> {
    let home = std::env::var("HOME").ok()?;
    let cache = std::env::var("RS_LLAMA_CACHE").unwrap_or(format!("{home}/.cache/rs-llama"));
    let p = PathBuf::from(format!("{cache}/models/{name}"));
    if !p.exists() {
        eprintln!("skipping: {} is missing (run scripts/fetch-models.sh)", p.display());
        return None;
    }
    Some(p)
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Whether `python3` runs `code`; when not: a failure under CI, else a note and a skip.
pub fn python_ready(code: &str, why: &str) -> bool {
    let ok = Command::new("python3")
        .args(["-c", code])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(std::env::var_os("CI").is_none(), "CI: {why}");
        eprintln!("skipping: {why}");
    }
    ok
}

/// `rs-llama-server ARGS` with its stderr gathered line by line.
pub fn spawn(args: &[&str]) -> (Child, Arc<Mutex<String>>) {
    spawn_with_env(args, &[])
}

/// The environment that makes a server compute as llama.cpp's AVX2 build does, for fixtures that
/// build recorded: `RS_LLAMA_CPU=avx2` where this CPU has that path (on an AVX-512 CPU the default
/// path follows llama.cpp's AVX-512 build instead, whose roundings differ).
pub fn avx2_build_env() -> Vec<(&'static str, &'static str)> {
    if rs_llama::cpu::CpuPath::Avx2.supported() {
        vec![(rs_llama::cpu::path::PATH_ENV, "avx2")]
    } else {
        Vec::new()
    }
}

/// [`spawn`] with extra environment variables.
pub fn spawn_with_env(args: &[&str], env: &[(&str, &str)]) -> (Child, Arc<Mutex<String>>) {
    let mut child = Command::new(BIN)
        .args(args)
        .envs(env.iter().copied())
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

pub struct Server {
    pub child: Child,
    pub port: u16,
    pub stderr: Arc<Mutex<String>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// `rs-llama-server -m MODEL --host 127.0.0.1 --port P FLAGS` on a free port, not yet waited for.
    pub fn launch(model: &std::path::Path, flags: &[&str]) -> Server {
        Server::launch_with_env(model, flags, &[])
    }

    /// [`Server::launch`] with extra environment variables.
    pub fn launch_with_env(model: &std::path::Path, flags: &[&str], env: &[(&str, &str)]) -> Server {
        let port = free_port();
        let (m, p) = (model.to_string_lossy().into_owned(), port.to_string());
        let args = [&["-m", m.as_str(), "--host", "127.0.0.1", "--port", p.as_str()][..], flags].concat();
        let (child, stderr) = spawn_with_env(&args, env);
        Server { child, port, stderr }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The last `n` lines the server wrote to stderr.
    pub fn log_tail(&self, n: usize) -> String {
        let text = self.stderr.lock().unwrap().clone();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Polls `GET /health` until it answers 200; `while_loading` sees every other answer (503
    /// while the model loads). `Err(stderr)` when the server exits first; a panic past TIMEOUT.
    pub fn wait_ready(&mut self, mut while_loading: impl FnMut(&Resp)) -> Result<(), String> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(100));
                return Err(format!("exited with {status}:\n{}", self.stderr.lock().unwrap()));
            }
            match try_request(self.port, "GET", "/health", &[], b"") {
                Ok(r) if r.status == 200 => return Ok(()),
                Ok(r) => while_loading(&r),
                Err(_) => {}
            }
            assert!(start.elapsed() < TIMEOUT, "not ready: {}", self.log_tail(30));
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// [`Server::launch`] then [`Server::wait_ready`], panicking if it exits.
    pub fn ready(model: &std::path::Path, flags: &[&str]) -> Server {
        Server::ready_with_env(model, flags, &[])
    }

    /// [`Server::ready`] with extra environment variables.
    pub fn ready_with_env(model: &std::path::Path, flags: &[&str], env: &[(&str, &str)]) -> Server {
        let mut s = Server::launch_with_env(model, flags, env);
        if let Err(e) = s.wait_ready(|_| {}) {
            panic!("rs-llama-server {e}");
        }
        s
    }
}

pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.text()))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The `data:` payloads of a server-sent-event body, in order.
    pub fn events(&self) -> Vec<String> {
        let text = self.text();
        assert!(text.ends_with("\n\n"), "{text}");
        text.split("\n\n")
            .filter(|e| !e.is_empty())
            .map(|e| e.strip_prefix("data: ").unwrap_or(e).to_string())
            .collect()
    }

    /// llama-server's error body: (code, message, type).
    pub fn error(&self) -> (u16, String, String) {
        let e = &self.json()["error"];
        (
            e["code"].as_u64().unwrap() as u16,
            e["message"].as_str().unwrap().into(),
            e["type"].as_str().unwrap().into(),
        )
    }
}

/// Writes a request with `Connection: close` (and a `Content-Length` unless `headers` has one).
pub fn write_request(
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

/// One request, the whole response read (a chunked body reassembled).
pub fn try_request(
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

/// A JSON request (`Content-Type: application/json`).
pub fn send(port: u16, method: &str, path: &str, body: &[u8]) -> std::io::Result<Resp> {
    try_request(port, method, path, &[("Content-Type", "application/json")], body)
}

pub fn dechunk(mut data: &[u8]) -> Vec<u8> {
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
