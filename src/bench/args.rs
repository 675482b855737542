//! rs-llama-bench's command line, parsed the way llama-bench parses its own: every test parameter
//! takes comma lists (or repeats) and ranges `a-b`, `a-b+step`, `a-b*mult`; all combinations run.

use std::path::PathBuf;

use super::devices::{self, BenchDevice, DevSpec, SimConfig};
use crate::cli::args::GpuLayers;
use crate::plan::PolicyKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    Md,
    Json,
    Jsonl,
    Csv,
}

#[derive(Debug, Clone)]
pub struct BenchArgs {
    pub models: Vec<PathBuf>,
    pub n_prompt: Vec<usize>,
    pub n_gen: Vec<usize>,
    pub pg: Vec<(usize, usize)>,
    pub n_batch: Vec<usize>,
    pub n_ubatch: Vec<usize>,
    pub threads: Vec<usize>,
    pub repetitions: usize,
    pub output: OutputFormat,
    pub output_err: Option<OutputFormat>,
    pub warmup: bool,
    pub progress: bool,
    /// `-dev`, `--policy`, `-ngl`, `-ncmoe`, `-cmoe`, `-fa`: lists like the other test parameters.
    pub devices: Vec<BenchDevice>,
    pub policies: Vec<PolicyKind>,
    pub ngl: Vec<GpuLayers>,
    /// Empty: not given (the planner's choice).
    pub n_cpu_moe: Vec<u32>,
    pub cpu_moe: Vec<bool>,
    pub flash_attn: Vec<i8>,
    /// `--sim-hw`, `--gpu-mem`: one value for every sim test.
    pub sim: SimConfig,
}

pub const USAGE: &str = "usage: rs-llama-bench [options]

options:
  -h, --help
  -m, --model <filename>            (default: none; repeatable)
  -p, --n-prompt <n>                (default: 512)
  -n, --n-gen <n>                   (default: 128)
  -pg <pp,tg>                       (default: none)
  -b, --batch-size <n>              (default: 2048)
  -ub, --ubatch-size <n>            (default: 512)
  -t, --threads <n>                 (default: physical cores)
  -r, --repetitions <n>             (default: 5)
  -o, --output <md|json|jsonl|csv>  (default: md)
  -oe, --output-err <fmt>           (default: none)
  -dev, --device <none|sim|cuda0>   (default: none; sim: the simulated GPU, timed by its clock)
  -ngl, --n-gpu-layers <n>          (default: auto; also all, -1 = all; sim only)
  -ncmoe, --n-cpu-moe <n>           (default: the planner's choice; sim only)
  -cmoe, --cpu-moe <0|1>            (default: 0; 1: every layer's experts in host memory)
  -fa, --flash-attn <0|1>           (default: auto; no effect: the CPU kernels are flash attention)
  --policy <auto|layers|fiddler>    (default: auto; sim only)
  --gpu-mem <size>                  (default: the --sim-hw card; e.g. 48M, 8G)
  --sim-hw <preset|file>            (default: rtx4090-ddr5)
  -ot, --override-tensor <p>=<buf>  keep matching tensors on CPU or CUDA0 (repeatable; sim rows)
  --hot-experts <on|off>            (default: on under --policy auto)
  --no-warmup                       skip the warmup runs
  --progress                        print progress to stderr

Lists (1,2,3) and ranges (first-last, first-last+step, first-last*mult) run every combination.
Sim rows report virtual t/s: the time the planner's cost model gives the schedule on --sim-hw.
Beyond llama-bench: GB/s and GFLOP/s achieved, and their fraction of this machine's ceilings.
RS_LLAMA_CPU=avx512|avx2|scalar forces a kernel path.";

#[derive(Debug, thiserror::Error)]
pub enum ArgError {
    #[error("invalid parameter for argument: {0}")]
    Invalid(String),
    #[error("error: missing value for argument: {0}")]
    Missing(String),
    /// A bad value of a device flag: one line, already worded, printed without the usage.
    #[error("{0}")]
    BadValue(String),
}

impl BenchArgs {
    /// Every combination of the device parameters, in flag order; the CPU's collapse (see
    /// [`DevSpec::normalized`]) and repeats are dropped, keeping the first.
    pub fn dev_specs(&self) -> Vec<DevSpec> {
        let ncmoe: Vec<Option<u32>> = if self.n_cpu_moe.is_empty() {
            vec![None]
        } else {
            self.n_cpu_moe.iter().map(|&n| Some(n)).collect()
        };
        let mut out: Vec<DevSpec> = Vec::new();
        for &device in &self.devices {
            for &policy in &self.policies {
                for &ngl in &self.ngl {
                    for &n_cpu_moe in &ncmoe {
                        for &cpu_moe in &self.cpu_moe {
                            for &flash_attn in &self.flash_attn {
                                let d = DevSpec { device, policy, ngl, n_cpu_moe, cpu_moe, flash_attn }
                                    .normalized();
                                if !out.contains(&d) {
                                    out.push(d);
                                }
                            }
                        }
                    }
                }
            }
        }
        out
    }
}

/// `None` on `-h`.
pub fn parse(args: &[String], default_threads: usize) -> Result<Option<BenchArgs>, ArgError> {
    let mut a = BenchArgs {
        models: Vec::new(),
        n_prompt: Vec::new(),
        n_gen: Vec::new(),
        pg: Vec::new(),
        n_batch: Vec::new(),
        n_ubatch: Vec::new(),
        threads: Vec::new(),
        repetitions: 5,
        output: OutputFormat::Md,
        output_err: None,
        warmup: true,
        progress: false,
        devices: Vec::new(),
        policies: Vec::new(),
        ngl: Vec::new(),
        n_cpu_moe: Vec::new(),
        cpu_moe: Vec::new(),
        flash_attn: Vec::new(),
        sim: SimConfig::default(),
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().cloned().ok_or_else(|| ArgError::Missing(flag.clone()));
        let bad = || ArgError::Invalid(flag.clone());
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "-m" | "--model" => a.models.extend(value()?.split(',').map(PathBuf::from)),
            "-p" | "--n-prompt" => a.n_prompt.extend(int_list(&value()?).ok_or_else(bad)?),
            "-n" | "--n-gen" => a.n_gen.extend(int_list(&value()?).ok_or_else(bad)?),
            "-pg" => {
                let v = value()?;
                let (p, g) = v.split_once(',').ok_or_else(bad)?;
                a.pg.push((p.trim().parse().map_err(|_| bad())?, g.trim().parse().map_err(|_| bad())?));
            }
            "-b" | "--batch-size" => a.n_batch.extend(int_list(&value()?).ok_or_else(bad)?),
            "-ub" | "--ubatch-size" => a.n_ubatch.extend(int_list(&value()?).ok_or_else(bad)?),
            "-t" | "--threads" => a.threads.extend(int_list(&value()?).ok_or_else(bad)?),
            "-r" | "--repetitions" => a.repetitions = value()?.parse().map_err(|_| bad())?,
            "-o" | "--output" => a.output = format(&value()?).ok_or_else(bad)?,
            "-oe" | "--output-err" => a.output_err = Some(format(&value()?).ok_or_else(bad)?),
            "--no-warmup" => a.warmup = false,
            "--progress" => a.progress = true,
            "-dev" | "--device" => {
                a.devices.extend(devices::parse_devices(flag, &value()?).map_err(ArgError::BadValue)?)
            }
            "--policy" => {
                a.policies.extend(devices::parse_policies(flag, &value()?).map_err(ArgError::BadValue)?)
            }
            "-ngl" | "--n-gpu-layers" => {
                a.ngl.extend(devices::parse_ngl(flag, &value()?).map_err(ArgError::BadValue)?)
            }
            "-ncmoe" | "--n-cpu-moe" => {
                a.n_cpu_moe.extend(devices::parse_counts(flag, &value()?).map_err(ArgError::BadValue)?)
            }
            "-cmoe" | "--cpu-moe" => {
                a.cpu_moe.extend(devices::parse_bools(flag, &value()?).map_err(ArgError::BadValue)?)
            }
            "-fa" | "--flash-attn" => {
                a.flash_attn.extend(devices::parse_flash_attn(flag, &value()?).map_err(ArgError::BadValue)?)
            }
            "--gpu-mem" => {
                let v = value()?;
                let bytes = crate::gpu::parse_size(&v)
                    .map_err(|e| ArgError::BadValue(format!("error: invalid value for {flag}: {e}")))?;
                a.sim.gpu_mem = Some(bytes);
            }
            "--sim-hw" => a.sim.sim_hw = value()?,
            "-ot" | "--override-tensor" => {
                let v = value()?;
                crate::plan::overrides::parse_overrides(&v)
                    .map_err(|e| ArgError::Invalid(format!("{flag}: {e}")))?;
                a.sim.overrides.push(v);
            }
            "--hot-experts" => {
                a.sim.hot_experts = Some(match value()?.as_str() {
                    "on" | "1" => true,
                    "off" | "0" => false,
                    _ => return Err(bad()),
                });
            }
            _ => return Err(ArgError::Invalid(flag.clone())),
        }
    }
    if a.models.is_empty() {
        return Err(ArgError::Invalid("-m (no model given)".into()));
    }
    let or_default = |v: &mut Vec<usize>, d: usize| {
        if v.is_empty() {
            v.push(d)
        }
    };
    or_default(&mut a.n_prompt, 512);
    or_default(&mut a.n_gen, 128);
    or_default(&mut a.n_batch, 2048);
    or_default(&mut a.n_ubatch, 512);
    or_default(&mut a.threads, default_threads);
    default_to(&mut a.devices, BenchDevice::Cpu);
    default_to(&mut a.policies, PolicyKind::Auto);
    default_to(&mut a.ngl, GpuLayers::Auto);
    default_to(&mut a.cpu_moe, false);
    default_to(&mut a.flash_attn, -1);
    if a.repetitions == 0 || a.n_batch.contains(&0) || a.n_ubatch.contains(&0) || a.threads.contains(&0) {
        return Err(ArgError::Invalid("-r/-b/-ub/-t must be > 0".into()));
    }
    Ok(Some(a))
}

/// An unset list parameter runs its default value once.
fn default_to<T>(v: &mut Vec<T>, d: T) {
    if v.is_empty() {
        v.push(d)
    }
}

fn format(s: &str) -> Option<OutputFormat> {
    Some(match s {
        "md" => OutputFormat::Md,
        "json" => OutputFormat::Json,
        "jsonl" => OutputFormat::Jsonl,
        "csv" => OutputFormat::Csv,
        _ => return None,
    })
}

/// `1,2,8-32*2,100-300+100` → every value, in order.
pub fn int_list(s: &str) -> Option<Vec<usize>> {
    let mut out = Vec::new();
    for part in s.split(',') {
        let part = part.trim();
        let Some((first, rest)) = part.split_once('-') else {
            out.push(part.parse().ok()?);
            continue;
        };
        let first: usize = first.parse().ok()?;
        let (last, step) = match rest.split_once(['+', '*']) {
            Some((l, st)) => {
                (l.parse::<usize>().ok()?, Some((rest.contains('*'), st.parse::<usize>().ok()?)))
            }
            None => (rest.parse::<usize>().ok()?, None),
        };
        let mut v = first;
        while v <= last {
            out.push(v);
            v = match step {
                None => v + 1,
                Some((false, st)) if st > 0 => v + st,
                Some((true, m)) if m > 1 && v > 0 => v * m,
                _ => return None,
            };
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_expand_like_llama_bench() {
        assert_eq!(int_list("1,2,3"), Some(vec![1, 2, 3]));
        assert_eq!(int_list("8-32*2"), Some(vec![8, 16, 32]));
        assert_eq!(int_list("100-300+100"), Some(vec![100, 200, 300]));
        assert_eq!(int_list("4-6"), Some(vec![4, 5, 6]));
        assert_eq!(int_list("0-4*2"), None);
        assert_eq!(int_list("x"), None);
    }

    #[test]
    fn flags_parse_and_defaults_fill_in() {
        let args: Vec<String> = [
            "-m", "a.gguf", "-m", "b.gguf", "-p", "0", "-n", "16,32", "-pg", "8,4", "-o", "jsonl", "-r", "2",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let a = parse(&args, 2).unwrap().unwrap();
        assert_eq!(a.models.len(), 2);
        assert_eq!(
            (a.n_prompt.clone(), a.n_gen.clone(), a.pg.clone()),
            (vec![0], vec![16, 32], vec![(8, 4)])
        );
        assert_eq!((a.threads.clone(), a.n_ubatch.clone(), a.repetitions), (vec![2], vec![512], 2));
        assert_eq!(a.output, OutputFormat::Jsonl);
        let bad: Vec<String> = vec!["-m".into(), "a".into(), "--bogus".into()];
        assert!(matches!(parse(&bad, 2), Err(ArgError::Invalid(f)) if f == "--bogus"));
    }

    #[test]
    fn device_lists_combine_and_the_cpu_runs_once() {
        let args: Vec<String> =
            ["-m", "a", "-dev", "none,sim", "--policy", "auto,layers", "-ngl", "2", "--gpu-mem", "48M"]
                .iter()
                .map(|s| s.to_string())
                .collect();
        let a = parse(&args, 2).unwrap().unwrap();
        let specs = a.dev_specs();
        let sim: Vec<_> = specs.iter().filter(|d| d.is_sim()).map(|d| (d.policy, d.ngl)).collect();
        assert_eq!(specs.len(), 3, "{specs:?}");
        assert_eq!(sim, [(PolicyKind::Auto, GpuLayers::Count(2)), (PolicyKind::Layers, GpuLayers::Count(2))]);
        assert_eq!(a.sim.gpu_mem, Some(48 << 20));
        let bad: Vec<String> = ["-m", "a", "-dev", "tpu0"].iter().map(|s| s.to_string()).collect();
        assert!(matches!(parse(&bad, 2), Err(ArgError::BadValue(e)) if e.contains("'tpu0'")));
    }
}
