//! Every architecture beyond llama, on tiny seeded models made in memory by `gguf::synth`: it loads
//! with its quirks (the comparison with llama.cpp itself is tests/golden_parity.rs on the
//! `synth-<arch>-s*` traces), batched and one-token decoding agree, a fused projection gives the
//! same logits as the same rows stored apart, and a missing required tensor is named.

use std::sync::Arc;

use rs_llama::exec::Session;
use rs_llama::gguf::synth::{to_writer_arch, ArchSynth, ExpertLayout, FfnKind, SynthArch, SynthSpec, Vocab};
use rs_llama::gguf::writer::GgufWriter;
use rs_llama::gguf::GgufFile;
use rs_llama::model::{Arch, LoadOptions, Logits, Model};

const ARCHS: [(SynthArch, Arch); 11] = [
    (SynthArch::Qwen2, Arch::Qwen2),
    (SynthArch::Qwen2Moe, Arch::Qwen2Moe),
    (SynthArch::Phi3, Arch::Phi3),
    (SynthArch::PhiMoe, Arch::PhiMoe),
    (SynthArch::Qwen3, Arch::Qwen3),
    (SynthArch::Qwen3Moe, Arch::Qwen3Moe),
    (SynthArch::Glm4Moe, Arch::Glm4Moe),
    (SynthArch::Llama4, Arch::Llama4),
    (SynthArch::GptOss, Arch::GptOss),
    (SynthArch::Deepseek2, Arch::Deepseek2),
    (SynthArch::Deepseek2Lite, Arch::Deepseek2),
];

const PROMPT: [u32; 9] = [5, 17, 3, 88, 41, 41, 0, 95, 12];

fn writer(arch: SynthArch) -> GgufWriter {
    let moe = arch.is_moe();
    // DeepSeek's experts come in 4 groups of two or more.
    let n_expert = if arch == SynthArch::Deepseek2 { 8 } else { 6 };
    let ffn = if moe {
        FfnKind::Moe { n_expert, n_expert_used: 3, layout: ExpertLayout::Stacked }
    } else {
        FfnKind::Dense
    };
    let spec = SynthSpec {
        seed: 5,
        n_embd: 64,
        n_layer: 2,
        n_head: 4,
        n_head_kv: 2,
        n_ff: 48,
        ffn,
        ..Default::default()
    };
    let head_dim =
        matches!(arch, SynthArch::Qwen3 | SynthArch::Qwen3Moe | SynthArch::Glm4Moe | SynthArch::GptOss)
            .then_some(24);
    to_writer_arch(&spec, &ArchSynth { arch, head_dim, n_ff_shexp: None }, &Vocab::placeholder(120))
        .expect("synth")
}

fn load(w: &GgufWriter) -> Result<Model, String> {
    let file = GgufFile::from_bytes(w.to_bytes()).map_err(|e| e.to_string())?;
    Model::load(Arc::new(file), &LoadOptions::default()).map_err(|e| e.to_string())
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn each_arch_loads_and_batched_decoding_matches_token_by_token() {
    for (synth_arch, arch) in ARCHS {
        let model = load(&writer(synth_arch)).expect("load");
        assert_eq!(model.arch(), arch);
        assert!(model.describe().starts_with(&format!("arch {}", arch.name())));
        let mut batched = Session::new(&model, 32, 512).expect("session");
        let all = batched.decode(&PROMPT, Logits::All).expect("decode");
        let mut single = Session::new(&model, 32, 512).expect("session");
        let n_vocab = model.n_vocab();
        for (i, &t) in PROMPT.iter().enumerate() {
            let row = single.decode(&[t], Logits::Last).expect("decode");
            let want = &all[i * n_vocab..(i + 1) * n_vocab];
            let diff = max_abs_diff(&row, want);
            // ggml (and so rs-llama) sums a one-token matmul in another order than a batch; the
            // f32 rounding noise then moves some f16/bf16 roundings (observed up to ~2e-3).
            assert!(diff < 1e-2, "{arch} token {i}: batched vs single differ by {diff}");
            let spread = want.iter().fold(0f32, |m, v| m.max(v.abs()));
            assert!(spread > 0.5 && want.iter().all(|v| v.is_finite()), "{arch}: degenerate logits");
        }
    }
}

/// Phi-3's fused `attn_qkv` against a copy of the same model with the rows stored as `attn_q/k/v`.
#[test]
fn phi3_fused_qkv_equals_separate_projections() {
    let fused = writer(SynthArch::Phi3);
    let file = GgufFile::from_bytes(fused.to_bytes()).expect("parse");
    let mut split = GgufWriter::new();
    for (k, v) in &file.kv {
        split.set(k, v.clone());
    }
    let (n_q, n_kv, n_embd) = (64usize, 32usize, 64usize);
    for t in &file.tensors {
        let bytes = file.tensor_bytes(t).to_vec();
        if let Some(layer) = t.name.strip_suffix(".attn_qkv.weight") {
            let row = n_embd * 2; // f16
            let parts = [("attn_q", 0, n_q), ("attn_k", n_q, n_kv), ("attn_v", n_q + n_kv, n_kv)];
            for (name, r0, rows) in parts {
                split
                    .add_tensor(
                        &format!("{layer}.{name}.weight"),
                        &[n_embd as u64, rows as u64],
                        t.dtype,
                        bytes[r0 * row..(r0 + rows) * row].to_vec(),
                    )
                    .expect("add");
            }
        } else {
            split.add_tensor(&t.name, &t.dims, t.dtype, bytes).expect("add");
        }
    }
    let a = load(&fused).expect("fused");
    let b = load(&split).expect("split");
    let la = Session::new(&a, 16, 512).expect("s").decode(&PROMPT, Logits::All).expect("decode");
    let lb = Session::new(&b, 16, 512).expect("s").decode(&PROMPT, Logits::All).expect("decode");
    assert_eq!(la, lb);
}

#[test]
fn phimoe_without_a_required_bias_is_refused_by_name() {
    let full = writer(SynthArch::PhiMoe);
    let file = GgufFile::from_bytes(full.to_bytes()).expect("parse");
    let mut w = GgufWriter::new();
    for (k, v) in &file.kv {
        w.set(k, v.clone());
    }
    for t in file.tensors.iter().filter(|t| t.name != "blk.1.attn_output.bias") {
        w.add_tensor(&t.name, &t.dims, t.dtype, file.tensor_bytes(t).to_vec()).expect("add");
    }
    let err = load(&w).err().unwrap_or_default();
    assert!(err.contains("blk.1.attn_output.bias"), "{err}");
}

/// Llama 4 runs contexts up to its attention chunk (8192) only: a longer one is refused by name.
#[test]
fn llama4_refuses_contexts_beyond_its_attention_chunk() {
    let model = load(&writer(SynthArch::Llama4)).expect("load");
    assert!(Session::new(&model, 8192, 512).is_ok());
    let err = Session::new(&model, 8193, 512).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("llama4") && err.contains("8192"), "{err}");
}

/// The NoPE layers' temperature against llama.cpp's formula in f64: 1 within the first chunk,
/// then `ln(floor((pos + 1) / 8192) + 1) · 0.1 + 1`.
#[test]
fn llama4_attention_temperature_follows_the_chunks() {
    let model = load(&writer(SynthArch::Llama4)).expect("load");
    let t = model.hparams().layer_attn.temperature.expect("llama4 has a temperature");
    for (pos, buckets) in [(0usize, 0.0f64), (8190, 0.0), (8191, 1.0), (20000, 2.0), (1 << 20, 128.0)] {
        let want = ((buckets + 1.0).ln() * 0.1f32 as f64 + 1.0) as f32;
        assert_eq!(t.at(pos), want, "position {pos}");
    }
    assert!(!model.hparams().layer_uses_rope(3) && model.hparams().layer_uses_rope(2));
}

/// A copy of `w` keeping the metadata `keep_key` says (and `extra`), and the tensors `keep` says.
fn rewritten(
    w: &GgufWriter,
    keep_key: impl Fn(&str) -> bool,
    extra: &[(&str, rs_llama::gguf::value::Value)],
    keep: impl Fn(&str) -> bool,
) -> GgufWriter {
    let file = GgufFile::from_bytes(w.to_bytes()).expect("parse");
    let mut out = GgufWriter::new();
    for (k, v) in file.kv.iter().filter(|(k, _)| keep_key(k)) {
        out.set(k, v.clone());
    }
    for (k, v) in extra {
        out.set(k, v.clone());
    }
    for t in file.tensors.iter().filter(|t| keep(&t.name)) {
        out.add_tensor(&t.name, &t.dims, t.dtype, file.tensor_bytes(t).to_vec()).expect("add");
    }
    out
}

/// DeepSeek's latent sizes and score scale as parsed; files llama.cpp reads another way are
/// refused with what to do: an old conversion without the MLA keys (with `attn_kv_b`), Mistral
/// Large 3's attention temperature; a missing latent tensor is named.
#[test]
fn deepseek2_reads_its_latent_sizes_and_refuses_what_it_does_not_run() {
    use rs_llama::gguf::value::Value;
    let w = writer(SynthArch::Deepseek2);
    let model = load(&w).expect("load");
    let mla = model.hparams().mla.expect("latent attention");
    assert_eq!(
        (mla.kv_lora_rank, mla.head_dim_k_mla, mla.head_dim_v_mla, mla.q_lora_rank),
        (32, 24, 16, Some(48))
    );
    // YaRN factor 40 and mscale_all_dim 0.707: kq_scale = (1 + 0.1·0.707·ln 40)² / sqrt(24).
    let m = 1.0 + 0.1 * 0.707f64 * 40f64.ln();
    assert!((mla.kq_scale as f64 - m * m / 24f64.sqrt()).abs() < 1e-5, "{}", mla.kq_scale);

    let old = rewritten(&w, |k| !k.ends_with("_mla"), &[], |_| true);
    let err = load(&old).err().unwrap_or_default();
    assert!(err.contains("key_length_mla") && err.contains("convert"), "{err}");
    let temperature = [("deepseek2.attention.temperature_scale", Value::F32(0.5))];
    let err = load(&rewritten(&w, |_| true, &temperature, |_| true)).err().unwrap_or_default();
    assert!(err.contains("temperature"), "{err}");
    let no_kv_a = rewritten(&w, |_| true, &[], |n| n != "blk.1.attn_kv_a_mqa.weight");
    let err = load(&no_kv_a).err().unwrap_or_default();
    assert!(err.contains("blk.1.attn_kv_a_mqa.weight"), "{err}");
}

/// The planner's shape of a DeepSeek file counts exactly the parameters the loaded model holds
/// (the selection biases aside, which shapes leave out as they do all biases) and the cache the
/// model keeps.
#[test]
fn deepseek2_planner_shape_counts_the_models_parameters() {
    for arch in [SynthArch::Deepseek2, SynthArch::Deepseek2Lite] {
        let w = writer(arch);
        let file = GgufFile::from_bytes(w.to_bytes()).expect("parse");
        let shape = rs_llama::plan::shapes::ModelShape::from_gguf(&file, "synth").expect("shape");
        let model = load(&w).expect("load");
        let mla = shape.mla.expect("latent shape");
        assert_eq!((mla.kv_lora_rank, mla.head_dim_k, mla.head_dim_v), (32, 24, 16));
        let hp = model.hparams();
        // The compressed row (KV rank 32 + rope 8) is the whole cache, as in llama.cpp: no V.
        assert_eq!(hp.kv_cache_rows(), (40, 0));
        assert_eq!(shape.kv_bytes_per_token_layer(), 2 * 40);
        let biases = if arch == SynthArch::Deepseek2 { (1..hp.n_layer).count() * hp.n_expert } else { 0 };
        assert_eq!(shape.total_params() + biases as u64, model.n_params(), "{arch:?}");
    }
}
