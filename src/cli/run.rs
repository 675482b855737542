//! One `rs-llama` run, as llama-completion -no-cnv does it: load, warm up, tokenize the prompt, log
//! the sampler setup, generate, and print the timing block.

use super::args::{self, ConversationMode, GpuLayers, RunConfig};
use super::completion::{self, LoopParts, LoopSettings, StopReason};
use super::engine::{SessionEngine, Vocab};
use super::perf::{perf_lines, ContextPerf};
use super::{interrupt, log, threads};
use crate::gpu;
use crate::model::{LoadOptions, Model, ModelError};
use crate::sample::{SampleError, SamplerChain};
use crate::tokenizer::{Tokenizer, TokenizerError};
use crate::{log_info, log_warn};
use gguf::value::Metadata;
use gguf::GgufFile;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Instant;

/// Exit status after Ctrl-C (128 + SIGINT), as llama-completion.
pub const EXIT_INTERRUPTED: i32 = 130;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("error: no model given (use -m FILE.gguf)")]
    NoModel,
    #[error("llama_completion: error: unable to load model: {0}")]
    Load(String),
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("llama_completion: failed to initialize sampling subsystem: {0}")]
    Sampling(#[from] SampleError),
    #[error("error: {0}")]
    Unsupported(String),
    #[error("llama_completion: prompt is too long ({n_tokens} tokens, max {max})")]
    PromptTooLong { n_tokens: usize, max: usize },
    #[error("input is empty")]
    EmptyInput,
}

impl RunError {
    /// llama-completion's exit status for this error (`return -1` for empty input is 255).
    pub fn exit_code(&self) -> i32 {
        match self {
            RunError::EmptyInput => 255,
            _ => 1,
        }
    }
}

/// Parse `args` (without the program name), run, and return the process exit status.
pub fn main_with_args(program: &str, args: &[String]) -> i32 {
    let cfg = match args::parse(args) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    if cfg.show_help {
        print!("{}", args::usage(program));
        return 0;
    }
    if cfg.show_version {
        eprintln!("version: {} (rs-llama)", env!("CARGO_PKG_VERSION"));
        eprintln!("built with rustc for {}-{}", std::env::consts::ARCH, std::env::consts::OS);
        return 0;
    }
    log::configure(cfg.verbosity, cfg.log_disable);
    for w in &cfg.warnings {
        log_warn!("{w}\n");
    }
    match run(&cfg) {
        Ok(code) => code,
        Err(e) => {
            crate::log_error!("{e}\n");
            e.exit_code()
        }
    }
}

/// The run proper; Ok carries the exit status (0, or 130 after Ctrl-C).
pub fn run(cfg: &RunConfig) -> Result<i32, RunError> {
    let load_start = Instant::now();
    let model_path = cfg.model.as_ref().ok_or(RunError::NoModel)?;
    if cfg.conversation == ConversationMode::Enabled {
        return Err(RunError::Unsupported(
            "conversation mode (-cnv) is not supported yet by rs-llama; use -no-cnv for text completion"
                .into(),
        ));
    }
    let (n_threads, n_threads_batch) = (cfg.n_threads(), cfg.n_threads_batch());
    threads::init_pool(n_threads.max(n_threads_batch));
    log_info!("llama_completion: llama backend init\n");
    log_info!("llama_completion: load the model and apply lora adapter, if any\n");
    let file =
        GgufFile::open(model_path).map_err(|e| RunError::Load(format!("{}: {e}", model_path.display())))?;
    let file = Arc::new(file);
    let tokenizer = Tokenizer::from_gguf(&file)?;
    let progress = std::io::stderr().is_terminal() && log::enabled(log::LEVEL_INFO);
    let model = Model::load(Arc::clone(&file), &LoadOptions { progress })?;
    log_info!("{}\n", model.describe());

    let n_ctx_train = model.n_ctx_train();
    let mut n_ctx = if cfg.n_ctx == 0 { n_ctx_train } else { cfg.n_ctx as usize };
    if n_ctx < 8 {
        log_warn!("llama_completion: warning: minimum context size is 8, using minimum size.\n");
        n_ctx = 8;
    }
    let resident = gpu_layers(cfg.gpu_layers).and_then(|n_gpu_layers| {
        let opts = gpu::GpuOptions { device: 0, mem_limit: cfg.gpu_mem };
        gpu::load_on_gpu(&model, &opts, n_gpu_layers)
    });
    let session = gpu::EngineSession::new(&model, resident.as_ref(), n_ctx, cfg.n_ubatch as usize)?;
    log_info!("llama_completion: running on the {}\n", session.engine());
    let mut engine = SessionEngine { session, n_vocab: model.n_vocab() };

    let mut sampling = cfg.sampling.clone();
    sampling.apply_model_defaults(file.as_ref(), &cfg.sampling_user)?;
    if sampling.ignore_eos && tokenizer.eos().is_none() {
        log_warn!("vocab does not have an EOS token, ignoring --ignore-eos\n");
        sampling.ignore_eos = false;
    }
    let mut chain = SamplerChain::new(&sampling, &Vocab::eog_tokens(&tokenizer))?;

    let mut perf = ContextPerf::new(load_start);
    if cfg.warmup {
        completion::warm_up(&mut engine, &tokenizer, cfg.n_batch as usize, &mut perf)?;
    }
    perf.reset();

    if n_ctx > n_ctx_train {
        log_warn!(
            "llama_completion: model was trained on only {n_ctx_train} context tokens ({n_ctx} specified)\n"
        );
    }
    if cfg.conversation == ConversationMode::Auto
        && file.get_str(gguf::names::TOK_CHAT_TEMPLATE).ok().flatten().is_some()
    {
        log_warn!(
            "llama_completion: the model has a chat template; llama-completion would start conversation mode here, \
             which rs-llama does not support yet: running text completion as with -no-cnv\n"
        );
    }
    log_info!("\n");
    log_info!(
        "system_info: n_threads = {n_threads} (n_threads_batch = {n_threads_batch}) / {} | rs-llama CPU\n",
        threads::logical_cpus()
    );
    log_info!("\n");

    let prompt = prompt_tokens(cfg, &tokenizer, n_ctx)?;
    if cfg.verbose_prompt {
        log_info!("\n");
        log_info!("llama_completion: prompt: '{}'\n", cfg.prompt);
        log_info!("llama_completion: number of tokens in prompt = {}\n", prompt.len());
        for &id in &prompt {
            log_info!("{id:6} -> '{}'\n", String::from_utf8_lossy(&tokenizer.token_to_piece(id, true)));
        }
        log_info!("\n");
    }
    log_info!("sampler seed: {}\n", chain.seed());
    log_info!("sampler params: \n{}\n", sampling.describe());
    log_info!("sampler chain: {}\n", chain.describe());
    log_info!(
        "generate: n_ctx = {n_ctx}, n_batch = {}, n_predict = {}, n_keep = {}\n",
        cfg.n_batch,
        cfg.n_predict,
        cfg.n_keep
    );
    log_info!("\n");

    interrupt::install();
    let settings = LoopSettings {
        n_predict: cfg.n_predict,
        n_batch: cfg.n_batch as usize,
        display_prompt: cfg.display_prompt,
        special: cfg.special,
        reverse_prompts: cfg.reverse_prompts.clone(),
    };
    let mut sink = |bytes: &[u8]| log::text(bytes);
    let parts = LoopParts {
        engine: &mut engine,
        vocab: &tokenizer,
        chain: &mut chain,
        perf: &mut perf,
        interrupted: &interrupt::INTERRUPTED,
        text: &mut sink,
    };
    let stop = completion::generate(&settings, &prompt, parts)?;
    let lines = perf_lines(&chain.perf(), &perf, perf.start.elapsed());
    if stop == StopReason::Interrupted {
        log::text(b"\n");
        print_perf(&lines);
        log::text(b"Interrupted by user\n");
        return Ok(EXIT_INTERRUPTED);
    }
    log::text(b"\n\n");
    print_perf(&lines);
    Ok(0)
}

fn print_perf(lines: &[String]) {
    for line in lines {
        log_info!("{line}\n");
    }
}

/// Tokenize the prompt as llama-completion does (add_special, parse_special) and check its length.
pub fn prompt_tokens<V: Vocab>(
    cfg: &RunConfig,
    vocab: &V,
    n_ctx: usize,
) -> Result<Vec<crate::TokenId>, RunError> {
    let mut tokens = vocab.encode(&cfg.prompt, true, true);
    if tokens.is_empty() {
        match vocab.bos().filter(|_| vocab.add_bos()) {
            Some(bos) => {
                tokens.push(bos);
                log_warn!("embd_inp was considered empty and bos was added: [ '{bos}' ]\n");
            }
            None => return Err(RunError::EmptyInput),
        }
    }
    let max = n_ctx.saturating_sub(4);
    if tokens.len() > max {
        return Err(RunError::PromptTooLong { n_tokens: tokens.len(), max });
    }
    Ok(tokens)
}

/// Layers `-ngl` asks to put on the GPU, or `None` for the CPU. Without `-ngl`, a `cuda` build tries
/// the whole model (llama.cpp's default `-ngl auto` with room to spare) and a CPU build stays quiet.
fn gpu_layers(ngl: Option<GpuLayers>) -> Option<usize> {
    match ngl {
        None if cfg!(feature = "cuda") => Some(usize::MAX),
        None => None,
        Some(GpuLayers::Auto | GpuLayers::All) => Some(usize::MAX),
        Some(GpuLayers::Count(n)) if n > 0 => Some(n as usize),
        Some(GpuLayers::Count(_)) => None,
    }
}
