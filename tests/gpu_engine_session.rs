//! The executor interface shared by the CPU and GPU paths: through `EngineSession` the CPU path
//! gives exactly the logits of `Session`, and where a GPU can start (the device machine), the GPU
//! path gives the same top tokens with close logits.

mod model_support;

use model_support::{build, load, Spec};
use rs_llama::exec::engine::load_on_gpu;
use rs_llama::exec::EngineSession;
use rs_llama::exec::Session;
use rs_llama::gpu::GpuOptions as Options;
#[cfg(feature = "cuda")]
use rs_llama::gpu::{Gpu, GpuLlama, GpuLlamaSession, GpuOptions};
use rs_llama::model::{Logits, ModelError};

const PROMPT: [u32; 10] = [9, 2, 71, 33, 33, 80, 14, 5, 62, 1];

#[test]
fn the_cpu_engine_matches_its_session_and_keeps_its_contract() {
    let tiny = build(&Spec::dense());
    let model = load(&tiny);
    let mut direct = Session::new(&model, 16, 4).expect("session");
    let want = direct.decode(&PROMPT, Logits::All).expect("decode");
    let mut engine = EngineSession::Cpu(Session::new(&model, 16, 4).expect("session"));
    assert_eq!(engine.engine(), "CPU");
    let got = engine.decode(&PROMPT, Logits::All).expect("decode");
    assert_eq!(got, want);
    assert_eq!((engine.n_past(), engine.n_ctx()), (10, 16));
    let err = engine.decode(&[1; 7], Logits::Last).unwrap_err();
    assert!(matches!(err, ModelError::ContextFull { n_past: 10, n_new: 7, n_ctx: 16 }), "{err}");
    engine.clear();
    assert_eq!(engine.n_past(), 0);
    let last = engine.decode(&PROMPT, Logits::Last).expect("decode");
    // Only the last row's FFN runs in the last layer, as in llama.cpp, so compare like with like.
    let mut direct_last = Session::new(&model, 16, 4).expect("session");
    assert_eq!(last, direct_last.decode(&PROMPT, Logits::Last).expect("decode"));
}

#[test]
fn without_a_usable_gpu_the_session_runs_on_the_cpu() {
    let model = load(&build(&Spec::dense()));
    // -ngl 0 asks for no GPU; a partial split is not implemented: both stay on the CPU anywhere.
    assert!(load_on_gpu(&model, &Options::default(), 0).is_none());
    assert!(load_on_gpu(&model, &Options::default(), 1).is_none());
    let resident = load_on_gpu(&model, &Options::default(), 999);
    if resident.is_some() {
        eprintln!("a GPU is here: the CPU fallback is not exercised");
        return;
    }
    let mut engine = EngineSession::new(&model, resident.as_ref(), 16, 4).expect("session");
    assert_eq!(engine.engine(), "CPU");
    let want = Session::new(&model, 16, 4).expect("session").decode(&PROMPT, Logits::Last).expect("decode");
    assert_eq!(engine.decode(&PROMPT, Logits::Last).expect("decode"), want);
}

/// (Built with `cuda` only: without it the GPU types are uninhabited and this code unreachable.)
#[cfg(feature = "cuda")]
#[test]
fn the_gpu_engine_agrees_with_the_cpu_where_a_gpu_starts() {
    let Ok(gpu) = Gpu::new(&GpuOptions::default()) else {
        eprintln!("skipped: no GPU here");
        return;
    };
    for spec in [Spec::dense(), Spec::moe(false)] {
        let model = load(&build(&spec));
        let want =
            Session::new(&model, 16, 4).expect("session").decode(&PROMPT, Logits::All).expect("decode");
        let resident = GpuLlama::from_model(&gpu, &model).expect("upload");
        let mut engine =
            EngineSession::Gpu(Box::new(GpuLlamaSession::new(&gpu, &resident, 16, 4).expect("session")));
        let got = engine.decode(&PROMPT, Logits::All).expect("decode");
        let n_vocab = model.n_vocab();
        for (g, w) in got.chunks(n_vocab).zip(want.chunks(n_vocab)) {
            let top = |v: &[f32]| v.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| i);
            assert_eq!(top(g), top(w));
            let diff = g.iter().zip(w).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
            assert!(diff < 1e-3, "{diff}");
        }
    }
}
