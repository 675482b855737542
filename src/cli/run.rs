//! One `rs-llama` run, as llama-completion does it: load, warm up, set up the chat template (and
//! conversation mode when the model has one), tokenize the prompt, log the sampler setup, generate
//! (or run the interactive session), and print the timing block.

use super::args::{self, ConversationMode, GpuLayers, RunConfig};
use super::completion::{self, LoopError, LoopParts, LoopSettings, StopReason};
use super::engine::{SessionEngine, Vocab};
use super::interactive::{self, Conversation, InteractiveError, InteractiveSettings};
use super::perf::{perf_lines, ContextPerf};
use super::{interrupt, log, threads};
use crate::chat::{ChatError, ChatMessage, ChatTemplates, TokenTexts};
use crate::gpu;
use crate::model::{LoadOptions, Model, ModelError};
use crate::sample::grammar::{GrammarSampler, GrammarVocab};
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
    /// Sampling failed during generation (the grammar could not go on).
    #[error("llama_completion: error: {0}")]
    Generation(SampleError),
    #[error("error: {0}")]
    Unsupported(String),
    #[error("llama_completion: prompt is too long ({n_tokens} tokens, max {max})")]
    PromptTooLong { n_tokens: usize, max: usize },
    #[error("input is empty")]
    EmptyInput,
    #[error("llama_completion: {0}")]
    Chat(#[from] ChatError),
}

impl From<InteractiveError> for RunError {
    fn from(e: InteractiveError) -> Self {
        match e {
            InteractiveError::Model(e) => RunError::Model(e),
            InteractiveError::Chat(e) => RunError::Chat(e),
            InteractiveError::Sample(e) => RunError::Generation(e),
        }
    }
}

impl From<LoopError> for RunError {
    fn from(e: LoopError) -> Self {
        match e {
            LoopError::Model(e) => RunError::Model(e),
            LoopError::Sample(e) => RunError::Generation(e),
        }
    }
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
    if cfg.device.list_devices {
        print!("{}", super::device::list_devices());
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
    let (n_threads, n_threads_batch) = (cfg.n_threads(), cfg.n_threads_batch());
    // Not on a pool thread (see `threads::on_pool`): Ctrl-C must interrupt the blocking read of
    // the user's input, and SIGINT goes to the main thread.
    threads::init_pool(n_threads.max(n_threads_batch));
    crate::cpu::set_decode_threads(if n_threads_batch > n_threads { n_threads } else { 0 });
    let load_start = Instant::now();
    let model_path = cfg.model.as_ref().ok_or(RunError::NoModel)?;
    log_info!("llama_completion: llama backend init\n");
    log_info!("llama_completion: load the model and apply lora adapter, if any\n");
    let file =
        GgufFile::open(model_path).map_err(|e| RunError::Load(format!("{}: {e}", model_path.display())))?;
    let file = Arc::new(file);
    let tokenizer = Tokenizer::from_gguf(&file)?;
    // Before the weights: a grammar that does not compile is refused at once.
    let grammar = compile_grammar(&cfg.sampling.grammar, &tokenizer)?;
    let progress = std::io::stderr().is_terminal() && log::enabled(log::LEVEL_INFO);
    let model = Model::load(Arc::clone(&file), &LoadOptions { progress })?;
    log_info!("{}\n", model.describe());
    let lora = super::lora::load_all(&model, &cfg.lora).map_err(RunError::Load)?;

    let n_ctx_train = model.n_ctx_train();
    let mut n_ctx = if cfg.n_ctx == 0 { model.default_context() } else { cfg.n_ctx as usize };
    if n_ctx < 8 {
        log_warn!("llama_completion: warning: minimum context size is 8, using minimum size.\n");
        n_ctx = 8;
    }
    let resident = gpu_layers(cfg).and_then(|n_gpu_layers| {
        let device = match cfg.device.device {
            super::device::DeviceChoice::Cuda(n) => n,
            _ => 0,
        };
        let opts = gpu::GpuOptions { device, mem_limit: cfg.gpu_mem };
        crate::exec::engine::load_on_gpu(&model, &opts, n_gpu_layers)
    });
    let mut session = super::device::open_session(cfg, &model, resident.as_ref(), n_ctx)?;
    session.set_lora(lora)?;
    log_info!("llama_completion: running on the {}\n", session.engine());
    let mut engine = SessionEngine { session, n_vocab: model.n_vocab() };

    let mut sampling = cfg.sampling.clone();
    sampling.apply_model_defaults(file.as_ref(), &cfg.sampling_user)?;
    if sampling.ignore_eos && tokenizer.eos().is_none() {
        log_warn!("vocab does not have an EOS token, ignoring --ignore-eos\n");
        sampling.ignore_eos = false;
    }
    let mut chain = SamplerChain::new(&sampling, &Vocab::eog_tokens(&tokenizer))?.with_grammar(grammar);

    let mut perf = ContextPerf::new(load_start);
    let warm_up_logits = if cfg.warmup {
        completion::warm_up(&mut engine, &tokenizer, cfg.n_batch as usize, &mut perf)?
    } else {
        Vec::new()
    };
    perf.reset();
    super::device::reset_clock(&mut engine.session);

    if n_ctx > n_ctx_train {
        log_warn!(
            "llama_completion: model was trained on only {n_ctx_train} context tokens ({n_ctx} specified)\n"
        );
    }
    let templates = match cfg.conversation {
        ConversationMode::Disabled => None,
        _ => Some(chat_templates(cfg, file.as_ref(), &tokenizer)?),
    };
    let conversation = conversation_mode(cfg, templates.as_ref())?;
    log_info!("\n");
    log_info!(
        "system_info: n_threads = {n_threads} (n_threads_batch = {n_threads_batch}) / {} | rs-llama CPU\n",
        threads::logical_cpus()
    );
    log_info!("\n");

    let mut chat = match (&templates, conversation && cfg.chat.enable_template) {
        (Some(t), true) => Some(Conversation { templates: t, messages: Vec::new() }),
        _ => None,
    };
    let prompt_text = match chat.as_mut() {
        Some(chat) => initial_chat_prompt(cfg, chat)?,
        None => cfg.prompt.clone(),
    };
    let waiting_for_first_input = chat.is_some() && cfg.prompt.is_empty();
    let prompt = if waiting_for_first_input {
        checked_length(tokenizer.encode(&prompt_text, true, true), n_ctx)?
    } else {
        text_tokens(&prompt_text, &tokenizer, n_ctx)?
    };
    let add_bos = tokenizer.add_bos() && !cfg.chat.use_jinja;
    let n_keep = if cfg.n_keep < 0 || cfg.n_keep as usize > prompt.len() {
        prompt.len() as i32
    } else {
        cfg.n_keep + add_bos as i32
    };
    let (mut interactive, mut interactive_first) = (cfg.chat.interactive, cfg.chat.interactive_first);
    if conversation {
        if cfg.chat.single_turn && !cfg.prompt.is_empty() {
            (interactive, interactive_first) = (false, false);
        } else {
            interactive_first = true;
        }
    }
    interactive |= interactive_first;
    if cfg.verbose_prompt {
        log_info!("\n");
        log_info!("llama_completion: prompt: '{}'\n", cfg.prompt);
        log_info!("llama_completion: number of tokens in prompt = {}\n", prompt.len());
        for &id in &prompt {
            log_info!("{id:6} -> '{}'\n", String::from_utf8_lossy(&tokenizer.token_to_piece(id, true)));
        }
        log_info!("\n");
    }
    if interactive {
        log_interactive_setup(cfg, &tokenizer);
    }
    log_info!("sampler seed: {}\n", chain.seed());
    log_info!("sampler params: \n{}\n", sampling.describe());
    log_info!("sampler chain: {}\n", chain.describe());
    log_info!(
        "generate: n_ctx = {n_ctx}, n_batch = {}, n_predict = {}, n_keep = {}\n",
        cfg.n_batch,
        cfg.n_predict,
        n_keep
    );
    log_info!("\n");
    if interactive {
        log_interactive_banner(cfg, conversation);
    }

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
    let stop = if interactive {
        let session = InteractiveSettings {
            n_predict: cfg.n_predict,
            n_batch: cfg.n_batch as usize,
            display_prompt: cfg.display_prompt,
            special: cfg.special,
            escape: cfg.escape,
            verbose_prompt: cfg.verbose_prompt,
            reverse_prompts: cfg.reverse_prompts.clone(),
            conversation,
            interactive,
            interactive_first,
            single_turn: cfg.chat.single_turn,
            multiline_input: cfg.chat.multiline_input,
            input_prefix: cfg.chat.input_prefix.clone(),
            input_suffix: cfg.chat.input_suffix.clone(),
            input_prefix_bos: cfg.chat.input_prefix_bos,
            waiting_for_first_input,
            has_initial_prompt: !prompt_text.is_empty(),
        };
        let stdin = std::io::stdin();
        let mut input = stdin.lock();
        interactive::run_session(&session, &prompt, warm_up_logits, chat, &mut input, parts)?
    } else {
        completion::generate(&settings, &prompt, parts)?
    };
    let lines = perf_lines(&chain.perf(), &perf, perf.start.elapsed());
    super::device::finish(cfg, &engine.session).map_err(RunError::Load)?;
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

/// The grammar of `--grammar`/`--grammar-file` over this vocabulary (None without one).
fn compile_grammar(text: &str, tokenizer: &Tokenizer) -> Result<Option<GrammarSampler>, RunError> {
    if text.is_empty() {
        return Ok(None);
    }
    let vocab = Arc::new(GrammarVocab::from_tokenizer(tokenizer));
    let tokenize = |text: &[u8]| tokenizer.encode_bytes(text, false, true);
    Ok(GrammarSampler::from_text(text, vocab, &tokenize).map_err(SampleError::from)?)
}

fn print_perf(lines: &[String]) {
    for line in lines {
        log_info!("{line}\n");
    }
}

/// Tokenize `-p` as llama-completion does (add_special, parse_special) and check its length.
pub fn prompt_tokens<V: Vocab>(
    cfg: &RunConfig,
    vocab: &V,
    n_ctx: usize,
) -> Result<Vec<crate::TokenId>, RunError> {
    text_tokens(&cfg.prompt, vocab, n_ctx)
}

/// [`prompt_tokens`] for any prompt text (the formatted chat prompt in conversation mode): an
/// empty result gets a BOS where the vocabulary adds one, else it is an error.
pub fn text_tokens<V: Vocab>(prompt: &str, vocab: &V, n_ctx: usize) -> Result<Vec<crate::TokenId>, RunError> {
    let mut tokens = vocab.encode(prompt, true, true);
    if tokens.is_empty() {
        match vocab.bos().filter(|_| vocab.add_bos()) {
            Some(bos) => {
                tokens.push(bos);
                log_warn!("embd_inp was considered empty and bos was added: [ '{bos}' ]\n");
            }
            None => return Err(RunError::EmptyInput),
        }
    }
    checked_length(tokens, n_ctx)
}

fn checked_length(tokens: Vec<crate::TokenId>, n_ctx: usize) -> Result<Vec<crate::TokenId>, RunError> {
    let max = n_ctx.saturating_sub(4);
    if tokens.len() > max {
        return Err(RunError::PromptTooLong { n_tokens: tokens.len(), max });
    }
    Ok(tokens)
}

/// Layers `-ngl` asks to put on the GPU (whole-model CUDA path), or `None` for the CPU. Without
/// `-ngl`, a `cuda` build tries the whole model (llama.cpp's default `-ngl auto` with room to
/// spare) and a CPU build stays quiet; `-dev none` and `-dev sim` never touch a CUDA GPU.
fn gpu_layers(cfg: &RunConfig) -> Option<usize> {
    use super::device::DeviceChoice;
    if matches!(cfg.device.device, DeviceChoice::Cpu | DeviceChoice::Sim) {
        return None;
    }
    match cfg.gpu_layers {
        None if cfg!(feature = "cuda") => Some(usize::MAX),
        None => None,
        Some(GpuLayers::Auto | GpuLayers::All) => Some(usize::MAX),
        Some(GpuLayers::Count(n)) if n > 0 => Some(n as usize),
        Some(GpuLayers::Count(_)) => None,
    }
}

/// The chat templates as llama-completion sets them up: `--chat-template`, else the model's, else
/// ChatML; with the vocabulary's BOS/EOS texts.
fn chat_templates(
    cfg: &RunConfig,
    file: &GgufFile,
    tokenizer: &Tokenizer,
) -> Result<ChatTemplates, RunError> {
    let model_template = file.get_str(gguf::names::TOK_CHAT_TEMPLATE).ok().flatten();
    let tool_use = file.get_str(gguf::names::TOK_CHAT_TEMPLATE_TOOL_USE).ok().flatten();
    let text = |id: Option<crate::TokenId>| {
        id.map(|id| String::from_utf8_lossy(&tokenizer.token_to_piece(id, true)).into_owned())
    };
    let tokens = TokenTexts {
        bos: text(tokenizer.bos()),
        eos: text(tokenizer.eos()),
        add_bos: tokenizer.add_bos(),
        add_eos: tokenizer.add_eos(),
    };
    let templates =
        ChatTemplates::new(&cfg.chat.template, model_template, tool_use, tokens, cfg.chat.use_jinja)?;
    for w in templates.warnings() {
        log_warn!("{w}\n");
    }
    Ok(templates)
}

/// Whether this run is a conversation (auto: when there is a template), with llama-completion's
/// start-up messages and its example of the template.
fn conversation_mode(cfg: &RunConfig, templates: Option<&ChatTemplates>) -> Result<bool, RunError> {
    let Some(templates) = templates else { return Ok(false) };
    let has_template = templates.was_explicit();
    let on = match cfg.conversation {
        ConversationMode::Disabled => false,
        ConversationMode::Enabled => true,
        ConversationMode::Auto if has_template => {
            log_info!(
                "llama_completion: chat template is available, enabling conversation mode (disable it with -no-cnv)\n"
            );
            true
        }
        ConversationMode::Auto => false,
    };
    if on && !has_template {
        log_warn!(
            "llama_completion: chat template is not available or is not supported. This may cause the model to output suboptimal responses\n"
        );
    }
    if on {
        if cfg.chat.enable_template {
            if !cfg.prompt.is_empty() && cfg.chat.system_prompt.is_empty() {
                log_warn!("*** User-specified prompt will pre-start conversation, did you mean to set --system-prompt (-sys) instead?\n");
            }
            log_info!("llama_completion: chat template example:\n{}\n", templates.format_example()?);
        } else {
            log_info!("llama_completion: in-suffix/prefix is specified, chat template will be disabled\n");
        }
    }
    Ok(on)
}

/// The first prompt of a conversation: the system prompt and `-p` as the first user message,
/// formatted with the assistant's opening when there is a user message.
fn initial_chat_prompt(cfg: &RunConfig, chat: &mut Conversation<'_>) -> Result<String, RunError> {
    if !cfg.chat.system_prompt.is_empty() {
        chat.add("system", &cfg.chat.system_prompt)?;
    }
    if !cfg.prompt.is_empty() {
        chat.add("user", &cfg.prompt)?;
    }
    if chat.messages.is_empty() {
        return Ok(String::new());
    }
    let messages: Vec<ChatMessage> = chat.messages.clone();
    Ok(chat.templates.apply(&messages, !cfg.prompt.is_empty())?)
}

fn log_interactive_setup(cfg: &RunConfig, tokenizer: &Tokenizer) {
    let tokens = |text: &str, add_special: bool| {
        if cfg.verbose_prompt {
            for id in tokenizer.encode(text, add_special, true) {
                log_info!("{id:6} -> '{}'\n", String::from_utf8_lossy(&tokenizer.token_to_piece(id, true)));
            }
        }
    };
    log_info!("llama_completion: interactive mode on.\n");
    for r in &cfg.reverse_prompts {
        log_info!("Reverse prompt: '{r}'\n");
        tokens(r, false);
    }
    if cfg.chat.input_prefix_bos {
        log_info!("Input prefix with BOS\n");
    }
    if !cfg.chat.input_prefix.is_empty() {
        log_info!("Input prefix: '{}'\n", cfg.chat.input_prefix);
        tokens(&cfg.chat.input_prefix, true);
    }
    if !cfg.chat.input_suffix.is_empty() {
        log_info!("Input suffix: '{}'\n", cfg.chat.input_suffix);
        tokens(&cfg.chat.input_suffix, false);
    }
}

fn log_interactive_banner(cfg: &RunConfig, conversation: bool) {
    log_info!("== Running in interactive mode. ==\n");
    log_info!(" - Press Ctrl+C to interject at any time.\n");
    if cfg.chat.multiline_input {
        log_info!(" - To return control to the AI, end your input with '\\'.\n");
    } else {
        log_info!(" - Press Return to return control to the AI.\n");
    }
    log_info!(" - To return control without starting a new line, end your input with '/'.\n");
    if !cfg.chat.multiline_input {
        log_info!(" - If you want to submit another line, end your input with '\\'.\n");
    }
    if conversation && cfg.chat.enable_template && cfg.chat.system_prompt.is_empty() {
        log_info!(" - Not using system message. To change it, set a different value via -sys PROMPT\n");
    }
    log_info!("\n");
}
