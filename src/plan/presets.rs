//! Named hardware presets. Figures come from `reference/hybrid-anchors.md` §6 and are measured
//! where the note has measurements (PCIe 4.0 pinned H2D 23.9–26.4 GB/s, pageable about 3× slower,
//! DDR4-3200 dual channel 43–46 GB/s, DDR5-6000 about 64 GB/s); GPU figures are the data-sheet
//! ones (the cost model applies achievable fractions). CPU FMA ceilings are derived: cores × 2 FMA
//! ports × SIMD lanes × 2 flops × all-core clock.

use super::profile::{measure_cpu, CpuPoint, CpuProfile, GpuProfile, HwProfile, PcieProfile};
use super::PlanError;

pub const PRESET_NAMES: &[&str] =
    &["rtx3090-ddr4", "rtx3090-ddr5", "rtx4090-ddr4", "rtx4090-ddr5", "h100-pcie5", "host"];

const GIB: u64 = 1 << 30;

/// 16-core Zen 3 desktop (Ryzen 9 5950X class), AVX2 + F16C, dual-channel DDR4-3200.
fn cpu_zen3_ddr4() -> (CpuProfile, f64) {
    // 16 cores × 2 × 8 lanes × 2 × 3.8 GHz = 1946 GFLOP/s; one core 122.
    let points = vec![
        CpuPoint {
            threads: 1,
            mem_gbs: 20.0,
            f32_gflops: 122.0,
            f16_gflops: 122.0,
            bf16_gflops: 122.0,
            kernels: None,
        },
        CpuPoint {
            threads: 16,
            mem_gbs: 44.0,
            f32_gflops: 1946.0,
            f16_gflops: 1946.0,
            bf16_gflops: 1946.0,
            kernels: None,
        },
    ];
    (
        CpuProfile {
            description: "16-core Zen 3 (5950X class), AVX2, DDR4-3200 x2".into(),
            threads: 16,
            points,
        },
        44.0,
    )
}

/// 16-core Zen 4 desktop (Ryzen 9 7950X class), AVX-512 with BF16 dot products, DDR5-6000 x2.
fn cpu_zen4_ddr5() -> (CpuProfile, f64) {
    // 16 cores × 2 × 8 lanes (AVX-512 on a 256-bit data path) × 2 × 4.5 GHz = 2304; bf16 dot 2×.
    let points = vec![
        CpuPoint {
            threads: 1,
            mem_gbs: 30.0,
            f32_gflops: 144.0,
            f16_gflops: 144.0,
            bf16_gflops: 288.0,
            kernels: None,
        },
        CpuPoint {
            threads: 16,
            mem_gbs: 64.0,
            f32_gflops: 2304.0,
            f16_gflops: 2304.0,
            bf16_gflops: 4608.0,
            kernels: None,
        },
    ];
    (
        CpuProfile {
            description: "16-core Zen 4 (7950X class), AVX-512 BF16, DDR5-6000 x2".into(),
            threads: 16,
            points,
        },
        64.0,
    )
}

fn rtx3090() -> GpuProfile {
    GpuProfile {
        name: "RTX 3090".into(),
        mem_bytes: 24 * GIB,
        mem_gbs: 936.0,
        f16_tflops: 71.0,
        bf16_tflops: 71.0,
        launch_us: 5.0,
        attn_kv_gbs: None,
    }
}

fn rtx4090() -> GpuProfile {
    GpuProfile {
        name: "RTX 4090".into(),
        mem_bytes: 24 * GIB,
        mem_gbs: 1008.0,
        f16_tflops: 165.0,
        bf16_tflops: 165.0,
        launch_us: 5.0,
        attn_kv_gbs: None,
    }
}

fn pcie4() -> PcieProfile {
    PcieProfile { pinned_gbs: 25.0, pageable_gbs: 8.0, latency_us: 10.0 }
}

/// A preset by name; `host` measures this machine's CPU (about a second) and has no GPU.
pub fn preset(name: &str) -> Result<HwProfile, PlanError> {
    let (cpu, dram, gpu, pcie, source) = match name {
        "rtx3090-ddr4" => {
            let (c, d) = cpu_zen3_ddr4();
            (c, d, Some(rtx3090()), Some(pcie4()), "hybrid-anchors §6: PCIe 4.0 measured, DDR4 measured")
        }
        "rtx3090-ddr5" => {
            let (c, d) = cpu_zen4_ddr5();
            (c, d, Some(rtx3090()), Some(pcie4()), "hybrid-anchors §6: PCIe 4.0 measured, DDR5 measured")
        }
        "rtx4090-ddr4" => {
            let (c, d) = cpu_zen3_ddr4();
            (c, d, Some(rtx4090()), Some(pcie4()), "hybrid-anchors §6: PCIe 4.0 measured, DDR4 measured")
        }
        "rtx4090-ddr5" => {
            let (c, d) = cpu_zen4_ddr5();
            (c, d, Some(rtx4090()), Some(pcie4()), "hybrid-anchors §6: PCIe 4.0 measured, DDR5 measured")
        }
        "h100-pcie5" => {
            // The lent device machine: 16 cores, 128 GiB (seen 2026-11-26: Intel Xeon with
            // AVX512-BF16, PCIe 5.0 x16). Its DRAM bandwidth and clock are not known: 100 GB/s and
            // 3.0 GHz are assumptions to replace with `--profile` run there.
            let points = vec![
                CpuPoint {
                    threads: 1,
                    mem_gbs: 25.0,
                    f32_gflops: 96.0,
                    f16_gflops: 96.0,
                    bf16_gflops: 192.0,
                    kernels: None,
                },
                CpuPoint {
                    threads: 16,
                    mem_gbs: 100.0,
                    f32_gflops: 1536.0,
                    f16_gflops: 1536.0,
                    bf16_gflops: 3072.0,
                    kernels: None,
                },
            ];
            let cpu = CpuProfile {
                description: "16 server cores (assumed AVX-512 BF16, 3.0 GHz)".into(),
                threads: 16,
                points,
            };
            let gpu = GpuProfile {
                name: "H100 80GB".into(),
                mem_bytes: 80 * GIB,
                mem_gbs: 2000.0,
                f16_tflops: 756.0,
                bf16_tflops: 756.0,
                launch_us: 4.0,
                attn_kv_gbs: None,
            };
            let link = PcieProfile { pinned_gbs: 53.0, pageable_gbs: 18.0, latency_us: 8.0 };
            (
                cpu,
                100.0,
                Some(gpu),
                Some(link),
                "hybrid-anchors §6: PCIe 5.0 measured; H100 PCIe data sheet; host DRAM assumed",
            )
        }
        "host" => {
            let cpu = measure_cpu();
            let dram = cpu.at().mem_gbs;
            (cpu, dram, None, None, "measured on this machine (CPU only)")
        }
        _ => {
            return Err(PlanError::BadArg(format!(
                "unknown preset '{name}' (known: {})",
                PRESET_NAMES.join(", ")
            )))
        }
    };
    let p = HwProfile { name: name.to_string(), source: source.to_string(), cpu, dram_gbs: dram, gpu, pcie };
    p.validate()?;
    Ok(p)
}

/// A preset name, or a path to a profile JSON written by `--profile`.
pub fn load(name_or_path: &str) -> Result<HwProfile, PlanError> {
    if PRESET_NAMES.contains(&name_or_path) {
        return preset(name_or_path);
    }
    let text = std::fs::read_to_string(name_or_path).map_err(|e| {
        PlanError::BadArg(format!("--hw '{name_or_path}': not a preset and not readable: {e}"))
    })?;
    HwProfile::from_json(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_round_trip_through_json() {
        for name in PRESET_NAMES.iter().filter(|n| **n != "host") {
            let p = preset(name).unwrap();
            let back = HwProfile::from_json(&p.to_json()).unwrap();
            assert_eq!(p, back);
        }
    }

    #[test]
    fn pcie4_pinned_is_within_measured_range_and_pageable_about_a_third() {
        let l = pcie4();
        assert!((23.9..=26.4).contains(&l.pinned_gbs));
        assert!((2.5..=3.5).contains(&(l.pinned_gbs / l.pageable_gbs)));
    }
}
