//! No command-line argument may make `rs-llama-gguf` panic: an argument that is not UTF-8 (as a
//! subcommand, a flag, a flag's value or a file name) gets an ordinary error, never Rust's panic
//! (exit status 101, "panicked" on stderr). The binaries of the main crate: tests/nonutf8_args.rs.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::process::{Command, Output};

/// Not UTF-8: 0xff and 0xfe never occur in UTF-8.
const BAD: &[u8] = b"\xff\xfeabc";

fn bad_with(prefix: &str) -> OsString {
    let mut bytes = prefix.as_bytes().to_vec();
    bytes.extend_from_slice(BAD);
    OsStr::from_bytes(&bytes).to_os_string()
}

fn run(args: &[&OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rs-llama-gguf")).args(args).output().expect("spawn")
}

#[test]
fn non_utf8_arguments_are_errors_not_panics() {
    let bad = OsStr::from_bytes(BAD);
    let missing = bad_with("/nonexistent-dir/");
    let os = OsStr::new;
    for (args, expected_code) in [
        (vec![bad], 2),
        (vec![os("info"), &missing], 1),
        (vec![os("info"), bad, bad], 2),
        (vec![os("convert"), os("--type"), bad, &missing, &missing], 2),
        (vec![os("convert"), os("--type"), os("f16"), &missing, &missing], 1),
        (vec![os("synth"), os("--kind"), bad, os("--output"), &missing], 2),
        (vec![os("synth"), os("--kind"), os("dense"), os("--seed"), bad, os("--output"), &missing], 2),
    ] {
        let out = run(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_ne!(out.status.code(), Some(101), "{args:?}: a Rust panic, stderr:\n{stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: panic:\n{stderr}");
        assert_eq!(out.status.code(), Some(expected_code), "{args:?}: stderr:\n{stderr}");
        assert!(stderr.starts_with("error: "), "{args:?}: stderr:\n{stderr}");
    }
}
