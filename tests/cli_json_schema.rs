//! `rs-llama -j` / `-jf` against llama-completion on SmolLM2-135M f16: the same stdout byte for
//! byte for each run of tests/fixtures/json_schema/cli_expected.json (made by make_cli_fixtures.py
//! there: greedy and seeded, a schema file, refs, patterns, an integer range, an unsupported
//! pattern with llama.cpp's warning), and for the refused schemas the same exit status and error
//! text.
//!
//! Runs when the model is in the cache (`$RS_LLAMA_CACHE/models`, default `~/.cache/rs-llama`);
//! otherwise it says why and passes.

use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/json_schema")
}

// llama.cpp made the expected outputs from its own f16 conversion of the same Q4_1 file
// (`smollm2-135m-f16.llamacpp.gguf`, llama-quantize); ours holds the same values and vocabulary
// and is the one CI has, so these tests run there.
fn model() -> Option<PathBuf> {
    let home = std::env::var("HOME").unwrap_or_default();
    let cache = std::env::var("RS_LLAMA_CACHE").unwrap_or(format!("{home}/.cache/rs-llama"));
    let path = PathBuf::from(cache).join("models/smollm2-135m-f16.gguf");
    if path.exists() {
        Some(path)
    } else {
        eprintln!("skipped: {} is not there (made by scripts/fetch-models.sh)", path.display());
        None
    }
}

/// Exit status, stdout and stderr of `rs-llama -m MODEL ARGS`, run in the fixtures folder (where
/// `-jf` finds its file).
fn rs_llama(model: &PathBuf, args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rs-llama"))
        .current_dir(fixtures())
        .arg("-m")
        .arg(model)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run rs-llama: {e}"));
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

fn cases() -> Vec<Value> {
    let text = std::fs::read_to_string(fixtures().join("cli_expected.json")).expect("fixture");
    serde_json::from_str(&text).expect("json")
}

fn args(case: &Value) -> Vec<&str> {
    case["args"].as_array().expect("args").iter().filter_map(Value::as_str).collect()
}

#[test]
fn schema_runs_match_llama_completion() {
    let Some(model) = model() else { return };
    let mut n = 0;
    for case in cases().iter().filter(|c| c.get("stdout").is_some()) {
        let name = case["name"].as_str().expect("name");
        let (code, stdout, stderr) = rs_llama(&model, &args(case));
        assert_eq!(code, Some(0), "{name}: {stderr}");
        assert_eq!(
            stdout,
            case["stdout"].as_str().unwrap(),
            "{name} ({})",
            case["command"].as_str().unwrap_or_default()
        );
        // llama.cpp's warning for what the grammar does not constrain, and none where it has none
        let warning = stderr.lines().find(|l| l.starts_with("WARNING: JSON schema"));
        assert_eq!(warning, case.get("warning").and_then(Value::as_str), "{name}");
        n += 1;
    }
    assert!(n >= 8, "{n} runs checked");
}

#[test]
fn refused_schemas_exit_1_with_llama_completions_reason() {
    let Some(model) = model() else { return };
    let mut n = 0;
    for case in cases().iter().filter(|c| c.get("error").is_some()) {
        let name = case["name"].as_str().expect("name");
        let (code, stdout, stderr) = rs_llama(&model, &args(case));
        assert_eq!(code, case["exit"].as_i64().map(|c| c as i32), "{name}: {stderr}");
        assert_eq!(stdout, "", "{name}");
        let want = case["error"].as_str().unwrap();
        let got = stderr.split("\n\nusage:").next().unwrap_or_default();
        if name == "missing_file" {
            // rs-llama adds the system's reason after llama.cpp's sentence
            let sentence = want.trim_end();
            assert!(got.starts_with(sentence), "{name}: {got:?}");
        } else {
            assert_eq!(got, want, "{name}");
        }
        n += 1;
    }
    assert!(n >= 5, "{n} refusals checked");
}

/// A schema and a grammar set the one sampling grammar: the last flag wins, as in llama.cpp.
#[test]
fn the_last_of_grammar_and_schema_wins() {
    let Some(model) = model() else { return };
    let base = ["-p", "Is the sky green? Answer:", "-n", "8", "-no-cnv", "-t", "2", "--temp", "0"];
    let with = |extra: &[&str]| {
        let mut a: Vec<&str> = base.to_vec();
        a.extend_from_slice(extra);
        rs_llama(&model, &a).1
    };
    let schema = with(&["-j", r#"{"enum": ["yes", "no", "maybe"]}"#]);
    let grammar = r#"root ::= " " ("yes" | "no")"#;
    assert_eq!(
        with(&["-j", r#"{"enum": ["yes", "no", "maybe"]}"#, "--grammar", grammar]),
        with(&["--grammar", grammar])
    );
    assert_eq!(with(&["--grammar", grammar, "-j", r#"{"enum": ["yes", "no", "maybe"]}"#]), schema);
    assert_ne!(schema, with(&["--grammar", grammar]));
}
