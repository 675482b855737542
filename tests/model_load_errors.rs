//! Bad model files give one clear error naming what is wrong, never a panic.

mod model_support;

use std::sync::Arc;

use model_support::{build_with, Spec};
use rs_llama::gguf::names::{ArchKey, KEY_ARCHITECTURE};
use rs_llama::gguf::writer::GgufWriter;
use rs_llama::gguf::{GgufFile, Value};
use rs_llama::model::{LoadOptions, Model, ModelError};

fn load_err(edit: impl FnOnce(&mut GgufWriter)) -> ModelError {
    let tiny = build_with(&Spec::dense(), edit);
    let file = GgufFile::from_bytes(tiny.bytes).expect("the file itself is valid");
    match Model::load(Arc::new(file), &LoadOptions::default()) {
        Ok(_) => panic!("model should have been refused"),
        Err(e) => e,
    }
}

fn key(k: ArchKey) -> String {
    k.name("llama")
}

#[test]
fn unknown_architecture_is_named_with_the_supported_list() {
    let e = load_err(|w| {
        w.set(KEY_ARCHITECTURE, Value::String("mamba9".into()));
    });
    assert!(
        matches!(&e, ModelError::UnknownArch(name, list) if name == "mamba9" && list.contains("llama")),
        "{e}"
    );
}

#[test]
fn tensor_shape_that_disagrees_with_hparams_names_the_tensor() {
    // n_head_kv 4 makes attn_k [64, 64]; the file holds [64, 32].
    let e = load_err(|w| {
        w.set(&key(ArchKey::HeadCountKv), Value::U32(4));
    });
    let msg = e.to_string();
    assert!(
        msg.contains("'blk.0.attn_k.weight'") && msg.contains("[64, 32]") && msg.contains("[64, 64]"),
        "{msg}"
    );
}

#[test]
fn missing_layer_tensor_is_named() {
    let e = load_err(|w| {
        w.set(&key(ArchKey::BlockCount), Value::U32(4));
    });
    assert!(e.to_string().contains("missing tensor 'blk.3.attn_q.weight'"), "{e}");
}

#[test]
fn inconsistent_hparams_are_refused() {
    let e = load_err(|w| {
        w.set(&key(ArchKey::HeadCountKv), Value::U32(3));
    });
    assert!(e.to_string().contains("not a multiple of n_head_kv 3"), "{e}");
    let e = load_err(|w| {
        w.set(&key(ArchKey::ExpertUsedCount), Value::U32(2));
    });
    assert!(e.to_string().contains("no experts"), "{e}");
    let e = load_err(|w| {
        w.set(&key(ArchKey::RmsEpsilon), Value::F32(f32::NAN));
    });
    assert!(e.to_string().contains("epsilon"), "{e}");
}

#[test]
fn unsupported_rope_scaling_is_refused_by_name() {
    let e = load_err(|w| {
        w.set(&key(ArchKey::RopeScalingType), Value::String("longrope".into()));
        w.set(&key(ArchKey::RopeScalingFactor), Value::F32(4.0));
    });
    assert!(e.to_string().contains("'longrope'"), "{e}");
}

#[test]
fn linear_rope_scaling_sets_freq_scale() {
    let tiny = build_with(&Spec::dense(), |w| {
        w.set(&key(ArchKey::RopeScalingType), Value::String("linear".into()));
        w.set(&key(ArchKey::RopeScalingFactor), Value::F32(4.0));
    });
    let file = GgufFile::from_bytes(tiny.bytes).expect("valid");
    let model = Model::load(Arc::new(file), &LoadOptions::default()).expect("loads");
    assert_eq!(model.hparams().rope_freq_scale, 0.25);
}
