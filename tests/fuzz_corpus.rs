//! Replays the fuzz corpora (fuzz/corpus/<target>/) and the regression inputs the fuzzers found
//! (fuzz/crashes/<target>/) through the same entry functions the afl targets call (see
//! fuzz/README.md): any panic fails the test. No afl needed.
//!
//! `cargo test --release --test fuzz_corpus -- --ignored write_seed_corpus` rewrites the seeds that
//! come from the fixtures (the malformed-GGUF generator, truncated vocab GGUFs, the tokenizer test
//! texts, the chat templates).

use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The entry point of each target, as in fuzz/src/bin/<target>.rs.
fn run(target: &str, data: &[u8]) {
    match target {
        "gguf" => {
            if let Some(file) = gguf::fuzz_parse(data) {
                rs_llama::tokenizer::fuzz_from_gguf(&file);
            }
        }
        "tokenizer" => rs_llama::tokenizer::fuzz_one(data),
        "chat" => rs_llama::chat::fuzz_render(data),
        other => panic!("unknown fuzz target {other}"),
    }
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut out: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')))
        .collect();
    out.sort();
    out
}

fn replay(kind: &str) -> usize {
    let mut n = 0;
    for target in ["gguf", "tokenizer", "chat"] {
        for path in files(&fuzz_dir().join(kind).join(target)) {
            let data = std::fs::read(&path).unwrap();
            eprintln!("{}", path.display());
            run(target, &data);
            n += 1;
        }
    }
    n
}

#[test]
fn corpus_inputs_do_not_panic() {
    let n = replay("corpus");
    assert!(n >= 30, "only {n} corpus files under fuzz/corpus");
}

#[test]
fn crash_inputs_do_not_panic() {
    replay("crashes");
}

#[test]
fn empty_and_tiny_inputs_do_not_panic() {
    for target in ["gguf", "tokenizer", "chat"] {
        for data in [&b""[..], b"\0", b"\xff", b"GGUF", b"\x01{{", b"\x41{%"] {
            run(target, data);
        }
    }
}

#[test]
#[ignore = "writes fuzz/corpus; run by hand to refresh the seeds"]
fn write_seed_corpus() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let write = |target: &str, name: &str, bytes: &[u8]| {
        let dir = fuzz_dir().join("corpus").join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
    };
    // gguf: the malformed corpus (small files), the valid base, truncated vocab GGUFs.
    write("gguf", "valid_model", &gguf::malformed::valid_model());
    for case in gguf::malformed::corpus() {
        if case.bytes.len() <= 16 << 10 {
            write("gguf", &format!("malformed_{}", case.name), &case.bytes);
        }
    }
    let vocab = root.join("tests/fixtures/vocab");
    for name in rs_llama::tokenizer::fuzz::FUZZ_VOCABS {
        let bytes = std::fs::read(vocab.join(name)).unwrap();
        let stem = name.trim_start_matches("ggml-vocab-").trim_end_matches(".gguf");
        write("gguf", &format!("head4k_{stem}"), &bytes[..bytes.len().min(4096)]);
    }
    // tokenizer: byte 0 picks the vocab; texts from the tokenizer test inputs, cut to 1 KiB.
    let inp = std::fs::read(vocab.join("ggml-vocab-llama-bpe.gguf.inp")).unwrap();
    let texts: Vec<&[u8]> =
        inp.split(|&b| b == b'\n').filter(|l| !l.is_empty() && !l.starts_with(b"__ggml")).collect();
    for (i, _) in rs_llama::tokenizer::fuzz::FUZZ_VOCABS.iter().enumerate() {
        let mut data = vec![i as u8];
        data.extend_from_slice(&inp[..inp.len().min(1024)]);
        write("tokenizer", &format!("vocab{i:02}_inp"), &data);
        let mut data = vec![i as u8];
        data.extend_from_slice(
            b"<s> Hello <|endoftext|>[CLS] world</s> \xe2\x96\x81\xf0\x9f\x98\x80 \xff\xfe 12345\n\t",
        );
        write("tokenizer", &format!("vocab{i:02}_special"), &data);
    }
    for (i, text) in texts.iter().take(8).enumerate() {
        let mut data = vec![(i * 5) as u8];
        data.extend_from_slice(text);
        write("tokenizer", &format!("line{i:02}"), &data);
    }
    // chat: flags byte, template, NUL, role, NUL, content ...
    let chat = root.join("tests/fixtures/chat");
    let conv =
        b"\0system\0You are a concise assistant.\0user\0What is 2+2?\0assistant\0Four.\0user\0And 3+3?";
    let render: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(chat.join("render.json")).unwrap()).unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for case in render["cases"].as_array().unwrap() {
        let template = case["template"].as_str().unwrap();
        let jinja = case["jinja"].as_bool().unwrap_or(false);
        if !seen.insert((template.to_string(), jinja)) {
            continue;
        }
        let template = if template == "model" {
            std::fs::read_to_string(chat.join("smollm2.jinja")).unwrap()
        } else {
            template.to_string()
        };
        let mut data = vec![0b11_0010 | u8::from(jinja)];
        data.extend_from_slice(template.as_bytes());
        data.extend_from_slice(conv);
        write("chat", &format!("case{:02}", seen.len()), &data);
    }
}
