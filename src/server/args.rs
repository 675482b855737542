//! `rs-llama-server`'s command line: llama-server's flags with its defaults, read the way
//! `rs-llama` reads its own ([`crate::cli::args`]): exact names from one table, `--foo_bar` as
//! `--foo-bar`, `error: invalid argument: X` for an unknown flag and a one-line error for a flag
//! llama.cpp has but rs-llama does not. `LLAMA_ARG_*` variables are read first, as arguments put
//! before the command line's, so that a flag on the command line wins.

use crate::cli::args::{normalise, parse_i32, ArgError, GpuLayers, RunConfig};
use crate::cli::device::DeviceConfig;
use crate::cli::flags::Flag as CliFlag;
use crate::sample::{SamplingParams, UserSet};
use std::path::PathBuf;

/// Everything one `rs-llama-server` run needs, typed.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    pub model: Option<PathBuf>,
    /// `--host`: addresses to listen on (IPv4, IPv6, or UNIX socket paths ending in `.sock`).
    pub hosts: Vec<String>,
    pub port: u16,
    /// `-np`: -1 = auto (4 slots sharing one KV pool).
    pub n_parallel: i32,
    /// `-c`: 0 = the model's training context.
    pub n_ctx: u32,
    pub cont_batching: bool,
    pub n_batch: u32,
    pub n_ubatch: u32,
    pub threads: Option<i32>,
    pub threads_batch: Option<i32>,
    /// The server's default `n_predict` for requests that give none.
    pub n_predict: i32,
    /// The server's default sampling settings for requests.
    pub sampling: SamplingParams,
    pub sampling_user: UserSet,
    pub api_keys: Vec<String>,
    /// `-a`: the model's names (a sorted set, as llama-server keeps them); the first is its name
    /// in responses (else the `-m` path).
    pub alias: Vec<String>,
    /// `--tags`: informational (a sorted set, as llama-server keeps them).
    pub tags: Vec<String>,
    /// `--chat-template[-file]`: a built-in name or Jinja text ("" = the model's).
    pub chat_template: String,
    pub use_jinja: bool,
    /// `--reasoning-format`: where thinking goes in answers (default: deepseek, i.e. into
    /// `reasoning_content`).
    pub reasoning_format: crate::chat::request::ReasoningFormat,
    /// `-rea`: 1 on, 0 off, -1 auto (thinking on for templates that support it).
    pub enable_reasoning: i32,
    /// `--chat-template-kwargs` (and `-rea`'s `enable_thinking`, `--reasoning-effort`): values as
    /// JSON text, by key (llama.cpp keeps them in a sorted map).
    pub chat_template_kwargs: std::collections::BTreeMap<String, String>,
    pub endpoint_metrics: bool,
    pub endpoint_slots: bool,
    pub endpoint_props: bool,
    /// `--sleep-idle-seconds`: -1 = never sleep.
    pub sleep_idle_seconds: i32,
    /// `-to`: read/write timeout in seconds.
    pub timeout_s: u64,
    pub webui: bool,
    /// `--ui-mcp-proxy`: `/cors-proxy` forwards requests (experimental; else it answers 403).
    pub ui_mcp_proxy: bool,
    /// `--lora`, `--lora-scaled`: adapters by id in this order; `--lora-init-without-apply`.
    pub lora: Vec<crate::cli::lora::LoraArg>,
    pub lora_init_without_apply: bool,
    pub cache_prompt: bool,
    /// `-kvu`: every slot may use the whole `-c` (implied by `-np` auto).
    pub kv_unified: bool,
    /// `-cram`: the host-memory prompt cache's limit in MiB (-1 = no limit, 0 = no cache).
    pub cache_ram_mib: i64,
    /// `--cache-idle-slots`: idle slots go to the prompt cache when a task starts.
    pub cache_idle_slots: bool,
    /// `-sps`: the share of a prompt a slot's cache must hold for the slot to be chosen by it.
    pub slot_prompt_similarity: f32,
    /// `--slot-save-path`: where `POST /slots/{id}?action=save|restore` files go (None: refused).
    pub slot_save_path: Option<PathBuf>,
    pub verbosity: i32,
    pub log_disable: bool,
    pub gpu_mem: Option<u64>,
    /// `-ngl`: llama.cpp's split under `--policy layers`, a cap on what is resident under `auto`.
    pub gpu_layers: Option<GpuLayers>,
    pub device: DeviceConfig,
    /// Vertex AI's prediction routes (`AIP_MODE=PREDICTION`, read when the server starts).
    pub vertex: Option<crate::server::http::vertex::VertexAi>,
    /// `--embedding(s)`: the embedding endpoints answer (else 501).
    pub embedding: bool,
    /// `--pooling` (None: the model's `{arch}.pooling_type`, else none).
    pub pooling: Option<crate::server::api::Pooling>,
    /// `--embd-normalize`: the default of a request's `embd_normalize`.
    pub embd_normalize: i32,
    /// `--spm-infill`: suffix, prefix, middle instead of prefix, suffix, middle.
    pub spm_infill: bool,
    pub show_help: bool,
    pub show_version: bool,
    pub warnings: Vec<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            model: None,
            hosts: vec!["127.0.0.1".into()],
            port: 8080,
            n_parallel: -1,
            n_ctx: 0,
            cont_batching: true,
            n_batch: 2048,
            n_ubatch: 512,
            threads: None,
            threads_batch: None,
            n_predict: -1,
            sampling: SamplingParams::default(),
            sampling_user: UserSet::default(),
            api_keys: Vec::new(),
            alias: Vec::new(),
            tags: Vec::new(),
            chat_template: String::new(),
            use_jinja: true,
            reasoning_format: Default::default(),
            enable_reasoning: -1,
            chat_template_kwargs: Default::default(),
            endpoint_metrics: false,
            endpoint_slots: true,
            endpoint_props: false,
            sleep_idle_seconds: -1,
            timeout_s: 3600,
            webui: true,
            ui_mcp_proxy: false,
            lora: Vec::new(),
            lora_init_without_apply: false,
            cache_prompt: true,
            kv_unified: false,
            cache_ram_mib: 8192,
            cache_idle_slots: true,
            slot_prompt_similarity: 0.1,
            slot_save_path: None,
            verbosity: crate::cli::log::DEFAULT_VERBOSITY,
            log_disable: false,
            gpu_mem: None,
            gpu_layers: None,
            device: DeviceConfig::default(),
            vertex: None,
            embedding: false,
            pooling: None,
            embd_normalize: 2,
            spm_infill: false,
            show_help: false,
            show_version: false,
            warnings: Vec::new(),
        }
    }
}

impl ServerConfig {
    /// Slots: `-np`, with auto (-1 or 0) meaning 4 as llama-server.
    pub fn n_slots(&self) -> usize {
        if self.n_parallel <= 0 {
            4
        } else {
            self.n_parallel as usize
        }
    }

    /// Whether the slots share one KV pool of `-c` tokens (each may fill all of it).
    pub fn unified_kv(&self) -> bool {
        self.kv_unified || self.n_parallel < 0
    }

    pub fn n_threads(&self) -> usize {
        match self.threads {
            Some(n) if n > 0 => n as usize,
            Some(_) => crate::cli::threads::logical_cpus(),
            None => crate::cli::threads::physical_cores(),
        }
    }

    pub fn n_threads_batch(&self) -> usize {
        match self.threads_batch {
            Some(n) if n > 0 => n as usize,
            Some(_) => crate::cli::threads::logical_cpus(),
            None => self.n_threads(),
        }
    }
}

type Setter = fn(&mut ServerConfig, &str) -> Result<(), String>;

pub struct Flag {
    pub names: &'static [&'static str],
    pub value: Option<&'static str>,
    pub help: &'static str,
    pub set: Setter,
}

impl Flag {
    pub fn usage(&self) -> String {
        let names = self.names.join(", ");
        match self.value {
            Some(v) => format!("{names} {v}"),
            None => names,
        }
    }
}

macro_rules! flag {
    ([$($name:literal),+], $value:expr, $help:literal, $set:expr) => {
        Flag { names: &[$($name),+], value: $value, help: $help, set: $set }
    };
}

const N: Option<&str> = Some("N");

fn on(flag: &mut bool, v: bool) -> Result<(), String> {
    *flag = v;
    Ok(())
}

pub static FLAGS: &[Flag] = &[
    flag!(["-h", "--help", "--usage"], None, "print usage and exit", |c, _| on(&mut c.show_help, true)),
    flag!(["--version"], None, "show version and build info", |c, _| on(&mut c.show_version, true)),
    flag!(["-m", "--model"], Some("FNAME"), "model path (GGUF file)", |c, v| {
        c.model = Some(v.into());
        Ok(())
    }),
    flag!(["--host"], Some("HOST"), "IP addresses to listen on, comma-separated, or UNIX socket paths ending in .sock (default: 127.0.0.1)", |c, v| {
        c.hosts = comma_list(v);
        if c.hosts.is_empty() {
            return Err("--host requires at least one address".into());
        }
        Ok(())
    }),
    flag!(["--port"], Some("PORT"), "port to listen on (default: 8080; 0 = any free port)", |c, v| {
        c.port = v.trim().parse().map_err(|_| format!("invalid port '{v}'"))?;
        Ok(())
    }),
    flag!(["-np", "--parallel"], N, "number of server slots (default: -1, -1 = auto: 4 slots sharing the context)", |c, v| {
        c.n_parallel = parse_i32(v)?;
        Ok(())
    }),
    flag!(["-kvu", "--kv-unified"], None, "one KV pool of -c tokens shared by every slot (default: on when -np is auto)", |c, _| on(&mut c.kv_unified, true)),
    flag!(["-no-kvu", "--no-kv-unified"], None, "one KV pool of -c tokens per slot split evenly (-np auto still shares it)", |c, _| on(&mut c.kv_unified, false)),
    flag!(["-sps", "--slot-prompt-similarity"], Some("SIMILARITY"), "how much of a request's prompt a slot's cache must hold for that slot to be used (default: 0.10, 0.0 = disabled)", |c, v| {
        c.slot_prompt_similarity = v.trim().parse().map_err(|_| format!("invalid slot-prompt-similarity '{v}'"))?;
        Ok(())
    }),
    flag!(["-c", "--ctx-size"], N, "size of the prompt context (default: 0, 0 = loaded from model)", |c, v| {
        c.n_ctx = u32::try_from(parse_i32(v)?).map_err(|_| format!("invalid ctx-size = {v} (must be >= 0)"))?;
        Ok(())
    }),
    flag!(["-cb", "--cont-batching"], None, "continuous batching (default: enabled)", |c, _| on(&mut c.cont_batching, true)),
    flag!(["-nocb", "--no-cont-batching"], None, "disable continuous batching", |c, _| on(&mut c.cont_batching, false)),
    flag!(["-b", "--batch-size"], N, "logical maximum batch size (default: 2048)", |c, v| {
        c.n_batch = positive(v, "batch-size")?;
        Ok(())
    }),
    flag!(["-ub", "--ubatch-size"], N, "physical maximum batch size (default: 512)", |c, v| {
        c.n_ubatch = positive(v, "ubatch-size")?;
        Ok(())
    }),
    flag!(["-t", "--threads"], N, "number of CPU threads to use during generation (default: physical cores)", |c, v| {
        c.threads = Some(parse_i32(v)?);
        Ok(())
    }),
    flag!(["-tb", "--threads-batch"], N, "number of threads to use during batch and prompt processing (default: same as --threads)", |c, v| {
        c.threads_batch = Some(parse_i32(v)?);
        Ok(())
    }),
    flag!(["-n", "--predict", "--n-predict"], N, "default number of tokens to predict (default: -1, -1 = infinity)", |c, v| {
        c.n_predict = parse_i32(v)?;
        Ok(())
    }),
    flag!(["--api-key"], Some("KEY"), "API key for authentication; several as a comma-separated list or by repeating the flag (default: none)", |c, v| {
        c.api_keys.extend(v.split(',').map(str::trim).filter(|k| !k.is_empty()).map(String::from));
        Ok(())
    }),
    flag!(["--api-key-file"], Some("FNAME"), "file of API keys, one per line; lines starting with '#' are comments", |c, v| {
        let text = std::fs::read_to_string(v).map_err(|_| format!("error: failed to open file '{v}'"))?;
        c.api_keys.extend(text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')).map(String::from));
        Ok(())
    }),
    flag!(["-a", "--alias"], Some("STRING"), "model name aliases, comma-separated; the first (sorted) is the name in responses (default: the model path)", |c, v| {
        insert_sorted(&mut c.alias, v);
        Ok(())
    }),
    flag!(["--tags"], Some("STRING"), "model tags, comma-separated (informational, in /v1/models)", |c, v| {
        insert_sorted(&mut c.tags, v);
        Ok(())
    }),
    flag!(["--chat-template"], Some("JINJA_TEMPLATE"), "chat template: a built-in name or Jinja text (default: the model's)", |c, v| {
        c.chat_template = v.to_string();
        Ok(())
    }),
    flag!(["--chat-template-file"], Some("JINJA_TEMPLATE_FILE"), "a file containing the chat template", |c, v| {
        let bytes = std::fs::read(v).map_err(|e| format!("error: failed to open file '{v}': {e}"))?;
        c.chat_template = String::from_utf8_lossy(&bytes).into_owned();
        Ok(())
    }),
    flag!(["--jinja"], None, "run the chat template as Jinja (default: enabled)", |c, _| on(&mut c.use_jinja, true)),
    flag!(["--no-jinja"], None, "recognise the chat template as a built-in format instead", |c, _| on(&mut c.use_jinja, false)),
    flag!(["--chat-template-kwargs"], Some("STRING"), "additional params for the Jinja template, a JSON object, e.g. '{\"key1\":\"value1\"}'", |c, v| {
        let parsed: serde_json::Value = serde_json::from_str(v).map_err(|e| format!("error: invalid JSON for --chat-template-kwargs: {e}"))?;
        let map = parsed.as_object().ok_or("error: --chat-template-kwargs must be a JSON object")?;
        for (k, val) in map {
            if k == "enable_thinking" {
                c.warnings.push("Setting 'enable_thinking' via --chat-template-kwargs is deprecated. Use --reasoning on / --reasoning off instead.".into());
            }
            c.chat_template_kwargs.insert(k.clone(), val.to_string());
        }
        Ok(())
    }),
    flag!(["--reasoning-format"], Some("FORMAT"), "where thoughts go in answers: none (left in content), deepseek or deepseek-legacy (in reasoning_content), auto (default: auto, as deepseek)", |c, v| {
        c.reasoning_format = crate::chat::request::ReasoningFormat::parse(v)?;
        Ok(())
    }),
    flag!(["-rea", "--reasoning"], Some("[on|off|auto]"), "use reasoning/thinking in the chat ('on', 'off', or 'auto' (default): detect from the template)", |c, v| {
        match (truthy(v), v) {
            (Some(true), _) => {
                c.enable_reasoning = 1;
                c.chat_template_kwargs.insert("enable_thinking".into(), "true".into());
            }
            (Some(false), _) => {
                c.enable_reasoning = 0;
                c.chat_template_kwargs.insert("enable_thinking".into(), "false".into());
            }
            (None, "auto" | "-1") => c.enable_reasoning = -1,
            _ => return Err(format!("error: unknown value for --reasoning: '{v}'")),
        }
        Ok(())
    }),
    flag!(["--reasoning-effort"], Some("LEVEL"), "reasoning effort given to the chat template: 'default' keeps the template's, or a level such as 'low', 'medium', 'high' (default: default)", |c, v| {
        if v == "default" {
            c.chat_template_kwargs.remove("reasoning_effort");
        } else {
            c.chat_template_kwargs.insert("reasoning_effort".into(), serde_json::Value::from(v).to_string());
        }
        Ok(())
    }),
    flag!(["--reasoning-budget"], N, "token budget for thinking: only -1 (unrestricted) is supported by rs-llama", |_, v| {
        match parse_i32(v)? {
            -1 => Ok(()),
            n if n < -1 => Err("invalid value".into()),
            _ => Err("--reasoning-budget other than -1 is not supported yet by rs-llama (thinking is never cut short)".into()),
        }
    }),
    flag!(["--metrics"], None, "enable the Prometheus /metrics endpoint (default: disabled)", |c, _| on(&mut c.endpoint_metrics, true)),
    flag!(["--slots"], None, "expose slot monitoring at /slots (default: enabled)", |c, _| on(&mut c.endpoint_slots, true)),
    flag!(["--no-slots"], None, "disable /slots", |c, _| on(&mut c.endpoint_slots, false)),
    flag!(["--props"], None, "allow changing global properties via POST /props (default: disabled)", |c, _| on(&mut c.endpoint_props, true)),
    flag!(["--sleep-idle-seconds"], Some("SECONDS"), "seconds of idleness after which the model is unloaded until the next request (default: -1 = disabled)", |c, v| {
        let n = parse_i32(v)?;
        if n == 0 || n < -1 {
            return Err("invalid value: cannot be 0 or less than -1".into());
        }
        c.sleep_idle_seconds = n;
        Ok(())
    }),
    flag!(["-to", "--timeout"], N, "server read/write timeout in seconds (default: 3600)", |c, v| {
        c.timeout_s = u64::try_from(parse_i32(v)?).map_err(|_| format!("invalid timeout = {v}"))?;
        Ok(())
    }),
    flag!(["--cache-prompt"], None, "reuse a slot's KV cache for a prompt's common prefix (default: enabled)", |c, _| on(&mut c.cache_prompt, true)),
    flag!(["--no-cache-prompt"], None, "disable prompt caching", |c, _| on(&mut c.cache_prompt, false)),
    flag!(["-cram", "--cache-ram"], N, "maximum size of the host-memory prompt cache in MiB (default: 8192, -1 - no limit, 0 - disable)", |c, v| {
        c.cache_ram_mib = i64::from(parse_i32(v)?);
        Ok(())
    }),
    flag!(["--slot-save-path"], Some("PATH"), "path to save slot kv cache (default: disabled)", |c, v| {
        if !std::path::Path::new(v).is_dir() {
            return Err(format!("not a directory: {v}"));
        }
        c.slot_save_path = Some(PathBuf::from(v));
        Ok(())
    }),
    flag!(["--cache-idle-slots"], None, "save idle slots to the prompt cache when a task starts, and clear them when the KV is unified (default: enabled, requires --cache-ram)", |c, _| on(&mut c.cache_idle_slots, true)),
    flag!(["--no-cache-idle-slots"], None, "keep idle slots' caches out of the prompt cache", |c, _| on(&mut c.cache_idle_slots, false)),
    flag!(["-v", "--verbose", "--log-verbose"], None, "log everything", |c, _| {
        c.verbosity = i32::MAX;
        Ok(())
    }),
    flag!(["-lv", "--verbosity", "--log-verbosity"], N, "verbosity threshold: 1 error, 2 warning, 3 info, 5 debug (default: 3)", |c, v| {
        c.verbosity = parse_i32(v)?;
        Ok(())
    }),
    flag!(["--log-disable"], None, "disable logging", |c, _| on(&mut c.log_disable, true)),
    flag!(["--no-log-prefix"], None, "no level prefix on log lines (rs-llama never prints one)", |_, _| Ok(())),
    flag!(["--no-log-timestamps"], None, "no timestamps on log lines (rs-llama never prints them)", |_, _| Ok(())),

];

fn positive(v: &str, what: &str) -> Result<u32, String> {
    let n = parse_i32(v)?;
    match u32::try_from(n) {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(format!("invalid {what} = {n} (must be > 0)")),
    }
}

pub fn find(arg: &str) -> Option<&'static Flag> {
    let in_table = |t: &'static [Flag]| t.iter().find(|f| f.names.contains(&arg));
    in_table(FLAGS)
        .or_else(|| in_table(super::args_ui::FLAGS))
        .or_else(|| in_table(super::args_lora::FLAGS))
        .or_else(|| super::args_embed::find(arg))
}

/// Flags the server takes exactly as `rs-llama` does (sampling and placement), by their first
/// names: they are read with `rs-llama`'s own table ([`crate::cli::flags`]), so each is written
/// once.
const FROM_RS_LLAMA: &[&str] = &[
    "-s",
    "--temp",
    "--top-k",
    "--top-p",
    "--min-p",
    "--typical",
    "--repeat-last-n",
    "--repeat-penalty",
    "--presence-penalty",
    "--frequency-penalty",
    "--ignore-eos",
    "-fa",
    "--gpu-mem",
    "-dev",
    "--sim-hw",
    "--policy",
    "-ngl",
    "-ncmoe",
    "-cmoe",
    "-ot",
    "--hot-experts",
    "--print-plan",
];

/// One of `rs-llama`'s flags that the server shares.
fn find_shared(arg: &str) -> Option<&'static CliFlag> {
    crate::cli::flags::find(arg).filter(|f| FROM_RS_LLAMA.contains(&f.names[0]))
}

/// A shared flag sets the fields the two configurations have in common: they go through an
/// `rs-llama` configuration and come back.
fn apply_shared(cfg: &mut ServerConfig, flag: &CliFlag, value: &str) -> Result<(), String> {
    let mut run = RunConfig {
        sampling: std::mem::take(&mut cfg.sampling),
        sampling_user: cfg.sampling_user,
        gpu_layers: cfg.gpu_layers,
        gpu_mem: cfg.gpu_mem,
        device: std::mem::take(&mut cfg.device),
        ..RunConfig::default()
    };
    let result = (flag.set)(&mut run, value);
    (cfg.sampling, cfg.sampling_user, cfg.gpu_layers) = (run.sampling, run.sampling_user, run.gpu_layers);
    (cfg.gpu_mem, cfg.device) = (run.gpu_mem, run.device);
    result
}

/// `LLAMA_ARG_*` variables (llama.cpp's names) and the flag each stands for. A switch is given
/// as its positive flag and its negative one; `LLAMA_ARG_NO_X` set means the negative one.
enum EnvArg {
    Value(&'static str, &'static str),
    Switch(&'static str, &'static str, Option<&'static str>),
}

const ENV_ARGS: &[EnvArg] = &[
    EnvArg::Value("LLAMA_ARG_MODEL", "-m"),
    EnvArg::Value("LLAMA_ARG_HOST", "--host"),
    EnvArg::Value("LLAMA_ARG_PORT", "--port"),
    EnvArg::Value("LLAMA_ARG_N_PARALLEL", "-np"),
    EnvArg::Value("LLAMA_ARG_CTX_SIZE", "-c"),
    EnvArg::Value("LLAMA_ARG_BATCH", "-b"),
    EnvArg::Value("LLAMA_ARG_UBATCH", "-ub"),
    EnvArg::Value("LLAMA_ARG_THREADS", "-t"),
    EnvArg::Value("LLAMA_ARG_N_PREDICT", "-n"),
    EnvArg::Value("LLAMA_ARG_TEMPERATURE", "--temp"),
    EnvArg::Value("LLAMA_ARG_TOP_K", "--top-k"),
    EnvArg::Value("LLAMA_ARG_TOP_P", "--top-p"),
    EnvArg::Value("LLAMA_ARG_MIN_P", "--min-p"),
    EnvArg::Value("LLAMA_ARG_REPEAT_PENALTY", "--repeat-penalty"),
    EnvArg::Value("LLAMA_ARG_PRESENCE_PENALTY", "--presence-penalty"),
    EnvArg::Value("LLAMA_ARG_FREQUENCY_PENALTY", "--frequency-penalty"),
    // llama.cpp spells this one without ARG.
    EnvArg::Value("LLAMA_API_KEY", "--api-key"),
    EnvArg::Value("LLAMA_ARG_API_KEY_FILE", "--api-key-file"),
    EnvArg::Value("LLAMA_ARG_ALIAS", "-a"),
    EnvArg::Value("LLAMA_ARG_TAGS", "--tags"),
    EnvArg::Value("LLAMA_ARG_CHAT_TEMPLATE", "--chat-template"),
    EnvArg::Value("LLAMA_ARG_CHAT_TEMPLATE_FILE", "--chat-template-file"),
    EnvArg::Value("LLAMA_ARG_TIMEOUT", "-to"),
    EnvArg::Value("LLAMA_ARG_DEVICE", "-dev"),
    EnvArg::Value("LLAMA_ARG_LOG_VERBOSITY", "-lv"),
    EnvArg::Value("LLAMA_ARG_FLASH_ATTN", "-fa"),
    EnvArg::Switch("LLAMA_ARG_CONT_BATCHING", "-cb", Some("-nocb")),
    EnvArg::Switch("LLAMA_ARG_CACHE_PROMPT", "--cache-prompt", Some("--no-cache-prompt")),
    EnvArg::Switch("LLAMA_ARG_JINJA", "--jinja", Some("--no-jinja")),
    EnvArg::Value("LLAMA_ARG_CHAT_TEMPLATE_KWARGS", "--chat-template-kwargs"),
    EnvArg::Value("LLAMA_ARG_THINK", "--reasoning-format"),
    EnvArg::Value("LLAMA_ARG_REASONING", "-rea"),
    EnvArg::Value("LLAMA_ARG_REASONING_EFFORT", "--reasoning-effort"),
    EnvArg::Value("LLAMA_ARG_THINK_BUDGET", "--reasoning-budget"),
    EnvArg::Switch("LLAMA_ARG_ENDPOINT_METRICS", "--metrics", None),
    EnvArg::Switch("LLAMA_ARG_ENDPOINT_PROPS", "--props", None),
    EnvArg::Switch("LLAMA_ARG_ENDPOINT_SLOTS", "--slots", Some("--no-slots")),
    EnvArg::Switch("LLAMA_ARG_UI", "--ui", Some("--no-ui")),
    EnvArg::Switch("LLAMA_ARG_UI_MCP_PROXY", "--ui-mcp-proxy", Some("--no-ui-mcp-proxy")),
    EnvArg::Switch("LLAMA_ARG_KV_UNIFIED", "-kvu", Some("-no-kvu")),
    EnvArg::Value("LLAMA_ARG_CACHE_RAM", "--cache-ram"),
    EnvArg::Switch("LLAMA_ARG_CACHE_IDLE_SLOTS", "--cache-idle-slots", Some("--no-cache-idle-slots")),
    EnvArg::Switch("LLAMA_ARG_EMBEDDINGS", "--embeddings", None),
    EnvArg::Value("LLAMA_ARG_POOLING", "--pooling"),
];

fn truthy(v: &str) -> Option<bool> {
    match v {
        "on" | "enabled" | "true" | "1" => Some(true),
        "off" | "disabled" | "false" | "0" => Some(false),
        _ => None,
    }
}

/// The non-empty trimmed items of a comma-separated list.
fn comma_list(v: &str) -> Vec<String> {
    v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect()
}

/// `v`'s items added to the sorted set `set`.
fn insert_sorted(set: &mut Vec<String>, v: &str) {
    for a in comma_list(v) {
        if let Err(at) = set.binary_search(&a) {
            set.insert(at, a);
        }
    }
}

/// The arguments the environment stands for (`env` looks a variable up).
pub fn env_args(env: impl Fn(&str) -> Option<String>) -> Result<Vec<String>, ArgError> {
    let mut out = Vec::new();
    for e in ENV_ARGS {
        match *e {
            EnvArg::Value(name, flag) => {
                if let Some(v) = env(name) {
                    out.extend([flag.to_string(), v]);
                }
            }
            EnvArg::Switch(name, pos, neg) => {
                let negated = neg.is_some() && env(&name.replace("LLAMA_ARG_", "LLAMA_ARG_NO_")).is_some();
                let value = if negated { Some(false) } else { env(name).and_then(|v| truthy(&v)) };
                match (value, neg) {
                    (Some(true), _) => out.push(pos.to_string()),
                    (Some(false), Some(neg)) => out.push(neg.to_string()),
                    _ => {}
                }
            }
        }
    }
    Ok(out)
}

/// Parse the process's environment and then `args` (after the program name).
pub fn parse_with_env<S: AsRef<str>>(args: &[S]) -> Result<ServerConfig, ArgError> {
    let mut cfg = ServerConfig::default();
    apply(&mut cfg, &env_args(|k| std::env::var(k).ok())?, false)?;
    apply(&mut cfg, args, true)?;
    Ok(cfg)
}

/// Parse `args` alone.
pub fn parse<S: AsRef<str>>(args: &[S]) -> Result<ServerConfig, ArgError> {
    let mut cfg = ServerConfig::default();
    apply(&mut cfg, args, true)?;
    Ok(cfg)
}

fn apply<S: AsRef<str>>(cfg: &mut ServerConfig, args: &[S], warn_repeats: bool) -> Result<(), ArgError> {
    let mut seen: Vec<String> = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let arg = normalise(args[i].as_ref());
        i += 1;
        let Some(flag) = find(&arg) else {
            if let Some(shared) = find_shared(&arg) {
                if warn_repeats && seen.contains(&arg) {
                    cfg.warnings.push(format!(
                        "DEPRECATED: argument '{arg}' specified multiple times, use comma-separated values instead (only last value will be used)"
                    ));
                }
                seen.push(arg.clone());
                let value = match shared.value {
                    Some(_) => {
                        let Some(v) = args.get(i) else {
                            let reason = "expected value for argument".to_string();
                            return Err(ArgError::BadValue { flag: arg, reason, usage: shared.usage() });
                        };
                        i += 1;
                        v.as_ref()
                    }
                    None => "",
                };
                apply_shared(cfg, shared, value).map_err(|reason| ArgError::BadValue {
                    flag: arg.clone(),
                    reason,
                    usage: shared.usage(),
                })?;
                continue;
            }
            return Err(if crate::cli::flags::is_llama_cpp_flag(&arg) {
                ArgError::Unsupported(arg)
            } else {
                ArgError::Unknown(arg)
            });
        };
        // Repeating --api-key adds keys; other repeats keep the last value, with llama.cpp's warning.
        if warn_repeats && seen.contains(&arg) && flag.names[0] != "--api-key" {
            cfg.warnings.push(format!(
                "DEPRECATED: argument '{arg}' specified multiple times, use comma-separated values instead (only last value will be used)"
            ));
        }
        seen.push(arg.clone());
        let value = match flag.value {
            Some(_) => {
                let Some(v) = args.get(i) else {
                    return Err(bad_value(&arg, flag, "expected value for argument".into()));
                };
                i += 1;
                v.as_ref()
            }
            None => "",
        };
        (flag.set)(cfg, value).map_err(|reason| bad_value(&arg, flag, reason))?;
    }
    Ok(())
}

fn bad_value(arg: &str, flag: &Flag, reason: String) -> ArgError {
    ArgError::BadValue { flag: arg.to_string(), reason, usage: flag.usage() }
}

/// `-h` text: one line per flag, from the table.
pub fn usage(program: &str) -> String {
    let mut s = format!("usage: {program} -m MODEL.gguf [options]\n\n");
    let shared: Vec<&CliFlag> = FROM_RS_LLAMA.iter().filter_map(|n| find_shared(n)).collect();
    let ours = FLAGS
        .iter()
        .chain(super::args_ui::FLAGS)
        .chain(super::args_lora::FLAGS)
        .chain(super::args_embed::FLAGS);
    let lines = ours.map(|f| (f.usage(), f.help)).chain(shared.iter().map(|f| (f.usage(), f.help)));
    let lines: Vec<(String, &str)> = lines.collect();
    let width = lines.iter().map(|(u, _)| u.len()).max().unwrap_or(0);
    for (u, help) in lines {
        s += &format!("{u:<width$}  {help}\n");
    }
    s += &format!("\nexample usage:\n\n  {program} -m your_model.gguf --port 8080 -np 4\n");
    s
}

#[cfg(test)]
#[path = "args_tests.rs"]
mod tests;
