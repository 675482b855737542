//! `rs-llama-perplexity`: llama-perplexity's command line for perplexity and KL divergence.
//! Streams go where llama.cpp puts them: the `[i]` values, the ETA minutes and the KL tables on
//! stdout; messages, the final estimate, the progress bar and the timings on stderr.

use std::fs::File;
use std::io::{BufReader, BufWriter, IsTerminal, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};

use super::base_file::{BaseHeader, BaseReader, BaseWriter};
use super::device::{self, DeviceArgs};
use super::eval::ChunkPlan;
use super::run::{kl_divergence, perplexity, ChunkDone};
use super::stats::{chunk_row, summary, CHUNK_HEADER, MIN_TOKENS_FOR_SUMMARY};
use crate::cli::perf::ContextPerf;
use crate::cli::threads;
use crate::gguf::GgufFile;
use crate::model::{LoadOptions, Model};
use crate::tokenizer::Tokenizer;
use crate::{log_error, log_info, log_warn};

#[derive(Debug, Parser)]
#[command(name = "rs-llama-perplexity", about = "Perplexity and KL divergence, as llama-perplexity")]
pub struct Args {
    /// Model file (GGUF).
    #[arg(short = 'm', long = "model")]
    pub model: String,
    /// Text to evaluate.
    #[arg(short = 'f', long = "file")]
    pub file: Option<String>,
    /// Tokens per chunk.
    #[arg(short = 'c', long = "ctx-size", default_value_t = 512, allow_negative_numbers = true)]
    pub ctx_size: i64,
    /// Logical batch size; chunks that fit are counted as parallel sequences.
    #[arg(short = 'b', long = "batch-size", default_value_t = 2048)]
    pub batch_size: usize,
    /// Physical batch size (tokens per forward pass).
    #[arg(long = "ubatch-size", visible_alias = "ub", default_value_t = 512)]
    pub ubatch_size: usize,
    /// Chunks to evaluate (-1 = all).
    #[arg(long = "chunks", default_value_t = -1, allow_negative_numbers = true)]
    pub chunks: i64,
    /// Threads (default: physical cores).
    #[arg(short = 't', long = "threads")]
    pub threads: Option<usize>,
    /// Base log-probability file: written in perplexity mode, read with --kl-divergence.
    #[arg(long = "kl-divergence-base", visible_alias = "save-all-logits")]
    pub kl_divergence_base: Option<String>,
    /// Compare with the base file instead of computing perplexity of a text.
    #[arg(long = "kl-divergence")]
    pub kl_divergence: bool,
    /// 0: the `[i]ppl,` stream; 1: one line per chunk with offset, ppl, mean NLL and its error.
    #[arg(long = "ppl-output-type", default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=1))]
    pub ppl_output_type: u8,
    /// LoRA adapters at scale 1 (comma-separated; repeatable).
    #[arg(long = "lora", value_name = "FNAME")]
    pub lora: Vec<String>,
    /// LoRA adapters with their scales, `FNAME:SCALE,...` (applied after the `--lora` ones).
    #[arg(long = "lora-scaled", value_name = "FNAME:SCALE,...")]
    pub lora_scaled: Vec<String>,
    /// `-dev sim` and the placement flags, as rs-llama takes them.
    #[command(flatten)]
    pub device: DeviceArgs,
}

/// The adapters of `--lora` and `--lora-scaled` loaded for `model`.
fn adapters(args: &Args, model: &Model) -> Result<Vec<crate::model::lora::ActiveLora>> {
    let mut list: Vec<_> = args.lora.iter().flat_map(|v| crate::cli::lora::parse_lora(v)).collect();
    for v in &args.lora_scaled {
        list.extend(crate::cli::lora::parse_lora_scaled(v).map_err(|e| anyhow!("--lora-scaled: {e}"))?);
    }
    crate::cli::lora::load_all(model, &list).map_err(|e| anyhow!(e))
}

/// Run with `args` (without the program name); returns the exit code.
pub fn main_with_args(args: &[String]) -> i32 {
    let parsed = match Args::try_parse_from(
        std::iter::once("rs-llama-perplexity".to_string()).chain(device::long_spellings(args)),
    ) {
        Ok(a) => a,
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return 0;
        }
        Err(e) => {
            let msg = e.to_string();
            let first = msg.lines().next().unwrap_or("invalid arguments");
            eprintln!("{first}");
            return 1;
        }
    };
    match run(&parsed) {
        Ok(code) => code,
        Err(e) => {
            log_error!("error: {e:#}\n");
            1
        }
    }
}

fn stdout_text(s: &str) {
    crate::cli::log::text(s.as_bytes());
}

fn progress_bar(n: usize) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(n as u64);
    if let Ok(style) = ProgressStyle::with_template("{bar:40} {pos}/{len} chunks [{elapsed} < {eta}]") {
        bar.set_style(style);
    }
    bar
}

/// llama.cpp's ETA split: the label on stderr, the figure on stdout.
fn print_eta(tag: &str, pass: Duration, n_passes: usize) {
    let secs = pass.as_secs_f32();
    log_info!("{tag}: {secs:.2} seconds per pass - ETA ");
    let mut total = (secs * n_passes as f32) as i64;
    let mut text = String::new();
    if total >= 3600 {
        text += &format!("{} hours ", total / 3600);
        total %= 3600;
    }
    text += &format!("{:.2} minutes\n", total as f64 / 60.0);
    stdout_text(&text);
}

fn perf_lines(perf: &ContextPerf) -> String {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let (t_p, n_p) = (ms(perf.prompt_eval), perf.n_prompt_eval.max(1));
    let (t_e, n_e) = (ms(perf.eval), perf.n_eval.max(1));
    let p = "llama_perf_context_print";
    format!(
        "{p}:        load time = {:10.2} ms\n\
         {p}: prompt eval time = {t_p:10.2} ms / {n_p:5} tokens ({:8.2} ms per token, {:8.2} tokens per second)\n\
         {p}:        eval time = {t_e:10.2} ms / {n_e:5} runs   ({:8.2} ms per token, {:8.2} tokens per second)\n\
         {p}:       total time = {:10.2} ms / {:5} tokens\n\
         {p}:    graphs reused = {:10}\n",
        perf.load.map_or(0.0, ms),
        t_p / n_p as f64,
        1e3 / t_p * n_p as f64,
        t_e / n_e as f64,
        1e3 / t_e * n_e as f64,
        ms(perf.start.elapsed()),
        n_p + n_e,
        0
    )
}

fn run(args: &Args) -> Result<i32> {
    if args.ctx_size <= 0 {
        bail!("perplexity tool requires '--ctx-size' > 0");
    }
    let n_ctx = usize::try_from(args.ctx_size)?;
    let n_seq = (args.batch_size / n_ctx).max(1);
    let n_batch = args.batch_size.min(n_seq * n_ctx).max(1);
    if n_batch >= n_ctx && !n_batch.is_multiple_of(n_ctx) {
        bail!("batch size {n_batch} must be a multiple of the context size {n_ctx} when larger than it");
    }
    threads::init_pool(args.threads.unwrap_or_else(threads::physical_cores));
    threads::on_pool(|| run_on_pool(args, n_ctx, n_seq, n_batch))
}

fn run_on_pool(args: &Args, n_ctx: usize, n_seq: usize, n_batch: usize) -> Result<i32> {
    let text = match (&args.file, args.kl_divergence) {
        (Some(path), false) => {
            let bytes = std::fs::read(path).with_context(|| format!("failed to read {path}"))?;
            let mut text =
                String::from_utf8(bytes).map_err(|_| anyhow!("{path}: the text is not valid UTF-8"))?;
            if text.ends_with('\n') {
                text.pop();
            }
            Some(text)
        }
        (None, false) => bail!("no text given: use -f FILE (or --kl-divergence with --kl-divergence-base)"),
        (_, true) => None,
    };

    let mut perf = ContextPerf::new(Instant::now());
    let file = Arc::new(GgufFile::open(&args.model).map_err(|e| anyhow!("{}: {e}", args.model))?);
    let tokenizer = Tokenizer::from_gguf(&file)?;
    let progress = std::io::stderr().is_terminal();
    let model = Model::load(file.clone(), &LoadOptions { progress })?;
    log_info!("{}\n", model.describe());
    if n_seq * n_ctx > model.n_ctx_train() {
        log_warn!(
            "perplexity: model was trained on only {} context tokens ({} specified)\n",
            model.n_ctx_train(),
            n_seq * n_ctx
        );
    }
    let bos = if tokenizer.add_bos() { tokenizer.bos() } else { None };
    let code = match text {
        Some(text) => run_perplexity(args, &model, &tokenizer, &text, n_ctx, n_batch, bos, &mut perf)?,
        None => run_kl_divergence(args, &model, n_ctx, n_batch, bos, &mut perf)?,
    };
    stdout_text("\n");
    log_info!("{}", perf_lines(&perf));
    Ok(code)
}

#[allow(clippy::too_many_arguments)]
fn run_perplexity(
    args: &Args,
    model: &Model,
    tokenizer: &Tokenizer,
    text: &str,
    n_ctx: usize,
    n_batch: usize,
    bos: Option<u32>,
    perf: &mut ContextPerf,
) -> Result<i32> {
    let base_path = args.kl_divergence_base.as_deref();
    log_info!("perplexity: tokenizing the input ..\n");
    let t0 = Instant::now();
    let tokens = tokenizer.encode(text, true, false);
    log_info!("perplexity: tokenization took {} ms\n", t0.elapsed().as_secs_f64() * 1e3);
    if tokens.len() < 2 * n_ctx {
        log_error!(
            "perplexity: you need at least {} tokens to evaluate perplexity with a context of {n_ctx}\n",
            2 * n_ctx
        );
        log_error!("perplexity: the data file you provided tokenizes to only {} tokens\n", tokens.len());
        return Ok(0);
    }
    let n_chunk_max = tokens.len() / n_ctx;
    let n_chunk = usize::try_from(args.chunks).map_or(n_chunk_max, |c| c.min(n_chunk_max));
    let n_seq = (n_batch / n_ctx).max(1);
    let mut writer = match base_path {
        Some(path) => {
            let out = File::create(path).with_context(|| format!("failed to open {path} for writing"))?;
            log_info!("perplexity: saving all logits to {path}\n");
            let header = BaseHeader { n_ctx, n_vocab: model.n_vocab(), n_chunk, tokens: tokens.clone() };
            Some(BaseWriter::new(BufWriter::new(out), path, &header)?)
        }
        None => None,
    };
    log_info!(
        "perplexity: calculating perplexity over {n_chunk} chunks, n_ctx={n_ctx}, batch_size={n_batch}, n_seq={n_seq}\n"
    );
    let mut session = device::open_session(&args.device, model, n_ctx, args.ubatch_size.min(n_batch).max(1))?;
    session.set_lora(adapters(args, model)?)?;
    let plan = ChunkPlan { n_ctx, n_chunk, bos, n_batch };
    perf.reset();
    let bar = progress_bar(n_chunk);
    let sums =
        perplexity(&mut session, model.n_vocab(), &tokens, &plan, writer.as_mut(), |done: ChunkDone, s| {
            perf.record_decode(done.n_decoded, done.eval_time);
            bar.suspend(|| {
                if done.index == 0 {
                    print_eta("perplexity", done.eval_time, n_chunk);
                }
                if args.ppl_output_type == 0 {
                    stdout_text(&format!("[{}]{:.4},", done.index + 1, s.ppl()));
                } else {
                    let mean = s.sum / s.count as f64;
                    let mut var = s.sum2 / s.count as f64 - mean * mean;
                    if var > 0.0 {
                        var = (var / (s.count as f64 - 1.0)).sqrt();
                    }
                    stdout_text(&format!(
                        "{:8}  {:.4}  {:4}  {:4}\n",
                        done.index * n_ctx,
                        s.ppl(),
                        mean,
                        var
                    ));
                }
            });
            bar.inc(1);
        })?;
    bar.finish_and_clear();
    if let Some(w) = writer {
        w.finish()?.flush().context("flushing the base file")?;
    }
    stdout_text("\n");
    match sums.estimate() {
        Some((ppl, err)) => log_info!("Final estimate: PPL = {ppl:.4} +/- {err:.5}\n"),
        None => log_error!("Unexpected negative standard deviation of log(prob)\n"),
    }
    device::report(&session);
    Ok(0)
}

fn run_kl_divergence(
    args: &Args,
    model: &Model,
    n_ctx: usize,
    n_batch: usize,
    bos: Option<u32>,
    perf: &mut ContextPerf,
) -> Result<i32> {
    let path = args
        .kl_divergence_base
        .as_deref()
        .ok_or_else(|| anyhow!("kl_divergence: you must provide a name of a file containing the log probabilities of the base model"))?;
    let input = File::open(path).with_context(|| format!("kl_divergence: failed to open {path}"))?;
    let mut reader = BaseReader::new(BufReader::new(input), path)?;
    let h = &reader.header;
    if h.n_ctx > n_ctx {
        bail!(
            "kl_divergence: {path} has been computed with {}, while the current context is {n_ctx}. Increase it with -c and retry",
            h.n_ctx
        );
    }
    let n_seq = (n_batch / h.n_ctx).max(1);
    let (file_ctx, n_chunk) = (h.n_ctx, h.n_chunk);
    log_info!("kl_divergence: computing over {n_chunk} chunks, n_ctx={file_ctx}, batch_size={n_batch}, n_seq={n_seq}\n");
    let mut session =
        device::open_session(&args.device, model, file_ctx, args.ubatch_size.min(n_batch).max(1))?;
    session.set_lora(adapters(args, model)?)?;
    perf.reset();
    let bar = progress_bar(n_chunk);
    let mut outcome =
        kl_divergence(&mut session, model.n_vocab(), &mut reader, bos, n_batch, |done, sums| {
            perf.record_decode(done.n_decoded, done.eval_time);
            bar.suspend(|| {
                if done.index == 0 {
                    print_eta("kl_divergence", done.eval_time, n_chunk);
                    stdout_text(&format!("\n{CHUNK_HEADER}\n"));
                }
                stdout_text(&format!("{}\n", chunk_row(done.index + 1, sums)));
            });
            bar.inc(1);
        })?;
    bar.finish_and_clear();
    stdout_text("\n");
    device::report(&session);
    if outcome.sums.count >= MIN_TOKENS_FOR_SUMMARY {
        stdout_text(&summary(&outcome.sums, &mut outcome.kld_values, &mut outcome.p_diff_values));
    }
    Ok(0)
}
