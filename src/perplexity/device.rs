//! rs-llama-perplexity's device flags, as rs-llama takes them: `-dev none|sim`, `--sim-hw`,
//! `--policy`, `--gpu-mem`, `-ngl`, `-ncmoe`, `-cmoe`, `-fa`; and the session they make. A sim run
//! evaluates through the hybrid executor on the simulated GPU, which runs the CPU's kernels, so
//! its perplexity is the CPU's to the last digit; the executor's virtual speed is reported after.

use clap::Args;

use crate::cli::args::GpuLayers;
use crate::cli::device::{cuda_session, report_line, sim_options, sim_session, DeviceChoice};
use crate::exec::Session;
use crate::model::{Model, ModelError};
use crate::plan::PolicyKind;
use crate::{log_info, log_warn};

#[derive(Debug, Clone, Args)]
pub struct DeviceArgs {
    /// Where the GPU lane runs: none, or sim (the simulated GPU of --sim-hw).
    #[arg(long = "device", value_parser = parse_device)]
    pub device: Option<DeviceChoice>,
    /// Hardware the simulated GPU plays: a preset (rtx4090-ddr5 ...) or a profile JSON.
    #[arg(long = "sim-hw", default_value = "rtx4090-ddr5")]
    pub sim_hw: String,
    /// Placement policy: auto, layers (llama.cpp -ngl) or fiddler.
    #[arg(long = "policy", default_value = "auto", value_parser = parse_policy)]
    pub policy: PolicyKind,
    /// Cap on the simulated GPU's memory, e.g. 8G or 512M (default: the profile's card).
    #[arg(long = "gpu-mem", value_parser = parse_gpu_mem)]
    pub gpu_mem: Option<u64>,
    /// Layers to store in VRAM: a number, 'auto' or 'all'.
    #[arg(long = "n-gpu-layers", visible_alias = "gpu-layers", value_parser = parse_ngl, allow_negative_numbers = true)]
    pub ngl: Option<GpuLayers>,
    /// Keep the experts of the first N layers in host memory.
    #[arg(long = "n-cpu-moe", allow_negative_numbers = true)]
    pub n_cpu_moe: Option<i32>,
    /// Keep every expert in host memory.
    #[arg(long = "cpu-moe")]
    pub cpu_moe: bool,
    /// Flash attention: on, off or auto (no effect: the CPU kernels are always flash attention).
    #[arg(long = "flash-attn", value_parser = ["on", "off", "auto", "1", "0"])]
    pub flash_attn: Option<String>,
}

/// llama.cpp's single-dash spellings, which clap reads only as clusters of one-letter flags, as
/// the long forms they stand for.
pub fn long_spellings(args: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len());
    let mut rest = false;
    for a in args {
        let long = match a.as_str() {
            _ if rest => None,
            "--" => {
                rest = true;
                None
            }
            "-dev" => Some("--device"),
            "-ngl" => Some("--n-gpu-layers"),
            "-ncmoe" => Some("--n-cpu-moe"),
            "-cmoe" => Some("--cpu-moe"),
            "-fa" => Some("--flash-attn"),
            _ => None,
        };
        out.push(long.map_or_else(|| a.clone(), str::to_string));
    }
    out
}

fn parse_device(s: &str) -> Result<DeviceChoice, String> {
    // clap puts its own "error: " before the message.
    DeviceChoice::parse(s).map_err(|e| e.trim_start_matches("error: ").to_string())
}

fn parse_policy(s: &str) -> Result<PolicyKind, String> {
    PolicyKind::parse(s).map_err(|e| e.to_string())
}

fn parse_gpu_mem(s: &str) -> Result<u64, String> {
    crate::gpu::parse_size(s).map_err(|e| e.to_string())
}

fn parse_ngl(s: &str) -> Result<GpuLayers, String> {
    match s {
        "auto" => Ok(GpuLayers::Auto),
        "all" => Ok(GpuLayers::All),
        n => n.parse().map(GpuLayers::Count).map_err(|_| format!("'{n}' is not a number, 'auto' or 'all'")),
    }
}

/// The evaluation session: on the CPU, or with `-dev sim` the hybrid executor on the simulated GPU
/// (on the CPU, with a warning, when the profile has no GPU).
pub fn open_session<'m>(
    d: &DeviceArgs,
    model: &'m Model,
    n_ctx: usize,
    n_ubatch: usize,
) -> Result<Session<'m>, ModelError> {
    let cuda = match d.device {
        Some(DeviceChoice::Sim) => None,
        Some(DeviceChoice::Cuda(n)) => Some(n),
        _ => return Session::new(model, n_ctx, n_ubatch),
    };
    let n_layer = model.hparams().n_layer;
    let n_cpu_moe = if d.cpu_moe { Some(n_layer as u32) } else { d.n_cpu_moe.map(|n| n.max(0) as u32) };
    let opts = sim_options(&d.sim_hw, d.policy, d.gpu_mem, d.ngl, n_cpu_moe, n_layer)
        .map_err(ModelError::Invalid)?;
    let Some(mut opts) = opts else {
        log_warn!("sim: the profile '{}' has no GPU; running on the CPU\n", d.sim_hw);
        return Session::new(model, n_ctx, n_ubatch);
    };
    let session = match cuda {
        Some(n) => match cuda_session(model, n_ctx, n_ubatch, &mut opts, n, d.gpu_mem)? {
            Some(s) => s,
            None => return Session::new(model, n_ctx, n_ubatch),
        },
        None => sim_session(model, n_ctx, n_ubatch, &opts)?,
    };
    if let Some(h) = session.executor() {
        crate::cli::device::log_loaded(h);
    }
    Ok(session)
}

/// After the evaluation: the simulated run's virtual speed, on stderr (nothing on the CPU).
pub fn report(session: &Session<'_>) {
    if let Some(h) = session.executor() {
        log_info!("{}\n", report_line(h));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_dash_spellings_become_long_flags() {
        let args: Vec<String> = ["-dev", "sim", "-ngl", "4", "-cmoe", "-fa", "on", "-f", "-dev"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let got = long_spellings(&args);
        assert_eq!(got[..7], ["--device", "sim", "--n-gpu-layers", "4", "--cpu-moe", "--flash-attn", "on"]);
        let after: Vec<String> = ["--", "-dev"].iter().map(|s| s.to_string()).collect();
        assert_eq!(long_spellings(&after), after);
        assert_eq!(parse_device("cuda1"), Ok(DeviceChoice::Cuda(1)));
        assert!(parse_device("tpu0").is_err());
        assert_eq!(parse_ngl("all"), Ok(GpuLayers::All));
        assert!(parse_ngl("x").is_err());
    }
}
