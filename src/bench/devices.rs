//! rs-llama-bench's device parameters: llama-bench's `-dev`, `-ngl`, `-ncmoe`, `-fa` plus
//! rs-llama's `-cmoe`, `--policy`, `--gpu-mem`, `--sim-hw`, and the run of one test on the
//! simulated GPU, whose time is the executor's virtual clock rather than the wall clock.

use crate::cli::args::GpuLayers;
use crate::cli::device::{sim_options, sim_session, DeviceChoice};
use crate::exec::hybrid::HybridOptions;
use crate::model::{Model, ModelError};
use crate::plan::PolicyKind;

/// Where a test runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BenchDevice {
    /// `none`: today's CPU path, timed by the wall clock.
    Cpu,
    /// `sim`: the hybrid executor on the simulated GPU, timed by its virtual clock.
    Sim,
}

impl BenchDevice {
    pub fn name(self) -> &'static str {
        match self {
            BenchDevice::Cpu => "none",
            BenchDevice::Sim => "sim",
        }
    }
}

/// The device half of one test combination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DevSpec {
    pub device: BenchDevice,
    pub policy: PolicyKind,
    pub ngl: GpuLayers,
    /// `-ncmoe N`; None: the planner's choice.
    pub n_cpu_moe: Option<u32>,
    /// `-cmoe 1`: every layer's experts in host memory (overrides `-ncmoe`, as in rs-llama).
    pub cpu_moe: bool,
    /// `-fa`: -1 auto, 0 off, 1 on. Recorded only: the CPU kernels are always flash attention.
    pub flash_attn: i8,
}

impl Default for DevSpec {
    fn default() -> Self {
        DevSpec {
            device: BenchDevice::Cpu,
            policy: PolicyKind::Auto,
            ngl: GpuLayers::Auto,
            n_cpu_moe: None,
            cpu_moe: false,
            flash_attn: -1,
        }
    }
}

impl DevSpec {
    pub fn is_sim(&self) -> bool {
        self.device == BenchDevice::Sim
    }

    /// The CPU path ignores the placement parameters, so its combinations collapse to one spec
    /// per `-fa` value instead of re-running the same CPU test for every policy and `-ngl`.
    pub fn normalized(self) -> DevSpec {
        match self.device {
            BenchDevice::Sim => self,
            BenchDevice::Cpu => DevSpec { flash_attn: self.flash_attn, ..DevSpec::default() },
        }
    }

    /// `-ncmoe` as the planner gets it: `-cmoe` is every layer.
    pub fn n_cpu_moe_for(&self, n_layer: usize) -> Option<u32> {
        if self.cpu_moe {
            Some(n_layer as u32)
        } else {
            self.n_cpu_moe
        }
    }
}

/// The single-valued settings every sim test shares.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// `--sim-hw`: a preset name or a profile JSON file.
    pub sim_hw: String,
    /// `--gpu-mem`: the simulated card's budget (None: the profile's card).
    pub gpu_mem: Option<u64>,
    /// `-ot PATTERN=BUFFER,...`, each as given.
    pub overrides: Vec<String>,
    /// `--hot-experts on|off` (None: on under `auto`).
    pub hot_experts: Option<bool>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig { sim_hw: "rtx4090-ddr5".into(), gpu_mem: None, overrides: Vec::new(), hot_experts: None }
    }
}

fn bad(flag: &str, item: &str, expected: &str) -> String {
    format!("error: invalid value for {flag}: '{item}' ({expected})")
}

/// `-dev none,sim`. `cudaN` runs in rs-llama and rs-llama-perplexity; the bench has no CUDA rows yet.
pub fn parse_devices(flag: &str, s: &str) -> Result<Vec<BenchDevice>, String> {
    s.split(',')
        .map(|item| match DeviceChoice::parse(item.trim()) {
            Ok(DeviceChoice::Cpu) => Ok(BenchDevice::Cpu),
            Ok(DeviceChoice::Sim) => Ok(BenchDevice::Sim),
            Ok(DeviceChoice::Cuda(n)) => Err(format!(
                "error: {flag} cuda{n}: rs-llama-bench has no CUDA rows yet (use -dev sim or none; rs-llama and rs-llama-perplexity take -dev cuda0)"
            )),
            Ok(DeviceChoice::Default) | Err(_) => Err(bad(flag, item, "none, sim")),
        })
        .collect()
}

pub fn parse_policies(flag: &str, s: &str) -> Result<Vec<PolicyKind>, String> {
    s.split(',')
        .map(|item| PolicyKind::parse(item.trim()).map_err(|_| bad(flag, item, "auto, layers, fiddler")))
        .collect()
}

/// `-ngl 0,8-16+4,all,auto,-1`: llama-bench's -1 means every layer, so any negative count does.
pub fn parse_ngl(flag: &str, s: &str) -> Result<Vec<GpuLayers>, String> {
    let mut out = Vec::new();
    for item in s.split(',').map(str::trim) {
        match item {
            "auto" => out.push(GpuLayers::Auto),
            "all" => out.push(GpuLayers::All),
            _ if item.strip_prefix('-').is_some_and(|n| n.parse::<u32>().is_ok()) => out.push(GpuLayers::All),
            _ => {
                let counts = super::args::int_list(item)
                    .ok_or_else(|| bad(flag, item, "a number, a range, auto or all"))?;
                for n in counts {
                    let n = i32::try_from(n).map_err(|_| bad(flag, item, "too large"))?;
                    out.push(GpuLayers::Count(n));
                }
            }
        }
    }
    Ok(out)
}

pub fn parse_counts(flag: &str, s: &str) -> Result<Vec<u32>, String> {
    let values = super::args::int_list(s).ok_or_else(|| bad(flag, s, "a number or a range"))?;
    values.into_iter().map(|v| u32::try_from(v).map_err(|_| bad(flag, s, "too large"))).collect()
}

pub fn parse_bools(flag: &str, s: &str) -> Result<Vec<bool>, String> {
    s.split(',')
        .map(|item| match item.trim() {
            "0" => Ok(false),
            "1" => Ok(true),
            _ => Err(bad(flag, item, "0 or 1")),
        })
        .collect()
}

/// `-fa 0,1`: llama-bench's spellings, as -1/0/1.
pub fn parse_flash_attn(flag: &str, s: &str) -> Result<Vec<i8>, String> {
    s.split(',')
        .map(|item| match item.trim() {
            "auto" | "-1" => Ok(-1),
            "off" | "0" => Ok(0),
            "on" | "1" => Ok(1),
            _ => Err(bad(flag, item, "0, 1, on, off or auto")),
        })
        .collect()
}

/// The planner's options for `dev` on `sim`; an error (a message without the `error: ` the binary
/// adds) when the profile cannot be read or has no GPU to simulate.
pub fn hybrid_options(sim: &SimConfig, dev: &DevSpec, n_layer: usize) -> Result<HybridOptions, String> {
    let opts = sim_options(
        &sim.sim_hw,
        dev.policy,
        sim.gpu_mem,
        Some(dev.ngl),
        dev.n_cpu_moe_for(n_layer),
        n_layer,
    )?;
    let mut opts =
        opts.ok_or_else(|| format!("--sim-hw {}: the profile has no GPU to simulate", sim.sim_hw))?;
    opts.overrides = sim.overrides.clone();
    if let Some(on) = sim.hot_experts {
        opts.hot_experts = on;
    }
    Ok(opts)
}

/// What a sim test reports beyond its samples.
#[derive(Debug, Clone, PartialEq)]
pub struct SimRun {
    /// The profile the virtual clock describes (`rtx4090-ddr5`).
    pub hw: String,
    /// The plan's one-line summary.
    pub plan: String,
    /// `-ncmoe` as planned (`-cmoe` resolved).
    pub n_cpu_moe: Option<u32>,
    /// What the load changed to fit the device (a smaller plan), one line each.
    pub notes: Vec<String>,
}

/// One sim test: the same tokens as [`super::run_test`], but each repetition's time is the virtual
/// time of its steps (prefill and decode together, so a pp+tg test counts both), read from a
/// clock restarted before every repetition, so neither the warm-up nor the last repetition leaks.
pub fn run_sim_test(
    model: &Model,
    spec: &super::TestSpec,
    reps: usize,
    warmup: bool,
    sim: &SimConfig,
) -> Result<(Vec<u64>, SimRun), ModelError> {
    let n_layer = model.hparams().n_layer;
    let opts = hybrid_options(sim, &spec.dev, n_layer).map_err(ModelError::Invalid)?;
    let n_ctx = (spec.n_prompt + spec.n_gen).max(1);
    let mut session = sim_session(model, n_ctx, spec.n_batch.min(spec.n_ubatch), &opts)?;
    let samples = super::run_reps(&mut session, model, spec, reps, warmup, |s, _wall| {
        let c = s.executor().map(|h| h.clock().clone()).unwrap_or_default();
        ((c.prefill_s + c.decode_s) * 1e9).round() as u64
    })?;
    let (plan, notes) =
        session.executor().map(|h| (h.plan().summary.clone(), h.notes().to_vec())).unwrap_or_default();
    Ok((samples, SimRun { hw: opts.hw.name.clone(), plan, n_cpu_moe: opts.n_cpu_moe, notes }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_values_parse_and_cuda_is_refused_by_name() {
        assert_eq!(parse_devices("-dev", "none,sim"), Ok(vec![BenchDevice::Cpu, BenchDevice::Sim]));
        let cuda = parse_devices("-dev", "cuda0").unwrap_err();
        assert!(cuda.contains("no CUDA rows yet"), "{cuda}");
        assert!(parse_devices("-dev", "tpu0").unwrap_err().contains("'tpu0'"));
        assert!(parse_policies("--policy", "best").is_err());
        assert_eq!(parse_policies("--policy", "layers,fiddler").unwrap().len(), 2);
    }

    #[test]
    fn ngl_and_flags_expand() {
        assert_eq!(
            parse_ngl("-ngl", "0,4-8+4,all,-1,auto"),
            Ok(vec![
                GpuLayers::Count(0),
                GpuLayers::Count(4),
                GpuLayers::Count(8),
                GpuLayers::All,
                GpuLayers::All,
                GpuLayers::Auto
            ])
        );
        assert!(parse_ngl("-ngl", "x").is_err());
        assert_eq!(parse_bools("-cmoe", "0,1"), Ok(vec![false, true]));
        assert!(parse_bools("-cmoe", "2").is_err());
        assert_eq!(parse_flash_attn("-fa", "0,1,auto"), Ok(vec![0, 1, -1]));
        assert_eq!(parse_counts("-ncmoe", "1-3"), Ok(vec![1, 2, 3]));
    }

    #[test]
    fn cpu_specs_collapse_and_cmoe_is_every_layer() {
        let sim = DevSpec { device: BenchDevice::Sim, ngl: GpuLayers::Count(3), ..DevSpec::default() };
        let cpu = DevSpec { device: BenchDevice::Cpu, ..sim };
        assert_eq!(cpu.normalized(), DevSpec::default());
        assert_eq!(sim.normalized(), sim);
        let all = DevSpec { cpu_moe: true, n_cpu_moe: Some(1), ..sim };
        assert_eq!(all.n_cpu_moe_for(12), Some(12));
        assert_eq!(sim.n_cpu_moe_for(12), None);
    }
}
