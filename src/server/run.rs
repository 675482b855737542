//! One `rs-llama-server` run, in llama-server's order: bind first (so `/health` answers 503
//! while the model loads), load the model and start the scheduler on a background thread, then
//! serve until Ctrl-C or SIGTERM: stop accepting, shut the scheduler down (which ends the
//! running generations), let open connections finish for a moment, exit 0.

use std::sync::Arc;
use std::time::Duration;

use super::args::{self, ServerConfig};
use super::http::{self, AppState, Loaded, ModelInfo};
use super::scheduler::{self, SchedulerConfig};
use crate::chat::{ChatTemplates, TokenTexts};
use crate::cli::args::GpuLayers;
use crate::cli::device::DeviceChoice;
use crate::model::{LoadOptions, Model};
use crate::tokenizer::Tokenizer;
use crate::{log_error, log_info, log_warn};
use gguf::value::Metadata;
use gguf::GgufFile;

/// How long open connections may take to finish after a shutdown signal.
const DRAIN: Duration = Duration::from_secs(5);

/// llama-server's `srv  <func>: ` log prefix (the function name right-aligned in 12 columns).
fn srv(func: &str, msg: &str) -> String {
    format!("srv  {func:>12.12}: {msg}\n")
}

/// Parse `args` (without the program name) and the `LLAMA_ARG_*` environment, run, and return the
/// process exit status.
pub fn main_with_args(program: &str, args: &[String]) -> i32 {
    let cfg = match args::parse_with_env(args) {
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
    crate::cli::log::configure(cfg.verbosity, cfg.log_disable);
    for w in &cfg.warnings {
        log_warn!("{w}\n");
    }
    if cfg.model.is_none() {
        log_error!("error: no model given (use -m FILE.gguf)\n");
        return 1;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            log_error!("error: cannot start the async runtime: {e}\n");
            return 1;
        }
    };
    runtime.block_on(serve(cfg))
}

/// A bound listener and the address it serves.
enum Listening {
    Tcp(tokio::net::TcpListener, String),
    Unix(tokio::net::UnixListener, String),
}

impl Listening {
    /// `http://127.0.0.1:8080`, `http://[::1]:8080`, `unix:///run/x.sock`.
    fn address(&self) -> String {
        match self {
            Listening::Tcp(_, a) | Listening::Unix(_, a) => a.clone(),
        }
    }
}

/// One listener per `--host` entry, as llama-server binds them: a path ending in `.sock` is a
/// UNIX socket; with several TCP addresses `--port 0` is refused (each would get its own port)
/// and an IPv6 one listens on IPv6 only (so that `::` beside `0.0.0.0` does not claim both).
fn bind_all(hosts: &[String], port: u16) -> Result<Vec<Listening>, String> {
    let n_tcp = hosts.iter().filter(|h| !h.ends_with(".sock")).count();
    if port == 0 && n_tcp > 1 {
        return Err("--port 0 is not supported with multiple TCP addresses".into());
    }
    let failed = |host: &str| format!("couldn't bind HTTP server socket, hostname: {host}, port: {port}");
    let mut out = Vec::with_capacity(hosts.len());
    for host in hosts {
        if host.ends_with(".sock") {
            let l = tokio::net::UnixListener::bind(host).map_err(|_| failed(host))?;
            out.push(Listening::Unix(l, format!("unix://{host}")));
            continue;
        }
        let l = bind_tcp(host, port, n_tcp > 1).ok_or_else(|| failed(host))?;
        let bound = l.local_addr().map_or(port, |a| a.port());
        let shown = if host.contains(':') { format!("[{host}]") } else { host.clone() };
        out.push(Listening::Tcp(l, format!("http://{shown}:{bound}")));
    }
    Ok(out)
}

fn bind_tcp(host: &str, port: u16, v6_only: bool) -> Option<tokio::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let addr = std::net::ToSocketAddrs::to_socket_addrs(&(host, port)).ok()?.next()?;
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None).ok()?;
    if addr.is_ipv6() && v6_only {
        socket.set_only_v6(true).ok()?;
    }
    // As cpp-httplib: a restarted server may bind while old connections linger in TIME_WAIT.
    socket.set_reuse_address(true).ok()?;
    socket.bind(&addr.into()).ok()?;
    socket.listen(1024).ok()?;
    socket.set_nonblocking(true).ok()?;
    tokio::net::TcpListener::from_std(socket.into()).ok()
}

async fn serve(mut cfg: ServerConfig) -> i32 {
    log_info!("{}", srv("llama_server", "initializing ..."));
    match http::vertex::VertexAi::from_env(|k| std::env::var(k).ok()) {
        Ok(None) => {}
        Ok(Some(v)) => {
            if v.port != cfg.port {
                let msg = format!(
                    "Google Cloud Platform compat: overriding server port {} with AIP_HTTP_PORT {}",
                    cfg.port, v.port
                );
                log_warn!("{}", srv("init", &msg));
            }
            cfg.port = v.port;
            cfg.vertex = Some(v);
        }
        Err(e) => {
            log_error!("{}", srv("register_gcp_compat", &e));
            return 1;
        }
    }
    if cfg.ui_mcp_proxy {
        // As llama-server, once at start: the proxy reaches any URL a client names.
        let msg = "security: MCP proxy (experimental) enabled - do not expose to untrusted environments";
        log_warn!("{}", srv("llama_server", msg));
    }
    let listeners = match bind_all(&cfg.hosts, cfg.port) {
        Ok(l) => l,
        Err(msg) => {
            log_error!("{}", srv("start", &msg));
            return 1;
        }
    };
    let addresses: Vec<String> = listeners.iter().map(Listening::address).collect();
    let state = Arc::new(AppState::new(cfg.clone()));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut servers = Vec::new();
    for listener in listeners {
        let app = http::router(Arc::clone(&state));
        let mut stop = stop_rx.clone();
        let stopped = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        servers.push(tokio::spawn(async move {
            let _ = match listener {
                Listening::Tcp(l, _) => axum::serve(l, app).with_graceful_shutdown(stopped).await,
                Listening::Unix(l, _) => axum::serve(l, app).with_graceful_shutdown(stopped).await,
            };
        }));
    }

    let (load_tx, load_rx) = tokio::sync::oneshot::channel();
    let load_cfg = cfg.clone();
    std::thread::spawn(move || {
        let _ = load_tx.send(load(&load_cfg));
    });

    let mut load_rx = Some(load_rx);
    let exit = loop {
        tokio::select! {
            _ = shutdown_signal() => break 0,
            result = async { load_rx.as_mut().expect("polled once").await }, if load_rx.is_some() => {
                load_rx = None;
                match result {
                    Ok(Ok(loaded)) => {
                        let _ = state.loaded.set(loaded);
                        log_info!("{}", srv("llama_server", "model loaded"));
                        for a in &addresses {
                            log_info!("{}", srv("llama_server", &format!("listening on {a}")));
                        }
                    }
                    Ok(Err(msg)) => {
                        log_error!("{}", srv("load_model", &msg));
                        break 1;
                    }
                    Err(_) => {
                        log_error!("{}", srv("load_model", "failed to load model: the loader stopped"));
                        break 1;
                    }
                }
            }
        }
    };
    if exit == 0 {
        log_info!("{}", srv("llama_server", "cleaning up before exit..."));
        // A second Ctrl-C while draining ends the process at once, as llama-server does.
        tokio::spawn(async {
            shutdown_signal().await;
            eprintln!("Received second interrupt, terminating immediately.");
            std::process::exit(1);
        });
    }
    if let Some(loaded) = state.loaded.get() {
        loaded.backend.shutdown();
    }
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(DRAIN, futures_util::future::join_all(servers)).await;
    exit
}

/// Ctrl-C, or SIGTERM on Unix.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Load the model, set up its chat template and start the scheduler; Err is one log line.
fn load(cfg: &ServerConfig) -> Result<Loaded, String> {
    let path = cfg.model.clone().unwrap_or_default();
    let fail = |e: &dyn std::fmt::Display| format!("failed to load model, '{}': {e}", path.display());
    crate::cli::threads::init_pool(cfg.n_threads().max(cfg.n_threads_batch()));
    let decode_threads = if cfg.n_threads_batch() > cfg.n_threads() { cfg.n_threads() } else { 0 };
    crate::cpu::set_decode_threads(decode_threads);
    let file = Arc::new(GgufFile::open(&path).map_err(|e| fail(&e))?);
    let tokenizer = Arc::new(Tokenizer::from_gguf(&file).map_err(|e| fail(&e))?);
    let model =
        Arc::new(Model::load(Arc::clone(&file), &LoadOptions { progress: false }).map_err(|e| fail(&e))?);
    log_info!("{}\n", model.describe());
    let lora = Arc::new(load_lora(cfg, &model).map_err(|e| fail(&e))?);

    let n_ctx_train = model.n_ctx_train();
    let n_ctx = if cfg.n_ctx == 0 { model.default_context() } else { cfg.n_ctx as usize }.max(8);
    let n_slots = cfg.n_slots();
    let mut n_ctx_slot = if cfg.unified_kv() { n_ctx } else { n_ctx / n_slots };
    if n_ctx_train > 0 {
        n_ctx_slot = n_ctx_slot.min(n_ctx_train);
    }
    let mut sampling = cfg.sampling.clone();
    sampling.apply_model_defaults(file.as_ref(), &cfg.sampling_user).map_err(|e| fail(&e))?;
    let text = |id: Option<crate::TokenId>| {
        id.map(|id| String::from_utf8_lossy(&tokenizer.token_to_piece(id, true)).into_owned())
    };
    let tokens = TokenTexts {
        bos: text(tokenizer.bos()),
        eos: text(tokenizer.eos()),
        add_bos: tokenizer.add_bos(),
        add_eos: tokenizer.add_eos(),
    };
    let model_template = file.get_str(gguf::names::TOK_CHAT_TEMPLATE).ok().flatten();
    let tool_use = file.get_str(gguf::names::TOK_CHAT_TEMPLATE_TOOL_USE).ok().flatten();
    let templates =
        ChatTemplates::new(&cfg.chat_template, model_template, tool_use, tokens.clone(), cfg.use_jinja)
            .map_err(|e| format!("failed to initialize the chat template: {e}"))?;
    for w in templates.warnings() {
        log_warn!("{w}\n");
    }
    let mut n_batch = cfg.n_batch;
    if cfg.embedding && cfg.n_batch > cfg.n_ubatch {
        // llama-server: an embedding must be evaluated in one physical batch.
        let (b, ub) = (cfg.n_batch, cfg.n_ubatch);
        log_warn!(
            "{}",
            srv("load_model", &format!("embeddings enabled with n_batch ({b}) > n_ubatch ({ub})"))
        );
        log_warn!(
            "{}",
            srv("load_model", &format!("setting n_batch = n_ubatch = {ub} to avoid assertion failure"))
        );
        n_batch = ub;
    }
    // llama-server: the first alias, else the model path as given on the command line.
    let name = cfg.alias.first().cloned().unwrap_or_else(|| path.display().to_string());
    let info = ModelInfo {
        name: name.clone(),
        aliases: if cfg.alias.is_empty() { vec![name] } else { cfg.alias.clone() },
        path: path.display().to_string(),
        n_ctx_train,
        n_embd: model.hparams().n_embd,
        n_params: model.n_params(),
        // llama.cpp's `llama_model_size`: the tensors' bytes, not the file's.
        size: file.tensors.iter().map(|t| t.n_bytes).sum(),
        ftype: ftype_name(file.get_u32(gguf::names::KEY_FILE_TYPE).ok().flatten()),
        // llama.cpp's `enum llama_vocab_type`.
        vocab_type: match tokenizer.kind_name() {
            "SPM" => 1,
            "WPM" => 3,
            "UGM" => 4,
            _ => 2,
        },
        bos_token: tokens.bos.unwrap_or_default(),
        eos_token: tokens.eos.unwrap_or_default(),
        pooling: cfg.pooling.unwrap_or_else(|| super::embed::model_pooling(&file)),
        n_ubatch: n_ctx.min(n_batch as usize).min(cfg.n_ubatch as usize),
        lora: Arc::clone(&lora),
    };
    let sched_cfg = SchedulerConfig {
        n_slots,
        n_ctx,
        n_ctx_slot,
        n_batch: n_batch as usize,
        n_ubatch: cfg.n_ubatch as usize,
        sleep_idle: u64::try_from(cfg.sleep_idle_seconds).ok().map(Duration::from_secs),
        cache_ram_mib: cfg.cache_ram_mib,
        cache_idle_slots: cfg.cache_idle_slots && cfg.cache_ram_mib != 0,
        kv_unified: cfg.unified_kv(),
        slot_prompt_similarity: cfg.slot_prompt_similarity,
        lora,
    };
    if cfg.cache_idle_slots && cfg.cache_ram_mib == 0 {
        log_warn!("{}", srv("load_model", "--cache-idle-slots requires --cache-ram, disabling"));
    }
    log_info!(
        "{}",
        srv(
            "load_model",
            &format!(
                "initializing, n_slots = {n_slots}, n_ctx_slot = {n_ctx_slot}, kv_unified = '{}'",
                cfg.unified_kv()
            )
        )
    );
    let open = session_for(cfg, model.hparams().n_layer)?;
    // After a sleep the model is read again from its file (which may have been replaced; the
    // tokenizer and templates of the first load stay).
    let reload_path = path.clone();
    let reload: scheduler::Reload = Box::new(move || {
        let m = Model::open(&reload_path, &LoadOptions { progress: false }).map_err(|e| e.to_string())?;
        Ok(Arc::new(m))
    });
    drop(file);
    let handle =
        scheduler::start(model, Arc::clone(&tokenizer), sched_cfg, open, reload).map_err(|e| fail(&e))?;
    Ok(Loaded { backend: Arc::new(handle), vocab: tokenizer, templates, info, sampling })
}

/// `--lora`/`--lora-scaled` adapters for `model`, by id in command-line order.
fn load_lora(cfg: &ServerConfig, model: &Model) -> Result<crate::server::lora::ServerLoras, String> {
    let loaded = crate::cli::lora::load_all(model, &cfg.lora)?;
    // llama-server activates an aLoRA only past its invocation tokens; rs-llama-server would apply
    // it to the whole prompt, so it refuses one.
    if let Some(a) = loaded.iter().find(|l| !l.adapter.alora_invocation_tokens.is_empty()) {
        return Err(format!(
            "{}: activated LoRA (aLoRA) adapters are not supported yet by rs-llama-server",
            a.adapter.path
        ));
    }
    Ok(crate::server::lora::ServerLoras::new(loaded))
}

/// What the slots run on: the CPU, or the hybrid executor on the simulated GPU (`-dev sim`) or a
/// CUDA card (`-dev cudaN`), planned with rs-llama's placement flags.
fn session_for(cfg: &ServerConfig, n_layer: usize) -> Result<scheduler::OpenSession, String> {
    let d = &cfg.device;
    let wants_gpu = cfg.gpu_layers != Some(GpuLayers::Count(0));
    let ordinal = match d.device {
        DeviceChoice::Sim => None,
        DeviceChoice::Cuda(n) => Some(n),
        // A `cuda` build without `-dev`: the card, as llama-server uses its GPU.
        DeviceChoice::Default if crate::gpu::BUILT_WITH_CUDA && wants_gpu => Some(0),
        _ => return Ok(scheduler::cpu_session()),
    };
    let n_cpu_moe = if d.cpu_moe { Some(n_layer as u32) } else { d.n_cpu_moe };
    let opts = crate::cli::device::sim_options(
        &d.sim_hw,
        d.policy,
        cfg.gpu_mem,
        cfg.gpu_layers,
        n_cpu_moe,
        n_layer,
    )?;
    let Some(mut opts) = opts else {
        log_warn!("sim: the profile '{}' has no GPU; running on the CPU\n", d.sim_hw);
        return Ok(scheduler::cpu_session());
    };
    opts.overrides = d.overrides.clone();
    if let Some(on) = d.hot_experts {
        opts.hot_experts = on;
    }
    Ok(match ordinal {
        None => scheduler::sim_session(opts, d.print_plan),
        Some(n) => scheduler::cuda_session(opts, n, cfg.gpu_mem, d.print_plan),
    })
}

/// llama.cpp's `llama_ftype_name` for the common file types.
fn ftype_name(ftype: Option<u32>) -> String {
    match ftype {
        Some(0) => "all F32",
        Some(1) => "F16",
        Some(2) => "Q4_0",
        Some(3) => "Q4_1",
        Some(7) => "Q8_0",
        Some(8) => "Q5_0",
        Some(9) => "Q5_1",
        Some(10) => "Q2_K - Medium",
        Some(12) => "Q3_K - Medium",
        Some(15) => "Q4_K - Medium",
        Some(17) => "Q5_K - Medium",
        Some(18) => "Q6_K",
        Some(32) => "BF16",
        _ => "unknown, may not work",
    }
    .to_string()
}
