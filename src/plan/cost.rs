//! The cost model: seconds for a task on the CPU, on the GPU, and to copy it over PCIe.
//!
//! CPU time = max(bytes / cpu_bw, flops / cpu_flops) + per-task overhead, and with a measured
//! profile (our kernels' own rates) + attention flops / attention rate + elementwise elements /
//! elementwise rate;
//! GPU time = max(bytes / gpu_bw, flops / gpu_flops) + launches; copy = bytes / pcie_bw + latency.
//! Host DRAM sharing between the CPU and PCIe lanes is the simulator's job.

use serde::{Deserialize, Serialize};

use crate::ops::attention::GGML_TILE_TOKENS;

use super::profile::{CpuPoint, GpuProfile, HwProfile, KernelRates, PcieProfile, TypeRates};
use super::shapes::WeightType;
use super::tasks::{TaskGraph, TaskKind};

/// Fraction of the FMA ceiling a blocked f16/bf16 GEMM reaches on the CPU.
pub const CPU_FLOP_EFFICIENCY: f64 = 0.5;
/// Fractions of the GPU data-sheet figures that GEMM/GEMV kernels reach.
pub const GPU_FLOP_EFFICIENCY: f64 = 0.7;
pub const GPU_BW_EFFICIENCY: f64 = 0.85;
/// Our GPU attention reads the KV cache at this rate, not at a fraction of the card's memory
/// bandwidth: `rs-llama-gpu-check` on the H200 measured decode attention (32/8 heads, head dim
/// 128) reading it at 23 GB/s at 512 positions and 25 GB/s at 4096
/// (compare/results/device-2026-11-26/device-check-h200-run1.txt). A profile that measured its
/// card (`GpuProfile::attn_kv_gbs`) replaces it.
pub const GPU_ATTN_KV_GBS_MEASURED: f64 = 23.0;
/// Thread wake-up and barrier per parallel dispatch on the CPU (rayon on this 2-core machine:
/// 8–11 µs when the workers have gone idle between dispatches, as they do between decode ops),
/// where the profile has not measured it.
pub const CPU_TASK_OVERHEAD_S: f64 = 10e-6;
/// Parallel dispatches of a dense layer's decode step: Q/K/V, attention, O, gate/up, down; the
/// profile's `decode_layer_us` is shared among them.
pub const DECODE_LAYER_DISPATCHES: f64 = 5.0;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TaskCost {
    pub cpu: f64,
    pub gpu: f64,
    pub copy: f64,
    /// Host bytes the CPU reads (weights and KV) or the copy moves.
    pub host_bytes: f64,
}

#[derive(Debug, Clone)]
pub struct CostModel {
    pub cpu: CpuPoint,
    pub dram_gbs: f64,
    pub gpu: Option<GpuProfile>,
    pub pcie: Option<PcieProfile>,
    /// Stream from pinned memory (else pageable).
    pub pinned: bool,
    pub wtype: WeightType,
}

impl CostModel {
    pub fn new(hw: &HwProfile, wtype: WeightType, pinned: bool) -> CostModel {
        CostModel {
            cpu: hw.cpu.at(),
            dram_gbs: hw.dram_gbs,
            gpu: hw.gpu.clone(),
            pcie: hw.pcie,
            pinned,
            wtype,
        }
    }

    pub fn has_gpu(&self) -> bool {
        self.gpu.is_some() && self.pcie.is_some()
    }

    /// The profile's measured kernel rates, when it has usable ones.
    fn kernels(&self) -> Option<KernelRates> {
        self.cpu.kernels.filter(|k| {
            let types = [k.gemm_gflops, k.expert_gflops, k.gemv_gbs]
                .iter()
                .all(|r| r.f32 > 0.0 && r.f16 > 0.0 && r.bf16 > 0.0);
            types && k.attn_prefill_gflops > 0.0 && k.attn_decode_gflops > 0.0 && k.elementwise_gelems > 0.0
        })
    }

    fn of_type(&self, r: &TypeRates) -> f64 {
        match self.wtype {
            WeightType::F16 => r.f16,
            WeightType::Bf16 => r.bf16,
            WeightType::F32 => r.f32,
        }
    }

    fn cpu_flops(&self) -> f64 {
        if let Some(k) = self.kernels() {
            return self.of_type(&k.gemm_gflops) * 1e9;
        }
        let peak = match self.wtype {
            WeightType::F16 => self.cpu.f16_gflops,
            WeightType::Bf16 => self.cpu.bf16_gflops,
            WeightType::F32 => self.cpu.f32_gflops,
        };
        peak * 1e9 * CPU_FLOP_EFFICIENCY
    }

    /// Bytes per second the CPU streams weights at: the DRAM figure, or below it the rate our
    /// one-token matmul reaches (it also stops between matrices and reduces rows).
    fn cpu_stream_bw(&self) -> f64 {
        let dram = self.cpu.mem_gbs.min(self.dram_gbs);
        let gemv = self.kernels().map_or(f64::INFINITY, |k| self.of_type(&k.gemv_gbs));
        dram.min(gemv) * 1e9
    }

    pub fn cpu_time(&self, bytes: f64, flops: f64) -> f64 {
        self.cpu_time_at(bytes, flops, self.cpu_flops(), self.dispatch_secs())
    }

    /// One parallel dispatch: the measured fixed cost of a decode layer over its dispatches (it
    /// also holds the layer's small ops between them, a few µs that the elementwise term counts
    /// again), or [`CPU_TASK_OVERHEAD_S`].
    fn dispatch_secs(&self) -> f64 {
        match self.kernels() {
            Some(k) if k.decode_layer_us > 0.0 => k.decode_layer_us * 1e-6 / DECODE_LAYER_DISPATCHES,
            _ => CPU_TASK_OVERHEAD_S,
        }
    }

    fn cpu_time_at(&self, bytes: f64, flops: f64, flops_per_s: f64, overhead: f64) -> f64 {
        (bytes / self.cpu_stream_bw()).max(flops / flops_per_s) + overhead
    }

    /// Parallel dispatches a task costs the CPU executor: attention is Q/K/V, the attention
    /// itself and O; an FFN gate with up, then down; a layer's CPU row blocks run as one matmul
    /// per weight, so they share their layer's two.
    fn dispatch_overhead(&self, kind: TaskKind) -> f64 {
        let dispatches = match kind {
            TaskKind::Attention => 3.0,
            TaskKind::FfnRows { blocks, .. } => 2.0 / f64::from(blocks.max(1)),
            TaskKind::Expert { .. } | TaskKind::SharedExpert => 2.0,
            TaskKind::Router | TaskKind::Output => 1.0,
        };
        dispatches * self.dispatch_secs()
    }

    /// Task `id`'s CPU time for `n` tokens. With measured kernels: its matmuls as [`Self::cpu_time`],
    /// plus its attention at the measured attention rate (tiled from a prompt's worth of tokens,
    /// as the engine switches) and its elementwise work at the measured elementwise rate.
    fn cpu_task_time(&self, g: &TaskGraph, id: usize, n: u64, bytes: f64, flops: f64) -> f64 {
        let overhead = self.dispatch_overhead(g.tasks[id].kind);
        let Some(k) = self.kernels() else {
            return self.cpu_time_at(bytes, flops, self.cpu_flops(), overhead);
        };
        let matmul_flops = 2.0 * g.tasks[id].params as f64 * n as f64;
        let attn_gflops =
            if n as usize >= GGML_TILE_TOKENS { k.attn_prefill_gflops } else { k.attn_decode_gflops };
        let attention = (flops - matmul_flops).max(0.0) / (attn_gflops * 1e9);
        let elementwise = n as f64 * g.elementwise_elems(id) / (k.elementwise_gelems * 1e9);
        // Routed experts run as `mul_mat_id`, whose order needs its own (slower) tile.
        let matmul_rate = match g.tasks[id].kind {
            TaskKind::Expert { .. } => self.of_type(&k.expert_gflops) * 1e9,
            _ => self.cpu_flops(),
        };
        self.cpu_time_at(bytes, matmul_flops, matmul_rate, overhead) + attention + elementwise
    }

    pub fn gpu_time(&self, bytes: f64, flops: f64, kernels: f64) -> f64 {
        match &self.gpu {
            Some(g) => {
                let tflops = if self.wtype == WeightType::Bf16 { g.bf16_tflops } else { g.f16_tflops };
                let t = (bytes / (g.mem_gbs * 1e9 * GPU_BW_EFFICIENCY))
                    .max(flops / (tflops * 1e12 * GPU_FLOP_EFFICIENCY));
                t + kernels * g.launch_us * 1e-6
            }
            None => f64::INFINITY,
        }
    }

    pub fn link_gbs(&self) -> f64 {
        match &self.pcie {
            Some(l) if self.pinned => l.pinned_gbs,
            Some(l) => l.pageable_gbs,
            None => 0.0,
        }
    }

    pub fn copy_time(&self, bytes: f64) -> f64 {
        match &self.pcie {
            Some(l) => bytes / (self.link_gbs() * 1e9) + l.latency_us * 1e-6,
            None => f64::INFINITY,
        }
    }

    /// Moving `n` tokens' activations between the CPU and the GPU (f32 rows).
    pub fn activation_hop(&self, n_tokens: u64, n_embd: u64) -> f64 {
        match &self.pcie {
            Some(l) => l.latency_us * 1e-6 + (n_tokens * n_embd * 4) as f64 / (l.pinned_gbs * 1e9),
            None => 0.0,
        }
    }

    /// Costs of task `id` processing `n` tokens after `ctx` cached ones.
    pub fn task(&self, g: &TaskGraph, id: usize, n: u64, ctx: u64) -> TaskCost {
        let t = &g.tasks[id];
        let flops = g.flops(id, n, ctx);
        let kv = g.kv_bytes(id, n, ctx);
        let bytes = t.bytes as f64 + kv;
        let kernels = match t.kind {
            TaskKind::Attention => 8.0,
            TaskKind::Router => 2.0,
            _ => 3.0,
        };
        // The KV cache is read at what our attention kernel was measured to reach.
        let kv_gpu = match &self.gpu {
            Some(gp) => kv / (gp.attn_kv_gbs.unwrap_or(GPU_ATTN_KV_GBS_MEASURED) * 1e9),
            None => 0.0,
        };
        TaskCost {
            cpu: self.cpu_task_time(g, id, n, bytes, flops),
            gpu: self.gpu_time(t.bytes as f64, flops, kernels) + kv_gpu,
            // (An attention block is never streamed: it computes where its KV cache lives.)
            copy: self.copy_time(bytes),
            host_bytes: bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::presets::preset;
    use crate::plan::shapes::ModelShape;

    /// hybrid-anchors §6.6: one Mixtral expert copies in ≈ 14 ms on PCIe 4.0 and reads in ≈ 6 ms
    /// from DDR. The note puts the CPU/copy crossover at 10–20 tokens with 0.7 GFLOP per token; an
    /// expert has 176 M parameters, i.e. 0.35 GFLOP per token, which doubles the crossover.
    #[test]
    fn mixtral_expert_crossover_matches_reference_estimate() {
        let hw = preset("rtx4090-ddr5").unwrap();
        let c = CostModel::new(&hw, WeightType::F16, true);
        let s = ModelShape::named("mixtral-8x7b", WeightType::F16).unwrap();
        let g = TaskGraph::build(&s, 8, 512);
        let e = g.layers[0].ffn[0];
        let one = c.task(&g, e, 1, 0);
        assert!((one.copy - 0.0141).abs() < 0.001, "copy {}", one.copy);
        assert!((one.cpu - 352e6 / 64e9).abs() < 0.001, "cpu {}", one.cpu);
        let crossover = (1..200).find(|&n| c.task(&g, e, n, 0).cpu > one.copy + c.task(&g, e, n, 0).gpu);
        assert!(matches!(crossover, Some(20..=60)), "{crossover:?}");
    }
}

#[cfg(test)]
mod measured_tests {
    use super::*;
    use crate::plan::presets::preset;
    use crate::plan::probe::{KernelRates, TypeRates};
    use crate::plan::shapes::ModelShape;

    /// A CPU-only profile whose kernel rates are round numbers, so every term can be written out.
    fn measured() -> CostModel {
        let mut hw = preset("rtx4090-ddr5").unwrap();
        hw.gpu = None;
        hw.pcie = None;
        let same = |v: f64| TypeRates { f32: v, f16: v, bf16: v };
        for p in &mut hw.cpu.points {
            p.mem_gbs = 100.0;
            p.kernels = Some(KernelRates {
                gemm_gflops: same(100.0),
                expert_gflops: same(50.0),
                gemv_gbs: same(20.0),
                // 10 µs for each of a decode layer's five dispatches.
                decode_layer_us: 50.0,
                attn_prefill_gflops: 40.0,
                attn_decode_gflops: 10.0,
                elementwise_gelems: 2.0,
            });
        }
        CostModel::new(&hw, WeightType::F16, true)
    }

    #[test]
    fn measured_cpu_time_adds_matmul_attention_and_elementwise_terms() {
        let c = measured();
        let s = ModelShape::named("mixtral-8x7b", WeightType::F16).unwrap();
        let g = TaskGraph::build(&s, 8, 4096);
        let a = g.layers[0].attention;
        let (params, bytes) = (g.tasks[a].params as f64, g.tasks[a].bytes as f64);
        let elems = g.elementwise_elems(a);
        // 4096 wide, 32 heads of 128, 8 KV heads: 4·4096 + 4096 + 2·1024 + 1024 elements per token.
        assert_eq!(elems, (4 * 4096 + 4096 + 2 * 1024 + 1024) as f64);
        for (n, ctx, attn_rate) in [(512u64, 0u64, 40e9), (1, 600, 10e9)] {
            let attn_flops = g.flops(a, n, ctx) - 2.0 * params * n as f64;
            let kv = g.kv_bytes(a, n, ctx);
            let matmul = ((bytes + kv) / 20e9).max(2.0 * params * n as f64 / 100e9);
            let want = matmul + 3.0 * 10e-6 + attn_flops / attn_rate + n as f64 * elems / 2e9;
            let got = c.task(&g, a, n, ctx).cpu;
            assert!((got - want).abs() < 1e-12 * want.max(1.0), "n={n}: {got} vs {want}");
        }
        // A routed expert's matmuls run at the expert rate; it also adds its rows' SwiGLU and its
        // embedding row of the weighted sum.
        let e = g.layers[0].ffn[0];
        let (eparams, ebytes) = (g.tasks[e].params as f64, g.tasks[e].bytes as f64);
        let want = (ebytes / 20e9).max(2.0 * eparams * 128.0 / 50e9)
            + 2.0 * 10e-6
            + 128.0 * (14336.0 + 4096.0) / 2e9;
        let got = c.task(&g, e, 128, 0).cpu;
        assert!((got - want).abs() < 1e-12 * want, "{got} vs {want}");
    }

    #[test]
    fn a_layers_cpu_row_blocks_share_its_two_dispatches() {
        let c = measured();
        let s = ModelShape::named("llama-2-13b", WeightType::F16).unwrap();
        let g = TaskGraph::build(&s, 8, 4096);
        let blocks = &g.layers[0].ffn;
        let sum: f64 = blocks.iter().map(|&b| c.task(&g, b, 1, 0).cpu).sum();
        let bytes: f64 = blocks.iter().map(|&b| g.tasks[b].bytes as f64).sum();
        let want = bytes / 20e9 + 2.0 * 10e-6 + s.n_ff as f64 / 2e9;
        assert!((sum - want).abs() < 1e-9, "{sum} vs {want}");
    }
}
