//! Every malformed GGUF of `gguf::malformed::corpus()` given to `rs-llama` and `rs-llama-tokenize`:
//! exit code 1, exactly one line on stderr, no panic. (`rs-llama-gguf info` and `convert` are checked
//! the same way in gguf/tests.) Load-stage cases parse but must be refused by the model loader (and,
//! where the damage is in the vocab, by the tokenizer), naming what is wrong.

use std::path::Path;
use std::process::{Command, Output};

use rs_llama::gguf::malformed::{corpus, Stage};

fn run(bin: &str, args: &[&str]) -> Output {
    Command::new(bin).args(args).env("NO_COLOR", "1").output().expect("spawn")
}

fn assert_one_line_error(out: &Output, what: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{what}: exit status {:?}, stderr:\n{stderr}", out.status);
    assert!(!stderr.contains("panicked"), "{what}: panic:\n{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{what}: expected one error line, got:\n{stderr}");
}

fn write_case(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(format!("{name}.gguf"));
    std::fs::write(&path, bytes).expect("write case");
    path.to_string_lossy().into_owned()
}

#[test]
fn malformed_files_give_one_line_errors_from_every_binary() {
    let dir = std::env::temp_dir().join(format!("rs-llama-malformed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let cases = corpus();
    assert!(cases.len() >= 30, "corpus has {} cases", cases.len());
    let (mut n_parse, mut n_load) = (0, 0);
    for case in &cases {
        let path = write_case(&dir, &case.name, &case.bytes);
        let completion =
            run(env!("CARGO_BIN_EXE_rs-llama"), &["-m", &path, "-p", "hello", "-n", "2", "-lv", "1"]);
        assert_one_line_error(&completion, &format!("rs-llama on {}", case.name));
        match case.stage {
            Stage::Parse => {
                n_parse += 1;
                let tok = run(
                    env!("CARGO_BIN_EXE_rs-llama-tokenize"),
                    &["-m", &path, "-p", "hello", "--log-disable"],
                );
                assert_one_line_error(&tok, &format!("rs-llama-tokenize on {}", case.name));
            }
            Stage::Load => {
                n_load += 1;
                let stderr = String::from_utf8_lossy(&completion.stderr);
                assert!(
                    stderr.contains(&case.expect),
                    "rs-llama on {}: error should name '{}', got: {stderr}",
                    case.name,
                    case.expect
                );
            }
        }
    }
    std::fs::remove_dir_all(&dir).ok();
    eprintln!("malformed: {n_parse} parse-stage and {n_load} load-stage cases refused cleanly");
}
