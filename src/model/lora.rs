//! LoRA adapters in llama.cpp's GGUF form (`general.type = "adapter"`, `adapter.type = "lora"`,
//! pairs `NAME.lora_a` `[n_in, rank]` and `NAME.lora_b` `[rank, n_out]` for a base tensor `NAME`),
//! checked as llama.cpp checks them when it loads one, and applied unmerged: each listed linear
//! layer computes `W·x + scale · B·(A·x)` (see [`crate::ops::matmul::LoraTerm`]), with
//! `scale = user_scale · alpha / rank` when the file has a non-zero `adapter.lora.alpha`, else the
//! user's scale.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use gguf::value::Metadata;
use gguf::{GgufFile, Value, ValueType};

use super::tensors::{AttnBlock, FfnBlock};
use super::weights::{Loader, Weight};
use super::Model;
use crate::ops::matmul::LoraTerm;

/// Why an adapter cannot be used with a model; the text is llama.cpp's where it has one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct LoraError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, LoraError> {
    Err(LoraError(msg.into()))
}

/// A matrix of a layer that an adapter may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LoraSlot {
    Q,
    K,
    V,
    O,
    Gate,
    Up,
    Down,
}

/// Where an adapter's pair applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LoraTarget {
    Layer(usize, LoraSlot),
    Output,
}

impl LoraTarget {
    /// The base tensor's name parsed; None for tensors rs-llama applies no adapter to.
    fn parse(name: &str) -> Option<LoraTarget> {
        if name == "output.weight" {
            return Some(LoraTarget::Output);
        }
        let rest = name.strip_prefix("blk.")?.strip_suffix(".weight")?;
        let (il, kind) = rest.split_once('.')?;
        if il.is_empty() || !il.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let slot = match kind {
            "attn_q" => LoraSlot::Q,
            "attn_k" => LoraSlot::K,
            "attn_v" => LoraSlot::V,
            "attn_output" => LoraSlot::O,
            "ffn_gate" => LoraSlot::Gate,
            "ffn_up" => LoraSlot::Up,
            "ffn_down" => LoraSlot::Down,
            _ => return None,
        };
        Some(LoraTarget::Layer(il.parse().ok()?, slot))
    }

    /// The model's matrix at this target, if it computes one there as a plain linear layer.
    fn weight(self, model: &Model) -> Option<&Weight> {
        let w = model.weights();
        let LoraTarget::Layer(il, slot) = self else { return w.output.as_ref() };
        let layer = w.layers.get(il)?;
        match (slot, &layer.attn, &layer.ffn) {
            (LoraSlot::Q, AttnBlock::Heads(a), _) => Some(&a.q.w),
            (LoraSlot::K, AttnBlock::Heads(a), _) => Some(&a.k.w),
            (LoraSlot::V, AttnBlock::Heads(a), _) => Some(&a.v.w),
            (LoraSlot::O, AttnBlock::Heads(a), _) => Some(&a.o.w),
            (LoraSlot::Gate, _, FfnBlock::Dense(m)) => Some(&m.gate.w),
            (LoraSlot::Up, _, FfnBlock::Dense(m)) => Some(&m.up.w),
            (LoraSlot::Down, _, FfnBlock::Dense(m)) => Some(&m.down.w),
            _ => None,
        }
    }
}

/// One base tensor's `A` `[n_in, rank]` and `B` `[rank, n_out]`.
pub struct LoraPair {
    a: Weight,
    b: Weight,
}

impl LoraPair {
    fn rank(&self) -> usize {
        self.b.n_in
    }
}

/// A loaded adapter for one model.
pub struct LoraAdapter {
    /// The path as given (llama-server reports it).
    pub path: String,
    /// `adapter.lora.alpha` (0 when absent).
    pub alpha: f32,
    /// `adapter.lora.task_name` and `adapter.lora.prompt_prefix` ("" when absent).
    pub task_name: String,
    pub prompt_prefix: String,
    /// `adapter.alora.invocation_tokens` (activated LoRA; rs-llama loads but does not apply it).
    pub alora_invocation_tokens: Vec<u32>,
    pairs: HashMap<LoraTarget, LoraPair>,
}

/// An adapter with the scale the user gave it.
#[derive(Clone)]
pub struct ActiveLora {
    pub adapter: Arc<LoraAdapter>,
    pub scale: f32,
}

impl LoraAdapter {
    /// Read and check `path` against `model`, as `llama_adapter_lora_init` does.
    pub fn open(model: &Model, path: &Path) -> Result<LoraAdapter, LoraError> {
        let file = GgufFile::open(path).map_err(|e| {
            LoraError(format!("failed to load lora adapter from file ({})", one_line(&e.to_string())))
        })?;
        LoraAdapter::from_file(model, Arc::new(file), &path.to_string_lossy())
    }

    pub fn from_file(model: &Model, file: Arc<GgufFile>, path: &str) -> Result<LoraAdapter, LoraError> {
        let string = |key: &str| -> Result<String, LoraError> {
            match file.get(key) {
                None => Ok(String::new()),
                Some(Value::String(s)) => Ok(s.clone()),
                Some(v) => err(format!("invalid gguf type for {key}: {}", v.type_name())),
            }
        };
        let general_type = string("general.type")?;
        if general_type != "adapter" {
            return err(format!("expect general.type to be 'adapter', but got: {}", one_line(&general_type)));
        }
        if string("general.architecture")? != model.file().architecture().unwrap_or_default() {
            return err("model arch and LoRA arch mismatch");
        }
        let adapter_type = string("adapter.type")?;
        if adapter_type != "lora" {
            return err(format!("expect adapter.type to be 'lora', but got: {}", one_line(&adapter_type)));
        }
        let alpha = match file.get("adapter.lora.alpha") {
            None => 0.0,
            Some(Value::F32(a)) => *a,
            Some(v) => return err(format!("invalid gguf type for adapter.lora.alpha: {}", v.type_name())),
        };
        let key = "adapter.alora.invocation_tokens";
        let alora_invocation_tokens = match file.get(key) {
            None => Vec::new(),
            Some(Value::Array(ValueType::U32, items)) => items
                .iter()
                .map(|v| match v {
                    Value::U32(t) => Ok(*t),
                    _ => err(format!("invalid gguf element type for {key}")),
                })
                .collect::<Result<_, _>>()?,
            Some(Value::Array(..)) => return err(format!("invalid gguf element type for {key}")),
            Some(_) => return err(format!("invalid gguf type for {key}")),
        };
        let pairs = load_pairs(model, &file)?;
        Ok(LoraAdapter {
            path: path.to_string(),
            alpha,
            task_name: string("adapter.lora.task_name")?,
            prompt_prefix: string("adapter.lora.prompt_prefix")?,
            alora_invocation_tokens,
            pairs,
        })
    }

    /// Tensors in the file that rs-llama uses (A and B of each pair).
    pub fn n_tensors(&self) -> usize {
        self.pairs.len() * 2
    }

    fn term(&self, target: LoraTarget, user_scale: f32) -> Option<LoraTerm<'_>> {
        let p = self.pairs.get(&target)?;
        let rank = p.rank();
        // llama.cpp's llama_adapter_lora_weight::get_scale, in f32 as there.
        let scale = if self.alpha != 0.0 { user_scale * self.alpha / rank as f32 } else { user_scale };
        Some(LoraTerm { a: p.a.view(), b: p.b.view(), rank, scale })
    }
}

/// The terms of `active` for one target, in the order given; adapters at scale 0 are left out, as
/// llama.cpp leaves them out of a context's adapters.
pub fn terms(active: &[ActiveLora], target: LoraTarget) -> Vec<LoraTerm<'_>> {
    active.iter().filter(|l| l.scale != 0.0).filter_map(|l| l.adapter.term(target, l.scale)).collect()
}

/// Error text can quote names read from the file: keep it on one line.
fn one_line(s: &str) -> String {
    s.chars().flat_map(|c| if c.is_control() { c.escape_default().collect() } else { vec![c] }).collect()
}

fn load_pairs(model: &Model, file: &Arc<GgufFile>) -> Result<HashMap<LoraTarget, LoraPair>, LoraError> {
    // Base name → (A, B) as found, in file order; llama.cpp refuses any other suffix than the pair's
    // and skips `*_norm.weight` tensors.
    let mut found: Vec<(String, Option<usize>, Option<usize>)> = Vec::new();
    for (i, t) in file.tensors.iter().enumerate() {
        let (base, is_a) = if let Some(b) = t.name.strip_suffix(".lora_a") {
            (b, true)
        } else if let Some(b) = t.name.strip_suffix(".lora_b") {
            (b, false)
        } else if t.name.ends_with("_norm.weight") {
            continue;
        } else {
            return err(format!("LoRA tensor '{}' has unexpected suffix", one_line(&t.name)));
        };
        let pos = match found.iter().position(|(n, ..)| n == base) {
            Some(p) => p,
            None => {
                found.push((base.to_string(), None, None));
                found.len() - 1
            }
        };
        if is_a {
            found[pos].1 = Some(i);
        } else {
            found[pos].2 = Some(i);
        }
    }
    // llama.cpp checks the pairs in name order (a std::map), so the first error named is the same.
    found.sort_by(|x, y| x.0.cmp(&y.0));
    let loader = Loader::new(file.clone(), false);
    let mut pairs = HashMap::new();
    for (name, a, b) in found {
        let shown = one_line(&name);
        let (Some(a), Some(b)) = (a, b) else {
            return err(format!("LoRA tensor pair for '{shown}' is missing one component"));
        };
        let Some(base) = model.file().tensor(&name) else {
            return err(format!(
                "LoRA tensor '{shown}' does not exist in base model (hint: maybe wrong base model?)"
            ));
        };
        let (ta, tb) = (&file.tensors[a], &file.tensors[b]);
        let dim = |d: &[u64], i: usize| d.get(i).copied().unwrap_or(1);
        if dim(&base.dims, 0) != dim(&ta.dims, 0) || dim(&base.dims, 1) != dim(&tb.dims, 1) {
            return err(format!("tensor '{shown}' has incorrect shape (hint: maybe wrong base model?)"));
        }
        if dim(&ta.dims, 1) != dim(&tb.dims, 0) {
            return err(
                "lora_a tensor is not transposed (hint: adapter from \"finetune\" example is no longer supported)",
            );
        }
        // Beyond llama.cpp's checks: the pair must be plain matrices on a matrix rs-llama computes as
        // one linear layer (not an embedding, a fused or split projection, an expert or a router).
        let target = LoraTarget::parse(&name)
            .and_then(|t| t.weight(model).map(|w| (t, w)))
            .filter(|(_, w)| [w.n_in as u64, w.n_out as u64] == base.dims[..]);
        let Some((target, _)) = target else {
            return err(format!(
                "LoRA tensor '{shown}': rs-llama applies adapters to attn_q/k/v/output, ffn_gate/up/down \
                 of dense layers and output.weight only"
            ));
        };
        if ta.dims.len() != 2 || tb.dims.len() != 2 || dim(&ta.dims, 1) == 0 {
            return err(format!("tensor '{shown}' has incorrect shape (hint: maybe wrong base model?)"));
        }
        let (n_in, rank, n_out) =
            (dim(&ta.dims, 0) as usize, dim(&ta.dims, 1) as usize, dim(&tb.dims, 1) as usize);
        let load = |t: &gguf::TensorInfo, n_in: usize, n_out: usize| {
            loader.matrix(&t.name, n_in, n_out).map_err(|e| LoraError(one_line(&e.to_string())))
        };
        pairs.insert(target, LoraPair { a: load(ta, n_in, rank)?, b: load(tb, rank, n_out)? });
    }
    Ok(pairs)
}
