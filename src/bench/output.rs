//! Report writers: llama-bench's markdown table (plus our GB/s and GFLOP/s columns), and its
//! JSON / JSONL / CSV records with the same leading fields.

use std::fmt::Write;

use super::{OutputFormat, TestResult};

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

/// Markdown header + separator. `n_batch`/`n_ubatch` columns appear only when non-default.
pub fn md_header(show_batch: bool, show_ubatch: bool) -> String {
    let mut cols = vec!["model", "size", "params", "backend", "threads"];
    if show_batch {
        cols.push("n_batch");
    }
    if show_ubatch {
        cols.push("n_ubatch");
    }
    cols.extend(["test", "t/s", "path", "GB/s", "% bw", "GFLOP/s", "% fma"]);
    let right = |c: &str| !matches!(c, "model" | "backend" | "test" | "path");
    let mut s = format!("| {} |\n|", cols.join(" | "));
    for c in &cols {
        s += if right(c) { " ---: |" } else { " :--- |" };
    }
    s + "\n"
}

pub fn md_row(r: &TestResult, show_batch: bool, show_ubatch: bool) -> String {
    let (ts, sd) = r.ts();
    let (gbps, gflops) = r.rates();
    let mut cells = vec![
        r.model.desc.clone(),
        size_str(r.model.size_bytes),
        params_str(r.model.n_params),
        "CPU".to_string(),
        r.spec.threads.to_string(),
    ];
    if show_batch {
        cells.push(r.spec.n_batch.to_string());
    }
    if show_ubatch {
        cells.push(r.spec.n_ubatch.to_string());
    }
    cells.extend([
        r.spec.name(),
        format!("{ts:.2} ± {sd:.2}"),
        r.cpu_path.to_string(),
        format!("{gbps:.1}"),
        format!("{:.0}%", 100.0 * gbps / r.ceilings.read_gbps.max(1e-9)),
        format!("{gflops:.1}"),
        format!("{:.0}%", 100.0 * gflops / r.ceilings.fma_gflops.max(1e-9)),
    ]);
    format!("| {} |\n", cells.join(" | "))
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
    vec![
        ("build_commit", s(option_env!("RS_LLAMA_GIT").unwrap_or("unknown"))),
        ("build_number", "0".into()),
        ("cpu_info", s(&cpu_model_name())),
        ("gpu_info", s("")),
        ("backends", s("CPU")),
        ("model_filename", s(&r.model.filename)),
        ("model_type", s(&r.model.desc)),
        ("model_size", r.model.size_bytes.to_string()),
        ("model_n_params", r.model.n_params.to_string()),
        ("n_batch", r.spec.n_batch.to_string()),
        ("n_ubatch", r.spec.n_ubatch.to_string()),
        ("n_threads", r.spec.threads.to_string()),
        ("type_k", s("f16")),
        ("type_v", s("f16")),
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
    ]
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
    let show_b = results.iter().any(|r| r.spec.n_batch != 2048);
    let show_ub = results.iter().any(|r| r.spec.n_ubatch != 512);
    match fmt {
        OutputFormat::Md => {
            let mut s = md_header(show_b, show_ub);
            for r in results {
                s += &md_row(r, show_b, show_ub);
            }
            s + "\n" + &build_line() + "\n"
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
    use crate::bench::{work::Work, Ceilings, ModelInfo, TestSpec};

    fn result() -> TestResult {
        TestResult {
            model: ModelInfo {
                filename: "m.gguf".into(),
                desc: "llama 135M F16".into(),
                size_bytes: 270 << 20,
                n_params: 134_515_008,
            },
            spec: TestSpec { n_prompt: 0, n_gen: 128, n_batch: 2048, n_ubatch: 512, threads: 2 },
            cpu_path: "avx512",
            test_time: "2026-11-26T04:30:00Z".into(),
            samples_ns: vec![1_000_000_000, 2_000_000_000],
            work: Work { bytes: 30e9, flops: 60e9 },
            ceilings: Ceilings { read_gbps: 40.0, fma_gflops: 200.0 },
        }
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
}
