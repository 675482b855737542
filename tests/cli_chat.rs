//! `rs-llama` conversation and interactive sessions against llama-completion on SmolLM2-135M f16,
//! with scripted stdin: the same stdout byte for byte, and the same tokens fed at each turn (the
//! `--verbose-prompt` lists on stderr). Sessions, their arguments and llama.cpp's outputs:
//! tests/fixtures/chat/ (sessions.json, session_*.out, session_*.tokens; README.md there).
//!
//! Each run has a generous deadline so that a session that fails to end at EOF fails the test
//! instead of hanging it. Runs when the model is in the cache; otherwise it says why and passes.

use serde_json::Value;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Guard against a session that waits forever (not a timing check: runs take seconds).
const DEADLINE: Duration = Duration::from_secs(600);

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/chat").join(name)
}

fn model() -> Option<PathBuf> {
    let home = std::env::var_os("HOME")?;
    let path = PathBuf::from(home).join(".cache/rs-llama/models/smollm2-135m-f16.gguf");
    if !path.exists() {
        eprintln!("skipped: SmolLM2 f16 model not in ~/.cache/rs-llama/models");
        return None;
    }
    Some(path)
}

struct Outcome {
    code: Option<i32>,
    stdout: Vec<u8>,
    stderr: String,
}

/// Run rs-llama with `stdin` piped in and closed, within [`DEADLINE`].
fn run(args: &[String], stdin: &str) -> Outcome {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rs-llama"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("rs-llama starts");
    let mut pipe = child.stdin.take().expect("stdin");
    pipe.write_all(stdin.as_bytes()).expect("stdin written");
    drop(pipe);
    let start = Instant::now();
    let mut stdout_pipe = child.stdout.take().expect("stdout");
    let mut stderr_pipe = child.stderr.take().expect("stderr");
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut stdout_pipe, &mut buf).map(|_| buf)
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut stderr_pipe, &mut buf).map(|_| buf)
    });
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            panic!("rs-llama did not end within {DEADLINE:?} (args {args:?})");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = out_reader.join().expect("stdout thread").expect("stdout read");
    let stderr = err_reader.join().expect("stderr thread").expect("stderr read");
    Outcome { code: status.code(), stdout, stderr: String::from_utf8_lossy(&stderr).into_owned() }
}

/// The token ids of each "number of tokens in prompt = N" block of `--verbose-prompt`.
fn token_blocks(stderr: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<Vec<String>> = None;
    let mut lines = stderr.split('\n').peekable();
    while let Some(line) = lines.next() {
        if line.contains("number of tokens in prompt = ") {
            if let Some(b) = current.take() {
                blocks.push(b.join(" "));
            }
            current = Some(Vec::new());
            continue;
        }
        let Some(block) = current.as_mut() else { continue };
        // "%6d -> 'piece'"; a piece may hold newlines, so skip lines until the closing quote.
        let id = line.split(" -> '").next().map(str::trim).filter(|id| id.parse::<u32>().is_ok());
        match id {
            Some(id) if line.len() >= 6 => {
                block.push(id.to_string());
                let mut rest = line.split_once(" -> '").map(|(_, r)| r.to_string()).unwrap_or_default();
                while !rest.ends_with('\'') {
                    match lines.next() {
                        Some(l) => rest = l.to_string(),
                        None => break,
                    }
                }
            }
            _ => blocks.push(current.take().unwrap_or_default().join(" ")),
        }
    }
    if let Some(b) = current {
        blocks.push(b.join(" "));
    }
    blocks
}

fn session(name: &str) {
    let Some(model) = model() else { return };
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("sessions.json")).unwrap()).unwrap();
    let strings = |v: &Value| -> Vec<String> {
        v.as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_string()).collect()
    };
    let spec = &doc["sessions"][name];
    let mut args = vec!["-m".to_string(), model.display().to_string()];
    args.extend(strings(&doc["common_args"]));
    args.extend(strings(&spec["args"]));
    let outcome = run(&args, spec["stdin"].as_str().unwrap());
    assert_eq!(outcome.code, Some(0), "{name}: {}", outcome.stderr);
    assert!(!outcome.stderr.contains("panicked"), "{}", outcome.stderr);
    let expected_out = std::fs::read(fixture(&format!("session_{name}.out"))).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&outcome.stdout),
        String::from_utf8_lossy(&expected_out),
        "{name}: stdout differs from llama-completion's"
    );
    let expected_tokens = std::fs::read_to_string(fixture(&format!("session_{name}.tokens"))).unwrap();
    let expected: Vec<&str> = expected_tokens.lines().collect();
    assert_eq!(token_blocks(&outcome.stderr), expected, "{name}: prompt tokens differ");
}

#[test]
fn two_turn_conversation_matches_llama_completion() {
    session("two_turns");
}

#[test]
fn system_prompt_and_budget_hand_over_match_llama_completion() {
    session("system_budget");
}

#[test]
fn jinja_conversation_matches_llama_completion() {
    session("jinja");
}

#[test]
fn single_turn_with_prompt_matches_llama_completion() {
    session("single_turn");
}

#[test]
fn raw_interactive_with_reverse_prompt_matches_llama_completion() {
    session("raw_interactive");
}

#[test]
fn bad_chat_templates_are_one_line_errors() {
    let cases: [&[&str]; 3] = [
        &["--jinja", "--chat-template", "{% for m in messages %}{{ m.content }"],
        &["--jinja", "--chat-template", "{{ raise_exception('no roles allowed') }}"],
        &["--chat-template", "{{ messages }}"],
    ];
    for extra in cases {
        let mut args: Vec<String> = vec!["-m".into(), "unused.gguf".into(), "-p".into(), "hi".into()];
        args.extend(extra.iter().map(|s| s.to_string()));
        let outcome = run(&args, "");
        assert_eq!(outcome.code, Some(1), "{extra:?}: {}", outcome.stderr);
        let lines: Vec<&str> = outcome.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{extra:?}: {}", outcome.stderr);
        assert!(lines[0].starts_with("error: the supplied chat template is not supported: "), "{}", lines[0]);
        assert!(outcome.stdout.is_empty());
    }
}

#[test]
fn reverse_prompt_hands_control_to_the_user() {
    session("reverse_prompt");
}

#[test]
fn interactive_first_waits_for_input() {
    session("interactive_first");
}

/// Ctrl-C while rs-llama waits for the user's second line: timings, "Interrupted by user", exit 130,
/// and the same stdout as llama-completion (session_sigint.out).
#[cfg(unix)]
#[test]
fn ctrl_c_while_waiting_for_input_ends_like_llama_completion() {
    use std::io::Read;
    let Some(model) = model() else { return };
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("sessions.json")).unwrap()).unwrap();
    let mut args = vec!["-m".to_string(), model.display().to_string()];
    for key in ["common_args", "sigint_args"] {
        args.extend(doc[key].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_string()));
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_rs-llama"))
        .args(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("rs-llama starts");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(b"What is 2+2?\n").expect("stdin written");
    stdin.flush().expect("stdin flushed");
    let mut stdout = child.stdout.take().expect("stdout");
    // Read until the second "> " (waiting for the second line); stdin stays open meanwhile.
    let reader = std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while seen.windows(3).filter(|w| w == b"\n> ").count() < 2 {
            let n = stdout.read(&mut buf).expect("stdout read");
            assert!(n > 0, "stdout ended early: {:?}", String::from_utf8_lossy(&seen));
            seen.extend_from_slice(&buf[..n]);
        }
        (seen, stdout)
    });
    let start = Instant::now();
    while !reader.is_finished() {
        assert!(start.elapsed() < DEADLINE, "no second prompt within {DEADLINE:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (mut seen, mut stdout) = reader.join().expect("reader");
    // SAFETY: sending a signal to our own child process by its id.
    let sent = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    assert_eq!(sent, 0);
    stdout.read_to_end(&mut seen).expect("rest of stdout");
    let status = child.wait().expect("wait");
    drop(stdin);
    assert_eq!(status.code(), Some(130));
    let expected = std::fs::read(fixture("session_sigint.out")).unwrap();
    assert_eq!(String::from_utf8_lossy(&seen), String::from_utf8_lossy(&expected));
}

#[test]
fn empty_first_line_samples_from_the_warm_up_logits_like_llama_completion() {
    session("empty_first_line");
}
