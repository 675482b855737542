//! The `common_perf_print` block llama-completion writes to stderr at the end, with libllama's
//! counting rules: a decode of one token is an "eval run", a larger one counts its tokens as prompt
//! eval; counts print as at least 1; load time runs from the start of loading to the end of the first
//! decode; total time runs from the counter reset after warm-up.

use crate::sample::SamplerPerf;
use std::time::{Duration, Instant};

/// Decode timings kept by the generation loop (llama.cpp's `llama_perf_context_data`).
#[derive(Debug, Clone)]
pub struct ContextPerf {
    pub load_start: Instant,
    /// Set at the end of the first decode (warm-up or prompt).
    pub load: Option<Duration>,
    /// When counters were last reset (after warm-up); "total time" runs from here.
    pub start: Instant,
    pub prompt_eval: Duration,
    pub n_prompt_eval: usize,
    pub eval: Duration,
    pub n_eval: usize,
}

impl ContextPerf {
    pub fn new(load_start: Instant) -> ContextPerf {
        ContextPerf {
            load_start,
            load: None,
            start: Instant::now(),
            prompt_eval: Duration::ZERO,
            n_prompt_eval: 0,
            eval: Duration::ZERO,
            n_eval: 0,
        }
    }

    /// Count one decode of `n_tokens` that took `spent`, ending now.
    pub fn record_decode(&mut self, n_tokens: usize, spent: Duration) {
        if self.load.is_none() {
            self.load = Some(self.load_start.elapsed());
        }
        if n_tokens == 1 {
            self.eval += spent;
            self.n_eval += 1;
        } else if n_tokens > 1 {
            self.prompt_eval += spent;
            self.n_prompt_eval += n_tokens;
        }
    }

    /// Forget decode counters (after warm-up); load time is kept.
    pub fn reset(&mut self) {
        self.start = Instant::now();
        self.prompt_eval = Duration::ZERO;
        self.n_prompt_eval = 0;
        self.eval = Duration::ZERO;
        self.n_eval = 0;
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The perf lines (without trailing newlines), `total` being the time from the reset to now.
pub fn perf_lines(sampler: &SamplerPerf, ctx: &ContextPerf, total: Duration) -> Vec<String> {
    let t_sampling = ms(sampler.total);
    let t_p_eval = ms(ctx.prompt_eval);
    let t_eval = ms(ctx.eval);
    let n_p_eval = ctx.n_prompt_eval.max(1);
    let n_eval = ctx.n_eval.max(1);
    let t_total = ms(total);
    let t_unaccounted = t_total - (t_sampling + t_p_eval + t_eval);
    let p = "common_perf_print";
    vec![
        format!("{p}:    sampling time = {t_sampling:10.2} ms"),
        format!("{p}:    samplers time = {:10.2} ms / {:5} tokens", ms(sampler.samplers), sampler.n_accept),
        format!("{p}:        load time = {:10.2} ms", ctx.load.map_or(0.0, ms)),
        format!(
            "{p}: prompt eval time = {t_p_eval:10.2} ms / {:5} tokens ({:8.2} ms per token, {:8.2} tokens per second)",
            n_p_eval,
            t_p_eval / n_p_eval as f64,
            1e3 / t_p_eval * n_p_eval as f64
        ),
        format!(
            "{p}:        eval time = {t_eval:10.2} ms / {:5} runs   ({:8.2} ms per token, {:8.2} tokens per second)",
            n_eval,
            t_eval / n_eval as f64,
            1e3 / t_eval * n_eval as f64
        ),
        format!("{p}:       total time = {t_total:10.2} ms / {:5} tokens", n_p_eval + n_eval),
        format!(
            "{p}: unaccounted time = {t_unaccounted:10.2} ms / {:5.1} %      (total - sampling - prompt eval - eval) / (total)",
            100.0 * t_unaccounted / t_total
        ),
        format!("{p}:    graphs reused = {:10}", 0),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_follow_the_printf_formats() {
        let start = Instant::now();
        let mut ctx = ContextPerf::new(start);
        ctx.load = Some(Duration::from_micros(312_456));
        ctx.prompt_eval = Duration::from_micros(45_670);
        ctx.n_prompt_eval = 7;
        ctx.eval = Duration::from_micros(1_234_560);
        ctx.n_eval = 63;
        let sampler = SamplerPerf {
            total: Duration::from_micros(12_346),
            samplers: Duration::from_micros(9_870),
            n_accept: 71,
        };
        let lines = perf_lines(&sampler, &ctx, Duration::from_micros(1_400_000));
        // Reference strings were formatted by hand from llama.cpp's printf formats:
        //   "%10.2f ms / %5d tokens (%8.2f ms per token, %8.2f tokens per second)" etc.
        assert_eq!(
            lines,
            [
                "common_perf_print:    sampling time =      12.35 ms",
                "common_perf_print:    samplers time =       9.87 ms /    71 tokens",
                "common_perf_print:        load time =     312.46 ms",
                "common_perf_print: prompt eval time =      45.67 ms /     7 tokens (    6.52 ms per token,   153.27 tokens per second)",
                "common_perf_print:        eval time =    1234.56 ms /    63 runs   (   19.60 ms per token,    51.03 tokens per second)",
                "common_perf_print:       total time =    1400.00 ms /    70 tokens",
                "common_perf_print: unaccounted time =     107.42 ms /   7.7 %      (total - sampling - prompt eval - eval) / (total)",
                "common_perf_print:    graphs reused =          0",
            ]
        );
    }

    #[test]
    fn counting_rules() {
        let mut ctx = ContextPerf::new(Instant::now());
        ctx.record_decode(2, Duration::from_millis(5)); // warm-up [BOS, EOS]
        assert!(ctx.load.is_some());
        ctx.reset();
        ctx.record_decode(9, Duration::from_millis(3));
        ctx.record_decode(1, Duration::from_millis(1));
        ctx.record_decode(1, Duration::from_millis(1));
        assert_eq!((ctx.n_prompt_eval, ctx.n_eval), (9, 2));
        // Empty counters print as 1 with inf tokens per second, as llama.cpp does.
        let empty = ContextPerf::new(Instant::now());
        let lines = perf_lines(&SamplerPerf::default(), &empty, Duration::from_millis(2));
        assert!(
            lines[3].ends_with("/     1 tokens (    0.00 ms per token,      inf tokens per second)"),
            "{}",
            lines[3]
        );
    }
}
