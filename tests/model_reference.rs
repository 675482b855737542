//! The CPU forward pass against an independent naive f64 forward pass on seeded tiny models.

mod model_support;

use model_support::{build, load, max_abs_diff, reference, Spec};
use rs_llama::exec::Session;
use rs_llama::gguf::DType;
use rs_llama::model::Logits;

/// f32 activations against f64 ones; K/V are rounded to f16 in both, so a value next to an f16
/// rounding boundary may round differently. Observed: 3.6e-4 (f16, tied head, |logits| up to 22),
/// 7e-6 (bf16), 8e-7 (f32), 1.2e-6 (MoE). This checks the model's math, so it runs the engine with
/// f32 activations (`RS_LLAMA_NUMERICS=f32`); llama.cpp's roundings are checked bit for bit by
/// golden_parity.
const TOL: f64 = 1e-3;

fn exact_numerics() {
    use rs_llama::cpu::numerics::{active, Numerics, NUMERICS_ENV};
    static SET: std::sync::Once = std::sync::Once::new();
    SET.call_once(|| std::env::set_var(NUMERICS_ENV, "f32"));
    assert_eq!(active(), Numerics::F32, "numerics were read before this test set them");
}

const PROMPT: [u32; 12] = [5, 17, 3, 88, 41, 41, 0, 95, 12, 60, 7, 33];

fn run(spec: &Spec) -> (Vec<f32>, Vec<f64>) {
    exact_numerics();
    let tiny = build(spec);
    let model = load(&tiny);
    let mut s = Session::new(&model, 64, 512).expect("session");
    let got = s.decode(&PROMPT, Logits::All).expect("decode");
    (got, reference::forward(&tiny, &PROMPT))
}

#[test]
fn dense_model_matches_f64_reference_for_each_weight_type() {
    for (dtype, tied) in [(DType::F16, true), (DType::BF16, false), (DType::F32, false)] {
        let (got, want) = run(&Spec { dtype, tied, ..Spec::dense() });
        let diff = max_abs_diff(&got, &want);
        let spread = want.iter().cloned().fold(0.0, |m: f64, v| m.max(v.abs()));
        eprintln!("dense {dtype} tied={tied}: max |logit - f64 ref| = {diff:.3e} (max |logit| {spread:.2})");
        assert!(diff < TOL, "dense {dtype}: {diff}");
        assert!(spread > 1.0, "logits should not be degenerate");
    }
}

#[test]
fn moe_stacked_and_legacy_experts_give_identical_logits_matching_reference() {
    let (stacked, want) = run(&Spec::moe(false));
    let (legacy, want_legacy) = run(&Spec::moe(true));
    assert_eq!(want, want_legacy, "both layouts hold the same weights");
    assert_eq!(stacked, legacy, "expert layout must not change a single bit");
    let diff = max_abs_diff(&stacked, &want);
    eprintln!("moe: max |logit - f64 ref| = {diff:.3e}");
    assert!(diff < TOL, "moe: {diff}");
}
