//! `rs-llama-server` from the outside, through the official `openai` Python client: chat and text
//! completions (greedy, streamed and not), a bad request, the model list
//! (`tests/server/openai_client.py`). The greedy texts must be `rs-llama`'s for the same prompt
//! tokens (`tests/fixtures/server/expected-smollm2-f16.json`, with the commands that made them;
//! the same script passes against the real llama-server, see tests/fixtures/server/README.md).
//!
//! Starts the server on a free loopback port with SmolLM2-135M f16, waits (bounded) for `GET
//! /health` 200, runs the script, and stops the server however the test ends. Without the model
//! it says why and passes; without `python3` or its `openai` module it fails when `CI` is set
//! (`.ci/run` installs it) and otherwise says why and passes.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The server binary under test.
const SERVER_BIN: &str = env!("CARGO_BIN_EXE_rs-llama-server");
const HEALTH_TIMEOUT: Duration = Duration::from_secs(60);
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(300);

fn model_path() -> Option<PathBuf> {
    let home = std::env::var_os("HOME")?;
    let path = PathBuf::from(home).join(".cache/rs-llama/models/smollm2-135m-f16.gguf");
    path.exists().then_some(path)
}

/// Whether `python3` can import `openai`; when not: fail under CI, else a note and a skip.
fn python_ready() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import openai"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        let why = "python3 with the openai module is not available (python3 -m pip install openai)";
        assert!(std::env::var_os("CI").is_none(), "CI: {why}");
        eprintln!("skipped: {why}");
    }
    ok
}

fn free_loopback_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a loopback port");
    listener.local_addr().expect("local address").port()
}

/// The running server; killed and reaped when dropped, whatever the test's outcome.
struct Server {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Server {
    fn start(model: &Path) -> Server {
        let port = free_loopback_port();
        let log =
            std::env::temp_dir().join(format!("rs-llama-server-openai-{}-{port}.log", std::process::id()));
        let out = std::fs::File::create(&log).expect("server log file");
        let err = out.try_clone().expect("server log file");
        let child = Command::new(SERVER_BIN)
            .arg("-m")
            .arg(model)
            .args(["--host", "127.0.0.1", "--port", &port.to_string(), "-np", "1", "-c", "2048", "-t", "2"])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {SERVER_BIN}: {e}"));
        Server { child, port, log }
    }

    fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Polls `GET /health` until it answers 200, the server exits, or the time is up.
    fn wait_healthy(&mut self) {
        let start = Instant::now();
        while start.elapsed() < HEALTH_TIMEOUT {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the server exited ({status}) before /health answered 200:\n{}", self.log_tail());
            }
            if health_status(self.port) == Some(200) {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("/health did not answer 200 within {HEALTH_TIMEOUT:?}:\n{}", self.log_tail());
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// The status code of `GET /health`, or `None` when nothing answers yet.
fn health_status(port: u16) -> Option<u16> {
    let mut stream =
        TcpStream::connect_timeout(&(Ipv4Addr::LOCALHOST, port).into(), Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").ok()?;
    let mut head = [0u8; 64];
    let mut n = 0;
    while n < 12 {
        match stream.read(&mut head[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    let line = std::str::from_utf8(&head[..n]).ok()?;
    line.strip_prefix("HTTP/1.1 ").or_else(|| line.strip_prefix("HTTP/1.0 "))?.get(..3)?.parse().ok()
}

#[test]
fn openai_python_client_against_rs_llama_server() {
    let Some(model) = model_path() else {
        eprintln!("skipped: SmolLM2 f16 model not in ~/.cache/rs-llama/models");
        return;
    };
    if !python_ready() {
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut server = Server::start(&model);
    server.wait_healthy();
    let mut script = Command::new("python3")
        .arg(root.join("tests/server/openai_client.py"))
        .arg(server.base_url())
        .arg(root.join("tests/fixtures/server/expected-smollm2-f16.json"))
        // Never hand a developer's real key to anything, even a loopback server.
        .env("OPENAI_API_KEY", "sk-no-key")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = script.try_wait().expect("wait for the script") {
            break status;
        }
        if start.elapsed() > SCRIPT_TIMEOUT {
            let _ = script.kill();
            let _ = script.wait();
            panic!("openai_client.py ran past {SCRIPT_TIMEOUT:?}:\n{}", server.log_tail());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let output = script.wait_with_output().expect("the script's output");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        status.success(),
        "openai_client.py failed ({status}):\n{stdout}{stderr}\n--- server log:\n{}",
        server.log_tail()
    );
    eprintln!("{stdout}");
}
