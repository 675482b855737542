//! `rs-llama-server` against the JSON shapes recorded from the real llama-server
//! (`tests/fixtures/server/llama-server/`, made by `tests/fixtures/server/make-fixtures.sh`):
//! starts the two servers the fixtures were recorded from, with the same flags (the main one with
//! `--metrics`, and one with `--api-key` and `/slots` off), on free loopback ports, and runs
//! `tests/server/shape_check.py` against both. Any difference the allowlist
//! (`tests/server/shape_allowlist.txt`) does not cover fails the test.
//!
//! Without the model it says why and passes; without `python3` it fails when `CI` is set and
//! otherwise says why and passes. Every wait is bounded; the servers are killed when dropped.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SERVER_BIN: &str = env!("CARGO_BIN_EXE_rs-llama-server");
const HEALTH_TIMEOUT: Duration = Duration::from_secs(120);
const CHECK_TIMEOUT: Duration = Duration::from_secs(480);
/// The key of the `--api-key` server (`fixture_requests.API_KEY`, also in `index.json`).
const API_KEY: &str = "sk-fixture-key";

fn model_path() -> Option<PathBuf> {
    let home = std::env::var("HOME").ok()?;
    let cache = std::env::var("RS_LLAMA_CACHE").unwrap_or(format!("{home}/.cache/rs-llama"));
    let p = PathBuf::from(format!("{cache}/models/smollm2-135m-f16.gguf"));
    if !p.exists() {
        eprintln!("skipping: {} is missing (run scripts/fetch-models.sh)", p.display());
        return None;
    }
    Some(p)
}

fn python_ready() -> bool {
    let ok = Command::new("python3")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        let why = "python3 is not available";
        assert!(std::env::var_os("CI").is_none(), "CI: {why}");
        eprintln!("skipping: {why}");
    }
    ok
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a loopback port").local_addr().unwrap().port()
}

fn temp_file(what: &str, port: u16) -> PathBuf {
    std::env::temp_dir().join(format!("rs-llama-server-shapes-{}-{what}-{port}.log", std::process::id()))
}

fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A running server (its output in a log file); killed and reaped when dropped.
struct Server {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Server {
    fn start(model: &Path, flags: &[&str]) -> Server {
        let port = free_port();
        let log = temp_file("server", port);
        let out = std::fs::File::create(&log).expect("server log file");
        let err = out.try_clone().expect("server log file");
        let child = Command::new(SERVER_BIN)
            .arg("-m")
            .arg(model)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(flags)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {SERVER_BIN}: {e}"));
        Server { child, port, log }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn wait_healthy(&mut self) {
        let start = Instant::now();
        while start.elapsed() < HEALTH_TIMEOUT {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the server exited ({status}) before /health answered 200:\n{}", tail(&self.log, 30));
            }
            if health_status(self.port) == Some(200) {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("/health did not answer 200 within {HEALTH_TIMEOUT:?}:\n{}", tail(&self.log, 30));
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

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
fn shapes_match_llama_servers_fixtures() {
    let Some(model) = model_path() else { return };
    if !python_ready() {
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // The flags of index.json's "main" and "key" commands.
    let mut main = Server::start(&model, &["-np", "1", "-c", "2048", "-t", "2", "--metrics", "--no-webui"]);
    let mut key = Server::start(
        &model,
        &["-np", "1", "-c", "256", "-t", "2", "--no-slots", "--no-webui", "--api-key", API_KEY],
    );
    main.wait_healthy();
    key.wait_healthy();

    let out_path = temp_file("check", main.port);
    let out = std::fs::File::create(&out_path).expect("check output file");
    let err = out.try_clone().expect("check output file");
    let mut check = Command::new("python3")
        .arg(root.join("tests/server/shape_check.py"))
        .arg(main.url())
        .arg(root.join("tests/fixtures/server/llama-server"))
        .arg("--key-url")
        .arg(key.url())
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("run python3");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = check.try_wait().expect("wait for shape_check.py") {
            break status;
        }
        if start.elapsed() > CHECK_TIMEOUT {
            let _ = check.kill();
            let _ = check.wait();
            let report = tail(&out_path, 60);
            let _ = std::fs::remove_file(&out_path);
            panic!(
                "shape_check.py ran past {CHECK_TIMEOUT:?}:\n{report}\n--- server log:\n{}",
                tail(&main.log, 30)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let report = std::fs::read_to_string(&out_path).unwrap_or_default();
    let _ = std::fs::remove_file(&out_path);
    let summary = report.lines().last().unwrap_or_default().to_string();
    assert!(
        status.success(),
        "shape_check.py: {summary} ({status})\n{}\n--- main server log:\n{}\n--- key server log:\n{}",
        report.lines().filter(|l| !l.starts_with("ok ")).collect::<Vec<_>>().join("\n"),
        tail(&main.log, 20),
        tail(&key.log, 20)
    );
    assert!(summary.contains(" 0 differ") && !summary.contains("skipped"), "{summary}");
    eprintln!("{summary}");
}
