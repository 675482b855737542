//! `--trace FILE`: the lanes' operations as Chrome trace-event JSON (opens in Perfetto), one named
//! track per lane — `cpu`, `gpu`, `h2d` (weight copies), `d2h` and `h2d-act` (activation hops
//! between the sides) — and one complete event (`"ph":"X"`) per operation, whose args give layer,
//! task, expert, tokens and bytes. Times are the simulated device's virtual clock.

use serde::Serialize;

use crate::plan::simulate::{Lane, Timeline};
use crate::plan::tasks::{TaskGraph, TaskKind};

const TRACKS: [&str; 5] = ["cpu", "gpu", "h2d", "d2h", "h2d-act"];

#[derive(Debug, Clone, Serialize)]
struct Args {
    layer: u32,
    task: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    expert: Option<u32>,
    tokens: u64,
    bytes: u64,
    step: usize,
}

#[derive(Debug, Clone, Serialize)]
struct Event {
    name: String,
    ph: &'static str,
    /// Microseconds.
    ts: f64,
    dur: f64,
    pid: u32,
    tid: usize,
    args: Args,
}

/// Every operation of every step, in virtual time.
#[derive(Debug, Default)]
pub struct TraceLog {
    events: Vec<Event>,
    steps: usize,
}

impl TraceLog {
    /// Adds one step's timeline, which started at `t0` seconds.
    pub fn push(&mut self, t0: f64, tl: &Timeline, g: &TaskGraph) {
        let step = self.steps;
        self.steps += 1;
        let on_gpu = |i: usize| tl.ops[i].lane != Lane::Cpu;
        for (i, op) in tl.ops.iter().enumerate() {
            let Some(task) = op.task.and_then(|t| g.tasks.get(t)) else { continue };
            let expert = match task.kind {
                TaskKind::Expert { expert } => Some(expert),
                _ => None,
            };
            let args = Args {
                layer: task.layer,
                task: task.name.clone(),
                expert,
                tokens: op.tokens,
                bytes: if op.lane == Lane::Gpu { 0 } else { op.host_bytes as u64 },
                step,
            };
            let tid = match op.lane {
                Lane::Cpu => 0,
                Lane::Gpu => 1,
                Lane::Pcie => 2,
            };
            let us = |s: f64| (t0 + s) * 1e6;
            // The activation hops this operation waited for: to the host (d2h) or to the GPU.
            for &(d, delay) in &op.deps {
                if delay > 0.0 && on_gpu(d) != on_gpu(i) {
                    let tid = if on_gpu(i) { 4 } else { 3 };
                    self.events.push(Event {
                        name: format!("act {}", tl.ops[d].label),
                        ph: "X",
                        ts: us(tl.end[d]),
                        dur: delay * 1e6,
                        pid: 1,
                        tid,
                        args: Args { bytes: 0, ..args.clone() },
                    });
                }
            }
            self.events.push(Event {
                name: op.label.clone(),
                ph: "X",
                ts: us(tl.start[i]),
                dur: (tl.end[i] - tl.start[i]) * 1e6,
                pid: 1,
                tid,
                args,
            });
        }
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// The JSON object Perfetto and chrome://tracing read.
    pub fn to_json(&self) -> String {
        let mut events: Vec<serde_json::Value> = TRACKS
            .iter()
            .enumerate()
            .map(|(tid, name)| {
                serde_json::json!({"name": "thread_name", "ph": "M", "pid": 1, "tid": tid, "args": {"name": name}})
            })
            .collect();
        events.push(serde_json::json!({"name": "process_name", "ph": "M", "pid": 1, "args": {"name": "rs-llama (virtual time)"}}));
        events.extend(self.events.iter().filter_map(|e| serde_json::to_value(e).ok()));
        serde_json::json!({ "traceEvents": events, "displayTimeUnit": "ms" }).to_string()
    }
}
