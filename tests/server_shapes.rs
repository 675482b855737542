//! `rs-llama-server` against the JSON shapes recorded from the real llama-server
//! (`tests/fixtures/server/llama-server/`, made by `tests/fixtures/server/make-fixtures.sh`):
//! starts the two servers the fixtures were recorded from, with the same flags (the main one with
//! `--metrics`, and one with `--api-key` and `/slots` off), on free loopback ports, and runs
//! `tests/server/shape_check.py` against both. Any difference the allowlist
//! (`tests/server/shape_allowlist.txt`) does not cover fails the test.
//!
//! Without the model it says why and passes; without `python3` it fails when `CI` is set and
//! otherwise says why and passes. Every wait is bounded; the servers are killed when dropped.

mod server_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use server_support::*;

const CHECK_TIMEOUT: Duration = Duration::from_secs(480);

/// The key of the `--api-key` server (`fixture_requests.API_KEY`, also in `index.json`).
const API_KEY: &str = "sk-fixture-key";

fn temp_file(what: &str, port: u16) -> PathBuf {
    std::env::temp_dir().join(format!("rs-llama-server-shapes-{}-{what}-{port}.log", std::process::id()))
}

fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[test]
fn shapes_match_llama_servers_fixtures() {
    let Some(model) = model("smollm2-135m-f16.gguf") else { return };
    if !python_ready("pass", "python3 is not available") {
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // The flags of index.json's "main" and "key" commands.
    let main = Server::ready(&model, &["-np", "1", "-c", "2048", "-t", "2", "--metrics", "--no-webui"]);
    let key_flags = ["-np", "1", "-c", "256", "-t", "2", "--no-slots", "--no-webui", "--api-key", API_KEY];
    let key = Server::ready(&model, &key_flags);

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
                main.log_tail(30)
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
        main.log_tail(20),
        key.log_tail(20)
    );
    assert!(summary.contains(" 0 differ") && !summary.contains("skipped"), "{summary}");
    eprintln!("{summary}");
}
