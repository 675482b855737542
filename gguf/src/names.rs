//! The one table of GGUF metadata keys and tensor names (as llama.cpp's llama-arch.cpp spells them).

// ---- keys without an architecture prefix --------------------------------------------------------
pub const KEY_ARCHITECTURE: &str = "general.architecture";
pub const KEY_NAME: &str = "general.name";
pub const KEY_ALIGNMENT: &str = "general.alignment";
pub const KEY_FILE_TYPE: &str = "general.file_type";
pub const KEY_QUANT_VERSION: &str = "general.quantization_version";

// Sampling defaults a model may carry (llama.cpp applies them unless the flag is given).
pub const KEY_SAMPLING_SEQUENCE: &str = "general.sampling.sequence";
pub const KEY_SAMPLING_TOP_K: &str = "general.sampling.top_k";
pub const KEY_SAMPLING_TOP_P: &str = "general.sampling.top_p";
pub const KEY_SAMPLING_MIN_P: &str = "general.sampling.min_p";
pub const KEY_SAMPLING_XTC_PROBABILITY: &str = "general.sampling.xtc_probability";
pub const KEY_SAMPLING_XTC_THRESHOLD: &str = "general.sampling.xtc_threshold";
pub const KEY_SAMPLING_TEMP: &str = "general.sampling.temp";
pub const KEY_SAMPLING_PENALTY_LAST_N: &str = "general.sampling.penalty_last_n";
pub const KEY_SAMPLING_PENALTY_REPEAT: &str = "general.sampling.penalty_repeat";
pub const KEY_SAMPLING_MIROSTAT: &str = "general.sampling.mirostat";
pub const KEY_SAMPLING_MIROSTAT_TAU: &str = "general.sampling.mirostat_tau";
pub const KEY_SAMPLING_MIROSTAT_ETA: &str = "general.sampling.mirostat_eta";

pub const TOK_MODEL: &str = "tokenizer.ggml.model";
pub const TOK_PRE: &str = "tokenizer.ggml.pre";
pub const TOK_TOKENS: &str = "tokenizer.ggml.tokens";
pub const TOK_SCORES: &str = "tokenizer.ggml.scores";
pub const TOK_TOKEN_TYPE: &str = "tokenizer.ggml.token_type";
pub const TOK_MERGES: &str = "tokenizer.ggml.merges";
pub const TOK_BOS_ID: &str = "tokenizer.ggml.bos_token_id";
pub const TOK_EOS_ID: &str = "tokenizer.ggml.eos_token_id";
pub const TOK_EOT_ID: &str = "tokenizer.ggml.eot_token_id";
pub const TOK_EOM_ID: &str = "tokenizer.ggml.eom_token_id";
pub const TOK_UNK_ID: &str = "tokenizer.ggml.unknown_token_id";
pub const TOK_SEP_ID: &str = "tokenizer.ggml.seperator_token_id";
pub const TOK_PAD_ID: &str = "tokenizer.ggml.padding_token_id";
pub const TOK_MASK_ID: &str = "tokenizer.ggml.mask_token_id";
/// Written by converters for BERT-like vocabs; llama.cpp does not read it (CLS is the BOS id).
pub const TOK_CLS_ID: &str = "tokenizer.ggml.cls_token_id";
pub const TOK_FIM_PRE_ID: &str = "tokenizer.ggml.fim_pre_token_id";
pub const TOK_FIM_SUF_ID: &str = "tokenizer.ggml.fim_suf_token_id";
pub const TOK_FIM_MID_ID: &str = "tokenizer.ggml.fim_mid_token_id";
pub const TOK_FIM_PAD_ID: &str = "tokenizer.ggml.fim_pad_token_id";
pub const TOK_FIM_REP_ID: &str = "tokenizer.ggml.fim_rep_token_id";
pub const TOK_FIM_SEP_ID: &str = "tokenizer.ggml.fim_sep_token_id";
/// Older spellings of the FIM prefix/suffix/middle ids.
pub const TOK_PREFIX_ID: &str = "tokenizer.ggml.prefix_token_id";
pub const TOK_SUFFIX_ID: &str = "tokenizer.ggml.suffix_token_id";
pub const TOK_MIDDLE_ID: &str = "tokenizer.ggml.middle_token_id";
pub const TOK_ADD_BOS: &str = "tokenizer.ggml.add_bos_token";
pub const TOK_ADD_EOS: &str = "tokenizer.ggml.add_eos_token";
pub const TOK_ADD_SEP: &str = "tokenizer.ggml.add_sep_token";
pub const TOK_ADD_SPACE_PREFIX: &str = "tokenizer.ggml.add_space_prefix";
pub const TOK_REMOVE_EXTRA_WS: &str = "tokenizer.ggml.remove_extra_whitespaces";
/// UGM (T5): SentencePiece's normalization rules (a double-array trie and replacement strings).
pub const TOK_PRECOMPILED_CHARSMAP: &str = "tokenizer.ggml.precompiled_charsmap";
/// WPM (BERT) normalizer flags; `strip_accents` defaults to `lowercase`, which defaults to true.
pub const TOK_NORMALIZER_LOWERCASE: &str = "tokenizer.ggml.normalizer.lowercase";
pub const TOK_NORMALIZER_STRIP_ACCENTS: &str = "tokenizer.ggml.normalizer.strip_accents";
pub const TOK_CHAT_TEMPLATE: &str = "tokenizer.chat_template";
/// The variant for tool use (`llama_model_chat_template(model, "tool_use")`).
pub const TOK_CHAT_TEMPLATE_TOOL_USE: &str = "tokenizer.chat_template.tool_use";
/// Every tokenizer key starts with this.
pub const TOK_PREFIX: &str = "tokenizer.";

/// Keys whose name starts with the architecture (`llama.block_count`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchKey {
    ContextLength,
    EmbeddingLength,
    BlockCount,
    FeedForwardLength,
    ExpertFeedForwardLength,
    ExpertSharedFeedForwardLength,
    ExpertCount,
    ExpertUsedCount,
    ExpertWeightsNorm,
    /// Routed expert weights are multiplied by this (DeepSeek-V3's and GLM-4.5's
    /// `routed_scaling_factor`); 0 or 1: not scaled.
    ExpertWeightsScale,
    /// How router logits become probabilities: 1 softmax, 2 sigmoid (llama.cpp's enum).
    ExpertGatingFunc,
    /// Shared experts, all run on every token (their width is `n_ff_exp` times this).
    ExpertSharedCount,
    /// The first layers have a dense FFN instead of experts.
    LeadingDenseBlockCount,
    /// Multi-token-prediction blocks after the last layer (GLM-4.5's NextN); not run.
    NextnPredictLayers,
    /// Llama 4: every this-many-th layer (1-based) routes to experts, the others are dense.
    InterleaveMoeLayerStep,
    /// Sliding-window size; Llama 4 writes 0 for a model without chunked attention.
    SlidingWindow,
    /// Which layers use the sliding window: every layer but each n-th (u32), or a bool per layer.
    SlidingWindowPattern,
    VocabSize,
    HeadCount,
    HeadCountKv,
    KeyLength,
    ValueLength,
    RmsEpsilon,
    LayerNormEpsilon,
    RopeFreqBase,
    RopeDimensionCount,
    RopeScalingType,
    RopeScalingFactor,
    RopeScalingOrigCtx,
    /// Multiplies YaRN's attention factor (default 1).
    RopeScalingAttnFactor,
    /// Multimodal rope sections (M-RoPE); absent or all zero for text models.
    RopeDimensionSections,
    /// DeepSeek's YaRN: `0.1 · mscale_all_dim` as the converter writes it.
    RopeScalingYarnLogMul,
    /// Multi-head latent attention (DeepSeek-V2/V3): the rank of Q's low-rank projection (absent:
    /// Q is projected directly, as in V2-Lite), of the compressed KV, and the per-head Q/K and V
    /// sizes once decompressed (`key_length`/`value_length` are then the compressed sizes).
    QLoraRank,
    KvLoraRank,
    KeyLengthMla,
    ValueLengthMla,
    /// Experts in groups: the best `expert_group_used_count` groups (by their two best experts)
    /// are the only ones chosen from (DeepSeek-V3).
    ExpertGroupCount,
    ExpertGroupUsedCount,
    /// Mistral-Large's position-dependent Q scaling of its DeepSeek-style attention.
    AttnTemperatureScale,
}

impl ArchKey {
    /// The suffix after `{arch}.`.
    pub fn suffix(self) -> &'static str {
        use ArchKey::*;
        match self {
            ContextLength => "context_length",
            EmbeddingLength => "embedding_length",
            BlockCount => "block_count",
            FeedForwardLength => "feed_forward_length",
            ExpertFeedForwardLength => "expert_feed_forward_length",
            ExpertSharedFeedForwardLength => "expert_shared_feed_forward_length",
            ExpertCount => "expert_count",
            ExpertUsedCount => "expert_used_count",
            ExpertWeightsNorm => "expert_weights_norm",
            ExpertWeightsScale => "expert_weights_scale",
            ExpertGatingFunc => "expert_gating_func",
            ExpertSharedCount => "expert_shared_count",
            LeadingDenseBlockCount => "leading_dense_block_count",
            NextnPredictLayers => "nextn_predict_layers",
            InterleaveMoeLayerStep => "interleave_moe_layer_step",
            SlidingWindow => "attention.sliding_window",
            SlidingWindowPattern => "attention.sliding_window_pattern",
            VocabSize => "vocab_size",
            HeadCount => "attention.head_count",
            HeadCountKv => "attention.head_count_kv",
            KeyLength => "attention.key_length",
            ValueLength => "attention.value_length",
            RmsEpsilon => "attention.layer_norm_rms_epsilon",
            LayerNormEpsilon => "attention.layer_norm_epsilon",
            RopeFreqBase => "rope.freq_base",
            RopeDimensionCount => "rope.dimension_count",
            RopeScalingType => "rope.scaling.type",
            RopeScalingFactor => "rope.scaling.factor",
            RopeScalingOrigCtx => "rope.scaling.original_context_length",
            RopeScalingAttnFactor => "rope.scaling.attn_factor",
            RopeDimensionSections => "rope.dimension_sections",
            RopeScalingYarnLogMul => "rope.scaling.yarn_log_multiplier",
            QLoraRank => "attention.q_lora_rank",
            KvLoraRank => "attention.kv_lora_rank",
            KeyLengthMla => "attention.key_length_mla",
            ValueLengthMla => "attention.value_length_mla",
            ExpertGroupCount => "expert_group_count",
            ExpertGroupUsedCount => "expert_group_used_count",
            AttnTemperatureScale => "attention.temperature_scale",
        }
    }

    pub fn name(self, arch: &str) -> String {
        format!("{arch}.{}", self.suffix())
    }
}

/// Kinds of tensors. Per-layer kinds live under `blk.{il}.`; per-expert (legacy Mixtral layout) kinds
/// end in `.{e}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TensorKind {
    TokenEmbd,
    OutputNorm,
    Output,
    RopeFreqs,
    /// Phi-3's per-pair frequency divisors beyond / within the original context.
    RopeFactorsLong,
    RopeFactorsShort,
    AttnNorm,
    AttnQ,
    AttnK,
    AttnV,
    AttnQkv,
    AttnOutput,
    AttnQNorm,
    AttnKNorm,
    FfnNorm,
    /// GLM-4.5's FFN input norm, named after the attention it follows.
    AttnPostNorm,
    FfnGate,
    FfnUp,
    FfnDown,
    FfnGateUp,
    FfnGateInp,
    FfnGateExps,
    FfnUpExps,
    FfnDownExps,
    /// Legacy per-expert layout: `blk.{il}.ffn_gate.{e}`.
    FfnGateExpert,
    FfnUpExpert,
    FfnDownExpert,
    FfnGateInpShexp,
    FfnGateShexp,
    FfnUpShexp,
    FfnDownShexp,
    /// gpt-oss's per-head attention sink logits `[n_head]`.
    AttnSinks,
    /// `[n_expert]` added to the router's probabilities to choose experts, not to weight them
    /// (DeepSeek-V3's and GLM-4.5's `e_score_correction_bias`); stored as `.bias`.
    FfnExpProbsB,
    /// GLM-4.5's multi-token-prediction block (after the trunk): projection of
    /// [enorm(embedding); hnorm(hidden)], its two norms and its head norm.
    NextnEhProj,
    NextnEnorm,
    NextnHnorm,
    NextnSharedHeadNorm,
    /// Multi-head latent attention: Q's low-rank pair and the norm between them, the compressed
    /// KV projection (with the shared rope key appended) and its norm, and the per-head
    /// decompressions of K (stored transposed, `[nope, kv_lora, n_head]`) and V.
    AttnQA,
    AttnQB,
    AttnQANorm,
    AttnKvAMqa,
    AttnKvANorm,
    AttnKB,
    AttnVB,
    /// Older conversions' unsplit K/V decompression (`attn_k_b` and `attn_v_b` in one).
    AttnKvB,
}

/// How the scheduler treats a tensor kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpClass {
    Matmul,
    ExpertMatmul,
    Elementwise,
    Lookup,
}

impl TensorKind {
    /// The base name: `attn_q` for `blk.{il}.attn_q.weight`.
    pub fn base(self) -> &'static str {
        use TensorKind::*;
        match self {
            TokenEmbd => "token_embd",
            OutputNorm => "output_norm",
            Output => "output",
            RopeFreqs => "rope_freqs",
            RopeFactorsLong => "rope_factors_long",
            RopeFactorsShort => "rope_factors_short",
            AttnNorm => "attn_norm",
            AttnQ => "attn_q",
            AttnK => "attn_k",
            AttnV => "attn_v",
            AttnQkv => "attn_qkv",
            AttnOutput => "attn_output",
            AttnQNorm => "attn_q_norm",
            AttnKNorm => "attn_k_norm",
            FfnNorm => "ffn_norm",
            FfnGate => "ffn_gate",
            FfnUp => "ffn_up",
            FfnDown => "ffn_down",
            FfnGateUp => "ffn_gate_up",
            FfnGateInp => "ffn_gate_inp",
            FfnGateExps => "ffn_gate_exps",
            FfnUpExps => "ffn_up_exps",
            FfnDownExps => "ffn_down_exps",
            FfnGateExpert => "ffn_gate",
            FfnUpExpert => "ffn_up",
            FfnDownExpert => "ffn_down",
            FfnGateInpShexp => "ffn_gate_inp_shexp",
            FfnGateShexp => "ffn_gate_shexp",
            FfnUpShexp => "ffn_up_shexp",
            FfnDownShexp => "ffn_down_shexp",
            AttnPostNorm => "post_attention_norm",
            AttnSinks => "attn_sinks",
            FfnExpProbsB => "exp_probs_b",
            NextnEhProj => "nextn.eh_proj",
            NextnEnorm => "nextn.enorm",
            NextnHnorm => "nextn.hnorm",
            NextnSharedHeadNorm => "nextn.shared_head_norm",
            AttnQA => "attn_q_a",
            AttnQB => "attn_q_b",
            AttnQANorm => "attn_q_a_norm",
            AttnKvAMqa => "attn_kv_a_mqa",
            AttnKvANorm => "attn_kv_a_norm",
            AttnKB => "attn_k_b",
            AttnVB => "attn_v_b",
            AttnKvB => "attn_kv_b",
        }
    }

    pub fn is_global(self) -> bool {
        matches!(
            self,
            TensorKind::TokenEmbd
                | TensorKind::OutputNorm
                | TensorKind::Output
                | TensorKind::RopeFreqs
                | TensorKind::RopeFactorsLong
                | TensorKind::RopeFactorsShort
        )
    }

    pub fn op_class(self) -> OpClass {
        use TensorKind::*;
        match self {
            TokenEmbd => OpClass::Lookup,
            OutputNorm | AttnNorm | FfnNorm | AttnPostNorm | AttnSinks | FfnExpProbsB | NextnEnorm
            | NextnHnorm | NextnSharedHeadNorm | AttnQNorm | AttnKNorm | RopeFreqs | RopeFactorsLong
            | RopeFactorsShort | FfnGateInpShexp | AttnQANorm | AttnKvANorm => OpClass::Elementwise,
            FfnGateExps | FfnUpExps | FfnDownExps | FfnGateExpert | FfnUpExpert | FfnDownExpert => {
                OpClass::ExpertMatmul
            }
            _ => OpClass::Matmul,
        }
    }

    /// `blk.{il}.{base}.{suffix}` (or `{base}.{suffix}` for global tensors); `suffix` is `weight` or
    /// `bias`.
    pub fn name(self, layer: usize, suffix: &str) -> String {
        if self.is_global() {
            format!("{}.{suffix}", self.base())
        } else {
            format!("blk.{layer}.{}.{suffix}", self.base())
        }
    }

    pub fn weight(self, layer: usize) -> String {
        self.name(layer, "weight")
    }

    pub fn bias(self, layer: usize) -> String {
        self.name(layer, "bias")
    }

    /// Legacy per-expert name: `blk.{il}.ffn_gate.{e}.weight`.
    pub fn expert_weight(self, layer: usize, expert: usize) -> String {
        format!("blk.{layer}.{}.{expert}.weight", self.base())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_llama_cpp() {
        assert_eq!(TensorKind::AttnQ.weight(3), "blk.3.attn_q.weight");
        assert_eq!(TensorKind::Output.weight(9), "output.weight");
        assert_eq!(TensorKind::FfnGateExpert.expert_weight(1, 7), "blk.1.ffn_gate.7.weight");
        assert_eq!(ArchKey::HeadCountKv.name("llama"), "llama.attention.head_count_kv");
        assert_eq!(TensorKind::FfnExpProbsB.bias(2), "blk.2.exp_probs_b.bias");
        assert_eq!(TensorKind::AttnPostNorm.weight(0), "blk.0.post_attention_norm.weight");
        assert_eq!(TensorKind::NextnEhProj.weight(46), "blk.46.nextn.eh_proj.weight");
        assert_eq!(ArchKey::LeadingDenseBlockCount.name("glm4moe"), "glm4moe.leading_dense_block_count");
        assert_eq!(TensorKind::AttnKvAMqa.weight(1), "blk.1.attn_kv_a_mqa.weight");
        assert_eq!(ArchKey::KeyLengthMla.name("deepseek2"), "deepseek2.attention.key_length_mla");
        assert_eq!(
            ArchKey::RopeScalingYarnLogMul.name("deepseek2"),
            "deepseek2.rope.scaling.yarn_log_multiplier"
        );
    }
}
