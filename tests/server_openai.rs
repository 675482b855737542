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

mod server_support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use server_support::*;

const SCRIPT_TIMEOUT: Duration = Duration::from_secs(300);

#[test]
fn openai_python_client_against_rs_llama_server() {
    let Some(model) = model("smollm2-135m-f16.gguf") else { return };
    let why = "python3 with the openai module is not available (python3 -m pip install openai)";
    if !python_ready("import openai", why) {
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let server = Server::ready(&model, &["-np", "1", "-c", "2048", "-t", "2"]);
    let mut script = Command::new("python3")
        .arg(root.join("tests/server/openai_client.py"))
        .arg(server.url())
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
            panic!("openai_client.py ran past {SCRIPT_TIMEOUT:?}:\n{}", server.log_tail(30));
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let output = script.wait_with_output().expect("the script's output");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        status.success(),
        "openai_client.py failed ({status}):\n{stdout}{stderr}\n--- server log:\n{}",
        server.log_tail(30)
    );
    eprintln!("{stdout}");
}
