//! Command line → [`RunConfig`], with llama.cpp's rules: arguments are matched exactly against the
//! flag table (so `-ngl` and `-no-cnv` work), `--foo_bar` is read as `--foo-bar`, an unknown flag is
//! `error: invalid argument: X`, a flag llama.cpp has but rs-llama does not is named as unsupported,
//! and a repeated flag warns (its last value wins, list flags accumulate).

use super::flags::{self, FLAGS};
use super::threads;
use crate::sample::{SamplingParams, UserSet};
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConversationMode {
    /// llama.cpp turns conversation on when the model has a chat template.
    Auto,
    Enabled,
    Disabled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GpuLayers {
    Auto,
    All,
    Count(i32),
}

/// The conversation and interactive side of a run (llama-completion's chat and input flags).
#[derive(Debug, Clone, PartialEq)]
pub struct ChatConfig {
    pub system_prompt: String,
    /// `--chat-template`: a built-in name or Jinja text ("" = the model's).
    pub template: String,
    pub use_jinja: bool,
    /// Off once `--in-prefix`, `--in-suffix` or `--in-prefix-bos` is given.
    pub enable_template: bool,
    pub interactive: bool,
    pub interactive_first: bool,
    pub single_turn: bool,
    pub multiline_input: bool,
    pub input_prefix: String,
    pub input_suffix: String,
    pub input_prefix_bos: bool,
}

impl Default for ChatConfig {
    fn default() -> Self {
        ChatConfig {
            system_prompt: String::new(),
            template: String::new(),
            use_jinja: false,
            enable_template: true,
            interactive: false,
            interactive_first: false,
            single_turn: false,
            multiline_input: false,
            input_prefix: String::new(),
            input_suffix: String::new(),
            input_prefix_bos: false,
        }
    }
}

/// Everything one `rs-llama` run needs, typed.
#[derive(Debug, Clone, PartialEq)]
pub struct RunConfig {
    pub model: Option<PathBuf>,
    pub prompt: String,
    pub n_predict: i32,
    /// 0 = the model's training context.
    pub n_ctx: u32,
    pub n_batch: u32,
    pub n_ubatch: u32,
    pub n_keep: i32,
    /// As given (`-t`, `-tb`); see [`RunConfig::n_threads`].
    pub threads: Option<i32>,
    pub threads_batch: Option<i32>,
    pub sampling: SamplingParams,
    pub sampling_user: UserSet,
    pub escape: bool,
    pub display_prompt: bool,
    pub special: bool,
    pub reverse_prompts: Vec<String>,
    pub verbose_prompt: bool,
    pub conversation: ConversationMode,
    pub chat: ChatConfig,
    pub gpu_layers: Option<GpuLayers>,
    /// `--gpu-mem`: cap on the GPU bytes rs-llama may use (None = free memory minus a margin).
    pub gpu_mem: Option<u64>,
    /// `-dev`, `--policy`, `--sim-hw`, `--trace` ... (see [`super::device`]).
    pub device: super::device::DeviceConfig,
    pub verbosity: i32,
    pub log_disable: bool,
    pub warmup: bool,
    /// `--lora`, `--lora-scaled`: adapters applied from the first token, in order.
    pub lora: Vec<super::lora::LoraArg>,
    pub show_help: bool,
    pub show_version: bool,
    /// Warnings met while parsing (repeated flags), to log once logging is configured.
    pub warnings: Vec<String>,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            model: None,
            prompt: String::new(),
            n_predict: -1,
            n_ctx: 0,
            n_batch: 2048,
            n_ubatch: 512,
            n_keep: 0,
            threads: None,
            threads_batch: None,
            sampling: SamplingParams::default(),
            sampling_user: UserSet::default(),
            escape: true,
            display_prompt: true,
            special: false,
            reverse_prompts: Vec::new(),
            verbose_prompt: false,
            conversation: ConversationMode::Auto,
            chat: ChatConfig::default(),
            gpu_layers: None,
            gpu_mem: None,
            device: super::device::DeviceConfig::default(),
            verbosity: super::log::DEFAULT_VERBOSITY,
            log_disable: false,
            warmup: true,
            lora: Vec::new(),
            show_help: false,
            show_version: false,
            warnings: Vec::new(),
        }
    }
}

impl RunConfig {
    /// Generation threads: `-t` if positive, all logical CPUs if `-t <= 0`, else physical cores.
    pub fn n_threads(&self) -> usize {
        match self.threads {
            Some(n) if n > 0 => n as usize,
            Some(_) => threads::logical_cpus(),
            None => threads::physical_cores(),
        }
    }

    /// Prompt threads: `-tb`, defaulting to the generation threads.
    pub fn n_threads_batch(&self) -> usize {
        match self.threads_batch {
            Some(n) if n > 0 => n as usize,
            Some(_) => threads::logical_cpus(),
            None => self.n_threads(),
        }
    }
}

/// A command line that cannot run; `Display` is the whole message for stderr.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgError {
    #[error("error: invalid argument: {0}")]
    Unknown(String),
    #[error("error: argument {0} is not supported yet by rs-llama")]
    Unsupported(String),
    #[error("error: the supplied chat template is not supported: {0}")]
    BadChatTemplate(String),
    #[error("error while handling argument \"{flag}\": {reason}\n\nusage:\n{usage}\n\nto show complete usage, run with -h")]
    BadValue { flag: String, reason: String, usage: String },
}

/// Parse the arguments after the program name.
pub fn parse<S: AsRef<str>>(args: &[S]) -> Result<RunConfig, ArgError> {
    let mut cfg = RunConfig::default();
    let mut seen: Vec<String> = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let arg = normalise(args[i].as_ref());
        i += 1;
        let Some(flag) = flags::find(&arg) else {
            return Err(if flags::is_llama_cpp_flag(&arg) {
                ArgError::Unsupported(arg)
            } else {
                ArgError::Unknown(arg)
            });
        };
        if seen.contains(&arg) {
            cfg.warnings.push(format!(
                "DEPRECATED: argument '{arg}' specified multiple times, use comma-separated values instead (only last value will be used)"
            ));
        } else {
            seen.push(arg.clone());
        }
        let value = if flag.takes_value() {
            let Some(v) = args.get(i) else {
                return Err(bad_value(&arg, flag, "expected value for argument".into()));
            };
            i += 1;
            v.as_ref()
        } else {
            ""
        };
        (flag.set)(&mut cfg, value).map_err(|reason| bad_value(&arg, flag, reason))?;
    }
    if cfg.escape {
        cfg.prompt = process_escapes(&cfg.prompt);
        cfg.reverse_prompts = cfg.reverse_prompts.iter().map(|r| process_escapes(r)).collect();
        cfg.chat.input_prefix = process_escapes(&cfg.chat.input_prefix);
        cfg.chat.input_suffix = process_escapes(&cfg.chat.input_suffix);
    }
    if !cfg.chat.template.is_empty() {
        crate::chat::verify_template(&cfg.chat.template, cfg.chat.use_jinja).map_err(|e| {
            ArgError::BadChatTemplate(match e {
                crate::chat::ChatError::NotBuiltin => format!(
                    "{:?} (without --jinja only the built-in formats are recognised: {})",
                    cfg.chat.template,
                    crate::chat::builtin::BUILTIN_NAMES.join(", ")
                ),
                other => other.to_string(),
            })
        })?;
    }
    Ok(cfg)
}

fn bad_value(arg: &str, flag: &flags::Flag, reason: String) -> ArgError {
    ArgError::BadValue { flag: arg.to_string(), reason, usage: flag.usage() }
}

/// `--foo_bar` → `--foo-bar` (only for double-dash arguments, as llama.cpp).
pub fn normalise(arg: &str) -> String {
    if arg.starts_with("--") {
        arg.replace('_', "-")
    } else {
        arg.to_string()
    }
}

/// An integer the way flags take one (strict: the whole text must be a number).
pub fn parse_i32(v: &str) -> Result<i32, String> {
    v.trim().parse().map_err(|_| format!("invalid integer value '{v}'"))
}

/// A float (`inf`, `-inf` and `nan` included, as `stof` accepts them).
pub fn parse_f32(v: &str) -> Result<f32, String> {
    v.trim().parse().map_err(|_| format!("invalid number '{v}'"))
}

/// llama.cpp's escape handling for `-p`, `-f` and `-r`: `\n \r \t \' \" \\` and `\xHH`; any other
/// backslash pair is kept as is. Bytes that do not form UTF-8 become U+FFFD.
pub fn process_escapes(input: &str) -> String {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' || i + 1 >= bytes.len() {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        let c = bytes[i + 1];
        i += 2;
        match c {
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'\'' | b'"' | b'\\' => out.push(c),
            b'x' if i + 1 < bytes.len()
                && bytes[i].is_ascii_hexdigit()
                && bytes[i + 1].is_ascii_hexdigit() =>
            {
                let hex = |b: u8| (b as char).to_digit(16).unwrap_or(0) as u8;
                out.push(hex(bytes[i]) * 16 + hex(bytes[i + 1]));
                i += 2;
            }
            _ => {
                out.push(b'\\');
                out.push(c);
            }
        }
    }
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// `-h` text: one line per flag, from the table.
pub fn usage(program: &str) -> String {
    let mut s = format!("usage: {program} -m MODEL.gguf [options]\n\n");
    let width = FLAGS.iter().map(|f| f.usage().len()).max().unwrap_or(0);
    for f in FLAGS {
        s += &format!("{:<width$}  {}\n", f.usage(), f.help);
    }
    s += &format!(
        "\nexample usage:\n\n  text generation:     {program} -m your_model.gguf -p \"I believe the meaning of life is\" -n 128 -no-cnv\n\n  chat (conversation): {program} -m your_model.gguf -sys \"You are a helpful assistant\"\n"
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_follow_llama_cpp() {
        assert_eq!(process_escapes(r#"a\nb\tc\\d\'e\"f"#), "a\nb\tc\\d'e\"f");
        assert_eq!(process_escapes(r"\x41\x4a!"), "AJ!");
        assert_eq!(process_escapes(r"\q \x4 end\"), "\\q \\x4 end\\");
        assert_eq!(process_escapes(r"\xc3\xa9"), "é");
    }

    #[test]
    fn underscores_become_dashes_in_long_flags_only() {
        assert_eq!(normalise("--top_k"), "--top-k");
        assert_eq!(normalise("-no_cnv"), "-no_cnv");
    }
}
