//! LoRA adapters that do not fit the model are refused with llama.cpp's one-line reason (its
//! llama_adapter_lora_init checks, src/llama-adapter.cpp), never a panic; and the adapter's
//! arithmetic on a tiny synthetic model: scale 0 is the base model, a zero B is the base model,
//! and an adapter with alpha 0 at scale s is the adapter with alpha = rank at scale s.

use std::sync::Arc;

use rs_llama::exec::Session;
use rs_llama::gguf::synth::{lora_adapter, to_writer, LoraSynthSpec, SynthSpec, Vocab};
use rs_llama::gguf::writer::GgufWriter;
use rs_llama::gguf::{DType, GgufFile, Value};
use rs_llama::model::lora::{ActiveLora, LoraAdapter};
use rs_llama::model::{LoadOptions, Logits, Model};

fn base_file() -> Arc<GgufFile> {
    let spec = SynthSpec {
        n_embd: 32,
        n_layer: 2,
        n_head: 4,
        n_head_kv: 2,
        n_ff: 48,
        seed: 5,
        ..SynthSpec::default()
    };
    Arc::new(GgufFile::from_bytes(to_writer(&spec, &Vocab::placeholder(64)).unwrap().to_bytes()).unwrap())
}

fn good(base: &GgufFile, spec: &LoraSynthSpec) -> GgufFile {
    GgufFile::from_bytes(lora_adapter(base, spec).unwrap().to_bytes()).unwrap()
}

/// `src` rewritten: `kv` edits each key's value (None drops it), `extra` adds keys, `tensor`
/// renames or drops tensors and may replace their (dims, bytes).
fn rebuild(
    src: &GgufFile,
    kv: impl Fn(&str, &Value) -> Option<Value>,
    extra: &[(&str, Value)],
    tensor: impl Fn(&str, &[u64], &[u8]) -> Option<(String, Vec<u64>, Vec<u8>)>,
) -> Arc<GgufFile> {
    let mut w = GgufWriter::new();
    for (k, v) in &src.kv {
        if let Some(v) = kv(k, v) {
            w.set(k, v);
        }
    }
    for (k, v) in extra {
        w.set(k, v.clone());
    }
    for t in &src.tensors {
        if let Some((name, dims, bytes)) = tensor(&t.name, &t.dims, src.tensor_bytes(t)) {
            w.add_tensor(&name, &dims, t.dtype, bytes).unwrap();
        }
    }
    Arc::new(GgufFile::from_bytes(w.to_bytes()).unwrap())
}

fn keep(name: &str, dims: &[u64], bytes: &[u8]) -> Option<(String, Vec<u64>, Vec<u8>)> {
    Some((name.to_string(), dims.to_vec(), bytes.to_vec()))
}

fn refusal(model: &Model, file: Arc<GgufFile>) -> String {
    match LoraAdapter::from_file(model, file, "test.gguf") {
        Ok(_) => panic!("adapter accepted"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn mismatched_adapters_are_refused_with_llama_cpps_reason() {
    let base = base_file();
    let model = Model::load(base.clone(), &LoadOptions::default()).unwrap();
    let ok = good(&base, &LoraSynthSpec { rank: 4, ..LoraSynthSpec::default() });
    assert!(LoraAdapter::from_file(&model, Arc::new(good(&base, &LoraSynthSpec::default())), "x").is_ok());

    let set = |key: &'static str, value: Option<Value>| {
        let extra: Vec<(&str, Value)> = match &value {
            Some(v) if ok.kv.iter().all(|(k, _)| k != key) => vec![(key, v.clone())],
            _ => Vec::new(),
        };
        rebuild(&ok, move |k, v| if k == key { value.clone() } else { Some(v.clone()) }, &extra, keep)
    };
    let cases: Vec<(Arc<GgufFile>, &str)> = vec![
        (set("general.type", None), "expect general.type to be 'adapter', but got: "),
        (set("general.type", Some(Value::String("model".into()))), "expect general.type to be 'adapter', but got: model"),
        (set("general.architecture", Some(Value::String("qwen2".into()))), "model arch and LoRA arch mismatch"),
        (set("adapter.type", Some(Value::String("ia3".into()))), "expect adapter.type to be 'lora', but got: ia3"),
        (set("adapter.lora.alpha", Some(Value::U32(8))), "invalid gguf type for adapter.lora.alpha: u32"),
        (set("general.type", Some(Value::U32(1))), "invalid gguf type for general.type: u32"),
        (
            set("adapter.alora.invocation_tokens", Some(Value::Array(rs_llama::gguf::ValueType::I32, vec![Value::I32(1)]))),
            "invalid gguf element type for adapter.alora.invocation_tokens",
        ),
        (
            rebuild(&ok, |_, v| Some(v.clone()), &[], |n, d, b| keep(&n.replace("blk.1.ffn_up.weight.lora_b", "blk.1.ffn_up.weight.lora_c"), d, b)),
            "LoRA tensor 'blk.1.ffn_up.weight.lora_c' has unexpected suffix",
        ),
        (
            rebuild(&ok, |_, v| Some(v.clone()), &[], |n, d, b| if n == "blk.0.attn_v.weight.lora_a" { None } else { keep(n, d, b) }),
            "LoRA tensor pair for 'blk.0.attn_v.weight' is missing one component",
        ),
        (
            rebuild(&ok, |_, v| Some(v.clone()), &[], |n, d, b| keep(&n.replace("blk.1.", "blk.7."), d, b)),
            "LoRA tensor 'blk.7.attn_k.weight' does not exist in base model (hint: maybe wrong base model?)",
        ),
        (
            // B of attn_q with 31 outputs instead of 32 (the bytes shrink to match).
            rebuild(&ok, |_, v| Some(v.clone()), &[], |n, d, b| {
                if n == "blk.0.attn_q.weight.lora_b" {
                    Some((n.to_string(), vec![d[0], 31], b[..b.len() / 32 * 31].to_vec()))
                } else {
                    keep(n, d, b)
                }
            }),
            "tensor 'blk.0.attn_q.weight' has incorrect shape (hint: maybe wrong base model?)",
        ),
        (
            // A of rank 4 against a B of rank 2.
            rebuild(&ok, |_, v| Some(v.clone()), &[], |n, d, b| {
                if n == "blk.0.ffn_down.weight.lora_b" {
                    Some((n.to_string(), vec![2, d[1]], b[..b.len() / 2].to_vec()))
                } else {
                    keep(n, d, b)
                }
            }),
            "lora_a tensor is not transposed (hint: adapter from \"finetune\" example is no longer supported)",
        ),
    ];
    for (file, want) in cases {
        assert_eq!(refusal(&model, file), want);
    }

    // A pair on a tensor the model has but computes otherwise (the embedding lookup).
    let mut w = GgufWriter::new();
    for (k, v) in &ok.kv {
        w.set(k, v.clone());
    }
    let (n_embd, n_vocab, r) = (32u64, 64u64, 4u64);
    let zeros = |n: u64| vec![0u8; n as usize * 2];
    w.add_tensor("token_embd.weight.lora_a", &[n_embd, r], DType::F16, zeros(n_embd * r)).unwrap();
    w.add_tensor("token_embd.weight.lora_b", &[r, n_vocab], DType::F16, zeros(r * n_vocab)).unwrap();
    let embd = refusal(&model, Arc::new(GgufFile::from_bytes(w.to_bytes()).unwrap()));
    assert!(embd.starts_with("LoRA tensor 'token_embd.weight': rs-llama applies adapters to"), "{embd}");
}

#[test]
fn unreadable_files_are_one_line_errors() {
    let base = base_file();
    let model = Model::load(base.clone(), &LoadOptions::default()).unwrap();
    let bytes = lora_adapter(&base, &LoraSynthSpec::default()).unwrap().to_bytes();
    let dir = std::env::temp_dir().join(format!("rs-llama-lora-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, data) in
        [("truncated", bytes[..bytes.len() - 100].to_vec()), ("garbage", b"GGUF\x03\0\0\0\xff\xff".to_vec())]
    {
        let p = dir.join(name);
        std::fs::write(&p, data).unwrap();
        let e = LoraAdapter::open(&model, &p).err().expect("refused").to_string();
        assert!(e.starts_with("failed to load lora adapter from file"), "{e}");
        assert!(!e.contains('\n'), "{e}");
    }
    assert!(LoraAdapter::open(&model, &dir.join("missing")).is_err());
    std::fs::remove_dir_all(&dir).ok();
}

fn logits(model: &Model, lora: Vec<ActiveLora>) -> Vec<f32> {
    let mut s = Session::new(model, 16, 16).unwrap();
    s.set_lora(lora).unwrap();
    let mut out = s.decode(&[1, 5, 9, 12], Logits::All).unwrap();
    out.extend(s.decode(&[3], Logits::Last).unwrap());
    out
}

#[test]
fn scales_follow_alpha_over_rank() {
    let base = base_file();
    let model = Model::load(base.clone(), &LoadOptions::default()).unwrap();
    let load = |spec: &LoraSynthSpec| {
        Arc::new(LoraAdapter::from_file(&model, Arc::new(good(&base, spec)), "x").unwrap())
    };
    let plain = logits(&model, Vec::new());
    let r8 = LoraSynthSpec { rank: 8, alpha: 8.0, ..LoraSynthSpec::default() };
    let with = |adapter: &Arc<LoraAdapter>, scale| {
        logits(&model, vec![ActiveLora { adapter: adapter.clone(), scale }])
    };
    let a = load(&r8);
    assert_eq!(with(&a, 0.0), plain, "scale 0 is no adapter");
    let one = with(&a, 1.0);
    assert_ne!(one, plain, "the adapter changes the logits");
    // alpha 0: the user's scale alone, the same as alpha = rank.
    assert_eq!(with(&load(&LoraSynthSpec { alpha: 0.0, ..r8.clone() }), 1.0), one);
    // alpha 16 at scale 0.5 is alpha 8 at scale 1 (both 1.0 after the f32 products).
    assert_eq!(with(&load(&LoraSynthSpec { alpha: 16.0, ..r8.clone() }), 0.5), one);
    assert_ne!(with(&a, 0.5), one, "the scale is applied");
}

/// Adapter files with bytes flipped (header and data alike) are refused or loaded, never a panic;
/// whatever loads runs a forward.
#[test]
fn corrupted_adapters_never_panic() {
    let base = base_file();
    let model = Model::load(base.clone(), &LoadOptions::default()).unwrap();
    let bytes =
        lora_adapter(&base, &LoraSynthSpec { rank: 4, ..LoraSynthSpec::default() }).unwrap().to_bytes();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (state >> 33) as usize
    };
    let (mut refused, mut loaded) = (0, 0);
    for _ in 0..400 {
        let mut b = bytes.clone();
        for _ in 0..1 + next() % 3 {
            // Mostly the header (keys, types, names, shapes), where the checks are.
            let at = if next() % 4 == 0 { next() % b.len() } else { next() % 1200.min(b.len()) };
            b[at] ^= 1 << (next() % 8);
        }
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let Ok(file) = GgufFile::from_bytes(b) else { return false };
            match LoraAdapter::from_file(&model, Arc::new(file), "fuzz.gguf") {
                Ok(a) => {
                    logits(&model, vec![ActiveLora { adapter: Arc::new(a), scale: 1.0 }]);
                    true
                }
                Err(e) => {
                    assert!(!e.to_string().contains('\n'), "{e}");
                    false
                }
            }
        }));
        match outcome {
            Ok(true) => loaded += 1,
            Ok(false) => refused += 1,
            Err(_) => panic!("a corrupted adapter panicked"),
        }
    }
    assert!(refused > 0 && loaded > 0, "refused {refused}, loaded {loaded}");
}
