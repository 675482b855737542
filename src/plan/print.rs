//! The plan as text (placements grouped with their reasons), the timeline as text or SVG, and the
//! JSON report.

use std::fmt::Write;

use serde::Serialize;

use super::simulate::{Timeline, LANES};
use super::workload::{Prediction, Workload};
use super::Plan;

fn gb(bytes: u64) -> String {
    format!("{:.2} GB", bytes as f64 / 1e9)
}

/// Placements, one line per run of consecutive tasks of a layer with the same placement and reason.
pub fn plan_text(plan: &Plan, layer_of: &dyn Fn(usize) -> u32) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "policy: {}   model: {}   hw: {}", plan.policy.name(), plan.model, plan.hw);
    let _ = writeln!(out, "plan: {}", plan.summary);
    let _ = writeln!(
        out,
        "GPU memory: budget {}, resident {}, staging {}, scratch {}",
        gb(plan.gpu_mem_bytes),
        gb(plan.gpu_resident_bytes),
        gb(plan.staging_bytes),
        gb(plan.scratch_bytes)
    );
    let mut i = 0;
    let p = &plan.placements;
    while i < p.len() {
        let mut j = i + 1;
        while j < p.len() && layer_of(j) == layer_of(i) && p[j].reason == p[i].reason {
            j += 1;
        }
        let names = if j - i == 1 {
            p[i].name.clone()
        } else {
            format!("{} .. {} ({} tasks)", p[i].name, p[j - 1].name, j - i)
        };
        let bytes: u64 = p[i..j].iter().map(|x| x.footprint).sum();
        let _ = writeln!(out, "  {names:<36} {:>10}  {}", gb(bytes), p[i].reason);
        i = j;
    }
    out
}

pub fn prediction_text(pred: &Prediction, w: &Workload) -> String {
    let u =
        |x: [f64; 3]| format!("cpu {:.0}% gpu {:.0}% pcie {:.0}%", 100.0 * x[0], 100.0 * x[1], 100.0 * x[2]);
    format!(
        "predicted: prefill {:.1} t/s ({} tokens in {:.3} s; {}), decode {:.2} t/s ({:.1} ms/token; {})\n",
        pred.prefill_tps,
        w.prompt,
        pred.prefill_s,
        u(pred.prefill_util),
        pred.decode_tps,
        pred.decode_step_s * 1e3,
        u(pred.decode_util)
    )
}

/// One line per operation: lane, start and end in ms, label.
pub fn timeline_text(tl: &Timeline) -> String {
    let mut order: Vec<usize> = (0..tl.ops.len()).collect();
    order.sort_by(|&a, &b| tl.start[a].total_cmp(&tl.start[b]));
    let mut out = String::new();
    for i in order {
        let _ = writeln!(
            out,
            "{:<5} {:>10.3} {:>10.3}  {}",
            tl.ops[i].lane.name(),
            tl.start[i] * 1e3,
            tl.end[i] * 1e3,
            tl.ops[i].label
        );
    }
    let _ = writeln!(out, "makespan {:.3} ms", tl.makespan * 1e3);
    out
}

/// The timeline as an SVG: one row per lane, one box per operation.
pub fn timeline_svg(tl: &Timeline) -> String {
    let width = 1200.0;
    let row = 40.0;
    let scale = width / tl.makespan.max(1e-12);
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{}" font-family="monospace" font-size="10">"#,
        width + 60.0,
        row * 3.0 + 30.0
    );
    for lane in LANES {
        let y = 10.0 + row * lane.index() as f64;
        let _ = writeln!(out, r#"<text x="0" y="{}">{}</text>"#, y + row / 2.0, lane.name());
        let color = ["#4e79a7", "#59a14f", "#e15759"][lane.index()];
        for (i, op) in tl.ops.iter().enumerate().filter(|(_, o)| o.lane == lane) {
            let x = 50.0 + tl.start[i] * scale;
            let w = ((tl.end[i] - tl.start[i]) * scale).max(0.5);
            let _ = writeln!(
                out,
                r#"<rect x="{x:.2}" y="{y:.1}" width="{w:.2}" height="{:.1}" fill="{color}" stroke="white" stroke-width="0.3"><title>{} {:.3}-{:.3} ms</title></rect>"#,
                row - 8.0,
                op.label,
                tl.start[i] * 1e3,
                tl.end[i] * 1e3
            );
        }
    }
    let _ = writeln!(out, r#"<text x="50" y="{}">0 .. {:.3} ms</text>"#, row * 3.0 + 25.0, tl.makespan * 1e3);
    out.push_str("</svg>\n");
    out
}

/// `rs-llama-plan --json`: the plan and its prediction in one object.
#[derive(Debug, Serialize)]
pub struct Report<'a> {
    pub policy: &'a str,
    pub model: &'a str,
    pub hw: &'a str,
    pub gpu_mem_bytes: u64,
    pub gpu_resident_bytes: u64,
    pub staging_bytes: u64,
    pub scratch_bytes: u64,
    pub prefill_tps: f64,
    pub decode_tps: f64,
    pub prompt: u64,
    pub gen: u64,
    pub summary: &'a str,
    pub prediction: &'a Prediction,
    pub plan: &'a Plan,
}
