//! LoRA adapters against llama.cpp: the traces in tests/fixtures/lora were written by
//! compare/refdump against libllama with the adapters applied (`--lora`, `--lora-scaled`;
//! scripts/make-lora-fixtures.sh), and are replayed here as tests/golden_parity.rs replays the base
//! model's: teacher forcing, every step's top-10 logits compared, the greedy token checked.
//! The traces come from llama.cpp built for AVX2 (the machine that made them has no AVX-512), so
//! the replay runs on rs-llama's AVX2 kernels — in a child process when this one picked another
//! path — where every logit must equal llama.cpp's bit for bit. Each trace also records the base
//! model's greedy tokens, which must differ from the adapted ones (the adapter is not a no-op).

use std::path::{Path, PathBuf};
use std::sync::Arc;

mod trace_support;

use rs_llama::exec::Session;
use rs_llama::gguf::GgufFile;
use rs_llama::model::lora::{ActiveLora, LoraAdapter};
use rs_llama::model::{LoadOptions, Logits, Model};
use rs_llama::tokenizer::Tokenizer;
use serde_json::Value;
use trace_support::{argmax, avx2_build_numerics, avx2_replay_possible, ids, models_dir, rerun_on_avx2};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lora")
}

fn resolve(file: &str, sha: &str, made_by: &Value) -> PathBuf {
    trace_support::resolve(file, sha, made_by, "scripts/make-lora-fixtures.sh")
}

fn bit_exact() -> bool {
    avx2_build_numerics()
}

/// Teacher-forced replay of one trace with `lora` applied; returns max |Δlogit| over the top ids
/// and our greedy tokens.
fn replay(
    model: &Model,
    tok: &Tokenizer,
    trace: &Value,
    lora: Vec<ActiveLora>,
    name: &str,
) -> (f32, Vec<u32>) {
    let prompt_tokens = ids(&trace["prompt_tokens"]);
    assert_eq!(tok.encode(trace["prompt"].as_str().expect("prompt"), true, true), prompt_tokens, "{name}");
    let generated = ids(&trace["generated"]);
    let mut s = Session::new(model, prompt_tokens.len() + generated.len() + 8, 512).expect("session");
    s.set_lora(lora).expect("set_lora");
    let mut rows = vec![s.decode(&prompt_tokens, Logits::Last).expect("prompt")];
    for &t in &generated[..generated.len() - 1] {
        rows.push(s.decode(&[t], Logits::Last).expect("decode"));
    }
    let mut worst = 0f32;
    for (i, (step, ours)) in trace["steps"].as_array().expect("steps").iter().zip(&rows).enumerate() {
        for pair in step["top"].as_array().expect("top") {
            let id = pair[0].as_u64().expect("id") as usize;
            worst = worst.max((ours[id] - pair[1].as_f64().expect("logit") as f32).abs());
        }
        let gap = step["gap"].as_f64().expect("gap") as f32;
        let ours_top = argmax(ours);
        assert!(
            ours_top == generated[i] || (!bit_exact() && gap < 2e-3),
            "{name}: step {i}: greedy {ours_top} != llama.cpp's {} (gap {gap})",
            generated[i]
        );
    }
    (worst, rows.iter().map(|r| argmax(r)).collect())
}

#[test]
fn lora_traces_match_llama_cpp() {
    if !bit_exact() && avx2_replay_possible() {
        let log = rerun_on_avx2("lora_traces_match_llama_cpp");
        assert!(log.contains("lora parity: bit-exact: true"), "the child did not replay bit-exactly");
        return;
    }
    let mut n = 0;
    let mut entries: Vec<_> = std::fs::read_dir(fixtures()).expect("fixtures/lora").flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        if e.path().extension().is_none_or(|x| x != "json") {
            continue;
        }
        let name = e.file_name().to_string_lossy().into_owned();
        let trace: Value =
            serde_json::from_str(&std::fs::read_to_string(e.path()).expect("read")).expect("json");
        let m = &trace["model"];
        let path =
            resolve(m["file"].as_str().expect("file"), m["sha256"].as_str().expect("sha"), &m["made_by"]);
        let file = Arc::new(GgufFile::open(&path).expect("open"));
        let tok = Tokenizer::from_gguf(&file).expect("tokenizer");
        let model = Model::load(file, &LoadOptions::default()).expect("load");
        let lora: Vec<ActiveLora> = trace["lora"]["adapters"]
            .as_array()
            .expect("lora.adapters")
            .iter()
            .map(|a| {
                let p = resolve(
                    a["file"].as_str().expect("file"),
                    a["sha256"].as_str().expect("sha"),
                    &trace["lora"]["made_by"],
                );
                let adapter = LoraAdapter::open(&model, &p).unwrap_or_else(|e| panic!("{name}: {e}"));
                ActiveLora { adapter: Arc::new(adapter), scale: a["scale"].as_f64().expect("scale") as f32 }
            })
            .collect();
        let threads = trace["settings"]["n_threads"].as_u64().expect("n_threads") as usize;
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("pool");
        let (worst, _) = pool.install(|| replay(&model, &tok, &trace, lora, &name));
        let bound = if bit_exact() {
            0.0
        } else if name.starts_with("smollm2") {
            0.1
        } else {
            1e-2
        };
        eprintln!("lora parity: {name}: max |Δlogit| {worst:.2e} (bound {bound:.0e})");
        assert!(worst <= bound, "{name}: max |logit - llama.cpp| = {worst} > {bound}");
        // Without the adapters the same forced tokens give other greedy choices: the fixture
        // tests the adapter, not the base model.
        let (_, base) = pool.install(|| replay_base(&model, &trace));
        assert_ne!(base, ids(&trace["generated"]), "{name}: the base model alone gives the same tokens");
        n += 1;
    }
    assert!(n >= 2, "expected the LoRA traces in {}", fixtures().display());
    eprintln!("lora parity: bit-exact: {}", bit_exact());
}

/// The base model's greedy tokens under the same forcing.
fn replay_base(model: &Model, trace: &Value) -> (f32, Vec<u32>) {
    let prompt_tokens = ids(&trace["prompt_tokens"]);
    let generated = ids(&trace["generated"]);
    let mut s = Session::new(model, prompt_tokens.len() + generated.len() + 8, 512).expect("session");
    let mut out = vec![argmax(&s.decode(&prompt_tokens, Logits::Last).expect("prompt"))];
    for &t in &generated[..generated.len() - 1] {
        out.push(argmax(&s.decode(&[t], Logits::Last).expect("decode")));
    }
    (0.0, out)
}

/// `rs-llama --lora` / `--lora-scaled` print llama.cpp's greedy continuation of each trace (the
/// same tokens as the replay above, through the command line's flags).
#[test]
fn cli_flags_apply_the_adapters() {
    for (name, flag) in [("synth-dense-english", "--lora"), ("synth-dense-code-scaled", "--lora-scaled")] {
        let text = std::fs::read_to_string(fixtures().join(format!("{name}.json"))).expect("read");
        let trace: Value = serde_json::from_str(&text).expect("json");
        let m = &trace["model"];
        let model =
            resolve(m["file"].as_str().expect("file"), m["sha256"].as_str().expect("sha"), &m["made_by"]);
        let a = &trace["lora"]["adapters"][0];
        let adapter =
            resolve(a["file"].as_str().expect("file"), a["sha256"].as_str().expect("sha"), &Value::Null);
        let value = match flag {
            "--lora" => adapter.display().to_string(),
            _ => format!("{}:{}", adapter.display(), a["scale"]),
        };
        let n = trace["generated"].as_array().expect("generated").len().to_string();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_rs-llama"))
            .args(["-m", &model.display().to_string(), flag, &value, "-n", &n, "--temp", "0", "--ignore-eos"])
            .args(["-no-cnv", "-t", "2", "-p", trace["prompt"].as_str().expect("prompt")])
            .output()
            .expect("run rs-llama");
        assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
        let want = format!(
            "{}{}",
            trace["prompt"].as_str().unwrap_or_default(),
            trace["generated_text"].as_str().unwrap_or_default()
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim_end(), want.trim_end(), "{name}");
    }
}

/// An adapter made for another model: exit 1 and llama.cpp's reason on one line.
#[test]
fn cli_refuses_an_adapter_for_another_model() {
    let dir = models_dir();
    let (model, adapter) =
        (dir.join("smollm2-135m-f16.gguf"), dir.join("lora-synth-dense-s42-r16-s7.f16.gguf"));
    if !model.exists() || !adapter.exists() {
        panic!("{} or {} missing (run scripts/make-lora-fixtures.sh)", model.display(), adapter.display());
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rs-llama"))
        .args([
            "-m",
            &model.display().to_string(),
            "--lora",
            &adapter.display().to_string(),
            "-p",
            "hi",
            "-n",
            "1",
        ])
        .args(["-no-cnv", "--log-verbosity", "1"])
        .output()
        .expect("run rs-llama");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let want = format!(
        "failed to load lora adapter '{}': tensor 'blk.0.attn_k.weight' has incorrect shape (hint: maybe wrong base model?)",
        adapter.display()
    );
    assert!(err.lines().any(|l| l.ends_with(&want)), "{err}");
}

/// `rs-llama-perplexity --lora` prints llama-perplexity's `[i]` stream with the same adapter
/// (tests/fixtures/lora/perplexity-smollm2-c48.*; without the adapter the values are 2.70 and 2.73),
/// on the AVX2 path: the fixture is llama.cpp's AVX2 build's.
#[test]
fn perplexity_with_an_adapter_is_llama_perplexitys() {
    let dir = models_dir();
    let want = std::fs::read_to_string(fixtures().join("perplexity-smollm2-c48.stdout")).expect("fixture");
    let text = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/perplexity/genesis-1.txt");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rs-llama-perplexity"))
        .args(["-m", &dir.join("smollm2-135m-f16.gguf").display().to_string()])
        .args(["--lora", &dir.join("lora-smollm2-135m-r8-s7.f16.gguf").display().to_string()])
        .args(["-f", &text.display().to_string(), "-c", "48", "-b", "48", "--chunks", "2", "-t", "1"])
        .envs(avx2_replay_possible().then_some((rs_llama::cpu::path::PATH_ENV, "avx2")))
        .output()
        .expect("run rs-llama-perplexity");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let got: Vec<&str> = stdout.lines().filter(|l| l.starts_with('[')).collect();
    if avx2_replay_possible() {
        assert_eq!(got, want.lines().collect::<Vec<_>>());
        return;
    }
    // Elsewhere (no AVX2, or f32 numerics) other roundings: within 0.5% of each value.
    let values = |lines: &[&str]| -> Vec<f64> {
        lines.concat().split(',').filter_map(|v| v.split(']').nth(1)?.parse().ok()).collect()
    };
    let (ours, theirs) = (values(&got), values(&want.lines().collect::<Vec<_>>()));
    assert_eq!(ours.len(), theirs.len(), "{got:?} vs {want}");
    for (a, b) in ours.iter().zip(&theirs) {
        assert!((a / b - 1.0).abs() < 5e-3, "{got:?} vs {want}");
    }
}
