//! `rs-llama` command-line parsing: every flag of the table, llama.cpp's spellings (single-dash
//! multi-letter forms, `--foo_bar`), and the process-level behaviour of errors, `-h` and `--version`.

use rs_llama::cli::args::{parse, ArgError, ConversationMode, GpuLayers, RunConfig};
use rs_llama::cli::flags::FLAGS;
use rs_llama::sample::{SamplerKind, RANDOM_SEED};
use std::process::Command;

fn ok(args: &[&str]) -> RunConfig {
    match parse(args) {
        Ok(c) => c,
        Err(e) => panic!("{args:?}: {e}"),
    }
}

fn err(args: &[&str]) -> ArgError {
    match parse(args) {
        Ok(_) => panic!("{args:?} should fail"),
        Err(e) => e,
    }
}

/// A value each metavariable accepts.
fn sample_value(metavar: &str) -> &'static str {
    match metavar {
        "FNAME" => "Cargo.toml",
        "TOKEN_ID(+/-)BIAS" => "15+1",
        "SAMPLERS" => "top_k;temp",
        "SEQUENCE" => "kt",
        "TYPE" => "f16",
        "on|off|auto" => "off",
        "DEV" => "sim",
        "PATTERN=BUFFER,..." => "exps=CPU",
        "POLICY" => "fiddler",
        "on|off" => "off",
        "PRESET|FILE" => "rtx3090-ddr4",
        "PROMPT" => "hi",
        "JINJA_TEMPLATE" => "chatml",
        "JINJA_TEMPLATE_FILE" => "tests/fixtures/chat/smollm2.jinja",
        "SCHEMA" => r#"{"type": "object"}"#,
        "FILE" => "tests/fixtures/json_schema/person.schema.json",
        "FNAME:SCALE,..." => "a.gguf:0.5",
        _ => "1",
    }
}

#[test]
fn every_flag_name_in_the_table_parses() {
    for flag in FLAGS {
        for name in flag.names {
            let mut args = vec![*name];
            if let Some(v) = flag.value {
                args.push(sample_value(v));
            }
            assert!(parse(&args).is_ok(), "{args:?}: {:?}", parse(&args).err());
        }
    }
}

/// `--lora` and `--lora-scaled` add to one list in command-line order (llama.cpp's adapter ids).
#[test]
fn lora_flags_accumulate_in_order() {
    let c = ok(&["--lora", "a.gguf,b.gguf", "--lora-scaled", "c.gguf:0.25", "--lora", "d.gguf"]);
    let got: Vec<(String, f32)> = c.lora.iter().map(|l| (l.path.display().to_string(), l.scale)).collect();
    let want = [("a.gguf", 1.0), ("b.gguf", 1.0), ("c.gguf", 0.25), ("d.gguf", 1.0)];
    assert_eq!(got, want.map(|(p, s)| (p.to_string(), s)));
    let e = parse(&["--lora-scaled", "c.gguf"]).unwrap_err().to_string();
    assert!(e.contains("lora-scaled format: FNAME:SCALE"), "{e}");
}

#[test]
fn defaults_are_llama_completions() {
    let c = ok(&[]);
    assert_eq!((c.n_predict, c.n_ctx, c.n_batch, c.n_ubatch, c.n_keep), (-1, 0, 2048, 512, 0));
    assert_eq!(c.sampling.seed, RANDOM_SEED);
    assert_eq!(
        (c.sampling.top_k, c.sampling.top_p, c.sampling.min_p, c.sampling.temp),
        (40, 0.95, 0.05, 0.8)
    );
    assert_eq!(c.sampling.penalty_last_n, 64);
    assert!(c.escape && c.display_prompt && c.warmup && !c.special && !c.log_disable);
    assert_eq!(c.conversation, ConversationMode::Auto);
    assert_eq!(c.verbosity, 3);
}

#[test]
fn values_land_in_the_config() {
    let c = ok(&[
        "-m",
        "m.gguf",
        "-p",
        "Hello",
        "-n",
        "32",
        "-c",
        "256",
        "-b",
        "64",
        "-ub",
        "16",
        "-t",
        "3",
        "-tb",
        "5",
        "-s",
        "42",
        "--temp",
        "0.5",
        "--top-k",
        "7",
        "--top-p",
        "0.8",
        "--min-p",
        "0.1",
        "--repeat-penalty",
        "1.2",
        "--repeat-last-n",
        "16",
        "--presence-penalty",
        "0.3",
        "--frequency-penalty",
        "0.4",
        "--keep",
        "2",
    ]);
    assert_eq!(c.model.as_deref(), Some(std::path::Path::new("m.gguf")));
    assert_eq!(c.prompt, "Hello");
    assert_eq!((c.n_predict, c.n_ctx, c.n_batch, c.n_ubatch, c.n_keep), (32, 256, 64, 16, 2));
    assert_eq!((c.n_threads(), c.n_threads_batch()), (3, 5));
    let s = &c.sampling;
    assert_eq!((s.seed, s.temp, s.top_k, s.top_p, s.min_p), (42, 0.5, 7, 0.8, 0.1));
    assert_eq!((s.penalty_repeat, s.penalty_last_n, s.penalty_present, s.penalty_freq), (1.2, 16, 0.3, 0.4));
    let u = c.sampling_user;
    assert!(u.temp && u.top_k && u.top_p && u.min_p && u.penalty_repeat && u.penalty_last_n && !u.samplers);
}

#[test]
fn gpu_mem_reads_sizes_as_rs_llama_plan_does() {
    // Binary units whatever the spelling: the one parser of rs_llama::gpu::parse_size.
    for size in ["24G", "24GB", "24GiB", "24gb"] {
        assert_eq!(ok(&["--gpu-mem", size]).gpu_mem, Some(24 << 30), "{size}");
        assert_eq!(rs_llama::plan::parse_size(size).ok(), Some(24 << 30), "{size}");
    }
    assert_eq!(ok(&["--gpu-mem", "512MB"]).gpu_mem, Some(512 << 20));
    assert_eq!(ok(&["--gpu-mem", "0"]).gpu_mem, Some(0));
    assert!(matches!(err(&["--gpu-mem", "lots"]), ArgError::BadValue { .. }));
}

#[test]
fn llama_cpp_single_dash_forms_and_aliases() {
    let c = ok(&["-ngl", "99", "-no-cnv", "-sp", "-lv", "1", "-ub", "8", "-tb", "2"]);
    assert_eq!(c.gpu_layers, Some(GpuLayers::Count(99)));
    assert_eq!(c.conversation, ConversationMode::Disabled);
    assert!(c.special);
    assert_eq!((c.verbosity, c.n_ubatch, c.threads_batch), (1, 8, Some(2)));
    assert_eq!(ok(&["--n-gpu-layers", "all"]).gpu_layers, Some(GpuLayers::All));
    assert_eq!(ok(&["--gpu-layers", "auto"]).gpu_layers, Some(GpuLayers::Auto));
    assert_eq!(ok(&["-cnv"]).conversation, ConversationMode::Enabled);
    assert_eq!(ok(&["--no-conversation"]).conversation, ConversationMode::Disabled);
    assert_eq!(ok(&["--predict", "4"]).n_predict, 4);
    assert_eq!(ok(&["--n-predict", "5"]).n_predict, 5);
    assert_eq!(ok(&["--temperature", "0.3"]).sampling.temp, 0.3);
    assert_eq!(ok(&["-v"]).verbosity, i32::MAX);
    assert_eq!(ok(&["--log-verbosity", "0"]).verbosity, 0);
}

#[test]
fn underscores_in_long_flags_are_dashes() {
    assert_eq!(ok(&["--top_k", "5"]).sampling.top_k, 5);
    assert_eq!(ok(&["--ctx_size", "128"]).n_ctx, 128);
    assert!(!ok(&["--no_display_prompt"]).display_prompt);
}

#[test]
fn switches() {
    let c = ok(&[
        "--no-escape",
        "--no-display-prompt",
        "--no-warmup",
        "--ignore-eos",
        "--verbose-prompt",
        "--log-disable",
    ]);
    assert!(
        !c.escape
            && !c.display_prompt
            && !c.warmup
            && c.sampling.ignore_eos
            && c.verbose_prompt
            && c.log_disable
    );
    let c = ok(&["--no-escape", "-e", "--no-display-prompt", "--display-prompt", "--no-warmup", "--warmup"]);
    assert!(c.escape && c.display_prompt && c.warmup);
}

#[test]
fn escapes_apply_to_prompt_and_reverse_prompts_unless_disabled() {
    let c = ok(&["-p", r"a\nb\x41", "-r", r"\tUser:"]);
    assert_eq!((c.prompt.as_str(), c.reverse_prompts[0].as_str()), ("a\nbA", "\tUser:"));
    assert_eq!(ok(&["--no-escape", "-p", r"a\nb"]).prompt, r"a\nb");
    // As in llama.cpp, escape processing happens after all flags, so order does not matter.
    assert_eq!(ok(&["-p", r"a\nb", "--no-escape"]).prompt, r"a\nb");
}

#[test]
fn seed_minus_one_is_random_and_negative_wraps() {
    assert_eq!(ok(&["-s", "-1"]).sampling.seed, RANDOM_SEED);
    assert_eq!(ok(&["--seed", "-2"]).sampling.seed, u32::MAX - 1);
}

#[test]
fn sampler_settings_flags() {
    let c = ok(&[
        "--samplers",
        "top_k;TEMP;nucleus",
        "--logit-bias",
        "15043+1",
        "-l",
        "2-inf",
        "--typical",
        "0.9",
    ]);
    assert_eq!(c.sampling.samplers, [SamplerKind::TopK, SamplerKind::Temperature, SamplerKind::TopP]);
    assert_eq!(c.sampling.logit_bias, [(15043, 1.0), (2, f32::NEG_INFINITY)]);
    assert_eq!(c.sampling.typ_p, 0.9);
    assert!(c.sampling_user.samplers);
    let c = ok(&[
        "--sampling-seq",
        "kpt",
        "--top-nsigma",
        "1.5",
        "--xtc-probability",
        "0.2",
        "--dynatemp-range",
        "0.3",
    ]);
    assert_eq!(c.sampling.samplers, [SamplerKind::TopK, SamplerKind::TopP, SamplerKind::Temperature]);
    assert_eq!(
        (c.sampling.top_n_sigma, c.sampling.xtc_probability, c.sampling.dynatemp_range),
        (1.5, 0.2, 0.3)
    );
    assert_eq!(ok(&["--temp", "-1"]).sampling.temp, 0.0, "negative temperature is clamped");
    let c = ok(&["--samplers", "top_k;bogus"]);
    assert_eq!(c.sampling.samplers, [SamplerKind::TopK]);
    assert_eq!(c.warnings, ["common_sampler_types_from_names: unable to match sampler by name 'bogus'"]);
}

#[test]
fn prompt_file_drops_one_trailing_newline() {
    let dir = std::env::temp_dir().join(format!("rs-llama-cli-args-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("prompt.txt");
    assert!(std::fs::write(&path, "line one\nline two\n\n").is_ok());
    let c = ok(&["-f", path.to_str().unwrap_or_default()]);
    assert_eq!(c.prompt, "line one\nline two\n");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn errors() {
    assert_eq!(err(&["--bogus"]).to_string(), "error: invalid argument: --bogus");
    assert_eq!(err(&["-x"]).to_string(), "error: invalid argument: -x");
    assert!(matches!(err(&["--mirostat", "2"]), ArgError::Unsupported(f) if f == "--mirostat"));
    assert!(matches!(err(&["--dry-multiplier", "0.8"]), ArgError::Unsupported(_)));
    assert!(matches!(err(&["-n"]), ArgError::BadValue { .. }));
    assert!(matches!(err(&["-n", "many"]), ArgError::BadValue { .. }));
    assert!(matches!(err(&["--repeat-last-n", "-1"]), ArgError::BadValue { .. }));
    assert!(matches!(err(&["-b", "0"]), ArgError::BadValue { .. }));
    assert!(matches!(err(&["-l", "abc"]), ArgError::BadValue { .. }));
    assert!(matches!(err(&["-ctk", "q8_0"]), ArgError::BadValue { .. }));
    assert!(matches!(err(&["-f", "/nonexistent/prompt.txt"]), ArgError::BadValue { .. }));
    let e = err(&["--top-k", "x"]).to_string();
    assert!(e.starts_with("error while handling argument \"--top-k\": invalid integer value 'x'"), "{e}");
    assert!(e.ends_with("to show complete usage, run with -h"), "{e}");
}

#[test]
fn repeated_flag_warns_and_last_wins() {
    let c = ok(&["-n", "1", "-n", "2", "-r", "a", "-r", "b"]);
    assert_eq!(c.n_predict, 2);
    assert_eq!(c.reverse_prompts, ["a", "b"]);
    assert_eq!(c.warnings.len(), 2);
    assert!(c.warnings[0].starts_with("DEPRECATED: argument '-n' specified multiple times"));
}

fn rs_llama(args: &[&str]) -> (Option<i32>, String, String) {
    match Command::new(env!("CARGO_BIN_EXE_rs-llama")).args(args).output() {
        Ok(out) => (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ),
        Err(e) => panic!("cannot run rs-llama: {e}"),
    }
}

#[test]
fn process_unknown_flag_is_one_line_and_exit_1() {
    let (code, stdout, stderr) = rs_llama(&["--definitely-not-a-flag"]);
    assert_eq!(code, Some(1));
    assert_eq!(stdout, "");
    assert_eq!(stderr, "error: invalid argument: --definitely-not-a-flag\n");
}

#[test]
fn process_unsupported_flag_is_named() {
    let (code, _, stderr) = rs_llama(&["-m", "x.gguf", "--lookup-cache-static", "x.bin"]);
    assert_eq!(code, Some(1));
    assert_eq!(stderr, "error: argument --lookup-cache-static is not supported yet by rs-llama\n");
}

#[test]
fn process_help_goes_to_stdout_with_exit_0() {
    let (code, stdout, stderr) = rs_llama(&["-h"]);
    assert_eq!(code, Some(0));
    assert!(stdout.starts_with("usage: rs-llama -m MODEL.gguf"), "{stdout}");
    assert!(stdout.contains("-ngl, --gpu-layers, --n-gpu-layers N"));
    assert!(stdout.contains("-no-cnv, --no-conversation"));
    assert_eq!(stderr, "");
    assert_eq!(rs_llama(&["--version"]).0, Some(0));
}

#[test]
fn process_missing_or_bad_model_exits_1() {
    let (code, stdout, stderr) = rs_llama(&["-p", "hi"]);
    assert_eq!((code, stdout.as_str()), (Some(1), ""));
    assert!(stderr.contains("no model given"), "{stderr}");
    let (code, _, stderr) = rs_llama(&["-m", "/nonexistent/model.gguf", "-p", "hi", "-no-cnv"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("unable to load model"), "{stderr}");
    let (code, _, stderr) = rs_llama(&["-m", "Cargo.toml", "-no-cnv"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("unable to load model"), "{stderr}");
}

#[test]
fn process_conversation_flags_parse() {
    let c = ok(&["-cnv", "-sys", "Be brief.", "--jinja", "--chat-template", "chatml", "-st", "-mli"]);
    assert_eq!(c.conversation, ConversationMode::Enabled);
    assert_eq!((c.chat.system_prompt.as_str(), c.chat.template.as_str()), ("Be brief.", "chatml"));
    assert!(c.chat.use_jinja && c.chat.single_turn && c.chat.multiline_input && c.chat.enable_template);
    let c = ok(&["-i", "--in-prefix", r"\tQ: ", "--in-suffix", "A:", "-r", "Q:", "-r", "User:"]);
    assert!(c.chat.interactive && !c.chat.enable_template);
    // --in-prefix and --in-suffix take escapes like -p; the system prompt does not (as llama.cpp).
    assert_eq!((c.chat.input_prefix.as_str(), c.chat.input_suffix.as_str()), ("\tQ: ", "A:"));
    assert_eq!(c.reverse_prompts, ["Q:", "User:"]);
    assert_eq!(ok(&["--no-escape", "--in-prefix", r"\tQ"]).chat.input_prefix, r"\tQ");
    assert_eq!(ok(&["-sys", r"a\nb"]).chat.system_prompt, r"a\nb");
}
