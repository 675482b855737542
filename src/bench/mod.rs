//! rs-llama-bench: llama-bench's tests (pp, tg, pp+tg) and report formats over rs-llama's engine,
//! plus the achieved GB/s and GFLOP/s as fractions of this machine's measured ceilings.

pub mod args;
pub mod ceilings;
pub mod devices;
pub mod output;
pub mod work;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::exec::Session;
use crate::model::{Logits, Model, ModelError};
use crate::TokenId;
pub use args::{BenchArgs, OutputFormat};
pub use ceilings::Ceilings;
pub use devices::{BenchDevice, DevSpec, SimConfig, SimRun};

/// One combination of test parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TestSpec {
    pub n_prompt: usize,
    pub n_gen: usize,
    pub n_batch: usize,
    pub n_ubatch: usize,
    pub threads: usize,
    pub dev: DevSpec,
}

impl TestSpec {
    /// `pp512`, `tg128`, `pp512+tg128`.
    pub fn name(&self) -> String {
        match (self.n_prompt, self.n_gen) {
            (p, 0) => format!("pp{p}"),
            (0, g) => format!("tg{g}"),
            (p, g) => format!("pp{p}+tg{g}"),
        }
    }
}

/// What a model row of the report says about the model.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    pub filename: String,
    /// `llama 135M F16`
    pub desc: String,
    pub size_bytes: u64,
    pub n_params: u64,
}

impl ModelInfo {
    pub fn of(model: &Model, filename: &str) -> ModelInfo {
        let n_params = model.n_params();
        let dtype = model.weights().layers.first().map_or(gguf::DType::F32, |l| l.attn.dtype());
        let label = if n_params >= 1_000_000_000 {
            format!("{:.1}B", n_params as f64 / 1e9)
        } else {
            format!("{}M", (n_params as f64 / 1e6).round())
        };
        let size_bytes = model.file().tensors.iter().map(|t| t.n_bytes).sum();
        ModelInfo {
            filename: filename.to_string(),
            desc: format!("{} {label} {}", model.arch(), dtype.name().to_uppercase()),
            size_bytes,
            n_params,
        }
    }
}

#[derive(Debug, Clone)]
pub struct TestResult {
    pub model: ModelInfo,
    pub spec: TestSpec,
    pub cpu_path: &'static str,
    /// RFC 3339, UTC.
    pub test_time: String,
    pub samples_ns: Vec<u64>,
    pub work: work::Work,
    pub ceilings: Ceilings,
    /// Sim rows: the profile and plan; their samples are virtual time, not wall time.
    pub sim: Option<SimRun>,
}

impl TestResult {
    pub fn samples_ts(&self) -> Vec<f64> {
        let n = (self.spec.n_prompt + self.spec.n_gen) as f64;
        self.samples_ns.iter().map(|&ns| 1e9 * n / ns.max(1) as f64).collect()
    }
    pub fn ts(&self) -> (f64, f64) {
        mean_stddev(&self.samples_ts())
    }
    pub fn ns(&self) -> (f64, f64) {
        mean_stddev(&self.samples_ns.iter().map(|&v| v as f64).collect::<Vec<_>>())
    }
    /// (GB/s, GFLOP/s) from the mean time.
    pub fn rates(&self) -> (f64, f64) {
        let secs = self.ns().0 / 1e9;
        if secs <= 0.0 {
            return (0.0, 0.0);
        }
        (self.work.bytes / secs / 1e9, self.work.flops / secs / 1e9)
    }
}

/// Mean and sample standard deviation (n-1), as llama-bench computes them.
pub fn mean_stddev(v: &[f64]) -> (f64, f64) {
    if v.is_empty() {
        return (0.0, 0.0);
    }
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    if v.len() < 2 {
        return (mean, 0.0);
    }
    let var = v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

/// Deterministic pseudo-random token ids in `[0, n_vocab)` (xorshift64*).
fn random_tokens(seed: u64, n: usize, n_vocab: usize) -> Vec<TokenId> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s >> 12;
            s ^= s << 25;
            s ^= s >> 27;
            (s.wrapping_mul(0x2545_F491_4F6C_DD1D) % n_vocab.max(1) as u64) as TokenId
        })
        .collect()
}

/// Run one test on the CPU (in the current rayon pool): optional warmup, then `reps` timed
/// repetitions, each on an emptied KV cache. Returns the wall time of each repetition.
pub fn run_test(model: &Model, spec: &TestSpec, reps: usize, warmup: bool) -> Result<Vec<u64>, ModelError> {
    let n_ctx = (spec.n_prompt + spec.n_gen).max(1);
    let mut session = Session::new(model, n_ctx, spec.n_batch.min(spec.n_ubatch))?;
    run_reps(&mut session, model, spec, reps, warmup, |_, wall| wall.as_nanos() as u64)
}

/// The warmup and the repetitions of `spec` on `session`; `sample` turns each finished repetition
/// (the session and its wall time) into its sample in ns. The executor's clock, when the session
/// has one, restarts before every repetition so that it holds exactly that repetition's steps.
pub(crate) fn run_reps(
    session: &mut Session<'_>,
    model: &Model,
    spec: &TestSpec,
    reps: usize,
    warmup: bool,
    mut sample: impl FnMut(&Session<'_>, Duration) -> u64,
) -> Result<Vec<u64>, ModelError> {
    let n_vocab = model.n_vocab();
    let prompt = random_tokens(1, spec.n_prompt, n_vocab);
    let gen = random_tokens(2, spec.n_gen, n_vocab);
    if warmup {
        if spec.n_prompt > 0 {
            session.decode(&prompt, Logits::Last)?;
        }
        if spec.n_gen > 0 {
            session.clear();
            session.decode(&gen[..1], Logits::Last)?;
        }
    }
    let mut samples = Vec::with_capacity(reps);
    for _ in 0..reps {
        session.clear();
        session.reset_executor_clock();
        let start = Instant::now();
        for chunk in prompt.chunks(spec.n_batch.max(1)) {
            session.decode(chunk, Logits::Last)?;
        }
        for tok in &gen {
            session.decode(std::slice::from_ref(tok), Logits::Last)?;
        }
        let wall = start.elapsed();
        samples.push(sample(session, wall));
    }
    Ok(samples)
}

/// Work (bytes, flops) of one repetition of `spec`.
pub fn work_of(model: &Model, spec: &TestSpec) -> work::Work {
    let p = work::prompt(model, spec.n_prompt, spec.n_batch.min(spec.n_ubatch));
    let g = work::generate(model, spec.n_prompt, spec.n_gen);
    work::Work { bytes: p.bytes + g.bytes, flops: p.flops + g.flops }
}

/// Current UTC time as RFC 3339 (`2026-11-26T04:30:00Z`).
pub fn now_rfc3339() -> String {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm, written from its description).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem / 60 % 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_and_sample_stddev() {
        let (m, s) = mean_stddev(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]);
        assert!((m - 5.0).abs() < 1e-12);
        assert!((s - (32.0f64 / 7.0).sqrt()).abs() < 1e-12);
        assert_eq!(mean_stddev(&[3.0]), (3.0, 0.0));
    }

    #[test]
    fn test_names_and_tokens() {
        let spec = |p, g| TestSpec {
            n_prompt: p,
            n_gen: g,
            n_batch: 2048,
            n_ubatch: 512,
            threads: 2,
            dev: DevSpec::default(),
        };
        assert_eq!(spec(512, 0).name(), "pp512");
        assert_eq!(spec(0, 128).name(), "tg128");
        assert_eq!(spec(16, 4).name(), "pp16+tg4");
        let toks = random_tokens(1, 1000, 50);
        assert!(toks.iter().all(|&t| t < 50));
        assert!(toks.iter().collect::<std::collections::HashSet<_>>().len() > 40);
    }

    #[test]
    fn rfc3339_shape() {
        let t = now_rfc3339();
        assert_eq!(t.len(), 20, "{t}");
        assert!(t.starts_with("20") && t.ends_with('Z') && t.as_bytes()[10] == b'T');
    }
}
