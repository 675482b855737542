//! The one table of `rs-llama` flags, spelled as llama.cpp spells them (single-dash multi-letter forms
//! like `-ngl` included). Each entry says its names, its value, its help line and how it sets the
//! [`RunConfig`]; parsing, help and tests all read this table.

use super::args::{parse_f32, parse_i32, ConversationMode, GpuLayers, RunConfig};
use super::device::DeviceChoice;
use crate::sample::SamplerKind;

pub struct Flag {
    pub names: &'static [&'static str],
    /// Metavariable of the value, or None for a switch.
    pub value: Option<&'static str>,
    pub help: &'static str,
    /// Apply the flag (`value` is "" for switches); an Err is the reason the value is bad.
    pub set: fn(&mut RunConfig, &str) -> Result<(), String>,
}

impl Flag {
    pub fn takes_value(&self) -> bool {
        self.value.is_some()
    }

    /// `-n, --predict, --n-predict N`
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

pub static FLAGS: &[Flag] = &[
    flag!(["-h", "--help", "--usage"], None, "print usage and exit", |c, _| {
        c.show_help = true;
        Ok(())
    }),
    flag!(["--version"], None, "show version and build info", |c, _| {
        c.show_version = true;
        Ok(())
    }),
    flag!(["-m", "--model"], Some("FNAME"), "model path (GGUF file)", |c, v| {
        c.model = Some(v.into());
        Ok(())
    }),
    flag!(["-p", "--prompt"], Some("PROMPT"), "prompt to start generation with", |c, v| {
        c.prompt = v.to_string();
        Ok(())
    }),
    flag!(["-f", "--file"], Some("FNAME"), "a file containing the prompt (one trailing newline is dropped)", |c, v| {
        let mut text = file_text(v)?;
        if text.ends_with('\n') {
            text.pop();
        }
        c.prompt = text;
        Ok(())
    }),
    flag!(["-n", "--predict", "--n-predict"], N, "number of tokens to predict (default: -1, -1 = infinity, -2 = until context filled)", |c, v| {
        c.n_predict = parse_i32(v)?;
        Ok(())
    }),
    flag!(["-c", "--ctx-size"], N, "size of the prompt context (default: 0, 0 = loaded from model)", |c, v| {
        c.n_ctx = non_negative(parse_i32(v)?, "ctx-size")?;
        Ok(())
    }),
    flag!(["-b", "--batch-size"], N, "logical maximum batch size (default: 2048)", |c, v| {
        c.n_batch = positive(parse_i32(v)?, "batch-size")?;
        Ok(())
    }),
    flag!(["-ub", "--ubatch-size"], N, "physical maximum batch size (default: 512)", |c, v| {
        c.n_ubatch = positive(parse_i32(v)?, "ubatch-size")?;
        Ok(())
    }),
    flag!(["--keep"], N, "number of tokens to keep from the initial prompt (default: 0, -1 = all)", |c, v| {
        c.n_keep = parse_i32(v)?;
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
    flag!(["-s", "--seed"], Some("SEED"), "RNG seed (default: -1, use random seed for -1)", |c, v| {
        c.sampling.seed = parse_seed(v)?;
        Ok(())
    }),
    flag!(["--temp", "--temperature"], N, "temperature (default: 0.80)", |c, v| {
        c.sampling.temp = parse_f32(v)?.max(0.0);
        c.sampling_user.temp = true;
        Ok(())
    }),
    flag!(["--top-k"], N, "top-k sampling (default: 40, 0 = disabled)", |c, v| {
        c.sampling.top_k = parse_i32(v)?;
        c.sampling_user.top_k = true;
        Ok(())
    }),
    flag!(["--top-p"], N, "top-p sampling (default: 0.95, 1.0 = disabled)", |c, v| {
        c.sampling.top_p = parse_f32(v)?;
        c.sampling_user.top_p = true;
        Ok(())
    }),
    flag!(["--min-p"], N, "min-p sampling (default: 0.05, 0.0 = disabled)", |c, v| {
        c.sampling.min_p = parse_f32(v)?;
        c.sampling_user.min_p = true;
        Ok(())
    }),
    flag!(["--top-nsigma", "--top-n-sigma"], N, "top-n-sigma sampling (default: -1.00, -1.0 = disabled)", |c, v| {
        c.sampling.top_n_sigma = parse_f32(v)?;
        Ok(())
    }),
    flag!(["--xtc-probability"], N, "xtc probability (default: 0.00, 0.0 = disabled)", |c, v| {
        c.sampling.xtc_probability = parse_f32(v)?;
        c.sampling_user.xtc_probability = true;
        Ok(())
    }),
    flag!(["--xtc-threshold"], N, "xtc threshold (default: 0.10, 1.0 = disabled)", |c, v| {
        c.sampling.xtc_threshold = parse_f32(v)?;
        c.sampling_user.xtc_threshold = true;
        Ok(())
    }),
    flag!(["--typical", "--typical-p"], N, "locally typical sampling, parameter p (default: 1.00, 1.0 = disabled)", |c, v| {
        c.sampling.typ_p = parse_f32(v)?;
        Ok(())
    }),
    flag!(["--dynatemp-range"], N, "dynamic temperature range (default: 0.00, 0.0 = disabled)", |c, v| {
        c.sampling.dynatemp_range = parse_f32(v)?;
        Ok(())
    }),
    flag!(["--dynatemp-exp"], N, "dynamic temperature exponent (default: 1.00)", |c, v| {
        c.sampling.dynatemp_exponent = parse_f32(v)?;
        Ok(())
    }),
    flag!(["--repeat-last-n"], N, "last n tokens to consider for penalize (default: 64, 0 = disabled)", |c, v| {
        let n = parse_i32(v)?;
        if n < 0 {
            return Err(format!("error: invalid repeat-last-n = {n}"));
        }
        c.sampling.penalty_last_n = n;
        c.sampling_user.penalty_last_n = true;
        Ok(())
    }),
    flag!(["--repeat-penalty"], N, "penalize repeat sequence of tokens (default: 1.00, 1.0 = disabled)", |c, v| {
        c.sampling.penalty_repeat = parse_f32(v)?;
        c.sampling_user.penalty_repeat = true;
        Ok(())
    }),
    flag!(["--presence-penalty"], N, "repeat alpha presence penalty (default: 0.00, 0.0 = disabled)", |c, v| {
        c.sampling.penalty_present = parse_f32(v)?;
        Ok(())
    }),
    flag!(["--frequency-penalty"], N, "repeat alpha frequency penalty (default: 0.00, 0.0 = disabled)", |c, v| {
        c.sampling.penalty_freq = parse_f32(v)?;
        Ok(())
    }),
    flag!(["--samplers"], Some("SAMPLERS"), "samplers in order, separated by ';' (default: penalties;dry;top_n_sigma;top_k;typ_p;top_p;min_p;xtc;temperature)", |c, v| {
        c.sampling.samplers = Vec::new();
        for name in v.split(';') {
            match SamplerKind::from_name(name) {
                Some(kind) => c.sampling.samplers.push(kind),
                None => c.warnings.push(format!(
                    "common_sampler_types_from_names: unable to match sampler by name '{}'",
                    name.to_ascii_lowercase()
                )),
            }
        }
        c.sampling_user.samplers = true;
        Ok(())
    }),
    flag!(["--sampler-seq", "--sampling-seq"], Some("SEQUENCE"), "simplified sequence for samplers (default: edskypmxt)", |c, v| {
        c.sampling.samplers = Vec::new();
        for ch in v.chars() {
            match SamplerKind::from_char(ch) {
                Some(kind) => c.sampling.samplers.push(kind),
                None => c.warnings.push(format!("common_sampler_types_from_chars: unable to match sampler by char '{ch}'")),
            }
        }
        c.sampling_user.samplers = true;
        Ok(())
    }),
    flag!(["-l", "--logit-bias"], Some("TOKEN_ID(+/-)BIAS"), "modify the likelihood of a token, e.g. `--logit-bias 15043+1` or `15043-inf`", |c, v| {
        c.sampling.logit_bias.push(parse_logit_bias(v)?);
        Ok(())
    }),
    flag!(["--grammar"], Some("GRAMMAR"), "BNF-like grammar to constrain generations (GBNF, as llama.cpp's grammars/ samples)", |c, v| {
        c.sampling.grammar = v.to_string();
        Ok(())
    }),
    flag!(["--grammar-file"], Some("FNAME"), "file to read the grammar from", |c, v| {
        c.sampling.grammar = file_text(v)?;
        Ok(())
    }),
    flag!(["-j", "--json-schema"], Some("SCHEMA"), "JSON schema to constrain generations (https://json-schema.org/), e.g. `{\"type\": \"object\"}` for any JSON object", |c, v| {
        json_schema(c, v)
    }),
    flag!(["-jf", "--json-schema-file"], Some("FILE"), "file containing a JSON schema to constrain generations (https://json-schema.org/), e.g. `{\"type\": \"object\"}` for any JSON object", |c, v| {
        json_schema(c, &file_text(v)?)
    }),
    flag!(["--ignore-eos"], None, "ignore end of stream token and continue generating (implies --logit-bias EOS-inf)", |c, _| {
        c.sampling.ignore_eos = true;
        Ok(())
    }),
    flag!(["-e", "--escape"], None, "process escape sequences (\\n, \\r, \\t, \\', \\\", \\\\, \\xHH) (default: true)", |c, _| {
        c.escape = true;
        Ok(())
    }),
    flag!(["--no-escape"], None, "do not process escape sequences", |c, _| {
        c.escape = false;
        Ok(())
    }),
    flag!(["--display-prompt"], None, "print the prompt before generation (default: true)", |c, _| {
        c.display_prompt = true;
        Ok(())
    }),
    flag!(["--no-display-prompt"], None, "don't print the prompt before generation", |c, _| {
        c.display_prompt = false;
        Ok(())
    }),
    flag!(["-sp", "--special"], None, "print special (control) tokens (default: false)", |c, _| {
        c.special = true;
        Ok(())
    }),
    flag!(["-r", "--reverse-prompt"], Some("PROMPT"), "halt generation at PROMPT, return control in interactive mode (repeatable)", |c, v| {
        c.reverse_prompts.push(v.to_string());
        Ok(())
    }),
    flag!(["--verbose-prompt"], None, "print the prompt tokens before generation (default: false)", |c, _| {
        c.verbose_prompt = true;
        Ok(())
    }),
    flag!(["-cnv", "--conversation"], None, "conversation mode: chat template, interactive (default: on when the model has a chat template)", |c, _| {
        c.conversation = ConversationMode::Enabled;
        Ok(())
    }),
    flag!(["-no-cnv", "--no-conversation"], None, "raw text completion, no chat template", |c, _| {
        c.conversation = ConversationMode::Disabled;
        Ok(())
    }),
    flag!(["-sys", "--system-prompt"], Some("PROMPT"), "system prompt for conversation mode", |c, v| {
        c.chat.system_prompt = v.to_string();
        Ok(())
    }),
    flag!(["-sysf", "--system-prompt-file"], Some("FNAME"), "a file containing the system prompt (one trailing newline is dropped)", |c, v| {
        let mut text = file_text(v)?;
        if text.ends_with('\n') {
            text.pop();
        }
        c.chat.system_prompt = text;
        Ok(())
    }),
    flag!(["--chat-template"], Some("JINJA_TEMPLATE"), "chat template: a built-in name (chatml, llama2, llama3, phi3, zephyr, mistral-v7, gemma ...) or Jinja text (needs --jinja)", |c, v| {
        c.chat.template = v.to_string();
        Ok(())
    }),
    flag!(["--chat-template-file"], Some("JINJA_TEMPLATE_FILE"), "a file containing the chat template", |c, v| {
        c.chat.template = file_text(v)?;
        Ok(())
    }),
    flag!(["--jinja"], None, "run the chat template as Jinja (default: disabled: recognise it as a built-in format)", |c, _| {
        c.chat.use_jinja = true;
        Ok(())
    }),
    flag!(["--no-jinja"], None, "recognise the chat template as a built-in format (the default)", |c, _| {
        c.chat.use_jinja = false;
        Ok(())
    }),
    flag!(["-i", "--interactive"], None, "interactive mode: return control to the user at a reverse prompt or end of generation", |c, _| {
        c.chat.interactive = true;
        Ok(())
    }),
    flag!(["-if", "--interactive-first"], None, "interactive mode, waiting for input right away", |c, _| {
        c.chat.interactive_first = true;
        Ok(())
    }),
    flag!(["-st", "--single-turn"], None, "conversation of one turn, then exit", |c, _| {
        c.chat.single_turn = true;
        Ok(())
    }),
    flag!(["-mli", "--multiline-input"], None, "multi-line input without ending each line in '\\'", |c, _| {
        c.chat.multiline_input = true;
        Ok(())
    }),
    flag!(["--in-prefix-bos"], None, "prefix BOS to user inputs (disables the chat template)", |c, _| {
        c.chat.input_prefix_bos = true;
        c.chat.enable_template = false;
        Ok(())
    }),
    flag!(["--in-prefix"], Some("STRING"), "string to prefix user inputs with (disables the chat template)", |c, v| {
        c.chat.input_prefix = v.to_string();
        c.chat.enable_template = false;
        Ok(())
    }),
    flag!(["--in-suffix"], Some("STRING"), "string to suffix after user inputs with (disables the chat template)", |c, v| {
        c.chat.input_suffix = v.to_string();
        c.chat.enable_template = false;
        Ok(())
    }),
    flag!(["--simple-io"], None, "plain line input (rs-llama always reads input this way)", |_, _| Ok(())),
    flag!(["-ngl", "--gpu-layers", "--n-gpu-layers"], N, "layers to store in VRAM: a number, 'auto' or 'all' (--policy layers: llama.cpp's split; auto: a cap on what is resident)", |c, v| {
        c.gpu_layers = Some(match v {
            "auto" => GpuLayers::Auto,
            "all" => GpuLayers::All,
            n => GpuLayers::Count(parse_i32(n)?),
        });
        Ok(())
    }),
    flag!(["--gpu-mem"], Some("SIZE"), "cap on GPU memory, e.g. 8G or 512M, binary units: 8G = 8GB = 8GiB = 8·2^30 bytes (default: free memory minus a margin)", |c, v| {
        c.gpu_mem = Some(crate::gpu::parse_size(v).map_err(|e| e.to_string())?);
        Ok(())
    }),
    flag!(["-dev", "--device"], Some("DEV"), "where the GPU lane runs: none, sim (the simulated GPU of --sim-hw) or cuda0", |c, v| {
        c.device.device = DeviceChoice::parse(v)?;
        Ok(())
    }),
    flag!(["--list-devices"], None, "print the available devices and exit", |c, _| {
        c.device.list_devices = true;
        Ok(())
    }),
    flag!(["--sim-hw"], Some("PRESET|FILE"), "hardware the simulated GPU plays: a preset (rtx4090-ddr5 ...) or a profile JSON (default: rtx4090-ddr5)", |c, v| {
        c.device.sim_hw = v.to_string();
        Ok(())
    }),
    flag!(["--policy"], Some("POLICY"), "placement policy: auto (ours), layers (llama.cpp -ngl) or fiddler (default: auto)", |c, v| {
        c.device.policy = crate::plan::PolicyKind::parse(v).map_err(|e| e.to_string())?;
        Ok(())
    }),
    flag!(["-ncmoe", "--n-cpu-moe"], N, "keep the experts of the first N layers in host memory", |c, v| {
        c.device.n_cpu_moe = Some(parse_i32(v)?.max(0) as u32);
        Ok(())
    }),
    flag!(["-cmoe", "--cpu-moe"], None, "keep every expert in host memory", |c, _| {
        c.device.cpu_moe = true;
        Ok(())
    }),
    flag!(["-fa", "--flash-attn"], Some("on|off|auto"), "flash attention (rs-llama's CPU kernels are always flash attention, as llama.cpp's 'auto' picks there)", |_, v| {
        match v {
            "on" | "off" | "auto" | "1" | "0" => Ok(()),
            _ => Err(format!("unknown value for --flash-attn: '{v}'")),
        }
    }),
    flag!(["--hot-experts"], Some("on|off"), "let measured expert popularity move experts on and off the GPU (default: on under --policy auto)", |c, v| {
        c.device.hot_experts = Some(match v {
            "on" | "1" => true,
            "off" | "0" => false,
            _ => return Err(format!("unknown value for --hot-experts: '{v}'")),
        });
        Ok(())
    }),
    flag!(["-ot", "--override-tensor"], Some("PATTERN=BUFFER,..."), "keep tensors whose name matches PATTERN in host memory (CPU) or on the GPU (CUDA0); repeatable", |c, v| {
        crate::plan::overrides::parse_overrides(v).map_err(|e| e.to_string())?;
        c.device.overrides.push(v.to_string());
        Ok(())
    }),
    flag!(["--print-plan"], None, "print every task's placement with its reason (hybrid runs)", |c, _| {
        c.device.print_plan = true;
        Ok(())
    }),
    flag!(["--trace"], Some("FILE"), "write the lanes' operations as Chrome trace-event JSON (Perfetto)", |c, v| {
        c.device.trace = Some(v.into());
        Ok(())
    }),
    flag!(["-ctk", "--cache-type-k"], Some("TYPE"), "KV cache type for K (only f16)", |_, v| kv_type(v)),
    flag!(["-ctv", "--cache-type-v"], Some("TYPE"), "KV cache type for V (only f16)", |_, v| kv_type(v)),
    flag!(["--no-context-shift"], None, "stop when the context is full (the default)", |_, _| Ok(())),
    flag!(["--warmup"], None, "warm up the model with an empty run (default: true)", |c, _| {
        c.warmup = true;
        Ok(())
    }),
    flag!(["--no-warmup"], None, "skip warming up the model with an empty run", |c, _| {
        c.warmup = false;
        Ok(())
    }),
    flag!(["--lora"], Some("FNAME"), "path to LoRA adapter (use comma-separated values to load multiple adapters)", |c, v| {
        c.lora.extend(super::lora::parse_lora(v));
        Ok(())
    }),
    flag!(["--lora-scaled"], Some("FNAME:SCALE,..."), "path to LoRA adapter with user defined scaling (format: FNAME:SCALE,...)", |c, v| {
        c.lora.extend(super::lora::parse_lora_scaled(v)?);
        Ok(())
    }),
    flag!(["-v", "--verbose", "--log-verbose"], None, "log everything (verbosity = infinity)", |c, _| {
        c.verbosity = i32::MAX;
        Ok(())
    }),
    flag!(["-lv", "--verbosity", "--log-verbosity"], N, "verbosity threshold: 0 text only, 1 error, 2 warning, 3 info, 5 debug (default: 3)", |c, v| {
        c.verbosity = parse_i32(v)?;
        Ok(())
    }),
    flag!(["--log-disable"], None, "disable logging (like llama.cpp, the generated text too)", |c, _| {
        c.log_disable = true;
        Ok(())
    }),
    flag!(["--no-log-prefix"], None, "no level prefix on log lines (rs-llama never prints one)", |_, _| Ok(())),
    flag!(["--no-log-timestamps"], None, "no timestamps on log lines (rs-llama never prints them)", |_, _| Ok(())),
    flag!(["--log-colors"], Some("on|off|auto"), "coloured logs (rs-llama: off only)", |_, v| match v {
        "off" | "auto" | "0" | "false" | "disabled" => Ok(()),
        _ => Err(format!("--log-colors {v} is not supported yet by rs-llama (only off)")),
    }),
    flag!(["-co", "--color"], Some("on|off|auto"), "coloured prompt display (rs-llama: off only)", |_, v| match v {
        "off" | "auto" | "0" | "false" | "disabled" => Ok(()),
        _ => Err(format!("--color {v} is not supported yet by rs-llama (only off)")),
    }),
    flag!(["--perf"], None, "print performance timings at the end (default: true)", |_, _| Ok(())),
];

/// Look a (normalised) argument up in the table.
pub fn find(arg: &str) -> Option<&'static Flag> {
    FLAGS.iter().find(|f| f.names.contains(&arg))
}

/// Whether llama.cpp knows `arg` (so that an unsupported flag gets a clearer error than "invalid").
pub fn is_llama_cpp_flag(arg: &str) -> bool {
    include_str!("llama_flags.txt").lines().any(|l| !l.starts_with('#') && l == arg)
}

fn non_negative(n: i32, what: &str) -> Result<u32, String> {
    u32::try_from(n).map_err(|_| format!("invalid {what} = {n} (must be >= 0)"))
}

fn positive(n: i32, what: &str) -> Result<u32, String> {
    match u32::try_from(n) {
        Ok(v) if v > 0 => Ok(v),
        _ => Err(format!("invalid {what} = {n} (must be > 0)")),
    }
}

/// `stoul` semantics: `-1` wraps to 0xFFFFFFFF, which means "random".
fn parse_seed(v: &str) -> Result<u32, String> {
    let n: i64 = v.trim().parse().map_err(|_| format!("invalid seed '{v}'"))?;
    Ok(n as u32)
}

/// `ID+BIAS` or `ID-BIAS` (BIAS may be `inf`).
fn parse_logit_bias(v: &str) -> Result<(crate::TokenId, f32), String> {
    let bad = || format!("invalid input format '{v}' (expected TOKEN_ID+BIAS or TOKEN_ID-BIAS)");
    let split = v.find(['+', '-']).ok_or_else(bad)?;
    let (id, rest) = v.split_at(split);
    let id: crate::TokenId = id.trim().parse().map_err(|_| bad())?;
    let sign = if rest.starts_with('-') { -1.0 } else { 1.0 };
    let bias: f32 = rest[1..].trim().parse().map_err(|_| bad())?;
    Ok((id, sign * bias))
}

fn kv_type(v: &str) -> Result<(), String> {
    if v == "f16" {
        Ok(())
    } else {
        Err(format!("KV cache type '{v}' is not supported yet by rs-llama (only f16)"))
    }
}

/// `-j`/`-jf`: the schema's grammar replaces any grammar given before (and a later `--grammar`
/// replaces it), as in llama.cpp where all of them set the one sampling grammar. What the
/// conversion could not constrain is warned about, in llama.cpp's words.
fn json_schema(c: &mut RunConfig, schema: &str) -> Result<(), String> {
    let converted = crate::sample::json_schema::schema_text_to_grammar(schema)?;
    c.warnings.extend(converted.warning_line());
    c.sampling.grammar = converted.grammar;
    Ok(())
}

/// A file flag's text (lossy UTF-8), or llama.cpp's error for a file that cannot be read.
fn file_text(path: &str) -> Result<String, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("error: failed to open file '{path}': {e}"))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}
