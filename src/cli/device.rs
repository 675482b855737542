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
                _ => {
                    Err(format!("error: invalid device '{text}' (none, sim, cuda0, ...; see --list-devices)"))
                }
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

/// The session for `cfg`: on the CPU, whole-model on a CUDA GPU, or the hybrid executor on the
/// simulated GPU.
pub fn open_session<'m>(
    cfg: &RunConfig,
    model: &'m Model,
    resident: Option<&'m (gpu::Gpu, gpu::GpuLlama)>,
    n_ctx: usize,
) -> Result<EngineSession<'m>, ModelError> {
    let n_ubatch = cfg.n_ubatch as usize;
    if cfg.device.device != DeviceChoice::Sim {
        return EngineSession::new(model, resident, n_ctx, n_ubatch);
    }
    let hw = presets::load(&cfg.device.sim_hw).map_err(|e| ModelError::Invalid(format!("--sim-hw: {e}")))?;
    let Some(card) = hw.gpu.as_ref() else {
        log_warn!("sim: the profile '{}' has no GPU; running on the CPU\n", hw.name);
        return EngineSession::new(model, None, n_ctx, n_ubatch);
    };
    let gpu_mem = cfg.gpu_mem.unwrap_or(card.mem_bytes).min(card.mem_bytes);
    let n_layer = model.hparams().n_layer;
    let opts = HybridOptions {
        policy: cfg.device.policy,
        gpu_mem,
        ngl: ngl_for_plan(cfg.gpu_layers, n_layer),
        n_cpu_moe: if cfg.device.cpu_moe { Some(n_layer as u32) } else { cfg.device.n_cpu_moe },
        slots: None,
        trace: cfg.device.trace.is_some(),
        hw: hw.clone(),
    };
    let device = Box::new(SimDevice::new(&hw.name, gpu_mem));
    let session = Session::hybrid(model, n_ctx, n_ubatch, &opts, device)?;
    if let Some(h) = session.executor() {
        log_info!("sim: {}\n", h.device().describe());
        log_info!("sim: plan ({}): {}\n", h.plan().policy.name(), h.plan().summary);
        if cfg.device.print_plan {
            let g = h.graph();
            eprint!("{}", crate::plan::print::plan_text(h.plan(), &|i| g.tasks[i].layer));
        }
    }
    Ok(EngineSession::Cpu(session))
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
    format!(
        "sim ({}, {}): virtual prefill {:.1} t/s, decode {:.1} t/s; busy cpu {cpu:.0}% gpu {gpu:.0}% h2d {h2d:.0}%",
        h.plan().hw,
        h.plan().policy.name(),
        c.prefill_tps(),
        c.decode_tps()
    )
}
