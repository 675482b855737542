//! llama.cpp's sampler chain (common/sampling.cpp + src/llama-sampler.cpp semantics): logit bias →
//! the `--samplers` sequence (default penalties → dry → top-n-sigma → top-k → typical → top-p →
//! min-p → xtc → temperature) → dist, with a bit-exact `std::mt19937` so that a seed reproduces
//! llama.cpp's tokens; and, beside the chain, an optional GBNF grammar (see [`grammar`]).

pub mod grammar;
pub mod json_schema;
pub mod rng;
pub mod sort;
pub mod stages;

use crate::TokenId;
use gguf::value::Metadata;
use grammar::{AcceptError, GrammarError, GrammarSampler};
use rng::Mt19937;
use stages::{Candidates, Penalties};
use std::time::{Duration, Instant};

/// llama.cpp's `LLAMA_DEFAULT_SEED`: "pick a random seed".
pub const RANDOM_SEED: u32 = u32::MAX;

#[derive(Debug, thiserror::Error)]
pub enum SampleError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0} is not supported yet by rs-llama")]
    Unsupported(String),
    #[error("failed to parse grammar: {0}")]
    Grammar(#[from] GrammarError),
    #[error(transparent)]
    GrammarAccept(#[from] AcceptError),
    /// The grammar left no token to sample (e.g. it is complete and `--ignore-eos` bans the end).
    #[error("no token satisfies the grammar here")]
    GrammarExhausted,
    #[error(transparent)]
    Gguf(#[from] gguf::GgufError),
}

/// One configurable stage of the chain (llama.cpp's `common_sampler_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SamplerKind {
    Penalties,
    Dry,
    TopNSigma,
    TopK,
    TypicalP,
    TopP,
    MinP,
    Xtc,
    Temperature,
    Infill,
    AdaptiveP,
}

impl SamplerKind {
    /// The order used when `--samplers` is not given.
    pub const DEFAULT_SEQUENCE: [SamplerKind; 9] = [
        SamplerKind::Penalties,
        SamplerKind::Dry,
        SamplerKind::TopNSigma,
        SamplerKind::TopK,
        SamplerKind::TypicalP,
        SamplerKind::TopP,
        SamplerKind::MinP,
        SamplerKind::Xtc,
        SamplerKind::Temperature,
    ];

    const CANONICAL: [(&'static str, SamplerKind); 11] = [
        ("penalties", SamplerKind::Penalties),
        ("dry", SamplerKind::Dry),
        ("top_n_sigma", SamplerKind::TopNSigma),
        ("top_k", SamplerKind::TopK),
        ("typ_p", SamplerKind::TypicalP),
        ("top_p", SamplerKind::TopP),
        ("min_p", SamplerKind::MinP),
        ("xtc", SamplerKind::Xtc),
        ("temperature", SamplerKind::Temperature),
        ("infill", SamplerKind::Infill),
        ("adaptive_p", SamplerKind::AdaptiveP),
    ];

    /// A name as `--samplers` and `general.sampling.sequence` accept it: canonical (`top_k`), kebab
    /// (`top-k`), without separator (`topk`), or `nucleus`, `temp`, `typ`; case-insensitive.
    pub fn from_name(name: &str) -> Option<SamplerKind> {
        let lower = name.to_ascii_lowercase();
        match lower.as_str() {
            "nucleus" => return Some(SamplerKind::TopP),
            "temp" => return Some(SamplerKind::Temperature),
            "typ" => return Some(SamplerKind::TypicalP),
            _ => {}
        }
        Self::CANONICAL.iter().find_map(|(canon, kind)| {
            let kebab = canon.replace('_', "-");
            let joined = canon.replace('_', "");
            (lower == *canon || lower == kebab || lower == joined).then_some(*kind)
        })
    }

    /// The letter of `--sampling-seq`.
    pub fn from_char(c: char) -> Option<SamplerKind> {
        Some(match c {
            'e' => SamplerKind::Penalties,
            'd' => SamplerKind::Dry,
            's' => SamplerKind::TopNSigma,
            'k' => SamplerKind::TopK,
            'y' => SamplerKind::TypicalP,
            'p' => SamplerKind::TopP,
            'm' => SamplerKind::MinP,
            'x' => SamplerKind::Xtc,
            't' => SamplerKind::Temperature,
            'i' => SamplerKind::Infill,
            'a' => SamplerKind::AdaptiveP,
            _ => return None,
        })
    }

    /// The name llama.cpp logs in `sampler chain:`.
    pub fn chain_name(self) -> &'static str {
        match self {
            SamplerKind::Penalties => "penalties",
            SamplerKind::Dry => "dry",
            SamplerKind::TopNSigma => "top-n-sigma",
            SamplerKind::TopK => "top-k",
            SamplerKind::TypicalP => "typical",
            SamplerKind::TopP => "top-p",
            SamplerKind::MinP => "min-p",
            SamplerKind::Xtc => "xtc",
            SamplerKind::Temperature => "temp-ext",
            SamplerKind::Infill => "infill",
            SamplerKind::AdaptiveP => "adaptive-p",
        }
    }
}

/// Sampling settings with llama.cpp's defaults (`common_params_sampling`).
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    pub seed: u32,
    pub min_keep: usize,
    pub top_k: i32,
    pub top_p: f32,
    pub min_p: f32,
    pub xtc_probability: f32,
    pub xtc_threshold: f32,
    pub typ_p: f32,
    pub temp: f32,
    pub dynatemp_range: f32,
    pub dynatemp_exponent: f32,
    pub penalty_last_n: i32,
    pub penalty_repeat: f32,
    pub penalty_freq: f32,
    pub penalty_present: f32,
    pub dry_multiplier: f32,
    pub dry_base: f32,
    pub dry_allowed_length: i32,
    pub dry_penalty_last_n: i32,
    pub adaptive_target: f32,
    pub adaptive_decay: f32,
    pub mirostat: i32,
    pub top_n_sigma: f32,
    pub mirostat_tau: f32,
    pub mirostat_eta: f32,
    pub samplers: Vec<SamplerKind>,
    /// Special tokens written out as their text when generated (llama.cpp's
    /// `preserved_tokens`: the chat template's thinking and tool-call markers, so that the
    /// answer's parser sees them); other control tokens are written as nothing.
    pub preserved_tokens: Vec<TokenId>,
    /// User biases (`-l`); `--ignore-eos` adds -inf for every EOG token when the chain is built.
    pub logit_bias: Vec<(TokenId, f32)>,
    pub ignore_eos: bool,
    /// GBNF text ("" = none); the chain gets it through [`SamplerChain::with_grammar`], which
    /// needs the vocabulary.
    pub grammar: String,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            seed: RANDOM_SEED,
            min_keep: 0,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            xtc_probability: 0.0,
            xtc_threshold: 0.10,
            typ_p: 1.0,
            temp: 0.80,
            dynatemp_range: 0.0,
            dynatemp_exponent: 1.0,
            penalty_last_n: 64,
            penalty_repeat: 1.0,
            penalty_freq: 0.0,
            penalty_present: 0.0,
            dry_multiplier: 0.0,
            dry_base: 1.75,
            dry_allowed_length: 2,
            dry_penalty_last_n: 64,
            adaptive_target: -1.0,
            adaptive_decay: 0.90,
            mirostat: 0,
            top_n_sigma: -1.0,
            mirostat_tau: 5.0,
            mirostat_eta: 0.10,
            samplers: SamplerKind::DEFAULT_SEQUENCE.to_vec(),
            preserved_tokens: Vec::new(),
            logit_bias: Vec::new(),
            ignore_eos: false,
            grammar: String::new(),
        }
    }
}

/// Which sampling settings the user gave on the command line (those win over GGUF defaults).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UserSet {
    pub samplers: bool,
    pub top_k: bool,
    pub top_p: bool,
    pub min_p: bool,
    pub xtc_probability: bool,
    pub xtc_threshold: bool,
    pub temp: bool,
    pub penalty_last_n: bool,
    pub penalty_repeat: bool,
    pub mirostat: bool,
    pub mirostat_tau: bool,
    pub mirostat_eta: bool,
}

impl SamplingParams {
    /// llama.cpp's `sampler params:` block (four tab-indented lines).
    pub fn describe(&self) -> String {
        format!(
            "\trepeat_last_n = {}, repeat_penalty = {:.3}, frequency_penalty = {:.3}, presence_penalty = {:.3}\n\
             \tdry_multiplier = {:.3}, dry_base = {:.3}, dry_allowed_length = {}, dry_penalty_last_n = {}\n\
             \ttop_k = {}, top_p = {:.3}, min_p = {:.3}, xtc_probability = {:.3}, xtc_threshold = {:.3}, typical_p = {:.3}, top_n_sigma = {:.3}, temp = {:.3}\n\
             \tmirostat = {}, mirostat_lr = {:.3}, mirostat_ent = {:.3}, adaptive_target = {:.3}, adaptive_decay = {:.3}",
            self.penalty_last_n,
            self.penalty_repeat,
            self.penalty_freq,
            self.penalty_present,
            self.dry_multiplier,
            self.dry_base,
            self.dry_allowed_length,
            self.dry_penalty_last_n,
            self.top_k,
            self.top_p,
            self.min_p,
            self.xtc_probability,
            self.xtc_threshold,
            self.typ_p,
            self.top_n_sigma,
            self.temp,
            self.mirostat,
            self.mirostat_eta,
            self.mirostat_tau,
            self.adaptive_target,
            self.adaptive_decay,
        )
    }

    /// Apply the model's `general.sampling.*` defaults to every setting the user did not give.
    pub fn apply_model_defaults(&mut self, meta: &impl Metadata, user: &UserSet) -> Result<(), SampleError> {
        use gguf::names as n;
        if !user.samplers {
            if let Some(seq) = meta.get_str(n::KEY_SAMPLING_SEQUENCE)? {
                let kinds: Vec<SamplerKind> = seq.split(';').filter_map(SamplerKind::from_name).collect();
                if !kinds.is_empty() {
                    self.samplers = kinds;
                }
            }
        }
        let int = |key: &str, dst: &mut i32, given: bool| -> Result<(), SampleError> {
            if !given {
                if let Some(v) = meta.get_i32(key)? {
                    *dst = v;
                }
            }
            Ok(())
        };
        let float = |key: &str, dst: &mut f32, given: bool| -> Result<(), SampleError> {
            if !given {
                if let Some(v) = meta.get_f32(key)? {
                    *dst = v;
                }
            }
            Ok(())
        };
        int(n::KEY_SAMPLING_TOP_K, &mut self.top_k, user.top_k)?;
        float(n::KEY_SAMPLING_TOP_P, &mut self.top_p, user.top_p)?;
        float(n::KEY_SAMPLING_MIN_P, &mut self.min_p, user.min_p)?;
        float(n::KEY_SAMPLING_XTC_PROBABILITY, &mut self.xtc_probability, user.xtc_probability)?;
        float(n::KEY_SAMPLING_XTC_THRESHOLD, &mut self.xtc_threshold, user.xtc_threshold)?;
        float(n::KEY_SAMPLING_TEMP, &mut self.temp, user.temp)?;
        int(n::KEY_SAMPLING_PENALTY_LAST_N, &mut self.penalty_last_n, user.penalty_last_n)?;
        float(n::KEY_SAMPLING_PENALTY_REPEAT, &mut self.penalty_repeat, user.penalty_repeat)?;
        int(n::KEY_SAMPLING_MIROSTAT, &mut self.mirostat, user.mirostat)?;
        float(n::KEY_SAMPLING_MIROSTAT_TAU, &mut self.mirostat_tau, user.mirostat_tau)?;
        float(n::KEY_SAMPLING_MIROSTAT_ETA, &mut self.mirostat_eta, user.mirostat_eta)?;
        Ok(())
    }
}

/// A configured stage with its state.
#[derive(Debug, Clone)]
enum Stage {
    LogitBias(Vec<(TokenId, f32)>),
    Penalties(Penalties),
    /// DRY with multiplier 0: a no-op kept so the chain prints as llama.cpp's.
    DryOff,
    TopNSigma(f32),
    TopK(i32),
    Typical {
        p: f32,
        min_keep: usize,
    },
    TopP {
        p: f32,
        min_keep: usize,
    },
    MinP {
        p: f32,
        min_keep: usize,
    },
    Xtc {
        probability: f32,
        threshold: f32,
        min_keep: usize,
        rng: Box<Mt19937>,
    },
    Temperature {
        temp: f32,
        delta: f32,
        exponent: f32,
    },
}

impl Stage {
    fn name(&self) -> &'static str {
        match self {
            Stage::LogitBias(_) => "logit-bias",
            Stage::Penalties(_) => SamplerKind::Penalties.chain_name(),
            Stage::DryOff => SamplerKind::Dry.chain_name(),
            Stage::TopNSigma(_) => SamplerKind::TopNSigma.chain_name(),
            Stage::TopK(_) => SamplerKind::TopK.chain_name(),
            Stage::Typical { .. } => SamplerKind::TypicalP.chain_name(),
            Stage::TopP { .. } => SamplerKind::TopP.chain_name(),
            Stage::MinP { .. } => SamplerKind::MinP.chain_name(),
            Stage::Xtc { .. } => SamplerKind::Xtc.chain_name(),
            Stage::Temperature { .. } => SamplerKind::Temperature.chain_name(),
        }
    }

    /// A stage whose settings make it do nothing; llama.cpp builds an empty sampler for it and logs
    /// its name with a leading `?`.
    fn is_noop(&self) -> bool {
        match self {
            Stage::LogitBias(b) => b.is_empty(),
            Stage::Penalties(p) => p.is_disabled(),
            Stage::DryOff => true,
            Stage::TopNSigma(n) => *n <= 0.0,
            Stage::TopK(k) => *k <= 0,
            Stage::Typical { p, .. } | Stage::TopP { p, .. } => *p >= 1.0,
            Stage::MinP { p, .. } => *p <= 0.0,
            Stage::Xtc { probability, threshold, .. } => *probability <= 0.0 || *threshold > 0.5,
            Stage::Temperature { temp, delta, .. } => *temp == 1.0 && *delta <= 0.0,
        }
    }

    fn apply(&mut self, cur: &mut Candidates) {
        match self {
            Stage::LogitBias(b) => stages::logit_bias(cur, b),
            Stage::Penalties(p) => p.apply(cur),
            Stage::DryOff => {}
            Stage::TopNSigma(n) => stages::top_n_sigma(cur, *n),
            Stage::TopK(k) => stages::top_k(cur, *k),
            Stage::Typical { p, min_keep } => stages::typical(cur, *p, *min_keep),
            Stage::TopP { p, min_keep } => stages::top_p(cur, *p, *min_keep),
            Stage::MinP { p, min_keep } => stages::min_p(cur, *p, *min_keep),
            Stage::Xtc { probability, threshold, min_keep, rng } => {
                stages::xtc(cur, *probability, *threshold, *min_keep, rng)
            }
            Stage::Temperature { temp, delta, exponent } => {
                stages::temperature_ext(cur, *temp, *delta, *exponent)
            }
        }
    }
}

/// Time counters printed by `common_perf_print`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SamplerPerf {
    /// Everything spent in `sample` and `accept` ("sampling time").
    pub total: Duration,
    /// Time inside the stages ("samplers time").
    pub samplers: Duration,
    /// Accepted tokens (prompt + generated).
    pub n_accept: usize,
}

/// The whole chain: stages, the final draw, and timing; and the grammar, which llama.cpp keeps
/// beside the chain rather than in it.
pub struct SamplerChain {
    stages: Vec<Stage>,
    grammar: Option<GrammarSampler>,
    rng: Mt19937,
    seed: u32,
    /// The seed asked for ([`RANDOM_SEED`] = draw a fresh one at each reset).
    seed_param: u32,
    perf: SamplerPerf,
}

impl SamplerChain {
    /// Build the chain llama.cpp builds for `params`; `eog_tokens` feed `--ignore-eos`.
    pub fn new(params: &SamplingParams, eog_tokens: &[TokenId]) -> Result<SamplerChain, SampleError> {
        validate(params)?;
        let seed = if params.seed == RANDOM_SEED { rng::random_seed() } else { params.seed };
        let mut stages = Vec::new();
        let mut bias = params.logit_bias.clone();
        if params.ignore_eos {
            bias.extend(eog_tokens.iter().map(|&id| (id, f32::NEG_INFINITY)));
        }
        if !bias.is_empty() {
            stages.push(Stage::LogitBias(bias));
        }
        let min_keep = params.min_keep;
        for kind in &params.samplers {
            stages.push(match kind {
                SamplerKind::Penalties => Stage::Penalties(Penalties::new(
                    params.penalty_last_n.max(0) as usize,
                    params.penalty_repeat,
                    params.penalty_freq,
                    params.penalty_present,
                )),
                SamplerKind::Dry => Stage::DryOff,
                SamplerKind::TopNSigma => Stage::TopNSigma(params.top_n_sigma),
                SamplerKind::TopK => Stage::TopK(params.top_k),
                SamplerKind::TypicalP => Stage::Typical { p: params.typ_p, min_keep },
                SamplerKind::TopP => Stage::TopP { p: params.top_p, min_keep },
                SamplerKind::MinP => Stage::MinP { p: params.min_p, min_keep },
                SamplerKind::Xtc => Stage::Xtc {
                    probability: params.xtc_probability,
                    threshold: params.xtc_threshold,
                    min_keep,
                    rng: Box::new(Mt19937::new(seed)),
                },
                SamplerKind::Temperature => Stage::Temperature {
                    temp: params.temp,
                    delta: params.dynatemp_range,
                    exponent: params.dynatemp_exponent,
                },
                SamplerKind::Infill => return Err(SampleError::Unsupported("the infill sampler".into())),
                SamplerKind::AdaptiveP => {
                    return Err(SampleError::Unsupported("the adaptive-p sampler".into()))
                }
            });
        }
        Ok(SamplerChain {
            stages,
            grammar: None,
            rng: Mt19937::new(seed),
            seed,
            seed_param: params.seed,
            perf: SamplerPerf::default(),
        })
    }

    /// Constrain the tokens to a grammar (`None`: no grammar, as for an empty grammar text).
    pub fn with_grammar(mut self, grammar: Option<GrammarSampler>) -> SamplerChain {
        self.grammar = grammar;
        self
    }

    pub fn grammar(&self) -> Option<&GrammarSampler> {
        self.grammar.as_ref()
    }

    /// The seed in use (the drawn one when a random seed was asked for).
    pub fn seed(&self) -> u32 {
        self.seed
    }

    /// llama.cpp's `sampler chain:` text, e.g. `logits -> ?penalties -> top-k -> ... -> dist `
    /// (disabled stages marked `?`, trailing space).
    pub fn describe(&self) -> String {
        let mut s = String::from("logits ");
        for stage in &self.stages {
            s.push_str("-> ");
            if stage.is_noop() {
                s.push('?');
            }
            s.push_str(stage.name());
            s.push(' ');
        }
        s.push_str("-> dist ");
        s
    }

    /// Pick a token (not yet accepted) from one `[n_vocab]` logit row; see [`Self::sample_into`].
    pub fn sample(&mut self, logits: &[f32]) -> Option<TokenId> {
        let mut cur = Candidates::default();
        self.sample_into(logits, &mut cur)
    }

    /// Pick a token from one logit row, leaving in `cur` the candidates of the pass that picked
    /// it. With a grammar this is llama.cpp's rejection sampling: the chain samples freely, and
    /// only when the grammar refuses that token are the logits masked by the grammar and the
    /// chain run again (the random streams advance once more, as in llama.cpp). None: nothing
    /// to pick, or nothing the grammar allows.
    pub fn sample_into(&mut self, logits: &[f32], cur: &mut Candidates) -> Option<TokenId> {
        let start = Instant::now();
        *cur = Candidates::from_logits(logits);
        let mut picked = self.sample_candidates(cur);
        let refused = match (&self.grammar, picked) {
            (Some(g), Some(id)) => !g.allows(id),
            _ => false,
        };
        if refused {
            *cur = Candidates::from_logits(logits);
            if let Some(g) = &self.grammar {
                g.apply(cur);
            }
            picked = self.sample_candidates(cur);
            // A pick at -inf means every candidate was masked.
            let finite =
                cur.selected.and_then(|i| cur.data.get(i)).is_some_and(|c| c.logit > f32::NEG_INFINITY);
            picked = picked.filter(|_| finite);
        }
        self.perf.total += start.elapsed();
        picked
    }

    /// Run the chain (not the grammar) on a prepared candidate list.
    pub fn sample_candidates(&mut self, cur: &mut Candidates) -> Option<TokenId> {
        let start = Instant::now();
        for stage in self.stages.iter_mut() {
            stage.apply(cur);
        }
        stages::dist(cur, &mut self.rng);
        self.perf.samplers += start.elapsed();
        cur.selected.and_then(|i| cur.data.get(i)).map(|c| c.id)
    }

    /// Record a generated token: the grammar advances over it, then the chain's history.
    /// An error when the grammar cannot take it (llama.cpp aborts there).
    pub fn accept_generated(&mut self, id: TokenId) -> Result<(), SampleError> {
        if let Some(g) = self.grammar.as_mut() {
            let start = Instant::now();
            let accepted = g.accept(id);
            self.perf.total += start.elapsed();
            accepted?;
        }
        self.accept(id);
        Ok(())
    }

    /// Record a token in the chain's history only: prompt and user tokens, which penalties see
    /// and the grammar does not (llama.cpp's `accept_grammar = false`).
    pub fn accept(&mut self, id: TokenId) {
        let start = Instant::now();
        for stage in self.stages.iter_mut() {
            if let Stage::Penalties(p) = stage {
                p.accept(id);
            }
        }
        self.perf.n_accept += 1;
        let spent = start.elapsed();
        self.perf.samplers += spent;
        self.perf.total += spent;
    }

    /// Forget the accepted history and restart the random streams from the seed (a random seed is
    /// drawn again), as llama.cpp resets the chain when the user takes a turn. The grammar keeps
    /// its state: llama.cpp resets only the chain.
    pub fn reset(&mut self) {
        let reseed = |param: u32| if param == RANDOM_SEED { rng::random_seed() } else { param };
        for stage in self.stages.iter_mut() {
            match stage {
                Stage::Penalties(p) => p.reset(),
                Stage::Xtc { rng, .. } => **rng = Mt19937::new(reseed(self.seed_param)),
                _ => {}
            }
        }
        self.seed = reseed(self.seed_param);
        self.rng = Mt19937::new(self.seed);
    }

    pub fn perf(&self) -> SamplerPerf {
        self.perf
    }
}

fn validate(p: &SamplingParams) -> Result<(), SampleError> {
    if !p.penalty_repeat.is_finite() || p.penalty_repeat <= 0.0 || !(1.0 / p.penalty_repeat).is_finite() {
        return Err(SampleError::Invalid("penalty_repeat must be finite and greater than 0".into()));
    }
    if !p.penalty_freq.is_finite() {
        return Err(SampleError::Invalid("penalty_freq must be finite".into()));
    }
    if !p.penalty_present.is_finite() {
        return Err(SampleError::Invalid("penalty_present must be finite".into()));
    }
    if p.mirostat != 0 {
        return Err(SampleError::Unsupported(format!("mirostat {} (sampling)", p.mirostat)));
    }
    let dry_enabled = p.dry_multiplier != 0.0 && p.dry_base >= 1.0 && p.dry_penalty_last_n != 0;
    if dry_enabled && p.samplers.contains(&SamplerKind::Dry) {
        return Err(SampleError::Unsupported("the DRY sampler (--dry-multiplier)".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
