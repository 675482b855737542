//! Hyperparameters, parsed once from the `{arch}.*` keys and validated.

use gguf::names::{ArchKey, TOK_TOKENS};
use gguf::value::Metadata;
use gguf::GgufFile;

use super::arch::{Arch, FfnShape, SharedExpertKind};
use super::deepseek2::{latent_attention, yarn_log_mul, LatentAttention};
use super::ModelError;
use crate::ops::moe::{ExpertGating, ExpertGroups, ExpertRouting};
use crate::ops::rope::{RopeStyle, Yarn};

/// Limits that keep a corrupt file from asking for absurd allocations.
const MAX_DIM: usize = 1 << 20;
const MAX_LAYERS: usize = 4096;
const MAX_EXPERTS: usize = 512;

#[derive(Debug, Clone, PartialEq)]
pub struct HParams {
    pub n_vocab: usize,
    pub n_ctx_train: usize,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    /// Dims per Q/K head (`attention.key_length`, else n_embd / n_head).
    pub head_dim_k: usize,
    /// Dims per V head (`attention.value_length`, else n_embd / n_head).
    pub head_dim_v: usize,
    /// Dense FFN width, or each expert's width for MoE.
    pub n_ff: usize,
    /// Width of each routed expert (`expert_feed_forward_length` where the arch has it).
    pub n_ff_exp: usize,
    /// Width of the shared expert (Qwen2-MoE: `expert_shared_feed_forward_length`, else n_ff).
    pub n_ff_shexp: usize,
    /// 0 for a dense model.
    pub n_expert: usize,
    pub n_expert_used: usize,
    /// How routers pick and weight experts.
    pub routing: ExpertRouting,
    /// Layers `0..n_layer_dense_lead` of an MoE model have a dense FFN of `n_ff` (GLM-4.5).
    pub n_layer_dense_lead: usize,
    /// Past those, only every this-many-th layer (1-based) routes to experts (Llama 4; else 1).
    pub n_moe_layer_step: usize,
    /// What some layers' attention does differently (Llama 4).
    pub layer_attn: LayerAttention,
    /// The window of the layers with sliding-window attention (gpt-oss), and which those are.
    pub sliding_window: Option<(usize, Vec<bool>)>,
    /// Multi-token-prediction blocks in the file after the `n_layer` trunk layers; not run.
    pub n_layer_nextn: usize,
    pub rms_eps: f32,
    pub rope_style: RopeStyle,
    pub n_rot: usize,
    pub rope_freq_base: f32,
    /// 1 / linear rope scaling factor (1 when unscaled).
    pub rope_freq_scale: f32,
    /// Context the rope was trained for (`rope.scaling.original_context_length`, else n_ctx_train);
    /// Phi-3 uses its long rope factors beyond it.
    pub n_ctx_orig: usize,
    /// YaRN's parameters when the rope is scaled that way (`rope.scaling.type = yarn`).
    pub yarn: Option<Yarn>,
    /// Multi-head latent attention's sizes (DeepSeek); then `head_dim_k`/`head_dim_v` and
    /// `n_head_kv` (1) describe the compressed cache.
    pub mla: Option<LatentAttention>,
}

impl HParams {
    pub fn n_embd_k_gqa(&self) -> usize {
        self.head_dim_k * self.n_head_kv
    }
    pub fn n_embd_v_gqa(&self) -> usize {
        self.head_dim_v * self.n_head_kv
    }
    pub fn n_embd_q(&self) -> usize {
        self.head_dim_k * self.n_head
    }
    pub fn n_embd_attn_out(&self) -> usize {
        self.head_dim_v * self.n_head
    }
    /// The values the KV cache keeps per position and layer, (K, V): latent attention keeps its
    /// compressed row as K alone, whose first `head_dim_v` values are V (as llama.cpp does).
    pub fn kv_cache_rows(&self) -> (usize, usize) {
        if self.mla.is_some() {
            (self.n_embd_k_gqa(), 0)
        } else {
            (self.n_embd_k_gqa(), self.n_embd_v_gqa())
        }
    }
    pub fn is_moe(&self) -> bool {
        self.n_expert > 0
    }

    /// Layer `il` routes to experts (an MoE model past its leading dense layers, on its step).
    pub fn layer_is_moe(&self, il: usize) -> bool {
        self.is_moe() && il >= self.n_layer_dense_lead && (il + 1).is_multiple_of(self.n_moe_layer_step)
    }

    /// Layer `il` rotates Q and K (all but Llama 4's NoPE layers).
    pub fn layer_uses_rope(&self, il: usize) -> bool {
        let step = self.layer_attn.nope_step;
        step == 0 || !(il + 1).is_multiple_of(step)
    }

    /// Layer `il`'s sliding window, if it has one.
    pub fn window(&self, il: usize) -> Option<usize> {
        let (size, layers) = self.sliding_window.as_ref()?;
        layers.get(il).copied().unwrap_or(false).then_some(*size)
    }

    /// The longest context the model runs exactly; `None`: any.
    pub fn max_context(&self) -> Option<usize> {
        self.layer_attn.chunk
    }

    pub fn parse(file: &GgufFile, arch: Arch) -> Result<HParams, ModelError> {
        let key = |k: ArchKey| k.name(arch.name());
        let req = |k: ArchKey| -> Result<usize, ModelError> { Ok(file.require_u32(&key(k))? as usize) };
        let opt = |k: ArchKey| -> Result<Option<usize>, ModelError> {
            Ok(file.get_u32(&key(k))?.map(|v| v as usize))
        };

        let n_embd = req(ArchKey::EmbeddingLength)?;
        let n_layer_all = req(ArchKey::BlockCount)?;
        let n_layer_nextn = opt(ArchKey::NextnPredictLayers)?.unwrap_or(0);
        if n_layer_nextn >= n_layer_all {
            return Err(invalid(format!(
                "{n_layer_nextn} NextN blocks leave no trunk layer of the {n_layer_all} blocks"
            )));
        }
        let n_layer = n_layer_all - n_layer_nextn;
        let n_head = req(ArchKey::HeadCount)?;
        let n_head_kv = opt(ArchKey::HeadCountKv)?.unwrap_or(n_head);
        let n_vocab = match opt(ArchKey::VocabSize)? {
            Some(v) => v,
            None => match file.get_array(TOK_TOKENS)? {
                Some((_, items)) => items.len(),
                None => {
                    return Err(invalid(format!(
                        "vocabulary size unknown: neither '{}' nor '{TOK_TOKENS}' is present",
                        key(ArchKey::VocabSize)
                    )))
                }
            },
        };
        check_range("n_embd", n_embd, 1, MAX_DIM)?;
        check_range("n_layer", n_layer, 1, MAX_LAYERS)?;
        check_range("n_head", n_head, 1, n_embd.max(1))?;
        check_range("n_head_kv", n_head_kv, 1, n_head)?;
        check_range("n_vocab", n_vocab, 1, 1 << 24)?;
        if !n_head.is_multiple_of(n_head_kv) {
            return Err(invalid(format!("n_head {n_head} is not a multiple of n_head_kv {n_head_kv}")));
        }
        let default_head_dim = if n_embd.is_multiple_of(n_head) { Some(n_embd / n_head) } else { None };
        let head_dim = |k: ArchKey| -> Result<usize, ModelError> {
            let d = opt(k)?.or(default_head_dim).ok_or_else(|| {
                invalid(format!(
                    "n_embd {n_embd} is not a multiple of n_head {n_head} and '{}' is absent",
                    key(k)
                ))
            })?;
            check_range(k.suffix(), d, 1, MAX_DIM)?;
            Ok(d)
        };
        let head_dim_k = head_dim(ArchKey::KeyLength)?;
        let head_dim_v = head_dim(ArchKey::ValueLength)?;

        let n_ff = req(ArchKey::FeedForwardLength)?;
        check_range("n_ff", n_ff, 1, MAX_DIM)?;
        let n_expert = opt(ArchKey::ExpertCount)?.unwrap_or(0);
        let n_expert_used = opt(ArchKey::ExpertUsedCount)?.unwrap_or(0);
        if n_expert > 0 {
            check_range("n_expert", n_expert, 1, MAX_EXPERTS)?;
            check_range("n_expert_used", n_expert_used, 1, n_expert)?;
        } else if n_expert_used != 0 {
            return Err(invalid(format!("n_expert_used is {n_expert_used} but the model has no experts")));
        }
        match (arch.ffn_shape(), n_expert > 0) {
            (FfnShape::Moe, false) => {
                return Err(invalid(format!("{arch} needs '{}' > 0", key(ArchKey::ExpertCount))))
            }
            (FfnShape::Dense, true) => {
                return Err(invalid(format!(
                    "{arch} has no experts but '{}' is set",
                    key(ArchKey::ExpertCount)
                )))
            }
            _ => {}
        }
        let n_ff_exp = match opt(ArchKey::ExpertFeedForwardLength)? {
            Some(n) if arch.has_expert_ff_length() => n,
            _ if arch.has_expert_ff_length() => n_ff / n_expert_used.max(1),
            _ => n_ff,
        };
        check_range("n_ff_exp", n_ff_exp, 1, MAX_DIM)?;
        let n_ff_shexp = match opt(ArchKey::ExpertSharedCount)? {
            // GLM-4.5 / DeepSeek: `expert_shared_count` experts of the routed width, fused.
            Some(n_shared) => n_shared.saturating_mul(n_ff_exp),
            // Llama 4: one shared expert of the routed width.
            None if arch.shared_expert() == SharedExpertKind::Plain => n_ff_exp,
            None => opt(ArchKey::ExpertSharedFeedForwardLength)?.unwrap_or(n_ff),
        };
        check_range("n_ff_shexp", n_ff_shexp, 1, MAX_DIM)?;
        let n_layer_dense_lead = if arch.has_leading_dense_layers() {
            opt(ArchKey::LeadingDenseBlockCount)?.unwrap_or(0)
        } else {
            0
        };
        check_range("leading_dense_block_count", n_layer_dense_lead, 0, n_layer)?;
        let n_moe_layer_step = if arch.has_interleaved_moe_layers() {
            let step = req(ArchKey::InterleaveMoeLayerStep)?;
            check_range("interleave_moe_layer_step", step, 1, n_layer)?;
            step
        } else {
            1
        };
        let routing = routing(file, arch, (n_layer, n_vocab, n_expert), &key)?;
        let layer_attn = layer_attention(file, arch, n_expert, &key)?;
        let sliding_window = sliding_window(file, arch, n_layer, &key)?;
        if let Some((_, sections)) = file.get_array(&key(ArchKey::RopeDimensionSections))? {
            if sections.iter().any(|v| v.as_i128() != Some(0)) {
                return Err(invalid(
                    "multimodal rope sections (M-RoPE, vision models) are not supported".into(),
                ));
            }
        }

        let n_ctx_train = req(ArchKey::ContextLength)?;
        check_range("n_ctx_train", n_ctx_train, 1, 1 << 31)?;
        let rms_eps = file.require_f32(&key(ArchKey::RmsEpsilon))?;
        if !(rms_eps.is_finite() && rms_eps > 0.0) {
            return Err(invalid(format!("rms epsilon {rms_eps} must be a positive number")));
        }
        let rope_freq_base = file.get_f32(&key(ArchKey::RopeFreqBase))?.unwrap_or(10000.0);
        if !(rope_freq_base.is_finite() && rope_freq_base > 0.0) {
            return Err(invalid(format!("rope freq_base {rope_freq_base} must be a positive number")));
        }
        let n_rot = opt(ArchKey::RopeDimensionCount)?.unwrap_or(head_dim_k);
        if n_rot == 0 || n_rot > head_dim_k || !n_rot.is_multiple_of(2) {
            return Err(invalid(format!(
                "rope dimension count {n_rot} must be even and in 2..={head_dim_k}"
            )));
        }
        let (rope_freq_scale, is_yarn) = rope_freq_scale(file, &key)?;
        let n_ctx_orig = opt(ArchKey::RopeScalingOrigCtx)?.unwrap_or(n_ctx_train);
        let rope_attn_factor = file.get_f32(&key(ArchKey::RopeScalingAttnFactor))?.unwrap_or(1.0);
        let log_mul = if arch.has_latent_attention() { yarn_log_mul(file, &key)? } else { 0.0 };
        let yarn = is_yarn.then(|| {
            // llama.cpp: DeepSeek-V2's YaRN mscale is its `mscale_all_dim`, whose ratio to itself
            // leaves 1 (so does any file with a log multiplier, where mscale is 1 as well).
            let mscale = if log_mul != 0.0 { Some(1.0) } else { None };
            yarn(rope_freq_scale, rope_attn_factor, mscale, n_rot, n_ctx_orig, rope_freq_base)
        });
        let mla = if arch.has_latent_attention() {
            let attn_factor = yarn.map_or(rope_attn_factor, |y| y.attn_factor);
            let dims = (head_dim_k, head_dim_v, n_head_kv, n_rot);
            Some(latent_attention(file, &key, dims, attn_factor, rope_freq_scale, log_mul)?)
        } else {
            None
        };

        let hp = HParams {
            n_vocab,
            n_ctx_train,
            n_embd,
            n_layer,
            n_head,
            n_head_kv,
            head_dim_k,
            head_dim_v,
            n_ff,
            n_ff_exp,
            n_ff_shexp,
            n_expert,
            n_expert_used,
            routing,
            n_layer_dense_lead,
            n_moe_layer_step,
            layer_attn,
            sliding_window,
            n_layer_nextn,
            rms_eps,
            rope_style: arch.rope_style(),
            n_rot,
            rope_freq_base,
            rope_freq_scale,
            n_ctx_orig,
            yarn,
            mla,
        };
        match arch {
            // llama.cpp's llama graph needs equal K/V head sizes and full-head rotation.
            Arch::Llama => {
                if head_dim_k != head_dim_v || n_rot != head_dim_k {
                    return Err(invalid(format!(
                        "llama needs key_length = value_length = rope dimension count (got {head_dim_k}, \
                         {head_dim_v}, {n_rot})"
                    )));
                }
            }
            // Latent attention's compressed K and V differ by the rope key (checked above).
            Arch::Deepseek2 => {}
            // The other graphs share one head size between K and V.
            _ => {
                if head_dim_k != head_dim_v {
                    return Err(invalid(format!(
                        "{arch} needs key_length = value_length (got {head_dim_k}, {head_dim_v})"
                    )));
                }
            }
        }
        Ok(hp)
    }
}

/// The sliding window of `arch`'s windowed layers: `attention.sliding_window` positions, on the
/// layers the pattern key says (a bool per layer, or every layer but each n-th), else on the
/// architecture's default pattern.
fn sliding_window(
    file: &GgufFile,
    arch: Arch,
    n_layer: usize,
    key: &dyn Fn(ArchKey) -> String,
) -> Result<Option<(usize, Vec<bool>)>, ModelError> {
    let Some(default_pattern) = arch.sliding_window_pattern() else { return Ok(None) };
    let size = file.require_u32(&key(ArchKey::SlidingWindow))? as usize;
    check_range("attention.sliding_window", size, 1, 1 << 31)?;
    let pattern_key = key(ArchKey::SlidingWindowPattern);
    let layers = match file.get_array(&pattern_key)? {
        Some((_, values)) => {
            let flags: Option<Vec<bool>> = values.iter().map(|v| v.as_bool()).collect();
            let flags = flags.ok_or_else(|| invalid(format!("'{pattern_key}' must be bools or a number")))?;
            if flags.len() != n_layer {
                return Err(invalid(format!(
                    "'{pattern_key}' has {} entries for {n_layer} layers",
                    flags.len()
                )));
            }
            flags
        }
        None => {
            let n = file.get_u32(&pattern_key)?.map_or(default_pattern, |n| n as usize);
            (0..n_layer).map(|il| n == 0 || il % n < n - 1).collect()
        }
    };
    Ok(Some((size, layers)))
}

/// Per-layer attention differences (Llama 4), all off by default.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LayerAttention {
    /// Every this-many-th layer (1-based) has no rope (0: every layer has rope).
    pub nope_step: usize,
    /// Rope layers RMS-normalise each Q and K head (without a weight) after rope.
    pub qk_norm_after_rope: bool,
    /// NoPE layers scale Q by this position-dependent temperature.
    pub temperature: Option<AttnTemperature>,
    /// Rope layers attend only within chunks of this many positions; rs-llama runs contexts up
    /// to one chunk (where that is all attention).
    pub chunk: Option<usize>,
}

/// Llama 4's attention temperature: Q times `ln(floor((pos + offset) / floor_scale) + 1) · scale
/// + 1` (1 for the first `floor_scale` positions).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttnTemperature {
    pub floor_scale: f32,
    pub scale: f32,
    pub offset: f32,
}

impl AttnTemperature {
    /// As llama.cpp computes it: the floor in f32, the log and the rest in f64, rounded once.
    pub fn at(&self, pos: usize) -> f32 {
        let bucket = ((pos as f32 + self.offset) / self.floor_scale).floor() as f64;
        ((bucket + 1.0).ln() * self.scale as f64 + 1.0) as f32
    }
}

/// Llama 4 as llama.cpp 11434 runs it: chunks of 8192 on three layers of four, the fourth
/// without rope and with temperature tuning; Q/K norm unless it has 128 experts (Maverick).
fn layer_attention(
    file: &GgufFile,
    arch: Arch,
    n_expert: usize,
    key: &dyn Fn(ArchKey) -> String,
) -> Result<LayerAttention, ModelError> {
    if arch != Arch::Llama4 {
        return Ok(LayerAttention::default());
    }
    if file.get_u32(&key(ArchKey::SlidingWindow))? == Some(0) {
        // llama.cpp then builds the temperature input with a zero scale and aborts on it.
        return Err(invalid(
            "llama4 without chunked attention (attention.sliding_window = 0) is not supported".into(),
        ));
    }
    const CHUNK: usize = 8192;
    Ok(LayerAttention {
        nope_step: 4,
        qk_norm_after_rope: n_expert != 128,
        temperature: Some(AttnTemperature { floor_scale: CHUNK as f32, scale: 0.1, offset: 1.0 }),
        chunk: Some(CHUNK),
    })
}

/// The routing of `arch`, with the `expert_*` keys where the architecture reads them (as llama.cpp:
/// gating 1 softmax, 2 sigmoid, 0 or absent the architecture's default).
fn routing(
    file: &GgufFile,
    arch: Arch,
    (n_layer, n_vocab, n_expert): (usize, usize, usize),
    key: &dyn Fn(ArchKey) -> String,
) -> Result<ExpertRouting, ModelError> {
    let mut r = arch.default_routing();
    // Any architecture's experts may be grouped (llama.cpp reads the keys for all).
    let n_group = file.get_u32(&key(ArchKey::ExpertGroupCount))?.unwrap_or(0) as usize;
    if n_group > 1 && n_expert > 0 {
        let n_used = file.get_u32(&key(ArchKey::ExpertGroupUsedCount))?.unwrap_or(0) as usize;
        if !n_expert.is_multiple_of(n_group) || n_expert / n_group < 2 || n_used == 0 || n_used > n_group {
            return Err(invalid(format!(
                "expert groups ({n_group} groups, {n_used} used) do not fit {n_expert} experts"
            )));
        }
        r.groups = Some(ExpertGroups { n_group, n_used });
    }
    if !arch.reads_routing_keys() {
        return Ok(r);
    }
    match file.get_u32(&key(ArchKey::ExpertGatingFunc))? {
        // llama.cpp: GLM-4.7-Flash files (deepseek2, 47 or 48 layers, 154880 tokens) without the
        // key are sigmoid-routed.
        None | Some(0) if arch == Arch::Deepseek2 && matches!(n_layer, 47 | 48) && n_vocab == 154880 => {
            r.gating = ExpertGating::Sigmoid
        }
        None | Some(0) => {}
        Some(1) => r.gating = ExpertGating::Softmax,
        Some(2) => r.gating = ExpertGating::Sigmoid,
        Some(g) => {
            return Err(invalid(format!(
                "expert gating function {g} is not supported (1 softmax, 2 sigmoid)"
            )))
        }
    }
    if let Some(norm) = file.get_bool(&key(ArchKey::ExpertWeightsNorm))? {
        r.normalize = norm;
    }
    match file.get_f32(&key(ArchKey::ExpertWeightsScale))? {
        None | Some(0.0) => {}
        Some(s) if s.is_finite() && s > 0.0 => r.scale = s,
        Some(s) => return Err(invalid(format!("expert weights scale {s} must be a positive number"))),
    }
    Ok(r)
}

/// YaRN with llama.cpp's defaults (ext factor 1, beta fast 32, slow 1) and its attention factor:
/// `0.1·ln(factor) + 1`, divided by what ggml multiplies in again (`1 + 0.1·ln(factor)`), times
/// `rope.scaling.attn_factor`; in f32 without fused multiply-adds, as libllama is built (Rust never
/// contracts them).
fn yarn(
    freq_scale: f32,
    rope_attn_factor: f32,
    mscale: Option<f32>,
    n_rot: usize,
    n_ctx_orig: usize,
    freq_base: f32,
) -> Yarn {
    let factor = 1.0 / freq_scale;
    let mscale = mscale.unwrap_or(if factor <= 1.0 { 1.0 } else { 0.1f32 * factor.ln() + 1.0 });
    let attn_factor = mscale * (1.0 / (1.0 + 0.1f32 * factor.ln())) * rope_attn_factor;
    Yarn { ext_factor: 1.0, attn_factor, corr_dims: Yarn::corr_dims(n_rot, n_ctx_orig, freq_base, 32.0, 1.0) }
}

/// Rope scaling: none, linear or YaRN (`freq_scale = 1/factor`, and whether it is YaRN); the
/// others are refused by name.
fn rope_freq_scale(file: &GgufFile, key: &dyn Fn(ArchKey) -> String) -> Result<(f32, bool), ModelError> {
    let factor = file.get_f32(&key(ArchKey::RopeScalingFactor))?;
    let kind = file.get_str(&key(ArchKey::RopeScalingType))?;
    let scale = match factor {
        None => 1.0,
        Some(f) if f == 0.0 || f == 1.0 => 1.0,
        Some(f) if f.is_finite() && f > 0.0 => 1.0 / f,
        Some(f) => return Err(invalid(format!("rope scaling factor {f} must be a positive number"))),
    };
    match kind.unwrap_or("linear") {
        "none" => Ok((1.0, false)),
        "linear" => Ok((scale, false)),
        "yarn" => Ok((scale, true)),
        other => Err(invalid(format!(
            "rope scaling type '{other}' is not supported yet (supported: none, linear, yarn)"
        ))),
    }
}

fn check_range(what: &str, v: usize, lo: usize, hi: usize) -> Result<(), ModelError> {
    if v < lo || v > hi {
        return Err(invalid(format!("{what} = {v} is out of range {lo}..={hi}")));
    }
    Ok(())
}

fn invalid(msg: String) -> ModelError {
    ModelError::Invalid(msg)
}
