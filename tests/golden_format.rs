//! Every llama.cpp fixture under tests/fixtures/golden/ is well formed: it carries the command that made
//! it, its token and step counts agree, its top-k lists are ranked and consistent with the greedy
//! choice, and llama-completion's stdout agrees with refdump's trace of the same model and prompt.
//! (The schema is documented in tests/fixtures/golden/README.md.)

use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden")
}

fn json_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            json_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "json") {
            out.push(path);
        }
    }
    Ok(())
}

fn load(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path)?;
    serde_json::from_str(&text).with_context(|| format!("{}", path.display()))
}

fn str_of<'a>(v: &'a Value, key: &str) -> Result<&'a str> {
    v[key].as_str().with_context(|| format!("'{key}' is not a string"))
}

fn ids(v: &Value, key: &str) -> Result<Vec<u64>> {
    let items = v[key].as_array().with_context(|| format!("'{key}' is not an array"))?;
    items.iter().map(|x| x.as_u64().context("token id is not an unsigned integer")).collect()
}

fn f32_of(v: &Value) -> Result<f32> {
    let x = v.as_f64().context("not a number")? as f32;
    ensure!(x.is_finite(), "non-finite logit {x}");
    Ok(x)
}

fn check_model(doc: &Value) -> Result<()> {
    let model = &doc["model"];
    ensure!(str_of(model, "file")?.ends_with(".gguf"), "model.file");
    ensure!(model["size"].as_u64().unwrap_or(0) > 0, "model.size");
    let sha = str_of(model, "sha256")?;
    ensure!(sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit()), "model.sha256 '{sha}'");
    ensure!(!str_of(model, "made_by")?.is_empty(), "model.made_by is empty");
    Ok(())
}

fn check_refdump(doc: &Value) -> Result<()> {
    check_refdump_by(doc, "compare/refdump/refdump")
}

/// A refdump trace made by `binary` (refdump linked against one llama.cpp build or another).
fn check_refdump_by(doc: &Value, binary: &str) -> Result<()> {
    ensure!(str_of(doc, "command")?.starts_with(&format!("{binary} -m ")), "command");
    check_model(doc)?;
    let settings = &doc["settings"];
    let top_k = settings["top_k"].as_u64().context("settings.top_k")? as usize;
    let n_predict = settings["n_predict"].as_u64().context("settings.n_predict")? as usize;
    let prompt = ids(doc, "prompt_tokens")?;
    let generated = ids(doc, "generated")?;
    let steps = doc["steps"].as_array().context("steps")?;
    ensure!(!prompt.is_empty() && !generated.is_empty(), "empty token lists");
    ensure!(steps.len() == generated.len(), "{} steps for {} generated tokens", steps.len(), generated.len());
    if doc["stopped_at_eog"] == Value::Bool(false) {
        ensure!(generated.len() == n_predict, "{} tokens generated, n_predict {n_predict}", generated.len());
    }
    ensure!(settings["n_batch"].as_u64() == Some(prompt.len() as u64), "n_batch is not the prompt length");
    let mut min_gap = f32::INFINITY;
    for (i, step) in steps.iter().enumerate() {
        let input = if i == 0 { prompt[prompt.len() - 1] } else { generated[i - 1] };
        ensure!(step["input"].as_u64() == Some(input), "step {i}: input");
        ensure!(step["pos"].as_u64() == Some((prompt.len() - 1 + i) as u64), "step {i}: pos");
        let top = step["top"].as_array().context("top")?;
        ensure!(top.len() == top_k, "step {i}: {} entries, top_k {top_k}", top.len());
        let pairs: Vec<(u64, f32)> = top
            .iter()
            .map(|p| Ok((p[0].as_u64().context("top id")?, f32_of(&p[1])?)))
            .collect::<Result<_>>()?;
        for w in pairs.windows(2) {
            ensure!(w[0].1 > w[1].1 || (w[0].1 == w[1].1 && w[0].0 < w[1].0), "step {i}: top not ranked");
        }
        ensure!(pairs[0].0 == generated[i], "step {i}: greedy token is not the top-1");
        let gap = f32_of(&step["gap"])?;
        ensure!(gap == pairs[0].1 - pairs[1].1, "step {i}: gap {gap}");
        min_gap = min_gap.min(gap);
    }
    ensure!(f32_of(&doc["min_gap"])? == min_gap, "min_gap");
    // The prompt file it names holds exactly the recorded prompt.
    let command = str_of(doc, "command")?;
    let prompt_file = command.split(" -f ").nth(1).and_then(|s| s.split(' ').next()).context("no -f")?;
    let on_disk = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(prompt_file))?;
    ensure!(on_disk == str_of(doc, "prompt")?, "prompt differs from {prompt_file}");
    Ok(())
}

/// llama-completion echoes the prompt, then prints the continuation: the same tokens refdump found
/// (refdump with 2 threads, llama-completion with 1).
fn check_cli(doc: &Value, path: &Path) -> Result<()> {
    let command = str_of(doc, "command")?;
    ensure!(command.contains("llama-completion ") && command.contains("--temp 0"), "command");
    check_model(doc)?;
    let stem = path.file_stem().and_then(|s| s.to_str()).context("name")?;
    let Some((tag, prompt_name)) = stem.rsplit_once('-') else { bail!("name is not TAG-PROMPT") };
    let trace = load(&golden_dir().join(tag).join(format!("{prompt_name}.json")))?;
    ensure!(trace["model"]["sha256"] == doc["model"]["sha256"], "model differs from the refdump trace");
    let prompt = str_of(doc, "prompt")?;
    ensure!(prompt == str_of(&trace, "prompt")?, "prompt differs from the refdump trace");
    // When n_predict ends the run, llama-completion closes its output with an empty line.
    ensure!(trace["stopped_at_eog"] == Value::Bool(false), "the CLI fixtures are runs that n_predict ends");
    let expected = format!("{prompt}{}\n\n", str_of(&trace, "generated_text")?);
    let stdout = str_of(doc, "stdout")?;
    ensure!(stdout == expected, "stdout {stdout:?}\nis not {expected:?}");
    Ok(())
}

#[test]
fn every_golden_is_well_formed() -> Result<()> {
    let mut files = Vec::new();
    json_files(&golden_dir(), &mut files)?;
    files.sort();
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for path in &files {
        let doc = load(path)?;
        let format = str_of(&doc, "format")?;
        let result = match format {
            "rs-llama-refdump-v1" => check_refdump(&doc),
            "rs-llama-cli-v1" => check_cli(&doc, path),
            other => bail!("unknown format {other}"),
        };
        result.with_context(|| format!("{}", path.display()))?;
        *counts.entry(format.to_string()).or_default() += 1;
    }
    // Six prompts (and `paragraph` again at 2 threads) for each of SmolLM2 f16 and bf16, 3+3
    // random, 4 upcycled, 4 for each of the eleven synth-<arch> models and the long prompt of
    // gpt-oss and deepseek2, 3 for each of the three synth-odd models; two CLI transcripts.
    assert_eq!(counts.get("rs-llama-refdump-v1"), Some(&(24 + 11 * 4 + 2 + 3 * 3)), "{counts:?}");
    assert_eq!(counts.get("rs-llama-cli-v1"), Some(&2), "{counts:?}");
    Ok(())
}

/// tests/fixtures/golden-avx2 (scripts/make-avx2-goldens.sh) holds, for every native refdump trace,
/// a well-formed twin made with the same arguments by refdump linked against llama.cpp's AVX2
/// build: same prompt tokens and step count, only the arithmetic's last bits may differ.
#[test]
fn every_native_trace_has_an_avx2_twin() -> Result<()> {
    let twins_dir = golden_dir().with_file_name("golden-avx2");
    let mut natives = Vec::new();
    json_files(&golden_dir(), &mut natives)?;
    let mut twins = 0;
    for path in natives {
        let native = load(&path)?;
        if native["format"] != "rs-llama-refdump-v1" {
            continue;
        }
        let rel = path.strip_prefix(golden_dir())?;
        let twin_path = twins_dir.join(rel);
        let twin = load(&twin_path).with_context(|| format!("no AVX2 twin of {}", rel.display()))?;
        check_refdump_by(&twin, "compare/refdump/refdump-avx2")
            .with_context(|| format!("{}", twin_path.display()))?;
        let args = |doc: &Value| -> Result<String> {
            let cmd = str_of(doc, "command")?;
            Ok(cmd.split_once(" -m ").context("no -m")?.1.replace(".llamacpp", ""))
        };
        ensure!(args(&native)? == args(&twin)?, "{}: the twin ran other arguments", rel.display());
        ensure!(native["prompt_tokens"] == twin["prompt_tokens"], "{}: prompt tokens differ", rel.display());
        ensure!(native["model"]["sha256"] == twin["model"]["sha256"], "{}: another model", rel.display());
        twins += 1;
    }
    assert_eq!(twins, 24 + 11 * 4 + 2 + 3 * 3);
    Ok(())
}
