//! The hybrid executor on the simulated GPU: every logit equals the CPU path's (the sim runs the
//! GPU's tasks with the CPU kernels, so any difference is a scheduling bug: a missing fence, a
//! slot read before its copy landed, outputs summed in another order), under every policy, with
//! budgets that force streaming through one or two staging slots; the budget is never exceeded;
//! the lanes overlap; executed virtual time equals the planner's prediction for the same routing.

use rs_llama::exec::device::sim::SimDevice;
use rs_llama::exec::hybrid::HybridOptions;
use rs_llama::exec::Session;
use rs_llama::model::{LoadOptions, Logits, Model};
use rs_llama::plan::presets;
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
        hot_experts: false,
        overrides: Vec::new(),
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

/// The 2026 MoE families on their synthetic models: GLM-4.5 (a dense first layer among MoE ones,
/// sigmoid routing with a selection bias, a plain shared expert), Llama 4 (MoE every second layer
/// with the weights on the experts' inputs, a NoPE layer, Q/K norms after rope) and gpt-oss
/// (windowed layers with sinks, biased router and experts, the clamped GLU: the sim runs the
/// host's task functions, which have it), and DeepSeek in V3's layout (low-rank Q, grouped
/// sigmoid routing with a selection bias) and V2-Lite's (direct Q, softmax routing): the latent
/// attention's task, with its per-head K_b and V_b.
#[test]
fn the_2026_moe_families_equal_the_cpu_path_under_every_policy() {
    for name in [
        "synth-glm4moe-s42.f16.gguf",
        "synth-llama4-s42.f16.gguf",
        "synth-gpt-oss-s42.f16.gguf",
        "synth-deepseek2-s42.f16.gguf",
        "synth-deepseek2-lite-s42.f16.gguf",
    ] {
        check_model(
            name,
            &[
                Case { policy: PolicyKind::Auto, gpu_mem: 40 * MIB, slots: Some(1) },
                Case { policy: PolicyKind::Auto, gpu_mem: 4 << 30, slots: None },
                Case { policy: PolicyKind::Layers, gpu_mem: 40 * MIB, slots: None },
                Case { policy: PolicyKind::Fiddler, gpu_mem: 40 * MIB, slots: None },
            ],
        );
    }
}

#[test]
fn dense_and_upcycled_models_equal_the_cpu_path() {
    // SmolLM2-135M: 30 layers of 576; its tasks of a few MB; 512 rows of logits need 100 MB.
    for name in ["smollm2-135m-f16.gguf", "smollm2-135m-upcycled8x2-s42.f16.gguf"] {
        check_model(
            name,
            &[
                Case { policy: PolicyKind::Auto, gpu_mem: 64 * MIB, slots: Some(1) },
                Case { policy: PolicyKind::Auto, gpu_mem: 96 * MIB, slots: Some(2) },
                Case { policy: PolicyKind::Layers, gpu_mem: 64 * MIB, slots: None },
                Case { policy: PolicyKind::Fiddler, gpu_mem: 64 * MIB, slots: None },
            ],
        );
    }
}

/// Intervals `(track, start, end)` of one step's complete events in a trace.
fn intervals(trace: &str, step: u64) -> Vec<(u64, f64, f64)> {
    let v: serde_json::Value = serde_json::from_str(trace).expect("trace is JSON");
    let events = v["traceEvents"].as_array().expect("traceEvents");
    events
        .iter()
        .filter(|e| e["ph"] == "X" && e["args"]["step"] == step)
        .map(|e| {
            let ts = e["ts"].as_f64().expect("ts");
            (e["tid"].as_u64().expect("tid"), ts, ts + e["dur"].as_f64().expect("dur"))
        })
        .collect()
}

fn overlap(a: &[(u64, f64, f64)], track_a: u64, track_b: u64) -> bool {
    a.iter()
        .filter(|x| x.0 == track_a)
        .any(|x| a.iter().filter(|y| y.0 == track_b).any(|y| x.1.max(y.1) < x.2.min(y.2) - 1e-9 && x.2 > x.1))
}

#[test]
fn decode_lanes_overlap_and_execution_matches_the_prediction() {
    let Some(m) = model("synth-moe8x2-s42.f16.gguf") else { return };
    let o = opts(PolicyKind::Auto, 48 * MIB, Some(2));
    let dev = Box::new(SimDevice::new("rtx4090-ddr5", o.gpu_mem));
    let mut s = Session::hybrid(&m, 256, UBATCH, &o, dev).expect("hybrid session");
    let tokens = prompt(40);
    s.decode(&tokens, Logits::Last).expect("prefill");
    let mut next = 17;
    for _ in 0..8 {
        let l = s.decode(&[next], Logits::Last).expect("decode");
        next = argmax(&l);
        let h = s.executor().expect("executor");
        // The planner's step builder and simulator, given the routing this step had, predict
        // exactly what the executor's step took: they are one schedule.
        let (spec, executed) = h.last_step().expect("a step ran").clone();
        let predicted = rs_llama::plan::workload::run_step(h.plan(), h.graph(), h.cost(), &spec)
            .expect("prediction")
            .makespan;
        assert!((executed / predicted - 1.0).abs() < 0.10, "executed {executed} s, predicted {predicted} s");
        assert_eq!(spec.n_tokens, 1);
        assert_eq!(
            spec.routed.iter().map(|r| r.iter().sum::<u64>()).sum::<u64>(),
            4 * 2,
            "k picks per layer"
        );
    }
    let h = s.executor().expect("executor");
    let json = h.trace().expect("trace kept").to_json();
    // Steps 1.. are decode steps: in some of them the CPU and GPU lanes compute at once and a copy
    // runs under compute.
    let decode: Vec<_> = (1..9).map(|st| intervals(&json, st)).collect();
    assert!(decode.iter().all(|d| !d.is_empty()), "every decode step is traced");
    assert!(decode.iter().any(|d| overlap(d, 0, 1)), "no decode step ran CPU and GPU work at once");
    assert!(
        decode.iter().any(|d| overlap(d, 2, 0) || overlap(d, 2, 1)),
        "no decode step copied weights under compute"
    );
}

#[test]
fn a_plan_for_another_model_is_refused_and_an_impossible_budget_runs_on_the_cpu() {
    let (Some(moe), Some(dense)) = (model("synth-moe8x2-s42.f16.gguf"), model("synth-dense-s42.f16.gguf"))
    else {
        return;
    };
    use rs_llama::exec::binding::Binding;
    use rs_llama::plan::shapes::ModelShape;
    use rs_llama::plan::tasks::TaskGraph;
    let moe_shape = ModelShape::from_gguf(moe.file(), "moe").expect("shape");
    let dense_shape = ModelShape::from_gguf(dense.file(), "dense").expect("shape");
    let g = TaskGraph::build(&moe_shape, 1, 256);
    let err = Binding::new(&dense, &dense_shape, &g).err().expect("refused").to_string();
    assert!(err.starts_with("plan does not match the model: the plan is for 'moe'"), "{err}");
    assert!(!err.contains('\n'), "one line: {err}");
    let split = TaskGraph::build(&dense_shape, 4, 256);
    assert!(Binding::new(&dense, &dense_shape, &split).is_err(), "row blocks > 1 are not executable yet");

    // 1 MiB holds not even one micro-batch of activations: the plan is the CPU's, and so are the
    // logits.
    let o = opts(PolicyKind::Auto, MIB, None);
    let dev = Box::new(SimDevice::new("rtx4090-ddr5", o.gpu_mem));
    let mut s = Session::hybrid(&moe, 256, UBATCH, &o, dev).expect("hybrid session");
    let h = s.executor().expect("executor");
    assert!(h.plan().summary.starts_with("CPU only"), "{}", h.plan().summary);
    let tokens = prompt(12);
    let got = s.decode(&tokens, Logits::All).expect("prefill");
    let mut cpu = Session::new(&moe, 256, UBATCH).expect("session");
    assert_eq!(got, cpu.decode(&tokens, Logits::All).expect("prefill"));
    assert_eq!(s.executor().expect("executor").device().used(), 0);
}

#[test]
fn the_hot_expert_cache_moves_experts_and_keeps_the_logits() {
    let Some(m) = model("synth-moe8x2-s42.f16.gguf") else { return };
    let tokens = prompt(80);
    let (want, greedy) = cpu_reference(&m, &tokens, 24);
    let mut o = opts(PolicyKind::Auto, 48 * MIB, Some(1));
    o.hot_experts = true;
    let dev = Box::new(SimDevice::new("rtx4090-ddr5", o.gpu_mem));
    let mut s = Session::hybrid(&m, 256, UBATCH, &o, dev).expect("hybrid session");
    let resident_before: Vec<bool> =
        s.executor().expect("executor").plan().placements.iter().map(|p| p.gpu_resident).collect();
    let got = run(&mut s, &tokens, &greedy);
    for (step, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!(g.iter().zip(w).all(|(a, b)| a.to_bits() == b.to_bits()), "step {step} differs");
    }
    let h = s.executor().expect("executor");
    let swaps = h.hot_swaps().expect("cache on");
    let resident_after: Vec<bool> = h.plan().placements.iter().map(|p| p.gpu_resident).collect();
    assert!(swaps > 0, "the routing of 24 decode steps moved no expert");
    assert_ne!(resident_before, resident_after);
    assert_eq!(
        resident_before.iter().filter(|&&r| r).count(),
        resident_after.iter().filter(|&&r| r).count(),
        "a swap trades one expert for one"
    );
    assert!(h.device().used() <= h.device().budget());
}

/// The policies on the Mixtral-shaped model at about half its size in GPU memory: ours is ahead
/// of llama.cpp's `-ngl` rule and of Fiddler's in virtual prefill and decode speed, with the same
/// logits as the CPU.
#[test]
fn auto_beats_both_baselines_on_a_mixtral_shaped_model() {
    let Some(m) = model("synth-mixtral-shape-s7.f16.gguf") else { return };
    let ub = 128;
    let tokens = prompt(ub);
    let mut cpu = Session::new(&m, 512, ub).expect("session");
    let want = cpu.decode(&tokens, Logits::Last).expect("prefill");
    let mut speeds = Vec::new();
    for policy in [PolicyKind::Auto, PolicyKind::Layers, PolicyKind::Fiddler] {
        let mut o = opts(policy, 128 * MIB, None);
        o.hot_experts = policy == PolicyKind::Auto;
        let dev = Box::new(SimDevice::new("rtx4090-ddr5", o.gpu_mem));
        let mut s = Session::hybrid(&m, 512, ub, &o, dev).expect("hybrid session");
        let got = s.decode(&tokens, Logits::Last).expect("prefill");
        assert!(got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()), "{policy:?}: prefill logits");
        let mut next = argmax(&got);
        for _ in 0..16 {
            next = argmax(&s.decode(&[next], Logits::Last).expect("decode"));
        }
        let h = s.executor().expect("executor");
        let c = h.clock();
        eprintln!(
            "{policy:?}: {} | prefill {:.0} t/s, decode {:.1} t/s",
            h.plan().summary,
            c.prefill_tps(),
            c.decode_tps()
        );
        speeds.push((c.prefill_tps(), c.decode_tps()));
    }
    let (auto, layers, fiddler) = (speeds[0], speeds[1], speeds[2]);
    assert!(auto.0 > 1.5 * layers.0 && auto.0 > 1.5 * fiddler.0, "prefill: {speeds:?}");
    assert!(auto.1 >= layers.1 && auto.1 >= fiddler.1, "decode: {speeds:?}");
}

#[test]
fn override_tensor_patterns_are_obeyed_by_every_policy() {
    let Some(m) = model("synth-mixtral-shape-s7.f16.gguf") else { return };
    use rs_llama::plan::tasks::TaskKind;
    let tokens = prompt(40);
    let mut cpu = Session::new(&m, 256, UBATCH).expect("session");
    let want = cpu.decode(&tokens, Logits::Last).expect("prefill");
    for policy in [PolicyKind::Auto, PolicyKind::Layers, PolicyKind::Fiddler] {
        let mut o = opts(policy, 128 * MIB, None);
        o.overrides = vec![r"blk\.[0-1]\.ffn_.*_exps=CPU".into(), "blk.3.attn=CUDA0".into()];
        let dev = Box::new(SimDevice::new("rtx4090-ddr5", o.gpu_mem));
        let mut s = Session::hybrid(&m, 256, UBATCH, &o, dev).expect("hybrid session");
        let h = s.executor().expect("executor");
        let (g, plan) = (h.graph(), h.plan());
        for t in &g.tasks {
            if matches!(t.kind, TaskKind::Expert { .. }) && t.layer < 2 {
                assert!(!plan.resident(t.id), "{policy:?}: {} must stay on the host", t.name);
            }
        }
        assert!(plan.resident(g.layers[3].attention), "{policy:?}: blk.3.attn must be on the GPU");
        let got = s.decode(&tokens, Logits::Last).expect("prefill");
        assert!(got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()), "{policy:?}");
    }
}
