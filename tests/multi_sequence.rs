//! Several sequences evaluated together (the server's continuous batching): each sequence's
//! logits equal, bit for bit, what it gets alone, with prompts and decode tokens of different
//! sequences mixed in one pass and sequences split across passes (see `exec::row_order`: without
//! it, a decode token batched with others is summed in the batch's order and the greedy token
//! changed on the first mixed step here).

use rs_llama::exec::device::sim::SimDevice;
use rs_llama::exec::hybrid::HybridOptions;
use rs_llama::exec::session::BatchItem;
use rs_llama::exec::{OutputRows, Session};
use rs_llama::model::{LoadOptions, Logits, Model, ModelError};
use rs_llama::plan::{presets, PolicyKind};

fn model(name: &str) -> Option<Model> {
    let home = std::env::var("HOME").ok()?;
    let cache = std::env::var("RS_LLAMA_CACHE").unwrap_or(format!("{home}/.cache/rs-llama"));
    let path = format!("{cache}/models/{name}");
    if !std::path::Path::new(&path).exists() {
        eprintln!("skipping: {path} is missing (run scripts/fetch-models.sh)");
        return None;
    }
    Some(Model::open(&path, &LoadOptions::default()).expect("model loads"))
}

/// Prompt `k` of `n` tokens (ids below every test model's vocab).
fn prompt(k: u32, n: usize) -> Vec<u32> {
    (0..n as u32).map(|i| (i * 7919 + 13 + k * 104_729) % 250 + 1).collect()
}

/// Each prompt alone: its last-token logits after the prompt, then after each of `follow`.
fn alone(m: &Model, prompts: &[Vec<u32>], follow: &[Vec<u32>], n_ubatch: usize) -> Vec<Vec<Vec<f32>>> {
    prompts
        .iter()
        .zip(follow)
        .map(|(p, f)| {
            let mut s = Session::new(m, 128, n_ubatch).expect("session");
            let mut out = vec![s.decode(p, Logits::Last).expect("prompt")];
            for &t in f {
                out.push(s.decode(&[t], Logits::Last).expect("decode"));
            }
            out
        })
        .collect()
}

/// The same through one multi-sequence session: sequence 0 starts first, the others join one
/// step later with their whole prompts while sequence 0 decodes (prompt and decode rows mixed).
fn together(s: &mut Session, prompts: &[Vec<u32>], follow: &[Vec<u32>]) -> Vec<Vec<Vec<f32>>> {
    let n = prompts.len();
    let mut out: Vec<Vec<Vec<f32>>> = vec![Vec::new(); n];
    let first =
        s.decode_batch(&[BatchItem { seq: 0, tokens: &prompts[0], logits: OutputRows::Last }]).unwrap();
    out[0].extend(first);
    // Step k: sequence 0 decodes follow[0][k-1]; the others decode theirs or (k = 1) prefill.
    let steps = follow.iter().map(Vec::len).max().unwrap_or(0) + 1;
    for k in 1..=steps {
        let mut items = Vec::new();
        let mut who = Vec::new();
        for (i, (p, f)) in prompts.iter().zip(follow).enumerate() {
            let tokens: &[u32] = match (i, k) {
                (0, k) if k <= f.len() => &f[k - 1..k],
                (0, _) => continue,
                (_, 1) => p,
                (_, k) if k - 1 <= f.len() => &f[k - 2..k - 1],
                _ => continue,
            };
            items.push(BatchItem { seq: i, tokens, logits: OutputRows::Last });
            who.push(i);
        }
        if items.is_empty() {
            break;
        }
        for (i, l) in who.into_iter().zip(s.decode_batch(&items).expect("batch")) {
            out[i].push(l);
        }
    }
    out
}

fn check(name: &str, want: &[Vec<Vec<f32>>], got: &[Vec<Vec<f32>>]) {
    for (i, (w, g)) in want.iter().zip(got).enumerate() {
        assert_eq!(w.len(), g.len(), "{name}: sequence {i}: steps");
        for (step, (a, b)) in w.iter().zip(g).enumerate() {
            assert_eq!(a.len(), b.len(), "{name}: sequence {i} step {step}: logits");
            let same = a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
            let d = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
            assert!(same, "{name}: sequence {i} step {step}: batched logits differ from alone by {d:e}");
        }
    }
}

#[test]
fn batched_sequences_get_the_logits_they_get_alone() {
    for name in ["smollm2-135m-f16.gguf", "smollm2-135m-bf16.gguf", "synth-moe8x2-s42.f16.gguf"] {
        let Some(m) = model(name) else { continue };
        let prompts: Vec<Vec<u32>> =
            [9, 1, 23].iter().enumerate().map(|(k, &n)| prompt(k as u32, n)).collect();
        // Teacher forcing: the tokens each sequence decodes are fixed up front.
        let follow: Vec<Vec<u32>> = (0..3).map(|k| prompt(7 + k, 4)).collect();
        let want = alone(&m, &prompts, &follow, 512);
        let mut s = Session::with_sequences(&m, 128, 3, 512).expect("session");
        let got = together(&mut s, &prompts, &follow);
        check(name, &want, &got);
        assert_eq!(s.n_past_of(2), 23 + 4);
    }
}

#[test]
fn sequences_split_across_passes_still_match() {
    let Some(m) = model("smollm2-135m-f16.gguf") else { return };
    let prompts: Vec<Vec<u32>> = [10, 11].iter().enumerate().map(|(k, &n)| prompt(k as u32, n)).collect();
    let follow: Vec<Vec<u32>> = (0..2).map(|k| prompt(5 + k, 2)).collect();
    // Passes of 9 tokens (-ub 7 and one per sequence): sequence 0's prompt is cut 9 + 1,
    // sequence 1's, starting inside sequence 0's second pass, 8 + 3.
    let mut s = Session::with_sequences(&m, 64, 2, 7).expect("session");
    let items: Vec<BatchItem> = prompts
        .iter()
        .enumerate()
        .map(|(i, p)| BatchItem { seq: i, tokens: p, logits: OutputRows::Last })
        .collect();
    let mut got: Vec<Vec<Vec<f32>>> =
        s.decode_batch(&items).expect("prompts").into_iter().map(|l| vec![l]).collect();
    for k in 0..2 {
        let items: Vec<BatchItem> = follow
            .iter()
            .enumerate()
            .map(|(i, f)| BatchItem { seq: i, tokens: &f[k..k + 1], logits: OutputRows::Last })
            .collect();
        for (g, l) in got.iter_mut().zip(s.decode_batch(&items).expect("decode")) {
            g.push(l);
        }
    }
    // Alone with -ub 9: 9 + 1 and 9 + 2. Sequence 1's cuts differ, which changes nothing: its
    // pieces are all of several rows (the batch order, whatever their number) and below the
    // tiled-attention size. (A one-token piece is summed in the one-token order: the scheduler
    // cuts prompts as the command line does, so it never makes one the command line does not.)
    let want = alone(&m, &prompts, &follow, 9);
    check("split", &want, &got);
}

#[test]
fn the_hybrid_executor_batches_sequences_too() {
    let Some(m) = model("synth-moe8x2-s42.f16.gguf") else { return };
    let prompts: Vec<Vec<u32>> = [6, 11].iter().enumerate().map(|(k, &n)| prompt(k as u32, n)).collect();
    let follow: Vec<Vec<u32>> = (0..2).map(|k| prompt(3 + k, 3)).collect();
    let want = alone(&m, &prompts, &follow, 512);
    let size = std::fs::metadata(format!(
        "{}/.cache/rs-llama/models/synth-moe8x2-s42.f16.gguf",
        std::env::var("HOME").unwrap_or_default()
    ))
    .map(|md| md.len())
    .unwrap_or(1 << 24);
    let opts = HybridOptions {
        policy: PolicyKind::Auto,
        hw: presets::load("rtx4090-ddr5").expect("preset"),
        gpu_mem: size / 2,
        ngl: None,
        n_cpu_moe: None,
        slots: None,
        trace: false,
        hot_experts: false,
        overrides: Vec::new(),
    };
    let dev = Box::new(SimDevice::new("rtx4090-ddr5", opts.gpu_mem));
    let mut s = Session::hybrid_with_sequences(&m, 128, 2, 512, &opts, dev).expect("hybrid session");
    let got = together(&mut s, &prompts, &follow);
    check("hybrid", &want, &got);
}

#[test]
fn bad_batches_are_errors_that_change_nothing() {
    let Some(m) = model("synth-moe8x2-s42.f16.gguf") else { return };
    let mut s = Session::with_sequences(&m, 8, 2, 512).expect("session");
    let p = prompt(0, 6);
    s.decode_batch(&[BatchItem { seq: 1, tokens: &p, logits: OutputRows::Last }]).expect("fits");
    let twice = [BatchItem { seq: 0, tokens: &p[..1], logits: OutputRows::Last }; 2];
    assert!(s.decode_batch(&twice).is_err(), "one sequence twice");
    let unknown = [BatchItem { seq: 2, tokens: &p[..1], logits: OutputRows::Last }];
    assert!(s.decode_batch(&unknown).is_err(), "no sequence 2");
    let full = [
        BatchItem { seq: 0, tokens: &p[..1], logits: OutputRows::Last },
        BatchItem { seq: 1, tokens: &p[..3], logits: OutputRows::Last },
    ];
    match s.decode_batch(&full) {
        Err(ModelError::ContextFull { n_past: 6, n_new: 3, n_ctx: 8 }) => {}
        other => panic!("expected ContextFull, got {:?}", other.map(|v| v.len())),
    }
    let bad = [BatchItem { seq: 0, tokens: &[u32::MAX], logits: OutputRows::Last }];
    assert!(s.decode_batch(&bad).is_err(), "token out of range");
    assert_eq!((s.n_past_of(0), s.n_past_of(1)), (0, 6), "refused batches evaluate nothing");
    s.truncate(1, 2);
    assert_eq!(s.n_past_of(1), 2);
}
