//! No command-line argument may make a binary panic: an argument that is not UTF-8 (as a flag, as a
//! flag's value, as a file name, as the prompt) gets the binary's ordinary error or is used, never
//! Rust's panic (exit status 101, "panicked" on stderr). `rs-llama-gguf` is checked the same way in
//! gguf/tests/nonutf8_args.rs.
//!
//! The runs of `rs-llama` on SmolLM2-135M need the model in `~/.cache/rs-llama/models/` (made by the
//! fixtures script); without it they say so and pass.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::process::{Command, Output};

/// Not UTF-8: 0xff and 0xfe never occur in UTF-8.
const BAD: &[u8] = b"\xff\xfeabc";

fn bad() -> &'static OsStr {
    OsStr::from_bytes(BAD)
}

/// `prefix` followed by the non-UTF-8 bytes, e.g. a file name that is not UTF-8.
fn bad_with(prefix: &str) -> OsString {
    let mut bytes = prefix.as_bytes().to_vec();
    bytes.extend_from_slice(BAD);
    OsStr::from_bytes(&bytes).to_os_string()
}

fn run(bin: &str, args: &[&OsStr]) -> Output {
    Command::new(bin).args(args).env("NO_COLOR", "1").output().expect("spawn")
}

/// Exited by itself (no signal), not with the panic status, and no panic message; returns the
/// exit code and stderr.
fn no_panic(out: &Output, what: &str) -> (i32, String) {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let code = out.status.code();
    assert!(code.is_some(), "{what}: killed by a signal ({:?}), stderr:\n{stderr}", out.status);
    assert_ne!(code, Some(101), "{what}: exit status 101 (a Rust panic), stderr:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{what}: panic:\n{stderr}");
    (code.unwrap_or(-1), stderr)
}

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

fn model_path() -> Option<PathBuf> {
    let home = std::env::var_os("HOME")?;
    let path = PathBuf::from(home).join(".cache/rs-llama/models/smollm2-135m-f16.gguf");
    path.exists().then_some(path)
}

#[test]
fn rs_llama_gives_errors_not_panics_for_non_utf8_arguments() {
    let exe = env!("CARGO_BIN_EXE_rs-llama");
    // As a flag: unknown, named as llama.cpp does.
    let (code, stderr) = no_panic(&run(exe, &[bad()]), "rs-llama <bad>");
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("error: invalid argument: \u{fffd}\u{fffd}abc"), "{stderr}");
    // As the prompt without a model: the missing model is the error.
    let (code, stderr) = no_panic(&run(exe, &[os("-p"), bad()]), "rs-llama -p <bad>");
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("no model given"), "{stderr}");
    // As the model's file name: cannot be opened.
    let missing = bad_with("/nonexistent-dir/");
    let (code, stderr) = no_panic(&run(exe, &[os("-m"), &missing, os("-p"), os("hi")]), "rs-llama -m <bad>");
    assert_eq!(code, 1, "{stderr}");
    // As a number.
    let (code, stderr) = no_panic(&run(exe, &[os("-n"), bad()]), "rs-llama -n <bad>");
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("error while handling argument \"-n\""), "{stderr}");
}

#[test]
fn rs_llama_completes_a_non_utf8_prompt() {
    let Some(model) = model_path() else {
        eprintln!("skipped: SmolLM2 f16 model not in ~/.cache/rs-llama/models");
        return;
    };
    let exe = env!("CARGO_BIN_EXE_rs-llama");
    let complete = |prompt: &OsStr| {
        let args = [os("-m"), model.as_os_str(), os("-p"), prompt];
        let rest = ["-n", "4", "--temp", "0", "-no-cnv", "-t", "2"].map(os);
        let all: Vec<&OsStr> = args.into_iter().chain(rest).collect();
        run(exe, &all)
    };
    let out = complete(bad());
    let (code, stderr) = no_panic(&out, "rs-llama -m smollm2 -p <bad>");
    assert_eq!(code, 0, "{stderr}");
    // The prompt is read lossily: each invalid byte is U+FFFD, echoed as such and then completed
    // exactly as when that text is given.
    let stdout = String::from_utf8(out.stdout).expect("stdout is UTF-8");
    assert!(stdout.starts_with("\u{fffd}\u{fffd}abc"), "{stdout:?}");
    assert!(stdout.len() > "\u{fffd}\u{fffd}abc".len(), "nothing generated: {stdout:?}");
    let same = complete(os("\u{fffd}\u{fffd}abc"));
    assert_eq!(same.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&same.stdout), stdout);
}

#[test]
fn rs_llama_bench_gives_errors_not_panics_for_non_utf8_arguments() {
    let exe = env!("CARGO_BIN_EXE_rs-llama-bench");
    let (code, stderr) = no_panic(&run(exe, &[bad()]), "rs-llama-bench <bad>");
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("invalid parameter for argument: \u{fffd}\u{fffd}abc"), "{stderr}");
    let missing = bad_with("/nonexistent-dir/");
    let (code, stderr) = no_panic(&run(exe, &[os("-m"), &missing]), "rs-llama-bench -m <bad>");
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("failed to load model"), "{stderr}");
    let (code, stderr) = no_panic(&run(exe, &[os("-n"), bad()]), "rs-llama-bench -n <bad>");
    assert_eq!(code, 1, "{stderr}");
}

#[test]
fn rs_llama_perplexity_gives_errors_not_panics_for_non_utf8_arguments() {
    let exe = env!("CARGO_BIN_EXE_rs-llama-perplexity");
    let (code, stderr) = no_panic(&run(exe, &[bad()]), "rs-llama-perplexity <bad>");
    assert_eq!(code, 1, "{stderr}");
    let missing = bad_with("/nonexistent-dir/");
    let (code, stderr) =
        no_panic(&run(exe, &[os("-m"), &missing, os("-f"), &missing]), "rs-llama-perplexity -m <bad>");
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("/nonexistent-dir/"), "{stderr}");
}

#[test]
fn rs_llama_plan_gives_errors_not_panics_for_non_utf8_arguments() {
    let exe = env!("CARGO_BIN_EXE_rs-llama-plan");
    for args in [
        vec![bad()],
        vec![os("--shape"), bad()],
        vec![os("--shape"), os("mixtral-8x7b"), os("--hw"), bad()],
        vec![os("--shape"), os("mixtral-8x7b"), os("--gpu-mem"), bad()],
    ] {
        let what = format!("rs-llama-plan {args:?}");
        let (code, stderr) = no_panic(&run(exe, &args), &what);
        // clap's usage error.
        assert_eq!(code, 2, "{what}: {stderr}");
    }
}

#[test]
fn rs_llama_tokenize_reads_a_non_utf8_prompt() {
    let exe = env!("CARGO_BIN_EXE_rs-llama-tokenize");
    let (code, stderr) = no_panic(&run(exe, &[bad()]), "rs-llama-tokenize <bad>");
    assert_eq!(code, 1, "{stderr}");
    let long = bad_with("--");
    let (code, stderr) = no_panic(&run(exe, &[&long]), "rs-llama-tokenize --<bad>");
    assert_eq!(code, 1, "{stderr}");
    let missing = bad_with("/nonexistent-dir/");
    let (code, stderr) =
        no_panic(&run(exe, &[os("-m"), &missing, os("-p"), os("a")]), "rs-llama-tokenize -m <bad>");
    assert_eq!(code, 1, "{stderr}");
    let Some(model) = model_path() else {
        eprintln!("skipped: SmolLM2 f16 model not in ~/.cache/rs-llama/models");
        return;
    };
    let ids = |prompt: &OsStr| {
        let out =
            run(exe, &[os("-m"), model.as_os_str(), os("-p"), prompt, os("--ids"), os("--log-disable")]);
        let (code, stderr) = no_panic(&out, "rs-llama-tokenize -p <bad>");
        assert_eq!(code, 0, "{stderr}");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    // The bytes reach the tokenizer as they are, the same as their \xNN escapes; the tokenizer then
    // reads each invalid byte as U+FFFD.
    let raw = ids(bad());
    assert!(raw.starts_with('[') && raw.len() > 2, "{raw}");
    assert_eq!(raw, ids(os(r"\xff\xfeabc")));
    assert_eq!(raw, ids(os("\u{fffd}\u{fffd}abc")));
    assert_ne!(raw, ids(os("abc")));
}
