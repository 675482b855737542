//! The device side of a run: `-dev none|sim|cuda0`, `--list-devices`, `--sim-hw`, `--policy`,
//! `--gpu-mem`, `-ngl`, `-ncmoe`/`-cmoe`, `--print-plan`, `--trace`; the session they make, and the
//! stderr report of a simulated run (its virtual prefill/decode t/s and the lanes' busy fractions).

use std::path::PathBuf;

use super::args::{GpuLayers, RunConfig};
use crate::exec::device::sim::SimDevice;
use crate::exec::hybrid::{Hybrid, HybridOptions};
use crate::exec::{EngineSession, Session};
use crate::model::{Model, ModelError};
use crate::plan::{presets, PolicyKind};
use crate::{gpu, log_info, log_warn};

/// `-dev`: where the GPU lane runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceChoice {
    /// Not given: the CPU, or with a `cuda` build the whole model on the GPU when it fits.
    Default,
    /// `none`: the CPU only.
    Cpu,
    /// `sim`: the simulated GPU of `--sim-hw`.
    Sim,
    /// `cudaN` (llama.cpp spells it `CUDA0`).
    Cuda(usize),
}

impl DeviceChoice {
    pub fn parse(text: &str) -> Result<DeviceChoice, String> {
        let t = text.to_ascii_lowercase();
        match t.as_str() {
            "none" | "cpu" => Ok(DeviceChoice::Cpu),
            "sim" => Ok(DeviceChoice::Sim),
            _ => match t.strip_prefix("cuda").map(str::parse::<usize>) {
                Some(Ok(n)) => Ok(DeviceChoice::Cuda(n)),
                _ => Err(format!("invalid device '{text}' (none, sim, cuda0, ...; see --list-devices)")),
            },
        }
    }
}

/// Everything the device flags set.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceConfig {
    pub device: DeviceChoice,
    pub list_devices: bool,
    /// `--sim-hw`: a preset name or a profile JSON file.
    pub sim_hw: String,
    pub policy: PolicyKind,
    /// `-ncmoe N`; `-cmoe` is every layer.
    pub n_cpu_moe: Option<u32>,
    pub cpu_moe: bool,
    pub print_plan: bool,
    pub trace: Option<PathBuf>,
    /// `--hot-experts on|off` (default: on under `auto`).
    pub hot_experts: Option<bool>,
    /// `-ot PATTERN=BUFFER,...`, each as given (checked when parsed).
    pub overrides: Vec<String>,
}

impl Default for DeviceConfig {
    fn default() -> Self {
        DeviceConfig {
            device: DeviceChoice::Default,
            list_devices: false,
            sim_hw: "rtx4090-ddr5".into(),
            policy: PolicyKind::Auto,
            n_cpu_moe: None,
            cpu_moe: false,
            print_plan: false,
            trace: None,
            hot_experts: None,
            overrides: Vec::new(),
        }
    }
}

/// `--list-devices`, as llama.cpp prints it.
pub fn list_devices() -> String {
    let mut out = String::from("Available devices:\n");
    for (name, ok) in gpu::library_report() {
        if !ok {
            out.push_str(&format!("  ({name} could not be loaded)\n"));
        }
    }
    if let Ok(g) = gpu::Gpu::new(&gpu::GpuOptions::default()) {
        out.push_str(&format!("  CUDA0: {}\n", g.describe()));
    }
    let sim = presets::load("rtx4090-ddr5").ok().and_then(|hw| hw.gpu.map(|g| g.mem_bytes)).unwrap_or(0);
    out.push_str(&format!(
        "  sim: simulated GPU, its speed from --sim-hw (default rtx4090-ddr5, {} MiB)\n",
        sim >> 20
    ));
    out
}

/// `-ngl` as a layer count for the planner (`all`: every layer and the output head).
fn ngl_for_plan(ngl: Option<GpuLayers>, n_layer: usize) -> Option<u32> {
    match ngl {
        None | Some(GpuLayers::Auto) => None,
        Some(GpuLayers::All) => Some(n_layer as u32 + 1),
        Some(GpuLayers::Count(n)) => Some(n.max(0) as u32),
    }
}

/// What a simulated run is planned with: the `--sim-hw` profile, `--gpu-mem` (capped at the
/// profile's card), `--policy`, `-ngl`, `-ncmoe`. `None` when the profile has no GPU.
pub fn sim_options(
    sim_hw: &str,
    policy: PolicyKind,
    gpu_mem: Option<u64>,
    ngl: Option<GpuLayers>,
    n_cpu_moe: Option<u32>,
    n_layer: usize,
) -> Result<Option<HybridOptions>, String> {
    let hw = presets::load(sim_hw)
        .map_err(|e| format!("--sim-hw {}", e.to_string().trim_start_matches("--hw ")))?;
    let Some(card) = hw.gpu.as_ref() else { return Ok(None) };
    Ok(Some(HybridOptions {
        policy,
        gpu_mem: gpu_mem.unwrap_or(card.mem_bytes).min(card.mem_bytes),
        ngl: ngl_for_plan(ngl, n_layer),
        n_cpu_moe,
        slots: None,
        trace: false,
        hot_experts: policy == PolicyKind::Auto,
        overrides: Vec::new(),
        hw,
    }))
}

/// A session run by the hybrid executor on a simulated GPU of `opts.gpu_mem` bytes.
pub fn sim_session<'m>(
    model: &'m Model,
    n_ctx: usize,
    n_ubatch: usize,
    opts: &HybridOptions,
) -> Result<Session<'m>, ModelError> {
    let device = Box::new(SimDevice::new(&opts.hw.name, opts.gpu_mem));
    Session::hybrid(model, n_ctx, n_ubatch, opts, device)
}

/// `-dev cudaN`: the hybrid executor on the card, planned with the `--sim-hw` profile's speeds
/// and the card's budget; `None` (after one line saying why) when there is no such GPU.
pub fn cuda_session<'m>(
    model: &'m Model,
    n_ctx: usize,
    n_ubatch: usize,
    opts: &mut HybridOptions,
    ordinal: usize,
    gpu_mem: Option<u64>,
) -> Result<Option<Session<'m>>, ModelError> {
    match crate::exec::device::open_cuda(ordinal, gpu_mem) {
        Ok(dev) => {
            opts.gpu_mem = opts.gpu_mem.min(dev.budget());
            Session::hybrid(model, n_ctx, n_ubatch, opts, dev).map(Some)
        }
        Err(e) => {
            log_warn!("gpu: -dev cuda{ordinal}: {e}; running on the CPU\n");
            Ok(None)
        }
    }
}

/// The session for `cfg`: on the CPU, whole-model on a CUDA GPU, or the hybrid executor on the
/// simulated GPU.
pub fn open_session<'m>(
    cfg: &RunConfig,
    model: &'m Model,
    resident: Option<&'m (gpu::Gpu, gpu::GpuLlama)>,
    n_ctx: usize,
) -> Result<EngineSession<'m>, ModelError> {
    let n_ubatch = cfg.n_ubatch as usize;
    let wants_gpu = cfg.gpu_layers != Some(GpuLayers::Count(0));
    let cuda = match cfg.device.device {
        DeviceChoice::Cuda(n) if resident.is_none() => Some(n),
        // A `cuda` build without `-dev`: as llama.cpp, the GPU when there is one; the whole model
        // when it fits (`resident`), else the hybrid executor.
        DeviceChoice::Default if gpu::BUILT_WITH_CUDA && resident.is_none() && wants_gpu => Some(0),
        DeviceChoice::Sim => None,
        _ => return EngineSession::new(model, resident, n_ctx, n_ubatch),
    };
    let n_layer = model.hparams().n_layer;
    let d = &cfg.device;
    let n_cpu_moe = if d.cpu_moe { Some(n_layer as u32) } else { d.n_cpu_moe };
    let opts = sim_options(&d.sim_hw, d.policy, cfg.gpu_mem, cfg.gpu_layers, n_cpu_moe, n_layer)
        .map_err(ModelError::Invalid)?;
    let Some(mut opts) = opts else {
        log_warn!("sim: the profile '{}' has no GPU; running on the CPU\n", d.sim_hw);
        return EngineSession::new(model, None, n_ctx, n_ubatch);
    };
    opts.trace = d.trace.is_some();
    opts.overrides = d.overrides.clone();
    if let Some(on) = d.hot_experts {
        opts.hot_experts = on;
    }
    let session = match cuda {
        Some(n) => match cuda_session(model, n_ctx, n_ubatch, &mut opts, n, cfg.gpu_mem)? {
            Some(s) => s,
            None => return EngineSession::new(model, None, n_ctx, n_ubatch),
        },
        None => sim_session(model, n_ctx, n_ubatch, &opts)?,
    };
    if let Some(h) = session.executor() {
        log_loaded(h);
        if d.print_plan {
            let g = h.graph();
            eprint!("{}", crate::plan::print::plan_text(h.plan(), &|i| g.tasks[i].layer));
        }
    }
    Ok(EngineSession::Cpu(session))
}

/// The load log of a simulated run: what had to change for the plan to fit, the device, the plan.
pub fn log_loaded(h: &Hybrid<'_>) {
    let kind = h.device().kind();
    for note in h.notes() {
        log_warn!("{kind}: {note}\n");
    }
    log_info!("{kind}: {}\n", h.device().describe());
    log_info!("{kind}: plan ({}): {}\n", h.plan().policy.name(), h.plan().summary);
}

/// After the warm-up: the virtual clock starts again.
pub fn reset_clock(session: &mut EngineSession<'_>) {
    if let EngineSession::Cpu(s) = session {
        s.reset_executor_clock();
    }
}

/// The end of a simulated run: one stderr line of virtual speeds and lane use, and the trace file.
pub fn finish(cfg: &RunConfig, session: &EngineSession<'_>) -> Result<(), String> {
    let EngineSession::Cpu(s) = session else { return Ok(()) };
    let Some(h) = s.executor() else { return Ok(()) };
    eprintln!("{}", report_line(h));
    if let (Some(path), Some(trace)) = (&cfg.device.trace, h.trace()) {
        std::fs::write(path, trace.to_json())
            .map_err(|e| format!("error: cannot write the trace to {}: {e}", path.display()))?;
        log_info!("sim: trace of {} operations written to {}\n", trace.len(), path.display());
    }
    Ok(())
}

/// `sim (rtx4090-ddr5, auto): virtual prefill 812.4 t/s, decode 41.2 t/s; busy cpu 62% gpu 35% h2d 71%`
pub fn report_line(h: &Hybrid<'_>) -> String {
    let c = h.clock();
    let [cpu, gpu, h2d] = c.busy_fractions().map(|f| f * 100.0);
    let swaps = h.hot_swaps().map_or(String::new(), |n| format!("; hot-expert swaps {n}"));
    let kept = match c.prefetch_kept {
        Some(true) => " (kept: faster)",
        Some(false) => " (off after the trial: slower)",
        None => "",
    };
    let hits = c
        .prefetch_hit_rate()
        .map_or(String::new(), |r| format!("; decode prefetch hits {:.0}%{kept}", r * 100.0));
    format!(
        "{} ({}, {}): virtual prefill {:.1} t/s, decode {:.1} t/s; busy cpu {cpu:.0}% gpu {gpu:.0}% h2d {h2d:.0}%{swaps}{hits}",
        h.device().kind(),
        h.plan().hw,
        h.plan().policy.name(),
        c.prefill_tps(),
        c.decode_tps()
    )
}
