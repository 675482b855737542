//! Report writers: llama-bench's markdown table (plus our GB/s and GFLOP/s columns), and its
//! JSON / JSONL / CSV records with the same leading fields.

use std::fmt::Write;

use super::{OutputFormat, TestResult, TestSpec};
use crate::cli::args::GpuLayers;

/// The build line llama-bench prints under the table.
pub fn build_line() -> String {
    format!(
        "build: rs-llama {} ({})",
        env!("CARGO_PKG_VERSION"),
        option_env!("RS_LLAMA_GIT").unwrap_or("unknown")
    )
}

fn size_str(bytes: u64) -> String {
    let b = bytes as f64;
    if b < 1024.0 * 1024.0 * 1024.0 {
        format!("{:.2} MiB", b / 1024.0 / 1024.0)
    } else {
        format!("{:.2} GiB", b / 1024.0 / 1024.0 / 1024.0)
    }
}

fn params_str(n: u64) -> String {
    if n < 1_000_000_000 {
        format!("{:.2} M", n as f64 / 1e6)
    } else {
        format!("{:.2} B", n as f64 / 1e9)
    }
}

/// Which optional markdown columns a report has, decided from all its tests (as llama-bench
/// does): `ngl`, `dev` and `policy` appear once a test runs on the simulated GPU (llama-bench shows
/// `ngl` for any non-CPU backend), the others when their parameter is not the default. A default
/// run keeps exactly the columns it always had.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Columns {
    pub batch: bool,
    pub ubatch: bool,
    pub sim: bool,
    pub n_cpu_moe: bool,
    pub fa: bool,
}

impl Columns {
    pub fn of<'a>(specs: impl IntoIterator<Item = &'a TestSpec>) -> Columns {
        let mut c = Columns::default();
        for s in specs {
            c.batch |= s.n_batch != 2048;
            c.ubatch |= s.n_ubatch != 512;
            c.sim |= s.dev.is_sim();
            c.n_cpu_moe |= s.dev.is_sim() && (s.dev.n_cpu_moe.is_some() || s.dev.cpu_moe);
            c.fa |= s.dev.flash_attn != -1;
        }
        c
    }
}

/// Markdown header + separator.
pub fn md_header(cols: Columns) -> String {
    let mut names = vec!["model", "size", "params", "backend"];
    let mut opt = |on: bool, name| {
        if on {
            names.push(name)
        }
    };
    opt(cols.sim, "ngl");
    opt(cols.n_cpu_moe, "n_cpu_moe");
    opt(true, "threads");
    opt(cols.batch, "n_batch");
    opt(cols.ubatch, "n_ubatch");
    opt(cols.fa, "fa");
    opt(cols.sim, "dev");
    opt(cols.sim, "policy");
    names.extend(["test", "t/s", "path", "GB/s", "% bw", "GFLOP/s", "% fma"]);
    let right = |c: &str| !matches!(c, "model" | "backend" | "test" | "path" | "dev" | "policy");
    let mut s = format!("| {} |\n|", names.join(" | "));
    for c in &names {
        s += if right(c) { " ---: |" } else { " :--- |" };
    }
    s + "\n"
}

fn backend(r: &TestResult) -> &'static str {
    if r.sim.is_some() {
        "SIM"
    } else {
        "CPU"
    }
}

fn ngl_cell(r: &TestResult) -> String {
    match (r.spec.dev.is_sim(), r.spec.dev.ngl) {
        (false, _) => "0".into(),
        (true, GpuLayers::Auto) => "auto".into(),
        (true, GpuLayers::All) => "all".into(),
        (true, GpuLayers::Count(n)) => n.to_string(),
    }
}

fn fa_cell(fa: i8) -> String {
    if fa < 0 {
        "auto".into()
    } else {
        fa.to_string()
    }
}

pub fn md_row(r: &TestResult, cols: Columns) -> String {
    let (ts, sd) = r.ts();
    let (gbps, gflops) = r.rates();
    let mut cells = vec![
        r.model.desc.clone(),
        size_str(r.model.size_bytes),
        params_str(r.model.n_params),
        backend(r).to_string(),
    ];
    if cols.sim {
        cells.push(ngl_cell(r));
    }
    if cols.n_cpu_moe {
        cells.push(match &r.sim {
            Some(s) => s.n_cpu_moe.map_or("auto".into(), |n| n.to_string()),
            None => "-".into(),
        });
    }
    cells.push(r.spec.threads.to_string());
    if cols.batch {
        cells.push(r.spec.n_batch.to_string());
    }
    if cols.ubatch {
        cells.push(r.spec.n_ubatch.to_string());
    }
    if cols.fa {
        cells.push(fa_cell(r.spec.dev.flash_attn));
    }
    if cols.sim {
        cells.push(r.spec.dev.device.name().to_string());
        cells.push(if r.sim.is_some() { r.spec.dev.policy.name() } else { "-" }.to_string());
    }
    // A sim row's rates come from its virtual time; this machine's CPU ceilings do not bound the
    // simulated card, so their fractions would mean nothing.
    let pct = |v: f64, ceiling: f64| match r.sim {
        Some(_) => "-".to_string(),
        None => format!("{:.0}%", 100.0 * v / ceiling.max(1e-9)),
    };
    cells.extend([
        r.spec.name(),
        format!("{ts:.2} ± {sd:.2}"),
        r.cpu_path.to_string(),
        format!("{gbps:.1}"),
        pct(gbps, r.ceilings.read_gbps),
        format!("{gflops:.1}"),
        pct(gflops, r.ceilings.fma_gflops),
    ]);
    format!("| {} |\n", cells.join(" | "))
}

/// The line under a table with sim rows: their t/s is the simulated GPU's clock, not a measurement.
pub fn sim_note(results: &[TestResult]) -> Option<String> {
    let mut hws: Vec<&str> = Vec::new();
    for s in results.iter().filter_map(|r| r.sim.as_ref()) {
        if !hws.contains(&s.hw.as_str()) {
            hws.push(&s.hw);
        }
    }
    (!hws.is_empty()).then(|| {
        format!(
            "sim rows: t/s from virtual time on {} (the simulated GPU's clock), not measured",
            hws.join(", ")
        )
    })
}

fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out += "\\\"",
            '\\' => out += "\\\\",
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out + "\""
}

/// (field, JSON value) in llama-bench's order, then rs-llama's additions.
fn fields(r: &TestResult) -> Vec<(&'static str, String)> {
    let (avg_ns, sd_ns) = r.ns();
    let (avg_ts, sd_ts) = r.ts();
    let (gbps, gflops) = r.rates();
    let s = |v: &str| json_str(v);
    let sim = r.sim.as_ref();
    vec![
        ("build_commit", s(option_env!("RS_LLAMA_GIT").unwrap_or("unknown"))),
        ("build_number", "0".into()),
        ("cpu_info", s(&cpu_model_name())),
        ("gpu_info", s("")),
        ("backends", s(backend(r))),
        ("model_filename", s(&r.model.filename)),
        ("model_type", s(&r.model.desc)),
        ("model_size", r.model.size_bytes.to_string()),
        ("model_n_params", r.model.n_params.to_string()),
        ("n_batch", r.spec.n_batch.to_string()),
        ("n_ubatch", r.spec.n_ubatch.to_string()),
        ("n_threads", r.spec.threads.to_string()),
        ("type_k", s("f16")),
        ("type_v", s("f16")),
        ("n_gpu_layers", ngl_json(r)),
        ("n_cpu_moe", n_cpu_moe_json(r)),
        ("flash_attn", r.spec.dev.flash_attn.to_string()),
        ("devices", s(r.spec.dev.device.name())),
        ("n_prompt", r.spec.n_prompt.to_string()),
        ("n_gen", r.spec.n_gen.to_string()),
        ("n_depth", "0".into()),
        ("test_time", s(&r.test_time)),
        ("avg_ns", format!("{}", avg_ns.round() as u64)),
        ("stddev_ns", format!("{}", sd_ns.round() as u64)),
        ("avg_ts", format!("{avg_ts:.6}")),
        ("stddev_ts", format!("{sd_ts:.6}")),
        ("cpu_path", s(r.cpu_path)),
        ("gbps", format!("{gbps:.3}")),
        ("gflops", format!("{gflops:.3}")),
        ("ceiling_read_gbps", format!("{:.3}", r.ceilings.read_gbps)),
        ("ceiling_fma_gflops", format!("{:.3}", r.ceilings.fma_gflops)),
        ("policy", s(sim.map_or("", |_| r.spec.dev.policy.name()))),
        ("sim_hw", s(sim.map_or("", |x| x.hw.as_str()))),
        ("virtual_time", sim.is_some().to_string()),
        ("plan", s(sim.map_or("", |x| x.plan.as_str()))),
    ]
}

/// llama-bench's int: the count, -1 for every layer (its spelling of all), 0 on the CPU; null
/// when the planner chooses (`auto`), which llama-bench has no number for.
fn ngl_json(r: &TestResult) -> String {
    match (r.spec.dev.is_sim(), r.spec.dev.ngl) {
        (false, _) => "0".into(),
        (true, GpuLayers::Auto) => "null".into(),
        (true, GpuLayers::All) => "-1".into(),
        (true, GpuLayers::Count(n)) => n.to_string(),
    }
}

/// The count as planned (`-cmoe` resolved), 0 on the CPU, null when the planner chooses.
fn n_cpu_moe_json(r: &TestResult) -> String {
    match &r.sim {
        None => "0".into(),
        Some(s) => s.n_cpu_moe.map_or("null".into(), |n| n.to_string()),
    }
}

fn json_object(r: &TestResult) -> String {
    let mut parts: Vec<String> = fields(r).into_iter().map(|(k, v)| format!("\"{k}\": {v}")).collect();
    let list = |v: Vec<String>| format!("[{}]", v.join(", "));
    parts.push(format!("\"samples_ns\": {}", list(r.samples_ns.iter().map(|v| v.to_string()).collect())));
    parts.push(format!(
        "\"samples_ts\": {}",
        list(r.samples_ts().iter().map(|v| format!("{v:.6}")).collect())
    ));
    format!("{{{}}}", parts.join(", "))
}

/// The whole report for `results` in `fmt` (md includes header and build footer).
pub fn render(fmt: OutputFormat, results: &[TestResult]) -> String {
    match fmt {
        OutputFormat::Md => {
            let cols = Columns::of(results.iter().map(|r| &r.spec));
            let mut s = md_header(cols);
            for r in results {
                s += &md_row(r, cols);
            }
            s += "\n";
            if let Some(note) = sim_note(results) {
                s += &(note + "\n");
            }
            s + &build_line() + "\n"
        }
        OutputFormat::Json => {
            let objs: Vec<String> = results.iter().map(|r| format!("  {}", json_object(r))).collect();
            format!("[\n{}\n]\n", objs.join(",\n"))
        }
        OutputFormat::Jsonl => results.iter().map(|r| json_object(r) + "\n").collect(),
        OutputFormat::Csv => {
            let Some(first) = results.first() else { return String::new() };
            let header: Vec<&str> = fields(first).iter().map(|(k, _)| *k).collect();
            let mut s = header.join(",") + "\n";
            for r in results {
                let row: Vec<String> = fields(r)
                    .into_iter()
                    .map(|(_, v)| format!("\"{}\"", v.trim_matches('"').replace('"', "\"\"")))
                    .collect();
                s += &(row.join(",") + "\n");
            }
            s
        }
    }
}

fn cpu_model_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::{work::Work, BenchDevice, Ceilings, DevSpec, ModelInfo, SimRun, TestSpec};

    fn result() -> TestResult {
        TestResult {
            model: ModelInfo {
                filename: "m.gguf".into(),
                desc: "llama 135M F16".into(),
                size_bytes: 270 << 20,
                n_params: 134_515_008,
            },
            spec: TestSpec {
                n_prompt: 0,
                n_gen: 128,
                n_batch: 2048,
                n_ubatch: 512,
                threads: 2,
                dev: DevSpec::default(),
            },
            cpu_path: "avx512",
            test_time: "2026-11-26T04:30:00Z".into(),
            samples_ns: vec![1_000_000_000, 2_000_000_000],
            work: Work { bytes: 30e9, flops: 60e9 },
            ceilings: Ceilings { read_gbps: 40.0, fma_gflops: 200.0 },
            sim: None,
        }
    }

    fn sim_result() -> TestResult {
        let mut r = result();
        r.spec.dev = DevSpec { device: BenchDevice::Sim, ..DevSpec::default() };
        r.sim = Some(SimRun { hw: "rtx4090-ddr5".into(), plan: "p".into(), n_cpu_moe: None, notes: vec![] });
        r
    }

    #[test]
    fn markdown_row_has_llama_bench_cells_and_rates() {
        let s = render(OutputFormat::Md, &[result()]);
        let row = s.lines().nth(2).unwrap();
        // samples 128/1s and 128/2s: mean 96, sample stddev 45.25; mean time 1.5 s → 20 GB/s, 40 GFLOP/s.
        assert_eq!(
            row,
            "| llama 135M F16 | 270.00 MiB | 134.52 M | CPU | 2 | tg128 | 96.00 ± 45.25 | avx512 | 20.0 | 50% | 40.0 | 20% |"
        );
        assert!(s.ends_with(&(build_line() + "\n")));
    }

    #[test]
    fn json_formats_parse_and_keep_samples() {
        let r = result();
        let arr: serde_json::Value =
            serde_json::from_str(&render(OutputFormat::Json, &[r.clone(), r.clone()])).unwrap();
        assert_eq!(arr.as_array().unwrap().len(), 2);
        let line = render(OutputFormat::Jsonl, &[r]);
        let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
        assert_eq!(v["n_gen"], 128);
        assert_eq!(v["avg_ts"].as_f64().unwrap(), 96.0);
        assert_eq!(v["samples_ns"][1], 2_000_000_000u64);
        let csv = render(OutputFormat::Csv, &[result()]);
        assert!(csv.lines().next().unwrap().starts_with("build_commit,build_number,cpu_info"));
        assert!(csv.lines().nth(1).unwrap().contains("\"tg128\"") || csv.contains("\"128\""));
    }

    #[test]
    fn sim_rows_add_columns_and_a_virtual_time_note() {
        let s = render(OutputFormat::Md, &[result(), sim_result()]);
        let lines: Vec<&str> = s.lines().collect();
        assert!(
            lines[0].starts_with("| model | size | params | backend | ngl | threads | dev | policy | test |")
        );
        assert!(lines[2].contains("| CPU | 0 | 2 | none | - | tg128 |"), "{}", lines[2]);
        assert!(lines[3].contains("| SIM | auto | 2 | sim | auto | tg128 |"), "{}", lines[3]);
        assert!(lines[3].ends_with("| 20.0 | - | 40.0 | - |"), "{}", lines[3]);
        assert!(s.contains("\nsim rows: t/s from virtual time on rtx4090-ddr5 (the simulated GPU's clock), not measured\nbuild:"));
        let v: serde_json::Value =
            serde_json::from_str(render(OutputFormat::Jsonl, &[sim_result()]).trim()).unwrap();
        assert_eq!((v["devices"].as_str(), v["policy"].as_str()), (Some("sim"), Some("auto")));
        assert_eq!((v["virtual_time"].as_bool(), v["n_gpu_layers"].is_null()), (Some(true), true));
    }
}
